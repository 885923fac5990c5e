//! The status read without a script: one `MULTI`/`EXEC` of plain reads (the server's
//! clock and the id's field in each of its group's hashes and lease set), decided
//! here by the rules the status function follows on the server.
//!
//! A transaction runs with nothing in between on the primary, like a function, so the
//! read is one instant and stays linearizable; and the group's keys share one slot,
//! so it runs on a cluster too. It costs the server a few microseconds instead of the
//! tens a Lua call costs (BENCHMARKS.md). It writes nothing: a move that is due (a
//! lease's end, a time to live) is reported as made, as the status function does, and
//! made by the next script that touches the id.

use crate::state::{next, Op, Phase};
use crate::status::FailureReason;

use super::reply::{number, reason, Keep};

/// The raw fields the transaction read, in its order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Fields {
    /// The server's clock, in ms since the Unix epoch.
    pub(crate) now_ms: u64,
    pub(crate) success: Option<Vec<u8>>,
    pub(crate) failed: Option<Vec<u8>>,
    /// The lease's end (the score in the group's lease set), in ms.
    pub(crate) lease_ms: Option<u64>,
    pub(crate) working: Option<Vec<u8>>,
    pub(crate) revoking: Option<Vec<u8>>,
    /// The token in the group's `queue` hash: a queued attempt's.
    pub(crate) queued: Option<Vec<u8>>,
    /// The group's `prog` field: `token:value` of the last progress reported, or
    /// `token::reason:at_ms` while a retry waits.
    pub(crate) progress: Option<Vec<u8>>,
}

/// What a status read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) phase: Phase,
    pub(crate) attempts: Option<u32>,
    /// For `Failed`, why; for `Working`, why the attempt before failed.
    pub(crate) reason: Option<FailureReason>,
    /// When the phase began, in ms.
    pub(crate) since_ms: Option<u64>,
    /// The token of the running phase (or of the attempt whose lease ended).
    pub(crate) token: Option<u64>,
    /// For a running phase, how long its lease has left.
    pub(crate) lease_left_ms: Option<u64>,
    pub(crate) now_ms: u64,
    /// Whether the phase read keeps what its record kept (a finished record, or a
    /// revoking success, that no due move has ended).
    pub(crate) keeps: bool,
    /// The token of the attempt that made the finished record read (for a revoking
    /// id, its success's): a kept value counts only if that attempt kept it.
    pub(crate) record_token: Option<u64>,
    /// For `Working`: the attempt waits for a running slot.
    pub(crate) queued: bool,
    /// For `Working`: the last progress the attempt reported.
    pub(crate) progress: Option<u64>,
    /// For `Working` between two attempts of a retry: why the last failed and when
    /// (ms) the next starts.
    pub(crate) retry: Option<(FailureReason, u64)>,
}

impl Found {
    fn new(phase: Phase, now_ms: u64) -> Found {
        Found {
            phase,
            attempts: None,
            reason: None,
            since_ms: None,
            token: None,
            lease_left_ms: None,
            now_ms,
            keeps: false,
            record_token: None,
            queued: false,
            progress: None,
            retry: None,
        }
    }
}

/// The first `N` `:`-separated parts of a record's value (the last keeps any `:` it
/// holds), `None` past the end.
fn parts<const N: usize>(value: &[u8]) -> [Option<&[u8]>; N] {
    let mut each = value.splitn(N, |&b| b == b':');
    std::array::from_fn(|_| each.next())
}

fn num<T: std::str::FromStr>(part: Option<&[u8]>) -> Option<T> {
    number(part?)
}

fn why(part: Option<&[u8]>) -> Option<FailureReason> {
    reason(part?)
}

/// Whether a finished record's value, which began at `since`, is past `ttl` at `now`
/// (a tombstone, empty, never is).
fn past(value: &[u8], since: Option<u64>, ttl: Option<u64>, now: u64) -> bool {
    match (ttl, since) {
        (Some(ttl), Some(at)) if !value.is_empty() => at.saturating_add(ttl) <= now,
        _ => false,
    }
}

/// A `Success` record's value, `<attempts>:<since>:<token>`, or empty for a tombstone.
fn success(value: &[u8], now: u64) -> Found {
    let [attempts, since, token] = parts(value);
    Found {
        attempts: num(attempts),
        since_ms: num(since),
        keeps: !value.is_empty(),
        record_token: num(token),
        ..Found::new(Phase::Success, now)
    }
}

/// Decides the status from what the transaction read, with the namespace's retention.
pub(crate) fn decide(f: &Fields, keep: &Keep) -> Found {
    let now = f.now_ms;
    let expired_success = || {
        if keep.forget_success {
            Found::new(Phase::NotFound, now)
        } else {
            success(b"", now)
        }
    };
    if let Some(v) = &f.success {
        let found = success(v, now);
        if past(v, found.since_ms, keep.success_ttl_ms, now) {
            return expired_success();
        }
        return found;
    }
    if let Some(v) = &f.failed {
        // `<attempts>:<reason>:<since>[:<token>]`
        let [attempts, reason, since, token] = parts(v);
        let since = num(since);
        if past(v, since, keep.failed_ttl_ms, now) {
            return Found::new(Phase::NotFound, now);
        }
        return Found {
            attempts: num(attempts),
            reason: why(reason),
            since_ms: since,
            keeps: true,
            record_token: num(token),
            ..Found::new(Phase::Failed, now)
        };
    }
    // A running record without a lease entry reads as ended now, as on the server.
    let lease = f.lease_ms.unwrap_or(now);
    if let Some(v) = &f.working {
        // `<token>:<attempts>:<since>:<cancel>:<previous failure>`
        let [token, attempts, since, _cancel, previous] = parts(v);
        let (token, attempts) = (num(token), num(attempts));
        if lease <= now {
            if keep
                .failed_ttl_ms
                .is_some_and(|ttl| lease.saturating_add(ttl) <= now)
            {
                return Found::new(Phase::NotFound, now);
            }
            let expired = next(Phase::Working, Op::Expire).unwrap_or(Phase::Failed);
            return Found {
                attempts,
                reason: Some(FailureReason::WorkerLost),
                since_ms: Some(lease),
                token,
                ..Found::new(expired, now)
            };
        }
        // Queued while the queue holds this attempt's token.
        let queued = match (&f.queued, token) {
            (Some(q), Some(t)) => number::<u64>(q) == Some(t),
            _ => false,
        };
        // The attempt's own report only: `<token>:<value>`, or a retry's wait:
        // `<token>::<reason>:<at>`.
        let own = f
            .progress
            .as_deref()
            .map(parts::<4>)
            .filter(|[t, ..]| token.is_some() && num::<u64>(*t) == token);
        let progress = own.and_then(|[_, value, ..]| num(value));
        let retry = own.and_then(|[_, _, reason, at]| Some((why(reason)?, num(at)?)));
        return Found {
            attempts,
            reason: why(previous),
            since_ms: num(since),
            token,
            lease_left_ms: Some(lease - now),
            queued,
            progress,
            retry,
            ..Found::new(Phase::Working, now)
        };
    }
    if let Some(v) = &f.revoking {
        // `<token>:<since>:<the success's value>`
        let [token, since, sv] = parts(v);
        let sv = sv.unwrap_or_default();
        if lease <= now {
            if !sv.is_empty()
                && keep
                    .success_ttl_ms
                    .is_some_and(|ttl| lease.saturating_add(ttl) <= now)
            {
                return expired_success();
            }
            // Success again, its time to live restarted at the lease's end.
            let mut back = success(sv, now);
            if !sv.is_empty() && back.since_ms.is_some() {
                back.since_ms = Some(lease);
            }
            return back;
        }
        return Found {
            attempts: num(parts::<2>(sv)[0]),
            since_ms: num(since),
            token: num(token),
            lease_left_ms: Some(lease - now),
            keeps: !sv.is_empty(),
            record_token: num(parts::<3>(sv)[2]),
            ..Found::new(Phase::Revoking, now)
        };
    }
    Found::new(Phase::NotFound, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(now: u64) -> Fields {
        Fields {
            now_ms: now,
            ..Fields::default()
        }
    }

    #[test]
    fn each_phase_reads_as_its_record_says() {
        let keep = Keep::default();
        let mut f = fields(1000);
        assert_eq!(decide(&f, &keep).phase, Phase::NotFound);
        f.working = Some(b"7:2:900:0:error".to_vec());
        f.lease_ms = Some(1500);
        let w = decide(&f, &keep);
        assert_eq!(
            (
                w.phase,
                w.attempts,
                w.reason,
                w.since_ms,
                w.token,
                w.lease_left_ms
            ),
            (
                Phase::Working,
                Some(2),
                Some(FailureReason::Error),
                Some(900),
                Some(7),
                Some(500)
            )
        );
        // Its lease ended: Failed, worker lost, from the lease's end.
        f.now_ms = 1500;
        let lost = decide(&f, &keep);
        assert_eq!(
            (lost.phase, lost.reason, lost.since_ms, lost.token),
            (
                Phase::Failed,
                Some(FailureReason::WorkerLost),
                Some(1500),
                Some(7)
            )
        );
        let f = Fields {
            success: Some(b"3:1200:9".to_vec()),
            ..fields(2000)
        };
        let s = decide(&f, &keep);
        assert_eq!(
            (s.phase, s.attempts, s.since_ms),
            (Phase::Success, Some(3), Some(1200))
        );
        let f = Fields {
            failed: Some(b"1:panicked:1300:4".to_vec()),
            ..fields(2000)
        };
        let x = decide(&f, &keep);
        assert_eq!(
            (x.phase, x.reason, x.since_ms),
            (Phase::Failed, Some(FailureReason::Panicked), Some(1300))
        );
        let f = Fields {
            revoking: Some(b"11:1900:3:1200:9".to_vec()),
            lease_ms: Some(2500),
            ..fields(2000)
        };
        let r = decide(&f, &keep);
        assert_eq!(
            (r.phase, r.attempts, r.since_ms, r.token, r.lease_left_ms),
            (Phase::Revoking, Some(3), Some(1900), Some(11), Some(500))
        );
    }

    #[test]
    fn retention_reads_as_applied() {
        let keep = Keep {
            failed_ttl_ms: Some(100),
            success_ttl_ms: Some(100),
            forget_success: false,
            cap_per_group: None,
        };
        let failed = Fields {
            failed: Some(b"1:error:1000".to_vec()),
            ..fields(1100)
        };
        assert_eq!(decide(&failed, &keep).phase, Phase::NotFound);
        let young = Fields {
            now_ms: 1099,
            ..failed.clone()
        };
        assert_eq!(decide(&young, &keep).phase, Phase::Failed);
        let succ = Fields {
            success: Some(b"1:1000:5".to_vec()),
            ..fields(1100)
        };
        let tomb = decide(&succ, &keep);
        assert_eq!((tomb.phase, tomb.attempts), (Phase::Success, None));
        let forget = Keep {
            forget_success: true,
            ..keep
        };
        assert_eq!(decide(&succ, &forget).phase, Phase::NotFound);
        // A tombstone never expires.
        let tombstone = Fields {
            success: Some(Vec::new()),
            ..fields(u64::MAX / 2)
        };
        assert_eq!(decide(&tombstone, &forget).phase, Phase::Success);
    }

    use std::time::Duration;

    use crate::redis::store::Loc;
    use crate::redis::RedisRecorder;

    /// A kept value counts only for the attempt that made the record: one of another
    /// attempt (left by a process of another version, say) reads as none.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kept_value_of_another_attempt_is_not_shown() {
        let server = crate::store::tests::redis_server::RedisServer::start();
        let recorder = RedisRecorder::<u64>::builder(server.url())
            .namespace("kept")
            .groups(1)
            .build()
            .await
            .expect("a recorder");
        let store = &recorder.shared.store;
        let mut conn = store.conn();
        let keys = store.layout().group(0).to_vec();
        let (succ, fail, kept) = (&keys[2], &keys[3], &keys[8]);
        let loc = |id: &str| Loc {
            group: 0,
            bytes: id.as_bytes().to_vec(),
        };
        let mut pipe = ::redis::pipe();
        pipe.cmd("HSET").arg(succ).arg("s").arg("1:1000:5").ignore();
        pipe.cmd("HSET").arg(kept).arg("s").arg("4:ostale").ignore();
        pipe.cmd("HSET")
            .arg(fail)
            .arg("f")
            .arg("1:error:1000:7")
            .ignore();
        pipe.cmd("HSET")
            .arg(kept)
            .arg("f")
            .arg("7:mdisk full")
            .ignore();
        pipe.query_async::<()>(&mut conn).await.unwrap();
        assert_eq!(store.read(&loc("s")).await.unwrap().status.kept, None);
        assert_eq!(
            store.read(&loc("f")).await.unwrap().status.kept,
            Some(crate::Kept::Message("disk full".into()))
        );
    }

    /// Records of every shape (each phase's value, with times of long ago, of now and
    /// of the far future, with and without a lease, and odd combinations no script
    /// makes) written straight into a group's hashes, then read by the transaction
    /// and by the library's `status` function: both must answer the same, under each
    /// retention setting.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_transaction_reads_as_the_status_function_does() {
        let server = crate::store::tests::redis_server::RedisServer::start();
        let settings: [(&str, Option<Duration>, Option<Duration>, bool); 3] = [
            ("plain", None, None, false),
            (
                "ttl",
                Some(Duration::from_secs(60)),
                Some(Duration::from_secs(60)),
                false,
            ),
            (
                "forget",
                Some(Duration::from_secs(60)),
                Some(Duration::from_secs(60)),
                true,
            ),
        ];
        let mut compared = 0;
        for (namespace, failed_ttl, success_ttl, forget) in settings {
            let mut builder = RedisRecorder::<u64>::builder(server.url())
                .namespace(namespace)
                .groups(1);
            if let Some(ttl) = failed_ttl {
                builder = builder.failed_ttl(ttl);
            }
            if let Some(ttl) = success_ttl {
                builder = builder.success_ttl(ttl).success_expiry(if forget {
                    crate::SuccessExpiry::Forget
                } else {
                    crate::SuccessExpiry::Tombstone
                });
            }
            let recorder = builder.build().await.expect("a recorder");
            let store = &recorder.shared.store;
            let mut conn = store.conn();
            let (secs, _): (u64, u64) = ::redis::cmd("TIME").query_async(&mut conn).await.unwrap();
            let now = secs * 1000;
            // Long past every TTL and lease, just past none, and far ahead.
            let times = [now - 3_600_000, now - 1000, now + 3_600_000];
            let mut shapes: Vec<Fields> = Vec::new();
            for &t in &times {
                shapes.push(Fields {
                    success: Some(format!("2:{t}:5").into_bytes()),
                    ..Fields::default()
                });
                shapes.push(Fields {
                    failed: Some(format!("1:panicked:{t}:4").into_bytes()),
                    ..Fields::default()
                });
                shapes.push(Fields {
                    failed: Some(format!("3:error:{t}").into_bytes()),
                    ..Fields::default()
                });
                for &lease in &times {
                    shapes.push(Fields {
                        working: Some(format!("9:2:{t}:0:error").into_bytes()),
                        lease_ms: Some(lease),
                        ..Fields::default()
                    });
                    shapes.push(Fields {
                        working: Some(format!("9:1:{t}:1:").into_bytes()),
                        lease_ms: Some(lease),
                        ..Fields::default()
                    });
                    shapes.push(Fields {
                        revoking: Some(format!("12:{t}:2:{t}:5").into_bytes()),
                        lease_ms: Some(lease),
                        ..Fields::default()
                    });
                    shapes.push(Fields {
                        revoking: Some(format!("12:{t}:").into_bytes()),
                        lease_ms: Some(lease),
                        ..Fields::default()
                    });
                }
                // No lease entry for a running record; two phases at once.
                shapes.push(Fields {
                    working: Some(format!("9:2:{t}:0:").into_bytes()),
                    ..Fields::default()
                });
                shapes.push(Fields {
                    success: Some(b"".to_vec()),
                    failed: Some(format!("1:error:{t}").into_bytes()),
                    ..Fields::default()
                });
            }
            shapes.push(Fields::default());
            let keys = store.layout().group(0).to_vec();
            let key = |name: &str| {
                let at = super::super::keys::GROUP_KEYS
                    .iter()
                    .position(|k| *k == name)
                    .unwrap();
                keys[at].clone()
            };
            for (n, shape) in shapes.iter().enumerate() {
                let id = format!("shape{n}").into_bytes();
                let mut pipe = ::redis::pipe();
                // Never empty, also for the shape with no record.
                pipe.cmd("EXISTS").arg(key("work")).ignore();
                for (hash, value) in [
                    ("succ", &shape.success),
                    ("fail", &shape.failed),
                    ("work", &shape.working),
                    ("rvk", &shape.revoking),
                ] {
                    if let Some(v) = value {
                        pipe.cmd("HSET").arg(key(hash)).arg(&id).arg(v).ignore();
                    }
                }
                if let Some(lease) = shape.lease_ms {
                    pipe.cmd("ZADD")
                        .arg(key("lease"))
                        .arg(lease)
                        .arg(&id)
                        .ignore();
                }
                pipe.query_async::<()>(&mut conn).await.unwrap();
                let loc = Loc {
                    group: 0,
                    bytes: id,
                };
                let by_transaction = store.read(&loc).await.unwrap();
                let by_function = store.read_by_function(&loc).await.unwrap();
                let a = (
                    &by_transaction.status,
                    by_transaction.token,
                    by_transaction.previous_failure,
                );
                let b = (
                    &by_function.status,
                    by_function.token,
                    by_function.previous_failure,
                );
                let what = format!("{namespace}: {shape:?}");
                assert_eq!(a.0.phase, b.0.phase, "{what}");
                assert_eq!(a.0.attempts, b.0.attempts, "{what}");
                assert_eq!(a.0.last_failure, b.0.last_failure, "{what}");
                // The two read the clock a moment apart, which shows where a time is
                // the read's own (a lease missing reads as ending now); the shapes'
                // times are a second or more apart.
                let ms = |t: Option<std::time::SystemTime>| {
                    t.map(|t| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis())
                };
                match (ms(a.0.started_at), ms(b.0.started_at)) {
                    (Some(x), Some(y)) => assert!(x.abs_diff(y) < 500, "{what}: {x} vs {y}"),
                    (x, y) => assert_eq!(x, y, "{what}"),
                }
                assert_eq!((a.1, a.2), (b.1, b.2), "{what}");
                let left = |r: &crate::redis::reply::Read| r.lease_left.map(|d| d.as_millis());
                match (left(&by_transaction), left(&by_function)) {
                    (Some(x), Some(y)) => assert!(x.abs_diff(y) < 500, "{what}: {x} vs {y}"),
                    (x, y) => assert_eq!(x, y, "{what}"),
                }
                compared += 1;
            }
        }
        assert!(compared > 100, "{compared} shapes");
    }
}
