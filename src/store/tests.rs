//! The seam against the state machine: every phase crossed with every record
//! operation, made through [`Records`] on each store by one generic check.

use std::fmt::Debug;

use super::{Finished, Outcome, Records, Retried};
use crate::kept::Kept;
use crate::state::{next, Op, Phase};
use crate::status::FailureReason;

/// A record brought to a phase through the seam, with the tokens it was granted.
struct Reached {
    /// The token of the running phase (or of the last one, when none runs).
    current: u64,
    /// A token of an earlier phase of the same id, when there is one.
    stale: Option<u64>,
    /// Every token granted so far, in order.
    granted: Vec<u64>,
}

fn ok<T, E: Debug>(result: Result<T, E>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: the store could not answer: {e:?}"))
}

async fn launch<S: Records<u64>>(store: &S, id: u64, r: &mut Reached)
where
    S::Error: Debug,
{
    let granted = ok(store.launch(&store.at(&id), &id, false).await, "launch")
        .unwrap_or_else(|refused| panic!("setting up: launch refused in {refused:?}"));
    assert!(
        r.granted.iter().all(|&t| t < granted.token),
        "token {} not larger than {:?}",
        granted.token,
        r.granted
    );
    r.granted.push(granted.token);
    r.stale = (r.current != 0).then_some(r.current);
    r.current = granted.token;
}

async fn finish<S: Records<u64>>(store: &S, id: u64, token: u64, outcome: Outcome)
where
    S::Error: Debug,
{
    let at = store.at(&id);
    let finished = ok(store.finish(&at, token, outcome, None).await, "finish");
    assert!(
        matches!(finished, Finished::Moved(_)),
        "setting up: finish refused"
    );
}

async fn revoke_begin<S: Records<u64>>(store: &S, id: u64, r: &mut Reached)
where
    S::Error: Debug,
{
    let at = store.at(&id);
    let token = ok(store.revoke_begin(&at).await, "revoke_begin")
        .unwrap_or_else(|phase| panic!("setting up: revoke refused in {phase:?}"));
    assert!(
        r.granted.iter().all(|&t| t < token),
        "revoke token not larger"
    );
    r.granted.push(token);
    r.stale = Some(r.current);
    r.current = token;
}

/// Brings a fresh id to `phase` by allowed moves only, so that a stale token of the
/// same id exists for the running phases: an earlier attempt for `Working`, an earlier
/// revoke for `Revoking`.
async fn reach<S: Records<u64>>(store: &S, id: u64, phase: Phase) -> Reached
where
    S::Error: Debug,
{
    let mut r = Reached {
        current: 0,
        stale: None,
        granted: Vec::new(),
    };
    let failed = Outcome::Failed(FailureReason::Error);
    match phase {
        Phase::NotFound => {}
        Phase::Working => {
            launch(store, id, &mut r).await;
            finish(store, id, r.current, failed).await;
            launch(store, id, &mut r).await;
        }
        Phase::Failed => {
            launch(store, id, &mut r).await;
            finish(store, id, r.current, failed).await;
        }
        Phase::Success => {
            launch(store, id, &mut r).await;
            finish(store, id, r.current, Outcome::Ok).await;
        }
        Phase::Revoking => {
            launch(store, id, &mut r).await;
            finish(store, id, r.current, Outcome::Ok).await;
            revoke_begin(store, id, &mut r).await;
            let at = store.at(&id);
            let back = ok(store.revoke_end(&at, r.current, false).await, "revoke_end");
            assert!(back.is_some(), "setting up: revoke end refused");
            revoke_begin(store, id, &mut r).await;
        }
    }
    r
}

/// What the store did with `op`: the phase it moved to, or the phase that refused it.
async fn apply<S: Records<u64>>(store: &S, id: u64, op: Op, r: &mut Reached) -> Result<Phase, Phase>
where
    S::Error: Debug,
{
    let at = store.at(&id);
    let before = ok(store.phase(&at).await, "phase");
    match op {
        Op::Launch => match ok(store.launch(&at, &id, false).await, "launch") {
            Ok(granted) => {
                assert!(r.granted.iter().all(|&t| t < granted.token));
                assert_eq!(
                    granted.attempts,
                    if before == Phase::Failed { 2 } else { 1 }
                );
                Ok(Phase::Working)
            }
            Err(refused) => {
                assert!(!refused.closed);
                Err(refused.phase)
            }
        },
        Op::Finish { ok: success } => {
            let outcome = if success {
                Outcome::Ok
            } else {
                Outcome::Failed(FailureReason::Error)
            };
            match ok(store.finish(&at, r.current, outcome, None).await, "finish") {
                Finished::Moved(settled) => {
                    assert_eq!(settled.failure.is_none(), success);
                    Ok(settled.phase)
                }
                // A repeat of the finish that ended the attempt changes nothing, and
                // says how it ended.
                Finished::Already(settled) => {
                    assert_eq!(settled.phase, before, "a repeat reports the record");
                    Err(before)
                }
                Finished::Refused => Err(before),
            }
        }
        Op::RevokeBegin => match ok(store.revoke_begin(&at).await, "revoke_begin") {
            Ok(token) => {
                assert!(r.granted.iter().all(|&t| t < token));
                Ok(Phase::Revoking)
            }
            Err(phase) => Err(phase),
        },
        Op::RevokeEnd { ok: success } => {
            match ok(
                store.revoke_end(&at, r.current, success).await,
                "revoke_end",
            ) {
                Some(settled) => Ok(settled.phase),
                None => Err(before),
            }
        }
        Op::Forget | Op::Expire => unreachable!("not a seam operation"),
    }
}

/// Every cell of the state machine through the seam, with stale tokens refused in
/// every phase and tokens increasing per id; `first_id` keeps runs on a shared store
/// apart.
async fn follows_the_state_machine<S: Records<u64>>(store: &S, first_id: u64)
where
    S::Error: Debug,
{
    // Retention and lease expiry are not seam operations.
    let ops = Op::ALL
        .into_iter()
        .filter(|op| !matches!(op, Op::Forget | Op::Expire));
    let mut id = first_id;
    let mut cells = 0;
    for from in Phase::ALL {
        for op in ops.clone() {
            id += 1;
            let mut r = reach(store, id, from).await;
            let at = store.at(&id);
            assert_eq!(
                ok(store.phase(&at).await, "phase"),
                from,
                "reached {from:?}"
            );
            assert_eq!(ok(store.status(&at).await, "status").phase, from);

            // A token of an earlier phase of this id ends nothing.
            if let Some(stale) = r.stale {
                let finished = ok(store.finish(&at, stale, Outcome::Ok, None).await, "finish");
                assert!(
                    !matches!(finished, Finished::Moved(_)),
                    "{from:?}: a stale finish was accepted"
                );
                let ended = ok(store.revoke_end(&at, stale, true).await, "revoke_end");
                assert!(ended.is_none(), "{from:?}: a stale revoke end was accepted");
                assert_eq!(ok(store.phase(&at).await, "phase"), from);
            }

            let got = apply(store, id, op, &mut r).await;
            let want = next(from, op);
            assert_eq!(got, want, "{from:?} + {op:?}");
            let now = ok(store.phase(&at).await, "phase");
            assert_eq!(now, want.unwrap_or(from), "{from:?} + {op:?}: the record");
            assert_eq!(ok(store.status(&at).await, "status").phase, now);
            cells += 1;
        }
    }
    assert_eq!(cells, 30);

    // Tokens keep increasing across a revoke that forgets the record.
    id += 1;
    let mut r = reach(store, id, Phase::Revoking).await;
    let at = store.at(&id);
    let gone = ok(store.revoke_end(&at, r.current, true).await, "revoke_end");
    assert_eq!(gone.map(|s| s.phase), Some(Phase::NotFound));
    launch(store, id, &mut r).await;
    let counts = ok(store.counts().await, "counts");
    assert!(counts.working >= 1, "{counts:?}");
}

/// What a finish keeps stays with the record for as long as its phase: a relaunch,
/// a successful revoke and a finish without a value leave none; a revoke that fails
/// puts the success back with it; a refused finish keeps nothing. Ids from `id`.
async fn keeps_values_for_their_phase<S: Records<u64>>(store: &S, id: u64)
where
    S::Error: Debug,
{
    let kept = |id: u64| async move {
        let status = ok(store.status(&store.at(&id)).await, "status");
        (status.phase, status.kept)
    };
    let output = Kept::Output("s3://bucket/1".into());
    let message = Kept::Message("disk full on /var".into());
    let mut r = Reached {
        current: 0,
        stale: None,
        granted: Vec::new(),
    };
    let at = store.at(&id);
    launch(store, id, &mut r).await;
    let failed = Outcome::Failed(FailureReason::Error);
    let done = ok(
        store
            .finish(&at, r.current, failed, Some(message.clone()))
            .await,
        "finish",
    );
    assert_eq!(
        done.settled().and_then(|s| s.kept),
        Some(message.clone()),
        "the finish says what it kept"
    );
    assert_eq!(kept(id).await, (Phase::Failed, Some(message)));
    launch(store, id, &mut r).await;
    assert_eq!(kept(id).await, (Phase::Working, None), "a relaunch");
    let stale = r.granted[0];
    let refused = ok(
        store
            .finish(&at, stale, Outcome::Ok, Some(output.clone()))
            .await,
        "finish",
    );
    assert!(!matches!(refused, Finished::Moved(_)));
    assert_eq!(kept(id).await, (Phase::Working, None), "a refused finish");
    let done = ok(
        store
            .finish(&at, r.current, Outcome::Ok, Some(output.clone()))
            .await,
        "finish",
    );
    assert!(matches!(done, Finished::Moved(_)));
    assert_eq!(kept(id).await, (Phase::Success, Some(output.clone())));
    revoke_begin(store, id, &mut r).await;
    assert_eq!(kept(id).await, (Phase::Revoking, Some(output.clone())));
    let back = ok(store.revoke_end(&at, r.current, false).await, "revoke_end");
    assert_eq!(back.map(|s| s.phase), Some(Phase::Success));
    assert_eq!(
        kept(id).await,
        (Phase::Success, Some(output.clone())),
        "put back"
    );
    revoke_begin(store, id, &mut r).await;
    let gone = ok(store.revoke_end(&at, r.current, true).await, "revoke_end");
    assert_eq!(gone.map(|s| s.phase), Some(Phase::NotFound));
    assert_eq!(kept(id).await, (Phase::NotFound, None), "revoked");
    launch(store, id, &mut r).await;
    finish(store, id, r.current, Outcome::Ok).await;
    assert_eq!(kept(id).await, (Phase::Success, None), "kept nothing");
    // An output over the limit, as the recorder makes it, is kept as such.
    let other = id + 1;
    let mut r = Reached {
        current: 0,
        stale: None,
        granted: Vec::new(),
    };
    launch(store, other, &mut r).await;
    let big = Kept::TooLarge {
        len: 10_000,
        limit: 8,
    };
    let at = store.at(&other);
    ok(
        store
            .finish(&at, r.current, Outcome::Ok, Some(big.clone()))
            .await,
        "finish",
    );
    assert_eq!(kept(other).await, (Phase::Success, Some(big)));
}

/// A queued attempt reads `Working` and queued, is counted so, and stops being queued
/// when it starts or ends (also ended unstarted); only its own token starts it.
async fn queued_attempts_read_so_until_they_start<S: Records<u64>>(store: &S, id: u64)
where
    S::Error: Debug,
{
    let queued = |id: u64| async move {
        let status = ok(store.status(&store.at(&id)).await, "status");
        (status.phase, status.queued)
    };
    let launched = |id: u64| async move {
        ok(store.launch(&store.at(&id), &id, true).await, "launch")
            .unwrap_or_else(|refused| panic!("launch refused in {refused:?}"))
            .token
    };
    let before = ok(store.counts().await, "counts").queued;
    let token = launched(id).await;
    assert_eq!(queued(id).await, (Phase::Working, true));
    assert_eq!(ok(store.counts().await, "counts").queued, before + 1);
    let at = store.at(&id);
    assert!(
        !ok(store.start(&at, token + 1).await, "start"),
        "a wrong token"
    );
    assert_eq!(queued(id).await, (Phase::Working, true));
    assert!(ok(store.start(&at, token).await, "start"));
    assert_eq!(queued(id).await, (Phase::Working, false), "started");
    assert!(!ok(store.start(&at, token).await, "start"), "started once");
    assert_eq!(ok(store.counts().await, "counts").queued, before);
    finish(store, id, token, Outcome::Ok).await;
    // Ended before it started: cancelled while queued.
    let other = id + 1;
    let token = launched(other).await;
    let failed = Outcome::Failed(FailureReason::Cancelled);
    finish(store, other, token, failed).await;
    assert_eq!(queued(other).await, (Phase::Failed, false));
    assert_eq!(ok(store.counts().await, "counts").queued, before);
}

/// A retried attempt stays `Working` with the next attempt's number, the failure and
/// the next attempt's time, until that attempt starts; only its own token retries it.
async fn retries_read_working_until_the_next_attempt<S: Records<u64>>(store: &S, id: u64)
where
    S::Error: Debug,
{
    let at = &store.at(&id);
    let status = || async move { ok(store.status(at).await, "status") };
    let granted = ok(store.launch(at, &id, false).await, "launch").expect("fresh");
    let wait = std::time::Duration::from_secs(30);
    let retry = |token: u64| async move {
        let retried = store.retry(at, token, FailureReason::Error, wait).await;
        ok(retried, "retry")
    };
    assert_eq!(
        retry(granted.token + 1).await,
        Retried::Gone,
        "a wrong token"
    );
    let before = std::time::SystemTime::now();
    assert_eq!(
        retry(granted.token).await,
        Retried::Next(granted.attempts + 1)
    );
    let waiting = status().await;
    assert_eq!(waiting.phase, Phase::Working);
    assert_eq!(waiting.attempts, Some(granted.attempts + 1));
    assert_eq!(waiting.last_failure, Some(FailureReason::Error));
    let next = waiting.retry_at.expect("the next attempt's time");
    // The Redis store's clock is the server's: a second of slack.
    let slack = std::time::Duration::from_secs(1);
    assert!(next + slack >= before + wait && next <= std::time::SystemTime::now() + wait + slack);
    ok(store.start(at, granted.token).await, "start");
    let running = status().await;
    assert_eq!((running.phase, running.retry_at), (Phase::Working, None));
    assert_eq!(running.last_failure, None);
    assert_eq!(running.attempts, Some(granted.attempts + 1));
    finish(store, id, granted.token, Outcome::Ok).await;
    assert_eq!(retry(granted.token).await, Retried::Gone, "ended");
}

#[tokio::test]
async fn the_memory_store_follows_the_state_machine() {
    let store: super::MemoryStore<u64> = super::MemoryStore::new(
        false,
        4,
        crate::options::Retention::default(),
        crate::observe::Gauges::default(),
        crate::kept::DEFAULT_MAX_KEPT_LEN,
        crate::progress::DEFAULT_INTERVAL,
    );
    follows_the_state_machine(&store, 0).await;
    assert_eq!(super::Store::counts(&store).total(), RECORDS_LEFT);
    keeps_values_for_their_phase(&store, 1000).await;
    queued_attempts_read_so_until_they_start(&store, 2000).await;
    retries_read_working_until_the_next_attempt(&store, 3000).await;
}

/// Of the check's 31 ids, those left with a record: all but the five that started
/// `NotFound` and were not launched and the one whose revoke succeeded.
const RECORDS_LEFT: usize = 25;

/// The test server, for the Redis store's unit tests here and elsewhere.
#[cfg(feature = "redis")]
#[path = "../../tests/support/redis_server.rs"]
pub(crate) mod redis_server;

/// The check on a Redis store built by `builder` (a server's or a cluster's).
#[cfg(feature = "redis")]
async fn check_redis(builder: crate::redis::RedisBuilder<u64>) {
    let recorder = builder
        .namespace("seam")
        .build()
        .await
        .expect("the recorder builds on the test server");
    let check = follows_the_state_machine(&recorder.shared.store, 0);
    tokio::time::timeout(std::time::Duration::from_secs(60), check)
        .await
        .expect("the check ends within a minute");
    let counts = Records::<u64>::counts(&recorder.shared.store)
        .await
        .unwrap();
    assert_eq!(counts.total(), RECORDS_LEFT, "{counts:?}");
    let check = async {
        keeps_values_for_their_phase(&recorder.shared.store, 1000).await;
        queued_attempts_read_so_until_they_start(&recorder.shared.store, 2000).await;
        retries_read_working_until_the_next_attempt(&recorder.shared.store, 3000).await;
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), check)
        .await
        .expect("the check ends within a minute");
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_store_follows_the_state_machine() {
    let server = redis_server::RedisServer::start();
    check_redis(crate::redis::RedisRecorder::builder(server.url())).await;
}

#[cfg(feature = "redis")]
#[path = "../../tests/support/redis_cluster.rs"]
mod redis_cluster;

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_store_follows_the_state_machine_on_a_cluster() {
    let cluster = redis_cluster::RedisCluster::start(3);
    check_redis(crate::redis::RedisRecorder::cluster_builder(cluster.urls())).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_catches_a_finish_that_ignores_its_token() {
    let server = redis_server::RedisServer::start();
    let recorder: crate::redis::RedisRecorder<u64> =
        crate::redis::RedisRecorder::builder(server.url())
            .namespace("seam-fault")
            .inject_fault(crate::redis::InjectedFault::FinishIgnoresToken)
            .build()
            .await
            .expect("the recorder builds on the test server");
    let check = crate::guard::catch_panic(follows_the_state_machine(&recorder.shared.store, 0));
    let ended = tokio::time::timeout(std::time::Duration::from_secs(60), check)
        .await
        .expect("the check ends within a minute");
    assert!(ended.is_err(), "the check fails on the faulty store");
}
