//! Faults never leave an id stuck: panics, dropped callers, aborted tasks, cancelled
//! revokes, runtime shutdown, and calls outside a runtime.

mod common;

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_tasks_recorder::{AsyncTasksRecorder, RevokeFailReason, TaskPhase, TaskState};
use common::*;

on_both_runtimes!(
    panicking_future_ends_failed_and_relaunches,
    panic_does_not_disturb_other_tasks,
    dropped_launch_block_caller_ends_failed,
    aborted_launch_block_task_ends_failed,
    panicking_launch_block_reaches_caller_and_ends_failed,
    dropped_revoke_block_restores_success,
    panicking_revoke_block_reaches_caller_and_restores_success,
    panicking_spawned_revoke_restores_success,
    launch_future_dropped_before_or_after_first_poll,
);

async fn panicking_future_ends_failed_and_relaunches() {
    let rec = AsyncTasksRecorder::new();
    rec.launch(1u64, async {
        if true {
            panic!("task 1 panics (expected by the test)");
        }
        Ok::<(), ()>(())
    })
    .await
    .launched();
    until_state(&rec, &1, TaskState::Failed).await;
    rec.launch(1u64, ok()).await.launched();
    until_state(&rec, &1, TaskState::Success).await;
}

async fn panic_does_not_disturb_other_tasks() {
    let rec = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    rec.launch(0u64, fut).await.launched();
    for id in 1..=20u64 {
        rec.launch(id, async move {
            if id % 2 == 0 {
                panic!("task {id} panics (expected by the test)");
            }
            Ok::<(), ()>(())
        })
        .await
        .launched();
    }
    for id in 1..=20u64 {
        let want = if id % 2 == 0 {
            TaskState::Failed
        } else {
            TaskState::Success
        };
        until_state(&rec, &id, want).await;
    }
    assert_eq!(rec.query_task_state(&0).await, TaskState::Working);
    g.release.send(Ok(0)).unwrap();
    until_state(&rec, &0, TaskState::Success).await;
    let counts = rec.counts().await;
    assert_eq!((counts.success, counts.failed, counts.working), (11, 10, 0));
}

async fn dropped_launch_block_caller_ends_failed() {
    let rec = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    // A zero timeout polls launch_block once (the id becomes Working and the future
    // starts), then drops it.
    let out = tokio::time::timeout(Duration::ZERO, rec.launch_block(1u64, fut)).await;
    assert!(out.is_err(), "the timeout must have dropped launch_block");
    assert!(g.started.load(Ordering::SeqCst));
    assert!(
        g.dropped_unfinished.load(Ordering::SeqCst),
        "the future was dropped with it"
    );
    assert_eq!(rec.query_task_state(&1).await, TaskState::Failed);
    rec.launch_block(1u64, ok()).await.launched();
    assert_eq!(rec.query_task_state(&1).await, TaskState::Success);
}

async fn aborted_launch_block_task_ends_failed() {
    let rec = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    let task = tokio::spawn({
        let rec = rec.clone();
        async move {
            let _ = rec.launch_block(1u64, fut).await;
        }
    });
    g.until_started().await;
    assert_eq!(rec.query_task_state(&1).await, TaskState::Working);
    task.abort();
    assert!(bounded("abort", task).await.unwrap_err().is_cancelled());
    assert!(g.dropped_unfinished.load(Ordering::SeqCst));
    assert_eq!(rec.query_task_state(&1).await, TaskState::Failed);
    rec.launch(1u64, ok()).await.launched();
    until_state(&rec, &1, TaskState::Success).await;
}

async fn panicking_launch_block_reaches_caller_and_ends_failed() {
    let rec = AsyncTasksRecorder::new();
    let task = tokio::spawn({
        let rec = rec.clone();
        async move {
            let _ = rec
                .launch_block(1u64, async {
                    if true {
                        panic!("launch_block future panics (expected by the test)");
                    }
                    Ok::<(), ()>(())
                })
                .await;
        }
    });
    assert!(bounded("panicking task", task)
        .await
        .unwrap_err()
        .is_panic());
    assert_eq!(rec.query_task_state(&1).await, TaskState::Failed);
    rec.launch_block(1u64, ok()).await.launched();
    assert_eq!(rec.query_task_state(&1).await, TaskState::Success);
}

async fn dropped_revoke_block_restores_success() {
    let rec = AsyncTasksRecorder::new();
    rec.launch_block(1u64, ok()).await.launched();
    let (g, revoke) = gate();
    let out = tokio::time::timeout(Duration::ZERO, rec.revoke_task_block(1u64, revoke)).await;
    assert!(out.is_err());
    assert!(g.dropped_unfinished.load(Ordering::SeqCst));
    assert_eq!(rec.query_task_state(&1).await, TaskState::Success);
    assert_eq!(rec.counts().await.revoking, 0);

    // Also when the task running the revoke is aborted.
    let (g, revoke) = gate();
    let task = tokio::spawn({
        let rec = rec.clone();
        async move {
            let _ = rec.revoke_task_block(1u64, revoke).await;
        }
    });
    g.until_started().await;
    task.abort();
    let _ = bounded("abort", task).await;
    assert_eq!(rec.query_task_state(&1).await, TaskState::Success);
    // Still revocable.
    assert!(rec.revoke_task_block(1u64, ok()).await.is_ok());
    assert_eq!(rec.query_task_state(&1).await, TaskState::NotFound);
}

async fn panicking_revoke_block_reaches_caller_and_restores_success() {
    let rec = AsyncTasksRecorder::new();
    rec.launch_block(1u64, ok()).await.launched();
    let task = tokio::spawn({
        let rec = rec.clone();
        async move {
            let _ = rec
                .revoke_task_block(1u64, async {
                    if true {
                        panic!("revoke future panics (expected by the test)");
                    }
                    Ok::<(), ()>(())
                })
                .await;
        }
    });
    assert!(bounded("panicking revoke", task)
        .await
        .unwrap_err()
        .is_panic());
    assert_eq!(rec.query_task_state(&1).await, TaskState::Success);
    assert!(rec.revoke_task_block(1u64, ok()).await.is_ok());
}

async fn panicking_spawned_revoke_restores_success() {
    let rec = AsyncTasksRecorder::new();
    rec.launch_block(1u64, ok()).await.launched();
    rec.revoke_task(1u64, async {
        if true {
            panic!("spawned revoke panics (expected by the test)");
        }
        Ok::<(), ()>(())
    })
    .await
    .map_err(|e| e.to_string())
    .unwrap();
    bounded("revoke to settle", async {
        while rec.counts().await.revoking != 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(rec.query_task_state(&1).await, TaskState::Success);
    assert!(rec.revoke_task_block(1u64, ok()).await.is_ok());
}

async fn launch_future_dropped_before_or_after_first_poll() {
    let rec = AsyncTasksRecorder::new();
    let runs = Arc::new(AtomicUsize::new(0));
    // Dropped before its first poll: nothing happened.
    drop(rec.launch(1u64, counted(&runs, Ok(()))));
    assert_eq!(rec.query_task_state(&1).await, TaskState::NotFound);
    // Polled once, then dropped: fully launched.
    let mut fut = pin!(rec.launch(1u64, counted(&runs, Ok(()))));
    let polled = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    assert!(matches!(polled, Poll::Ready(Ok(()))));
    until_state(&rec, &1, TaskState::Success).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // The same for `revoke_task`, on the Success id a revoke would change.
    let revokes = Arc::new(AtomicUsize::new(0));
    // Dropped before its first poll: nothing happened, the id is not being revoked.
    drop(rec.revoke_task(1u64, counted(&revokes, Ok(()))));
    assert_eq!(rec.status(&1).await.phase, TaskPhase::Success);
    assert_eq!(rec.counts().await.revoking, 0);
    // Had the dropped revoke begun, this one would be refused (`Revoking` while it
    // runs, `NotSuccess` once it revoked the id).
    let (g, revoke) = gate();
    let mut fut = Box::pin(rec.revoke_task(1u64, revoke));
    let polled = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    assert!(
        matches!(polled, Poll::Ready(Ok(()))),
        "the id was not left revocable"
    );
    drop(fut);
    // Polled once, then dropped: the revoke runs to its end all the same.
    assert_eq!(rec.status(&1).await.phase, TaskPhase::Revoking);
    g.release.send(Ok(0)).unwrap();
    let settled = bounded("revoke to end", rec.wait(&1)).await;
    assert_eq!(settled.phase, TaskPhase::NotFound);
    assert_eq!(rec.query_task_state(&1).await, TaskState::NotFound);
    assert_eq!(
        revokes.load(Ordering::SeqCst),
        0,
        "the revoke future dropped unpolled never ran"
    );
}

/// Polls a future once with a waker that does nothing, outside any runtime.
fn poll_once<F: Future>(fut: F) -> Poll<F::Output> {
    let mut fut = pin!(fut);
    fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn drain_with_a_grace_period_outside_a_runtime_panics_with_our_message() {
    let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::new();
    let payload = catch_unwind(AssertUnwindSafe(|| {
        let _ = poll_once(rec.drain(Some(std::time::Duration::from_secs(1))));
    }))
    .unwrap_err();
    let msg = panic_message(payload);
    assert!(
        msg.contains("AsyncTasksRecorder::drain with a grace period"),
        "message was: {msg}"
    );
    assert!(!rec.is_closed(), "nothing was closed");
    // Without a grace period no runtime is needed.
    assert!(matches!(poll_once(rec.drain(None)), Poll::Ready(0)));
    assert!(rec.is_closed());
}

#[test]
fn launch_outside_a_runtime_panics_clearly_and_changes_nothing() {
    let rec = AsyncTasksRecorder::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let payload = catch_unwind(AssertUnwindSafe(|| {
        let _ = poll_once(rec.launch(1u64, counted(&runs, Ok(()))));
    }))
    .unwrap_err();
    let msg = panic_message(payload);
    assert!(msg.contains("within a Tokio runtime"), "message was: {msg}");
    assert!(matches!(
        poll_once(rec.query_task_state(&1)),
        Poll::Ready(TaskState::NotFound)
    ));
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    // The blocking forms need no runtime.
    assert!(matches!(
        poll_once(rec.launch_block(1u64, ok())),
        Poll::Ready(Ok(()))
    ));
    assert!(matches!(
        poll_once(rec.query_task_state(&1)),
        Poll::Ready(TaskState::Success)
    ));
    let payload = catch_unwind(AssertUnwindSafe(|| {
        let _ = poll_once(rec.revoke_task(1u64, ok()));
    }))
    .unwrap_err();
    assert!(panic_message(payload).contains("revoke_task"));
    assert!(matches!(
        poll_once(rec.query_task_state(&1)),
        Poll::Ready(TaskState::Success)
    ));
    assert!(matches!(
        poll_once(rec.revoke_task_block(1u64, ok())),
        Poll::Ready(Ok(()))
    ));
}

#[test]
fn runtime_shutdown_fails_the_tasks_it_drops() {
    let rec = AsyncTasksRecorder::new();
    let gates: Vec<Gate> = {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let gates = rt.block_on(async {
            let mut gates = Vec::new();
            for id in 0..10u64 {
                let (g, fut) = gate();
                rec.launch(id, fut).await.launched();
                gates.push(g);
            }
            gates
        });
        for id in 0..10u64 {
            assert!(matches!(
                poll_once(rec.query_task_state(&id)),
                Poll::Ready(TaskState::Working)
            ));
        }
        drop(rt);
        gates
    };
    for (id, g) in gates.iter().enumerate() {
        assert!(matches!(
            poll_once(rec.query_task_state(&(id as u64))),
            Poll::Ready(TaskState::Failed)
        ));
        // Either it never started, or it was dropped mid-way.
        assert!(!g.started.load(Ordering::SeqCst) || g.dropped_unfinished.load(Ordering::SeqCst));
    }
}

#[test]
fn a_second_revoke_after_a_failed_one_is_refused_only_while_running() {
    // Regression for the 2.0.2 leak of `revoking_tasks` entries, on a runtime-free path.
    let rec = AsyncTasksRecorder::new();
    assert!(matches!(
        poll_once(rec.revoke_task_block(1u64, ok())),
        Poll::Ready(Err(RevokeFailReason::NotSuccess(_)))
    ));
    assert!(matches!(
        poll_once(rec.launch_block(1u64, ok())),
        Poll::Ready(Ok(()))
    ));
    assert!(matches!(
        poll_once(rec.revoke_task_block(1u64, err())),
        Poll::Ready(Err(RevokeFailReason::RevokeTaskError(())))
    ));
    assert!(matches!(
        poll_once(rec.revoke_task_block(1u64, ok())),
        Poll::Ready(Ok(()))
    ));
}
