//! `cancel`: a running attempt is stopped (its future dropped, also one that ignores
//! cancellation, or a `launch_block` caller's) and ends `Failed` with `Cancelled`; a
//! cancel of an id that is not running, or whose attempt already ended, answers
//! `false`; a cancel dropped after its first poll still goes ahead.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_tasks_recorder::{
    AsyncTasksRecorder, FailureReason, LaunchOptions, TaskError, TaskPhase, TaskState,
};
use common::*;

on_both_runtimes!(
    cancel_a_task_that_ignores_cancellation,
    cancel_a_launch_block_caller,
    cancel_of_a_non_working_id_is_false,
    cancel_after_completion_is_false,
);

async fn cancel_a_task_that_ignores_cancellation() {
    let rec = AsyncTasksRecorder::new();
    // A future that never looks at any cancellation signal.
    let (g, fut) = gate();
    let Ok(h) = rec.launch_with(1u64, fut, LaunchOptions::new()).await else {
        panic!("refused")
    };
    g.until_started().await;
    assert!(bounded("cancel", rec.cancel(&1)).await);
    assert!(g.dropped_unfinished.load(Ordering::SeqCst));
    let status = rec.status(&1).await;
    assert_eq!(status.phase, TaskPhase::Failed);
    assert_eq!(status.last_failure, Some(FailureReason::Cancelled));
    assert!(matches!(
        bounded("handle", h).await,
        Err(TaskError::Cancelled)
    ));
    // Launchable again.
    rec.launch(1u64, ok()).await.launched();
    assert_eq!(
        bounded("wait", rec.wait(&1)).await.phase,
        TaskPhase::Success
    );

    // Also a plain `launch` whose task never started running.
    let (_g, fut) = gate();
    rec.launch(2u64, fut).await.launched();
    assert!(bounded("cancel", rec.cancel(&2)).await);
    assert_eq!(
        rec.status(&2).await.last_failure,
        Some(FailureReason::Cancelled)
    );
}

async fn cancel_a_launch_block_caller() {
    let rec = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    let caller = tokio::spawn({
        let rec = rec.clone();
        async move { rec.launch_block(1u64, fut).await.is_ok() }
    });
    g.until_started().await;
    assert!(bounded("cancel", rec.cancel(&1)).await);
    // The future was dropped before the record said Failed.
    assert!(g.dropped_unfinished.load(Ordering::SeqCst));
    assert!(
        bounded("caller", caller).await.unwrap(),
        "launch_block returns Ok"
    );
    assert!(g.dropped_unfinished.load(Ordering::SeqCst));
    assert_eq!(
        rec.status(&1).await.last_failure,
        Some(FailureReason::Cancelled)
    );
}

async fn cancel_of_a_non_working_id_is_false() {
    let rec = AsyncTasksRecorder::new();
    assert!(!rec.cancel(&1u64).await);
    rec.launch_block(1u64, ok()).await.launched();
    assert!(!rec.cancel(&1).await);
    assert_eq!(rec.query_task_state(&1).await, TaskState::Success);
    rec.launch_block(2u64, err()).await.launched();
    assert!(!rec.cancel(&2).await);
    assert_eq!(
        rec.status(&2).await.last_failure,
        Some(FailureReason::Error)
    );
}

async fn cancel_after_completion_is_false() {
    let rec = AsyncTasksRecorder::new();
    // An attempt that already ended: nothing to cancel, the outcome stays.
    let (g, fut) = gate();
    rec.launch(1u64, fut).await.launched();
    g.release.send(Ok(1)).unwrap();
    assert_eq!(
        bounded("wait", rec.wait(&1)).await.phase,
        TaskPhase::Success
    );
    assert!(!bounded("cancel", rec.cancel(&1)).await);
    let s = rec.status(&1).await;
    assert_eq!((s.phase, s.last_failure), (TaskPhase::Success, None));

    // A spawned task that completes without ever suspending, cancelled right after
    // the launch (on a current-thread runtime, before it was first polled): it runs
    // up to its first await point, which is its end, so it finishes on its own.
    let current_thread = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::CurrentThread;
    let runs = Arc::new(AtomicUsize::new(0));
    for id in 10..30u64 {
        let result = if id % 2 == 0 { Ok(()) } else { Err(()) };
        let before = runs.load(Ordering::SeqCst);
        rec.launch(id, counted(&runs, result)).await.launched();
        if current_thread {
            assert_eq!(runs.load(Ordering::SeqCst), before, "not polled yet");
        }
        assert!(!bounded("cancel", rec.cancel(&id)).await, "id {id}");
        assert_eq!(runs.load(Ordering::SeqCst), before + 1, "it ran once");
        let s = rec.status(&id).await;
        let want = if result.is_ok() {
            (TaskPhase::Success, None)
        } else {
            (TaskPhase::Failed, Some(FailureReason::Error))
        };
        assert_eq!((s.phase, s.last_failure), want, "id {id}");
    }
}

/// "The cancellation is requested in the first poll and goes ahead; dropping the future
/// only stops waiting for it to take effect."
#[tokio::test(flavor = "current_thread")]
async fn a_cancel_dropped_after_its_first_poll_still_cancels() {
    let rec = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    rec.launch(1u64, fut).await.launched();
    until_state(&rec, &1, TaskState::Working).await;
    // Let the task start and suspend on its gate.
    g.until_started().await;
    let cancel = after_one_poll(Box::pin(rec.cancel(&1))).await;
    drop(cancel);
    let settled = bounded("the cancelled task", rec.wait(&1)).await;
    assert_eq!(
        (settled.phase, settled.failure),
        (TaskPhase::Failed, Some(FailureReason::Cancelled))
    );
    assert!(g
        .dropped_unfinished
        .load(std::sync::atomic::Ordering::SeqCst));
}
