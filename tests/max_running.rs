//! The cap on running futures (`Builder::max_running`): never exceeded and always
//! reached; a launch beyond it reads `Working` and queued (in `status` and `counts`,
//! from any clone or replica) until its future gets a slot, can be cancelled or time
//! out while queued, and its run timeout counts from the start of the run; revokes
//! take no slot. The queued rules run on both stores.

#[path = "support/backend.rs"]
mod backend;
mod common;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_tasks_recorder::{
    AsyncTasksRecorder, FailureReason, LaunchOptions, TaskPhase, TaskState,
};
use backend::{Kind, Rec, Tune};
use common::*;
use tokio::sync::oneshot;

on_both_runtimes!(max_running_is_never_exceeded);

each_store!(
    a_launch_beyond_the_limit_reads_queued_until_it_runs,
    a_queued_task_can_be_cancelled,
    a_run_timeout_counts_from_the_start_of_the_run,
    without_a_limit_nothing_is_queued,
);

/// The cap is never exceeded (counted inside the futures), reached, and every task runs
/// once.
///
/// The first `CAP` futures to start wait for each other on a barrier, holding their
/// slots, so the cap is always reached, on any scheduler; a recorder that ran fewer
/// than `CAP` at once would leave them waiting, which the hang guard turns into a
/// failure.
async fn max_running_is_never_exceeded() {
    const CAP: usize = 3;
    let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::builder().max_running(CAP).build();
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let runs = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(CAP));
    let job = || {
        let (now, peak, runs) = (now.clone(), peak.clone(), runs.clone());
        let barrier = barrier.clone();
        async move {
            let running = now.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(running, Ordering::SeqCst);
            if runs.fetch_add(1, Ordering::SeqCst) < CAP {
                bounded("CAP futures running at once", barrier.wait()).await;
            }
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            now.fetch_sub(1, Ordering::SeqCst);
            Ok::<(), ()>(())
        }
    };
    for id in 0..40 {
        rec.launch(id, job()).await.launched();
    }
    // `launch_block` callers take slots too.
    let blocking: Vec<_> = (100..110)
        .map(|id| {
            let rec = rec.clone();
            let fut = job();
            tokio::spawn(async move { rec.launch_block(id, fut).await.is_ok() })
        })
        .collect();
    for b in blocking {
        assert!(bounded("launch_block", b).await.unwrap());
    }
    bounded("idle", rec.wait_idle()).await;
    assert_eq!(runs.load(Ordering::SeqCst), 50);
    assert!(peak.load(Ordering::SeqCst) <= CAP, "peak {peak:?}");
    assert_eq!(
        peak.load(Ordering::SeqCst),
        CAP,
        "the cap was never reached"
    );
    assert_eq!(rec.counts().await.success, 50, "a future failed (hung?)");
}

/// Launches beyond the cap read Working while they wait, and can be cancelled or time
/// out there without ever running.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn queued_tasks_are_working_cancellable_and_time_out() {
    let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::builder().max_running(1).build();
    let (g, holder) = gate();
    rec.launch(1, holder).await.launched();
    let ran = Arc::new(AtomicUsize::new(0));
    let counted = |ran: &Arc<AtomicUsize>| {
        let ran = ran.clone();
        async move {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok::<(), ()>(())
        }
    };
    rec.launch(2, counted(&ran)).await.launched();
    let timed = LaunchOptions::new().timeout(Duration::from_secs(3));
    let Ok(handle) = rec.launch_with(3, counted(&ran), timed).await else {
        panic!("accepted")
    };
    // A blocking caller waits for the slot too, and can be cancelled there.
    let blocked = tokio::spawn({
        let rec = rec.clone();
        let fut = counted(&ran);
        async move { rec.launch_block(4, fut).await.is_ok() }
    });
    tokio::task::yield_now().await;
    for id in 1..=4 {
        assert_eq!(
            rec.query_task_state(&id).await,
            TaskState::Working,
            "id {id}"
        );
    }
    assert!(g.started.load(Ordering::SeqCst));

    assert!(bounded("cancel 2", rec.cancel(&2)).await);
    assert!(bounded("cancel 4", rec.cancel(&4)).await);
    assert!(bounded("blocked caller", blocked).await.unwrap());
    tokio::time::advance(Duration::from_secs(4)).await;
    assert!(matches!(
        bounded("handle 3", handle).await,
        Err(async_tasks_recorder::TaskError::TimedOut)
    ));
    for (id, reason) in [
        (2, FailureReason::Cancelled),
        (3, FailureReason::TimedOut),
        (4, FailureReason::Cancelled),
    ] {
        assert_eq!(rec.status(&id).await.last_failure, Some(reason), "id {id}");
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0, "a queued future never ran");

    // The slot is still there for the next launch once the holder ends.
    g.release.send(Ok(0)).unwrap();
    rec.launch(2, counted(&ran)).await.launched();
    assert_eq!(bounded("2", rec.wait(&2)).await.phase, TaskPhase::Success);
    assert_eq!(ran.load(Ordering::SeqCst), 1);
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

async fn one_slot(kind: Kind) -> Rec {
    let tune = Tune {
        max_running: Some(1),
        ..Tune::default()
    };
    Rec::tuned(kind, &tune).await
}

/// A task that runs until released.
fn gated() -> (
    oneshot::Sender<()>,
    impl std::future::Future<Output = Result<(), ()>> + Send + 'static,
) {
    let (tx, rx) = oneshot::channel::<()>();
    (tx, async move { rx.await.map_err(|_| ()) })
}

/// Waits (bounded) until `id` no longer reads queued.
async fn until_started(rec: &Rec, id: u64) {
    bounded(&format!("{id} to start"), async {
        while rec.status(id).await.queued {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
}

async fn a_launch_beyond_the_limit_reads_queued_until_it_runs(kind: Kind) {
    let rec = one_slot(kind).await;
    let replica = rec.replica().await;
    let (release_a, a) = gated();
    let (release_b, b) = gated();
    rec.launch(1, a).await.expect("launched");
    rec.launch(2, b).await.expect("launched");
    let first = replica.status(1).await;
    assert_eq!((first.phase, first.queued), (TaskPhase::Working, false));
    let second = replica.status(2).await;
    assert_eq!((second.phase, second.queued), (TaskPhase::Working, true));
    assert_eq!(replica.query(2).await, TaskState::Working, "the 2.x query");
    let counts = replica.counts().await;
    assert_eq!((counts.working, counts.queued), (2, 1), "{counts:?}");

    release_a.send(()).unwrap();
    rec.until_state(1, TaskState::Success).await;
    until_started(&replica, 2).await;
    assert_eq!(replica.counts().await.queued, 0);
    assert_eq!(replica.query(2).await, TaskState::Working, "running now");
    release_b.send(()).unwrap();
    rec.until_state(2, TaskState::Success).await;
    assert!(!replica.status(2).await.queued);
}

async fn a_queued_task_can_be_cancelled(kind: Kind) {
    let rec = one_slot(kind).await;
    let (release_a, a) = gated();
    let (_release_b, b) = gated();
    rec.launch(3, a).await.expect("launched");
    let ended = rec
        .launch_opts(4, b, LaunchOptions::new())
        .await
        .expect("launched");
    assert!(rec.status(4).await.queued);
    assert!(bounded("the cancel", rec.cancel(4)).await, "cancelled");
    assert_eq!(
        bounded("the handle", ended).await,
        Err(Some(FailureReason::Cancelled))
    );
    let status = rec.status(4).await;
    assert_eq!(
        (status.phase, status.queued, status.last_failure),
        (TaskPhase::Failed, false, Some(FailureReason::Cancelled))
    );
    assert_eq!(rec.counts().await.queued, 0);
    release_a.send(()).unwrap();
    rec.until_state(3, TaskState::Success).await;
}

async fn a_run_timeout_counts_from_the_start_of_the_run(kind: Kind) {
    let rec = one_slot(kind).await;
    let (release_a, a) = gated();
    rec.launch(5, a).await.expect("launched");
    // Queued behind id 5: a run timeout does not run while it waits; a timeout does.
    let never = std::future::pending::<Result<(), ()>>();
    let run_timed = LaunchOptions::new().run_timeout(Duration::from_millis(50));
    let ended = rec
        .launch_opts(6, never, run_timed)
        .await
        .expect("launched");
    let never = std::future::pending::<Result<(), ()>>();
    let timed = LaunchOptions::new().timeout(Duration::from_millis(50));
    let timed_out = rec.launch_opts(7, never, timed).await.expect("launched");
    assert_eq!(
        bounded("the queued timeout", timed_out).await,
        Err(Some(FailureReason::TimedOut)),
        "a timeout counts from the launch, queued or not"
    );
    // Many run timeouts later, id 6 is still queued: its time has not started.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = rec.status(6).await;
    assert_eq!((waiting.phase, waiting.queued), (TaskPhase::Working, true));
    release_a.send(()).unwrap();
    assert_eq!(
        bounded("the run timeout", ended).await,
        Err(Some(FailureReason::TimedOut))
    );
    assert_eq!(
        rec.status(6).await.last_failure,
        Some(FailureReason::TimedOut)
    );
}

async fn without_a_limit_nothing_is_queued(kind: Kind) {
    let rec = Rec::new(kind).await;
    let (release, a) = gated();
    let (release2, b) = gated();
    rec.launch(8, a).await.expect("launched");
    rec.launch(9, b).await.expect("launched");
    assert!(!rec.status(8).await.queued && !rec.status(9).await.queued);
    assert_eq!(rec.counts().await.queued, 0);
    release.send(()).unwrap();
    release2.send(()).unwrap();
    rec.until_state(8, TaskState::Success).await;
    rec.until_state(9, TaskState::Success).await;
}
