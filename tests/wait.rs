//! `wait`: every waiter of an id is woken by the end of the phase it waited for (from
//! any clone, for launches and revokes, with the failure's reason), a dropped waiter
//! changes nothing, final ids answer at once, and no wake-up is lost under races.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_tasks_recorder::{AsyncTasksRecorder, FailureReason, TaskPhase, TaskState};
use common::*;

on_both_runtimes!(
    wait_on_an_id_launched_by_another_clone,
    many_waiters_on_one_id_are_all_woken,
    a_dropped_waiter_changes_nothing,
    wait_resolves_at_once_for_final_ids,
    wait_for_a_revoke,
    wait_reports_failures_with_their_reason,
);

async fn wait_on_an_id_launched_by_another_clone() {
    let rec = AsyncTasksRecorder::new();
    let other = rec.clone();
    let (g, fut) = gate();
    other.launch("a".to_string(), fut).await.launched();
    let waiter = tokio::spawn({
        let rec = rec.clone();
        async move { rec.wait("a").await }
    });
    // The waiter is registered or not yet: either way it must see the end.
    tokio::task::yield_now().await;
    g.release.send(Ok(1)).unwrap();
    let settled = bounded("waiter", waiter).await.unwrap();
    assert_eq!(settled.phase, TaskPhase::Success);
    assert_eq!(settled.state(), TaskState::Success);
    assert_eq!(rec.query_task_state("a").await, TaskState::Success);
}

async fn many_waiters_on_one_id_are_all_woken() {
    let rec = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    rec.launch(1u64, fut).await.launched();
    let mut waiters = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let rec = rec.clone();
        waiters.spawn(async move { rec.wait(&1).await });
    }
    // Let some of them register before the end and the others race with it.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    g.release.send(Err("no")).unwrap();
    let mut woken = 0;
    bounded("all waiters", async {
        while let Some(r) = waiters.join_next().await {
            let s = r.unwrap();
            assert_eq!(s.phase, TaskPhase::Failed);
            assert_eq!(s.failure, Some(FailureReason::Error));
            woken += 1;
        }
    })
    .await;
    assert_eq!(woken, 200);
}

async fn a_dropped_waiter_changes_nothing() {
    let rec = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    rec.launch(1u64, fut).await.launched();
    // Registered, then dropped by the zero timeout.
    for _ in 0..5 {
        assert!(tokio::time::timeout(Duration::ZERO, rec.wait(&1))
            .await
            .is_err());
    }
    assert_eq!(rec.query_task_state(&1).await, TaskState::Working);
    let waiter = tokio::spawn({
        let rec = rec.clone();
        async move { rec.wait(&1).await }
    });
    tokio::task::yield_now().await;
    g.release.send(Ok(0)).unwrap();
    assert_eq!(
        bounded("waiter", waiter).await.unwrap().phase,
        TaskPhase::Success
    );
}

async fn wait_resolves_at_once_for_final_ids() {
    let rec = AsyncTasksRecorder::<u64>::new();
    assert_eq!(rec.wait(&1).await.phase, TaskPhase::NotFound);
    rec.launch_block(1, ok()).await.launched();
    assert_eq!(rec.wait(&1).await.phase, TaskPhase::Success);
    rec.launch_block(2, err()).await.launched();
    let s = rec.wait(&2).await;
    assert_eq!(
        (s.phase, s.failure),
        (TaskPhase::Failed, Some(FailureReason::Error))
    );
}

async fn wait_for_a_revoke() {
    let rec = AsyncTasksRecorder::new();
    rec.launch_block(1u64, ok()).await.launched();
    let (g, fut) = gate();
    rec.revoke_task(1u64, fut)
        .await
        .map_err(|e| e.to_string())
        .unwrap();
    assert_eq!(rec.status(&1).await.phase, TaskPhase::Revoking);
    let waiter = tokio::spawn({
        let rec = rec.clone();
        async move { rec.wait(&1).await }
    });
    tokio::task::yield_now().await;
    g.release.send(Ok(0)).unwrap();
    assert_eq!(
        bounded("waiter", waiter).await.unwrap().phase,
        TaskPhase::NotFound
    );
    // A failing revoke ends in Success.
    rec.launch_block(1u64, ok()).await.launched();
    let (g, fut) = gate();
    rec.revoke_task(1u64, fut)
        .await
        .map_err(|e| e.to_string())
        .unwrap();
    let waiter = tokio::spawn({
        let rec = rec.clone();
        async move { rec.wait(&1).await }
    });
    g.release.send(Err("disk")).unwrap();
    assert_eq!(
        bounded("waiter", waiter).await.unwrap().phase,
        TaskPhase::Success
    );
}

async fn wait_reports_failures_with_their_reason() {
    let rec = AsyncTasksRecorder::new();
    rec.launch(1u64, async {
        if true {
            panic!("task panics (expected by the test)");
        }
        Ok::<(), ()>(())
    })
    .await
    .launched();
    let s = bounded("wait", rec.wait(&1)).await;
    assert_eq!(
        (s.phase, s.failure),
        (TaskPhase::Failed, Some(FailureReason::Panicked))
    );
    assert_eq!(
        rec.status(&1).await.last_failure,
        Some(FailureReason::Panicked)
    );
}

/// No lost wake-up: waiters registered at every possible moment around the final
/// transition are all woken (bounded, many rounds, multi-thread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lost_wakeups_under_races() {
    let rec = AsyncTasksRecorder::new();
    let woken = Arc::new(AtomicUsize::new(0));
    for round in 0..300u64 {
        let (g, fut) = gate();
        rec.launch(round, fut).await.launched();
        let mut waiters = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let rec = rec.clone();
            let woken = woken.clone();
            waiters.spawn(async move {
                let s = rec.wait(&round).await;
                assert_eq!(s.phase, TaskPhase::Success);
                woken.fetch_add(1, Ordering::SeqCst);
            });
        }
        g.release.send(Ok(0)).unwrap();
        bounded("waiters", async {
            while let Some(r) = waiters.join_next().await {
                r.unwrap();
            }
        })
        .await;
    }
    assert_eq!(woken.load(Ordering::SeqCst), 1200);
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
    let waiter = after_one_poll(Box::pin(rec.wait(&1))).await;
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
