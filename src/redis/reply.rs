//! The wire format of the Redis store's answers: the reads a waiter and `status`
//! decode, the kept values, the settings a launch sends (`Keep`), and the decoding of
//! script replies into our types, with a clear error for a reply of the wrong shape.

use std::time::{Duration, Instant, UNIX_EPOCH};

use super::read::Found;
use crate::kept::Kept;
use crate::state::Phase;
use crate::status::{FailureReason, Settled, TaskStatus};
use crate::store::Granted;
use crate::{StateCounts, StoreError};

/// A status read, with what a waiter needs beyond [`TaskStatus`].
#[derive(Debug, Clone)]
pub(crate) struct Read {
    pub(crate) status: TaskStatus,
    /// The token of the running phase, or of the phase the record's expiry ended.
    pub(crate) token: Option<u64>,
    /// For a running phase: how long until its lease ends, by the server's clock.
    pub(crate) lease_left: Option<Duration>,
    /// For `Working`: the failure of the attempt before (the one a relaunch replaced).
    pub(crate) previous_failure: Option<FailureReason>,
}

impl Read {
    pub(crate) fn settled(&self) -> Settled {
        Settled {
            phase: self.status.phase,
            failure: self.status.last_failure,
            kept: self.status.kept.clone(),
        }
    }
}

/// A kept value as `finish` takes it (`ARGV[6]`): `o<text>` for an output,
/// `m<text>` for a message, `t<len>:<limit>` for an output over the limit.
pub(super) fn encode_kept(kept: &Kept) -> Vec<u8> {
    let (mark, text) = match kept {
        Kept::Output(text) => ('o', text.to_string()),
        Kept::Message(text) => ('m', text.to_string()),
        Kept::TooLarge { len, limit } => ('t', format!("{len}:{limit}")),
    };
    let mut out = Vec::with_capacity(1 + text.len());
    out.push(mark as u8);
    out.extend_from_slice(text.as_bytes());
    out
}

/// A value of the group's `kept` hash, `<token>:<encoded>`, and the token that made
/// it; `None` for what this version cannot read.
pub(super) fn decode_kept(value: &[u8]) -> Option<(u64, Kept)> {
    let colon = value.iter().position(|&b| b == b':')?;
    let token = number(&value[..colon])?;
    let (&mark, rest) = value[colon + 1..].split_first()?;
    let text = std::str::from_utf8(rest).ok()?;
    let kept = match mark {
        b'o' => Kept::Output(text.into()),
        b'm' => Kept::Message(text.into()),
        b't' => {
            let (len, limit) = text.split_once(':')?;
            Kept::TooLarge {
                len: len.parse().ok()?,
                limit: limit.parse().ok()?,
            }
        }
        _ => return None,
    };
    Some((token, kept))
}

/// Which hash of a group holds a phase's ids.
pub(crate) fn table_of(phase: Phase) -> Option<&'static str> {
    match phase {
        Phase::Working => Some("work"),
        Phase::Success => Some("succ"),
        Phase::Failed => Some("fail"),
        Phase::Revoking => Some("rvk"),
        Phase::NotFound => None,
    }
}

/// Retention on the server: the TTLs in ms and the cap per slot group, `None` when off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Keep {
    pub(crate) failed_ttl_ms: Option<u64>,
    pub(crate) success_ttl_ms: Option<u64>,
    pub(crate) forget_success: bool,
    pub(crate) cap_per_group: Option<u64>,
}

impl Keep {
    /// The settings as the scripts read them (after the channel in their context).
    pub(crate) fn encode(&self) -> String {
        let n = |v: Option<u64>| v.map_or("-1".to_string(), |v| v.to_string());
        format!(
            "{}|{}|{}|{}",
            n(self.failed_ttl_ms),
            n(self.success_ttl_ms),
            u8::from(self.forget_success),
            n(self.cap_per_group)
        )
    }
}

/// A status read as the recorder uses it, with what the record kept (`kept`, the
/// group's `kept` field of the id) when the phase read is one that keeps it.
pub(super) fn read_of(found: Found, kept: Option<&[u8]>) -> Read {
    let ph = found.phase;
    let status = TaskStatus {
        phase: ph,
        attempts: found.attempts,
        last_failure: match (ph, found.retry) {
            (Phase::Failed, _) => found.reason,
            (Phase::Working, Some((reason, _))) => Some(reason),
            _ => None,
        },
        since: found.since_ms.and_then(|at| instant_of(at, found.now_ms)),
        started_at: found
            .since_ms
            .map(|at| UNIX_EPOCH + Duration::from_millis(at)),
        // Only the value of the attempt that made the record (a process of another
        // version may have left one behind).
        kept: kept
            .filter(|_| found.keeps)
            .and_then(decode_kept)
            .filter(|(token, _)| Some(*token) == found.record_token)
            .map(|(_, kept)| kept),
        queued: found.queued,
        progress: found.progress,
        retry_at: found
            .retry
            .map(|(_, at)| UNIX_EPOCH + Duration::from_millis(at)),
    };
    Read {
        status,
        token: found.token,
        lease_left: found.lease_left_ms.map(Duration::from_millis),
        previous_failure: if ph == Phase::Working {
            found.reason
        } else {
            None
        },
    }
}

pub(super) fn bad_reply(what: &str) -> StoreError {
    StoreError::Refused(format!("unexpected reply to {what}"))
}

pub(super) fn phase(name: &[u8]) -> Result<Phase, StoreError> {
    std::str::from_utf8(name)
        .ok()
        .and_then(Phase::from_name)
        .ok_or_else(|| bad_reply("a phase"))
}

pub(super) fn reason(name: &[u8]) -> Option<FailureReason> {
    std::str::from_utf8(name)
        .ok()
        .and_then(FailureReason::from_name)
}

pub(super) fn number<T: std::str::FromStr>(field: &[u8]) -> Option<T> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// The local instant at which a server time (ms since the Unix epoch) was, given the
/// server's `now` in the same reply.
pub(super) fn instant_of(at_ms: u64, now_ms: u64) -> Option<Instant> {
    Instant::now().checked_sub(Duration::from_millis(now_ms.saturating_sub(at_ms)))
}

/// The counts of every group, each `{working, success (revoking included), failed,
/// revoking, queued}`, added up.
pub(super) fn sum_counts(replies: &[Vec<u64>]) -> Result<StateCounts, StoreError> {
    let mut total = [0u64; 5];
    for reply in replies {
        let [w, s, f, r, q] = reply.as_slice() else {
            return Err(bad_reply("counts"));
        };
        for (t, v) in total.iter_mut().zip([w, s, f, r, q]) {
            *t += v;
        }
    }
    let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    Ok(StateCounts {
        working: n(total[0]),
        success: n(total[1]),
        failed: n(total[2]),
        revoking: n(total[3]),
        queued: n(total[4]),
    })
}

pub(super) fn granted_or_phase(
    reply: &[Vec<u8>],
    what: &str,
) -> Result<Result<Granted, Phase>, StoreError> {
    match reply {
        [flag, token, rest @ ..] if flag.as_slice() == b"1" => Ok(Ok(Granted {
            token: number(token).ok_or_else(|| bad_reply(what))?,
            attempts: rest.first().and_then(|a| number(a)).unwrap_or(1),
        })),
        [flag, ph] if flag.as_slice() == b"0" => Ok(Err(phase(ph)?)),
        _ => Err(bad_reply(what)),
    }
}
