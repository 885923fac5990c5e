//! Launch timeouts (`LaunchOptions::timeout`): a future that does not finish in time is
//! dropped and fails `TimedOut` (on either runtime flavour), a timeout past the end of
//! the clock never fires, and without a time driver the task fails as `Panicked`.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_tasks_recorder::{
    AsyncTasksRecorder, FailureReason, LaunchOptions, TaskError, TaskPhase, TaskState,
};
use common::*;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn timeout_fails_a_future_that_never_finishes() {
    let rec = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    // Shorter than the hang guard (`HANG`), whose timer the paused clock also reaches.
    let options = LaunchOptions::new().timeout(Duration::from_secs(10));
    let Ok(h) = rec.launch_with(1u64, fut, options).await else {
        panic!("refused")
    };
    let waiter = tokio::spawn({
        let rec = rec.clone();
        async move { rec.wait(&1).await }
    });
    // The paused clock jumps to the deadline when everything is idle.
    assert!(matches!(
        bounded("handle", h).await,
        Err(TaskError::TimedOut)
    ));
    assert!(
        g.dropped_unfinished.load(Ordering::SeqCst),
        "the future was dropped"
    );
    let s = bounded("waiter", waiter).await.unwrap();
    assert_eq!(
        (s.phase, s.failure),
        (TaskPhase::Failed, Some(FailureReason::TimedOut))
    );
    // Launchable again; a future that finishes in time is not affected.
    let Ok(h) = rec
        .launch_with(
            1u64,
            async { Ok::<_, ()>(3) },
            LaunchOptions::new().timeout(Duration::from_secs(1)),
        )
        .await
    else {
        panic!("refused")
    };
    assert_eq!(bounded("handle", h).await.unwrap(), 3);
}

/// A timeout past the end of the clock (here `Duration::MAX`) is no timeout: the launch
/// neither panics nor times the task out.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_timeout_too_large_for_the_clock_never_fires() {
    let rec = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    let options = LaunchOptions::new().timeout(Duration::MAX);
    let Ok(h) = rec.launch_with(1u64, fut, options).await else {
        panic!("refused")
    };
    // The paused clock jumps far ahead; the task is still running.
    tokio::time::sleep(Duration::from_secs(1_000_000_000)).await;
    assert_eq!(rec.query_task_state(&1).await, TaskState::Working);
    g.release.send(Ok(5)).unwrap();
    assert_eq!(bounded("handle", h).await.unwrap(), 5);
    assert_eq!(rec.query_task_state(&1).await, TaskState::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_on_a_multi_thread_runtime() {
    let rec = AsyncTasksRecorder::new();
    let options = LaunchOptions::new().timeout(Duration::from_millis(20));
    let Ok(h) = rec
        .launch_with(1u64, std::future::pending::<Result<(), ()>>(), options)
        .await
    else {
        panic!("refused")
    };
    assert!(matches!(
        bounded("handle", h).await,
        Err(TaskError::TimedOut)
    ));
    assert_eq!(
        rec.status(&1).await.last_failure,
        Some(FailureReason::TimedOut)
    );
}

/// "The runtime must have its time driver enabled; without it the task fails as
/// `Panicked`" (and nothing is stuck).
#[test]
fn a_timeout_without_a_time_driver_fails_the_task_as_panicked() {
    let (state, last_failure, handle_said_panicked) =
        on_thread_bounded("a timed task without a time driver", || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async {
                let rec = AsyncTasksRecorder::new();
                let options = LaunchOptions::new().timeout(Duration::from_secs(1));
                let Ok(handle) = rec.launch_with(1u64, ok(), options).await else {
                    panic!("refused")
                };
                let out = handle.await;
                let status = rec.status(&1).await;
                (
                    rec.query_task_state(&1).await,
                    status.last_failure,
                    matches!(out, Err(TaskError::Panicked(_))),
                )
            })
        });
    assert_eq!(state, TaskState::Failed);
    assert_eq!(last_failure, Some(FailureReason::Panicked));
    assert!(handle_said_panicked);
}
