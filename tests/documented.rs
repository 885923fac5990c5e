//! Documented behaviours the other suites do not reach: dropping `cancel` and `drain`
//! part-way, timeouts on a runtime without a time driver, revokes under a full
//! `max_running`, the transition stream outliving the recorder's clones, and `wait`
//! answering for the phase it waited for after the id moved on.

mod common;

use std::future::Future;
use std::sync::mpsc;
use std::task::Poll;
use std::time::Duration;

use async_tasks_recorder::{
    AsyncTasksRecorder, FailureReason, LaunchOptions, TaskError, TaskPhase, TaskState,
};
use common::{bounded, gate, ok, until_state, Launched, HANG};

/// Polls `fut` exactly once, whatever it returns, and gives it back.
async fn poll_once<F: Future + Unpin>(mut fut: F) -> F {
    std::future::poll_fn(|cx| {
        let _ = std::pin::Pin::new(&mut fut).poll(cx);
        Poll::Ready(())
    })
    .await;
    fut
}

/// Runs `f` on its own thread and fails the test if it has not returned within
/// [`HANG`]: the hang guard for runtimes without a time driver, where Tokio's own
/// timeouts cannot be used.
fn on_thread_bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(HANG) {
        Ok(out) => out,
        Err(e) => panic!("hung or panicked: {what} ({e})"),
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
    let cancel = poll_once(Box::pin(rec.cancel(&1))).await;
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

/// "The recorder is closed in the first poll": a `drain` dropped after it refuses later
/// launches, and tasks it did not cancel run on.
#[tokio::test(flavor = "current_thread")]
async fn a_drain_dropped_after_its_first_poll_has_closed_the_recorder() {
    let rec = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    rec.launch(1u64, fut).await.launched();
    let drain = poll_once(Box::pin(rec.drain(Some(Duration::from_secs(3600))))).await;
    drop(drain);
    assert!(rec.is_closed());
    assert!(rec.launch(2u64, ok()).await.is_err());
    // Not cancelled: the grace period never ran out.
    assert_eq!(rec.query_task_state(&1).await, TaskState::Working);
    g.release.send(Ok(1)).unwrap();
    let settled = bounded("the task to finish", rec.wait(&1)).await;
    assert_eq!(settled.phase, TaskPhase::Success);
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

/// "`launch_block` callers take slots too; revoke futures do not": a revoke completes
/// while every slot is held.
#[tokio::test(flavor = "current_thread")]
async fn a_revoke_needs_no_slot_under_max_running() {
    let rec = AsyncTasksRecorder::builder().max_running(1).build();
    rec.launch_block(2u64, ok()).await.launched();
    let (g, fut) = gate();
    rec.launch(1u64, fut).await.launched();
    g.until_started().await;
    // The one slot is held by id 1; a third launch has to wait for it.
    let (_g3, fut3) = gate();
    rec.launch(3u64, fut3).await.launched();
    tokio::task::yield_now().await;
    let revoked = bounded(
        "a revoke under a full limit",
        rec.revoke_task_block(2, ok()),
    )
    .await;
    assert!(revoked.is_ok());
    assert_eq!(rec.query_task_state(&2).await, TaskState::NotFound);
    drop(g);
}

/// "The stream ends once the recorder is gone: every clone dropped, and every task it
/// started ended." A task that outlives the last clone is still reported.
#[tokio::test(flavor = "current_thread")]
async fn the_stream_outlives_the_recorder_until_its_tasks_end() {
    let rec = AsyncTasksRecorder::new();
    let mut events = rec.subscribe();
    let (g, fut) = gate();
    rec.launch(1u64, fut).await.launched();
    drop(rec);
    let first = bounded("the launch event", events.next()).await;
    let first = first.expect("open").expect("nothing missed");
    assert_eq!(
        (first.from, first.to),
        (TaskPhase::NotFound, TaskPhase::Working)
    );
    g.release.send(Ok(1)).unwrap();
    let second = bounded("the finish event", events.next()).await;
    let second = second
        .expect("still open while the task ran")
        .expect("nothing missed");
    assert_eq!((second.id, second.to), (1, TaskPhase::Success));
    assert!(bounded("the end of the stream", events.next())
        .await
        .is_none());
}

/// "Returns the outcome of the phase it waited for, even if the id has moved on before
/// the waiter runs again (a failed id launched again at once still gives the waiter
/// `Failed`)."
#[tokio::test(flavor = "current_thread")]
async fn wait_answers_for_its_phase_after_the_id_moved_on() {
    let rec = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    rec.launch(1u64, fut).await.launched();
    // Registered while the first attempt runs, and not polled again until the end.
    let waiter = poll_once(Box::pin(rec.wait(&1))).await;
    g.release.send(Err("no")).unwrap();
    until_state(&rec, &1, TaskState::Failed).await;
    // Launched again before the waiter runs.
    let (_g2, fut2) = gate();
    rec.launch(1u64, fut2).await.launched();
    assert_eq!(rec.query_task_state(&1).await, TaskState::Working);
    let settled = bounded("the waiter", waiter).await;
    assert_eq!(
        (settled.phase, settled.failure),
        (TaskPhase::Failed, Some(FailureReason::Error))
    );
}
