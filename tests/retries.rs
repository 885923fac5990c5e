//! Retries: a launch made with a `RetryPolicy` runs its attempts one at a time; between
//! them the id reads `Working` (for every replica) with the next attempt's number, the
//! failed attempt's reason and the next attempt's time; a cancel stops the retries; a
//! failure the policy does not retry, or the last attempt's, ends the launch `Failed`;
//! and an id still succeeds at most once. Each rule runs on both stores.

#[path = "support/backend.rs"]
mod backend;
mod common;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_tasks_recorder::{
    FailureReason, LaunchOptions, RetryPolicy, TaskContext, TaskPhase, TaskState, TaskStatus,
};
use backend::{Kind, Rec, Tune};
use common::*;

each_store!(
    a_flaky_task_succeeds_on_a_later_attempt,
    the_wait_between_attempts_reads_working,
    cancel_stops_the_retries,
    the_last_attempt_ends_the_launch,
    reasons_outside_the_policy_are_not_retried,
    a_panic_in_make_is_retried,
    the_launch_timeout_bounds_every_attempt,
    a_failed_attempts_late_progress_is_not_the_next_ones,
);

/// A policy of `attempts` with a constant, jitter-free backoff of `ms` milliseconds.
fn constant(attempts: u32, ms: u64) -> RetryPolicy {
    let backoff = Duration::from_millis(ms);
    RetryPolicy::new(attempts)
        .backoff(backoff, backoff)
        .jitter(0.0)
}

/// A task that fails its first `fails` attempts with `Err("flaky")`, then returns its
/// attempt number; `calls` counts the attempts made.
fn flaky(
    fails: u32,
    calls: &Arc<AtomicU32>,
) -> impl FnMut(TaskContext) -> std::future::Ready<Result<u32, &'static str>> + Send + 'static {
    let calls = calls.clone();
    move |ctx: TaskContext| {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if ctx.attempt() <= fails {
            Err("flaky")
        } else {
            Ok(ctx.attempt())
        })
    }
}

/// Polls `rec`'s status of `id` until `want` holds of it, and returns that status.
async fn until_status(rec: &Rec, id: u64, want: impl Fn(&TaskStatus) -> bool) -> TaskStatus {
    bounded("a status", async {
        loop {
            let status = rec.status(id).await;
            if want(&status) {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
}

async fn a_flaky_task_succeeds_on_a_later_attempt(kind: Kind) {
    let rec = Rec::new(kind).await;
    let calls = Arc::new(AtomicU32::new(0));
    let ended = rec
        .launch_retrying(1, flaky(2, &calls), constant(5, 1), LaunchOptions::new())
        .await
        .expect("launched");
    assert_eq!(bounded("the launch", ended).await, Ok(3));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let status = rec.status(1).await;
    assert_eq!(status.phase, TaskPhase::Success);
    assert_eq!((status.retry_at, status.last_failure), (None, None));
    // Success is final: another retrying launch is refused and makes no attempt.
    let again = rec
        .launch_retrying(1, flaky(0, &calls), constant(5, 1), LaunchOptions::new())
        .await;
    assert_eq!(again.err(), Some(TaskState::Success));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

async fn the_wait_between_attempts_reads_working(kind: Kind) {
    let rec = Rec::new(kind).await;
    let replica = rec.replica().await;
    let calls = Arc::new(AtomicU32::new(0));
    // Long enough for a few reads, short enough for the test.
    let ended = rec
        .launch_retrying(2, flaky(1, &calls), constant(3, 400), LaunchOptions::new())
        .await
        .expect("launched");
    let before = SystemTime::now();
    let waiting = until_status(&replica, 2, |s| s.retry_at.is_some()).await;
    assert_eq!(waiting.phase, TaskPhase::Working);
    assert_eq!(waiting.attempts, Some(2), "the attempt to come");
    assert_eq!(waiting.last_failure, Some(FailureReason::Error));
    assert_eq!(waiting.progress, None);
    let at = waiting.retry_at.unwrap();
    // Within the backoff of now (a second of slack for the server's clock).
    assert!(at + Duration::from_secs(1) > before, "{at:?} vs {before:?}");
    assert!(at < SystemTime::now() + Duration::from_secs(2), "{at:?}");
    assert_eq!(replica.query(2).await, TaskState::Working);
    // No second launch while the first waits to retry.
    assert_eq!(
        replica.launch(2, async { Ok::<(), ()>(()) }).await,
        Err(TaskState::Working)
    );
    assert_eq!(bounded("the launch", ended).await, Ok(2));
    let done = replica.status(2).await;
    assert_eq!((done.phase, done.retry_at), (TaskPhase::Success, None));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

async fn cancel_stops_the_retries(kind: Kind) {
    let rec = Rec::new(kind).await;
    let calls = Arc::new(AtomicU32::new(0));
    let ended = rec
        .launch_retrying(
            3,
            flaky(u32::MAX, &calls),
            constant(100, 60_000),
            LaunchOptions::new(),
        )
        .await
        .expect("launched");
    until_status(&rec, 3, |s| s.retry_at.is_some()).await;
    assert!(rec.replica().await.cancel(3).await, "a Working id");
    assert_eq!(
        bounded("the launch", ended).await,
        Err(FailureReason::Cancelled)
    );
    let status = rec.status(3).await;
    assert_eq!(status.phase, TaskPhase::Failed);
    assert_eq!(status.last_failure, Some(FailureReason::Cancelled));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "no attempt after the cancel"
    );
}

async fn the_last_attempt_ends_the_launch(kind: Kind) {
    let rec = Rec::new(kind).await;
    let calls = Arc::new(AtomicU32::new(0));
    let ended = rec
        .launch_retrying(
            4,
            flaky(u32::MAX, &calls),
            constant(3, 1),
            LaunchOptions::new(),
        )
        .await
        .expect("launched");
    assert_eq!(
        bounded("the launch", ended).await,
        Err(FailureReason::Error)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let status = rec.status(4).await;
    assert_eq!(status.phase, TaskPhase::Failed);
    assert_eq!(status.attempts, Some(3));
    assert_eq!(
        (status.last_failure, status.retry_at),
        (Some(FailureReason::Error), None)
    );
    // Failed launches again: the attempt numbers count on from there, the policy's
    // attempts are this launch's (attempt 4 fails, 5 is this launch's second).
    let again = rec
        .launch_retrying(4, flaky(4, &calls), constant(3, 1), LaunchOptions::new())
        .await
        .expect("a failed id launches");
    assert_eq!(bounded("the second launch", again).await, Ok(5));
}

async fn reasons_outside_the_policy_are_not_retried(kind: Kind) {
    let rec = Rec::new(kind).await;
    let calls = Arc::new(AtomicU32::new(0));
    let policy = constant(5, 1).retry_on(&[FailureReason::TimedOut]);
    let ended = rec
        .launch_retrying(5, flaky(u32::MAX, &calls), policy, LaunchOptions::new())
        .await
        .expect("launched");
    assert_eq!(
        bounded("the launch", ended).await,
        Err(FailureReason::Error)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(rec.status(5).await.attempts, Some(1));
}

async fn a_panic_in_make_is_retried(kind: Kind) {
    let rec = Rec::new(kind).await;
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let make = move |ctx: TaskContext| {
        counted.fetch_add(1, Ordering::SeqCst);
        assert!(
            ctx.attempt() > 1,
            "the first attempt panics while making its future"
        );
        async move { Ok::<_, ()>(ctx.attempt()) }
    };
    let ended = rec
        .launch_retrying(6, make, constant(2, 1), LaunchOptions::new())
        .await
        .expect("launched");
    assert_eq!(bounded("the launch", ended).await, Ok(2));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

async fn the_launch_timeout_bounds_every_attempt(kind: Kind) {
    let rec = Rec::new(kind).await;
    let calls = Arc::new(AtomicU32::new(0));
    let options = LaunchOptions::new().timeout(Duration::from_millis(300));
    let ended = rec
        .launch_retrying(7, flaky(u32::MAX, &calls), constant(1_000, 20), options)
        .await
        .expect("launched");
    // Ends with the last attempt's failure (no time for another) or the timeout.
    let reason = bounded("the launch", ended).await.unwrap_err();
    assert!(
        matches!(reason, FailureReason::Error | FailureReason::TimedOut),
        "{reason:?}"
    );
    let made = calls.load(Ordering::SeqCst);
    assert!(
        (1..=16).contains(&made),
        "{made} attempts in 300 ms of 20 ms backoffs"
    );
    assert_eq!(rec.status(7).await.phase, TaskPhase::Failed);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(calls.load(Ordering::SeqCst), made, "none after the end");
}

async fn a_failed_attempts_late_progress_is_not_the_next_ones(kind: Kind) {
    let every = Duration::from_millis(150);
    let tune = Tune {
        progress_interval: Some(every),
        ..Tune::default()
    };
    let rec = Rec::tuned(kind, &tune).await;
    // The first attempt reports twice within one interval (on Redis the second report
    // waits for the interval), then fails; the second attempt reports nothing.
    let make = |ctx: TaskContext| async move {
        if ctx.attempt() == 1 {
            ctx.progress(1);
            ctx.progress(2);
            Err("failed after reporting")
        } else {
            Ok(())
        }
    };
    let ended = rec
        .launch_retrying(8, make, constant(2, 1_000), LaunchOptions::new())
        .await
        .expect("launched");
    let waiting = until_status(&rec, 8, |s| s.retry_at.is_some()).await;
    assert_eq!(waiting.progress, None, "the next attempt reported nothing");
    // Past the interval: a report of the failed attempt would have landed by now.
    tokio::time::sleep(every * 2).await;
    let still = rec.status(8).await;
    assert_eq!(still.phase, TaskPhase::Working);
    assert_eq!((still.progress, still.retry_at), (None, waiting.retry_at));
    assert_eq!(still.last_failure, Some(FailureReason::Error));
    assert_eq!(bounded("the launch", ended).await, Ok(()));
}
