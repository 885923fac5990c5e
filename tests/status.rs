//! `status`: the attempts of an id and the reason of its last failure, and, with
//! `track_details`, the attempts of successes and the start of every phase.

mod common;

use std::time::Duration;

use async_tasks_recorder::{AsyncTasksRecorder, FailureReason, TaskPhase};
use common::*;

on_both_runtimes!(status_counts_attempts_and_reasons);

async fn status_counts_attempts_and_reasons() {
    let rec = AsyncTasksRecorder::new();
    assert_eq!(rec.status(&1u64).await.phase, TaskPhase::NotFound);
    assert_eq!(rec.status(&1u64).await.attempts, None);
    rec.launch_block(1u64, err()).await.launched();
    let s = rec.status(&1).await;
    assert_eq!(
        (s.attempts, s.last_failure),
        (Some(1), Some(FailureReason::Error))
    );
    let _ = tokio::time::timeout(
        Duration::ZERO,
        rec.launch_block(1u64, std::future::pending::<Result<(), ()>>()),
    )
    .await;
    let s = rec.status(&1).await;
    assert_eq!(
        (s.attempts, s.last_failure),
        (Some(2), Some(FailureReason::Dropped))
    );
    let (g, fut) = gate();
    rec.launch(1u64, fut).await.launched();
    let s = rec.status(&1).await;
    assert_eq!(
        (s.phase, s.attempts, s.last_failure),
        (TaskPhase::Working, Some(3), None)
    );
    assert_eq!(s.since, None, "no timestamps unless asked for");
    g.release.send(Ok(0)).unwrap();
    bounded("wait", rec.wait(&1)).await;
    let s = rec.status(&1).await;
    assert_eq!(s.phase, TaskPhase::Success);
    assert_eq!(s.attempts, None, "not tracked for successes by default");

    // With details, successes keep their attempts and every phase its start.
    let rec = AsyncTasksRecorder::builder().track_details(true).build();
    let before = std::time::Instant::now();
    rec.launch_block(9u64, err()).await.launched();
    rec.launch_block(9u64, ok()).await.launched();
    let s = rec.status(&9).await;
    assert_eq!((s.phase, s.attempts), (TaskPhase::Success, Some(2)));
    assert!(s.since.unwrap() >= before);
    let (g, fut) = gate();
    rec.revoke_task(9u64, fut)
        .await
        .map_err(|e| e.to_string())
        .unwrap();
    let s = rec.status(&9).await;
    assert_eq!((s.phase, s.attempts), (TaskPhase::Revoking, Some(2)));
    g.release.send(Err("keep")).unwrap();
    bounded("wait", rec.wait(&9)).await;
    assert_eq!(rec.status(&9).await.attempts, Some(2));
}
