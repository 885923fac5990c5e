//! Queued is not running: with `max_running`, a launch beyond the limit reads
//! `Working` and queued (in `status` and `counts`, from any clone or replica) until its
//! future gets a slot; it can be cancelled or time out while queued; and a run timeout
//! counts from the start of the run. Each rule runs on both stores.

#[path = "support/backend.rs"]
mod backend;
mod common;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::time::Duration;

use async_tasks_recorder::{FailureReason, LaunchOptions, TaskPhase, TaskState};
use backend::{Kind, Rec, Tune};
use common::*;
use tokio::sync::oneshot;

each_store!(
    a_launch_beyond_the_limit_reads_queued_until_it_runs,
    a_queued_task_can_be_cancelled,
    a_run_timeout_counts_from_the_start_of_the_run,
    without_a_limit_nothing_is_queued,
);

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
