//! Task handles (`launch_with`): a handle delivers the task's output, error or panic
//! after the record is final, dropping it does not cancel the task, a runtime shut
//! down under it reports `Dropped`, and a second await after the output was taken
//! panics with a message that says so.

mod common;

use std::sync::atomic::Ordering;

use async_tasks_recorder::{
    AsyncTasksRecorder, FailureReason, LaunchError, LaunchOptions, TaskError, TaskPhase, TaskState,
};
use common::*;

on_both_runtimes!(
    handle_delivers_output_error_and_panic,
    dropping_the_handle_does_not_cancel,
);

async fn handle_delivers_output_error_and_panic() {
    let rec = AsyncTasksRecorder::new();
    let h = match rec
        .launch_with(1u64, async { Ok::<_, String>(7u8) }, LaunchOptions::new())
        .await
    {
        Ok(h) => h,
        Err(_) => panic!("refused"),
    };
    assert_eq!(bounded("handle", h).await.unwrap(), 7);
    // The record was final before the handle resolved.
    assert_eq!(rec.query_task_state(&1).await, TaskState::Success);

    let Ok(h) = rec
        .launch_with(
            2u64,
            async { Err::<u8, _>("bad".to_string()) },
            LaunchOptions::new(),
        )
        .await
    else {
        panic!("refused")
    };
    match bounded("handle", h).await {
        Err(e) => {
            assert_eq!(e.reason(), FailureReason::Error);
            assert_eq!(e.to_string(), "the task failed: bad");
            assert_eq!(e.into_failed().as_deref(), Some("bad"));
        }
        Ok(_) => panic!("expected the error"),
    }
    assert_eq!(rec.query_task_state(&2).await, TaskState::Failed);

    let Ok(h) = rec
        .launch_with(
            3u64,
            async {
                if true {
                    panic!("handle panic (expected by the test)");
                }
                Ok::<u8, String>(0)
            },
            LaunchOptions::new(),
        )
        .await
    else {
        panic!("refused")
    };
    match bounded("handle", h).await {
        Err(TaskError::Panicked(payload)) => {
            assert_eq!(
                payload.message().as_deref(),
                Some("handle panic (expected by the test)")
            );
            let inner = payload.into_inner();
            assert_eq!(
                inner.downcast_ref::<&str>(),
                Some(&"handle panic (expected by the test)")
            );
        }
        other => panic!("expected a panic, got {:?}", other.map_err(|e| e.reason())),
    }
    let status = rec.status(&3).await;
    assert_eq!(status.phase, TaskPhase::Failed);
    assert_eq!(status.last_failure, Some(FailureReason::Panicked));

    // A refused launch_with hands the future back.
    match rec
        .launch_with(1u64, async { Ok::<u8, String>(1) }, LaunchOptions::new())
        .await
    {
        Err(LaunchError::Refused(state, _fut)) => assert_eq!(state, TaskState::Success),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a succeeded id must not run again"),
    }
}

async fn dropping_the_handle_does_not_cancel() {
    let rec = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    let Ok(h) = rec.launch_with(1u64, fut, LaunchOptions::new()).await else {
        panic!("refused")
    };
    drop(h);
    tokio::task::yield_now().await;
    assert_eq!(rec.query_task_state(&1).await, TaskState::Working);
    g.release.send(Ok(5)).unwrap();
    assert_eq!(
        bounded("wait", rec.wait(&1)).await.phase,
        TaskPhase::Success
    );
    assert!(!g.dropped_unfinished.load(Ordering::SeqCst));
}

#[test]
// The handle is made on one runtime and awaited on another, on purpose.
#[allow(clippy::async_yields_async)]
fn runtime_shutdown_reports_dropped_to_handles() {
    let rec = AsyncTasksRecorder::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (g, fut) = gate();
    let h = rt.block_on(async {
        match rec.launch_with(1u64, fut, LaunchOptions::new()).await {
            Ok(h) => h,
            Err(_) => panic!("refused"),
        }
    });
    drop(rt);
    // Time only for the hang guard: the handle comes from the first runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    assert!(matches!(
        rt.block_on(bounded("handle", h)),
        Err(TaskError::Dropped)
    ));
    assert_eq!(
        rt.block_on(rec.status(&1)).last_failure,
        Some(FailureReason::Dropped)
    );
    drop(g);
}

/// A handle stays finished after its output was taken, and awaiting it a second time
/// panics with a message that says so (as Tokio's `JoinHandle` does).
#[tokio::test(flavor = "current_thread")]
async fn a_handle_after_its_output_was_taken() {
    let rec = AsyncTasksRecorder::new();
    let Ok(mut h) = rec
        .launch_with(1u64, async { Ok::<_, ()>(7) }, LaunchOptions::new())
        .await
    else {
        panic!("refused")
    };
    assert_eq!(bounded("handle", &mut h).await.unwrap(), 7);
    assert!(h.is_finished());
    let again = bounded(
        "the second await",
        tokio::spawn(async move { (&mut h).await.is_ok() }),
    )
    .await;
    let panic = again.expect_err("a second await must panic").into_panic();
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(message.contains("after it returned"), "{message}");
}
