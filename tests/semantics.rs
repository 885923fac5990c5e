//! One test per semantic rule of the 2.x entry points, each on a current-thread and a
//! multi-thread runtime.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_tasks_recorder::{AsyncTasksRecorder, RevokeFailReason, TaskState};
use common::*;

on_both_runtimes!(
    launch_reads_working_until_the_future_ends,
    launch_of_working_id_is_refused_with_the_future,
    launch_of_success_id_is_refused_and_stays_success,
    failed_ids_launch_again,
    an_id_succeeds_at_most_once,
    launch_block_records_the_outcome_before_returning,
    quick_query_reports_working_for_unknown_ids,
    revoke_only_succeeds_on_success_and_leaves_no_trace_otherwise,
    revoke_in_progress_reads_success_and_refuses_others,
    revoke_error_keeps_success_and_revocable,
    revoke_ok_makes_the_id_launchable_again,
    spawned_revoke_follows_the_same_rules,
    borrowed_query_forms_work,
);

async fn launch_reads_working_until_the_future_ends() {
    let rec = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    assert_eq!(rec.query_task_state(&1u64).await, TaskState::NotFound);
    rec.launch(1u64, fut).await.launched();
    // Rule 1: once launch returned, the id reads Working (never NotFound/Failed).
    for _ in 0..100 {
        assert_eq!(rec.query_task_state(&1).await, TaskState::Working);
        tokio::task::yield_now().await;
    }
    g.release.send(Ok(7)).unwrap();
    until_state(&rec, &1, TaskState::Success).await;

    let (g, fut) = gate();
    rec.launch(2u64, fut).await.launched();
    assert_eq!(rec.query_task_state(&2).await, TaskState::Working);
    g.release.send(Err("no")).unwrap();
    until_state(&rec, &2, TaskState::Failed).await;
}

async fn launch_of_working_id_is_refused_with_the_future() {
    let rec = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    rec.launch("a".to_string(), fut).await.launched();
    let runs = Arc::new(AtomicUsize::new(0));
    let (state, handed_back) = rec
        .launch("a".to_string(), counted(&runs, Ok(())))
        .await
        .unwrap_err();
    assert_eq!(state, TaskState::Working);
    let (state, _) = rec
        .launch_block("a".to_string(), counted(&runs, Ok(())))
        .await
        .unwrap_err();
    assert_eq!(state, TaskState::Working);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "refused futures never start"
    );
    // The handed-back future is the caller's own, still usable.
    assert_eq!(handed_back.await, Ok(()));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    g.release.send(Ok(1)).unwrap();
    until_state(&rec, "a", TaskState::Success).await;
}

async fn launch_of_success_id_is_refused_and_stays_success() {
    let rec = AsyncTasksRecorder::new();
    rec.launch_block(5u32, ok()).await.launched();
    for _ in 0..3 {
        let (state, _) = rec.launch(5u32, ok()).await.unwrap_err();
        assert_eq!(state, TaskState::Success);
        let (state, _) = rec.launch_block(5u32, err()).await.unwrap_err();
        assert_eq!(state, TaskState::Success);
        // 2.0.2 turned this into a permanent Working.
        assert_eq!(rec.query_task_state(&5).await, TaskState::Success);
        assert_eq!(rec.query_task_state_quick(&5).await, TaskState::Success);
    }
    // And it can still be revoked.
    assert!(rec.revoke_task_block(5u32, ok()).await.is_ok());
}

async fn failed_ids_launch_again() {
    let rec = AsyncTasksRecorder::new();
    rec.launch_block(9u8, err()).await.launched();
    assert_eq!(rec.query_task_state(&9).await, TaskState::Failed);
    rec.launch(9u8, err()).await.launched();
    until_state(&rec, &9, TaskState::Failed).await;
    let (g, fut) = gate();
    rec.launch(9u8, fut).await.launched();
    assert_eq!(rec.query_task_state(&9).await, TaskState::Working);
    g.release.send(Ok(0)).unwrap();
    until_state(&rec, &9, TaskState::Success).await;
}

async fn an_id_succeeds_at_most_once() {
    let rec = AsyncTasksRecorder::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let successes = Arc::new(AtomicUsize::new(0));
    // Many launchers race; futures that start count themselves.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let rec = rec.clone();
        let runs = runs.clone();
        let successes = successes.clone();
        set.spawn(async move {
            for _ in 0..20 {
                let runs = runs.clone();
                let successes = successes.clone();
                let _ = rec
                    .launch(0u64, async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        successes.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, ()>(())
                    })
                    .await;
                tokio::task::yield_now().await;
            }
        });
    }
    bounded("launchers", async {
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    })
    .await;
    until_state(&rec, &0, TaskState::Success).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(successes.load(Ordering::SeqCst), 1);
}

async fn launch_block_records_the_outcome_before_returning() {
    let rec = AsyncTasksRecorder::new();
    rec.launch_block(1i32, ok()).await.launched();
    assert_eq!(rec.query_task_state(&1).await, TaskState::Success);
    rec.launch_block(2i32, err()).await.launched();
    assert_eq!(rec.query_task_state(&2).await, TaskState::Failed);
}

async fn quick_query_reports_working_for_unknown_ids() {
    let rec = AsyncTasksRecorder::<u64>::new();
    assert_eq!(rec.query_task_state_quick(&1).await, TaskState::Working);
    rec.launch_block(1, ok()).await.launched();
    rec.launch_block(2, err()).await.launched();
    assert_eq!(rec.query_task_state_quick(&1).await, TaskState::Success);
    assert_eq!(rec.query_task_state_quick(&2).await, TaskState::Failed);
    let (g, fut) = gate();
    rec.launch(3, fut).await.launched();
    assert_eq!(rec.query_task_state_quick(&3).await, TaskState::Working);
    g.release.send(Ok(1)).unwrap();
    until_state(&rec, &3, TaskState::Success).await;
    assert_eq!(rec.query_task_state_quick(&3).await, TaskState::Success);
    rec.revoke_task_block(1, ok()).await.unwrap();
    assert_eq!(rec.query_task_state_quick(&1).await, TaskState::Working);
}

async fn revoke_only_succeeds_on_success_and_leaves_no_trace_otherwise() {
    let rec = AsyncTasksRecorder::new();
    let runs = Arc::new(AtomicUsize::new(0));
    // NotFound
    let r = rec.revoke_task_block(1u64, counted(&runs, Ok(()))).await;
    assert!(matches!(r, Err(RevokeFailReason::NotSuccess(_))));
    // Failed
    rec.launch_block(1u64, err()).await.launched();
    let r = rec.revoke_task_block(1u64, counted(&runs, Ok(()))).await;
    assert!(matches!(r, Err(RevokeFailReason::NotSuccess(_))));
    assert_eq!(rec.query_task_state(&1).await, TaskState::Failed);
    // Working
    let (g, fut) = gate();
    rec.launch(1u64, fut).await.launched();
    let r = rec.revoke_task_block(1u64, counted(&runs, Ok(()))).await;
    assert!(matches!(r, Err(RevokeFailReason::NotSuccess(_))));
    assert_eq!(rec.query_task_state(&1).await, TaskState::Working);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "refused revoke futures never start"
    );
    g.release.send(Ok(1)).unwrap();
    until_state(&rec, &1, TaskState::Success).await;
    // No trace: the earlier refusals did not leave the id marked as revoking (2.0.2 did).
    assert_eq!(
        rec.revoke_task_block(1u64, async { Ok::<_, ()>(42) })
            .await
            .ok(),
        Some(42)
    );
    assert_eq!(rec.query_task_state(&1).await, TaskState::NotFound);
}

async fn revoke_in_progress_reads_success_and_refuses_others() {
    let rec = AsyncTasksRecorder::new();
    rec.launch_block(1u64, ok()).await.launched();
    let (g, revoke) = gate();
    let started = g.started.clone();
    let task = tokio::spawn({
        let rec = rec.clone();
        async move { rec.revoke_task_block(1u64, revoke).await }
    });
    bounded("revoke to start", async {
        while !started.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(rec.query_task_state(&1).await, TaskState::Success);
    assert_eq!(rec.query_task_state_quick(&1).await, TaskState::Success);
    let runs = Arc::new(AtomicUsize::new(0));
    let r = rec.revoke_task_block(1u64, counted(&runs, Ok(()))).await;
    assert!(matches!(r, Err(RevokeFailReason::Revoking(_))));
    let r = rec.revoke_task(1u64, counted(&runs, Ok(()))).await;
    assert!(matches!(r, Err(RevokeFailReason::Revoking(_))));
    let (state, _) = rec.launch(1u64, counted(&runs, Ok(()))).await.unwrap_err();
    assert_eq!(state, TaskState::Success);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    g.release.send(Ok(3)).unwrap();
    assert_eq!(bounded("revoke", task).await.unwrap().ok(), Some(3));
    assert_eq!(rec.query_task_state(&1).await, TaskState::NotFound);
}

async fn revoke_error_keeps_success_and_revocable() {
    let rec = AsyncTasksRecorder::new();
    rec.launch_block("x", ok()).await.launched();
    let r = rec
        .revoke_task_block("x", async { Err::<(), _>("disk busy") })
        .await;
    match r {
        Err(RevokeFailReason::RevokeTaskError(e)) => assert_eq!(e, "disk busy"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(rec.query_task_state("x").await, TaskState::Success);
    assert!(rec.revoke_task_block("x", ok()).await.is_ok());
    assert_eq!(rec.query_task_state("x").await, TaskState::NotFound);
}

async fn revoke_ok_makes_the_id_launchable_again() {
    let rec = AsyncTasksRecorder::new();
    let runs = Arc::new(AtomicUsize::new(0));
    for round in 1..=3 {
        rec.launch(7u64, counted(&runs, Ok(()))).await.launched();
        until_state(&rec, &7, TaskState::Success).await;
        assert_eq!(runs.load(Ordering::SeqCst), round);
        rec.revoke_task_block(7u64, ok()).await.unwrap();
        assert_eq!(rec.query_task_state(&7).await, TaskState::NotFound);
    }
}

async fn spawned_revoke_follows_the_same_rules() {
    let rec = AsyncTasksRecorder::new();
    let r = rec.revoke_task(1u64, ok()).await;
    assert!(matches!(r, Err(RevokeFailReason::NotSuccess(_))));
    rec.launch_block(1u64, ok()).await.launched();
    // An Err revoke: back to Success.
    rec.revoke_task(1u64, err()).await.unwrap();
    until_state(&rec, &1, TaskState::Success).await;
    bounded("revoking to end", async {
        while rec.counts().await.revoking != 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // An Ok revoke: NotFound.
    let (g, fut) = gate();
    rec.revoke_task(1u64, fut).await.unwrap();
    assert_eq!(rec.query_task_state(&1).await, TaskState::Success);
    assert_eq!(rec.counts().await.revoking, 1);
    g.release.send(Ok(0)).unwrap();
    until_state(&rec, &1, TaskState::NotFound).await;
    assert_eq!(rec.counts().await.total(), 0);
}

async fn borrowed_query_forms_work() {
    let rec: AsyncTasksRecorder<String> = AsyncTasksRecorder::new();
    rec.launch_block("md5".to_string(), ok()).await.launched();
    assert_eq!(rec.query_task_state("md5").await, TaskState::Success);
    assert_eq!(
        rec.query_task_state(&"md5".to_string()).await,
        TaskState::Success
    );
    assert_eq!(rec.query_task_state_quick("md5").await, TaskState::Success);

    let rec: AsyncTasksRecorder<Arc<str>> = AsyncTasksRecorder::new();
    rec.launch_block(Arc::from("k"), ok()).await.launched();
    assert_eq!(rec.query_task_state("k").await, TaskState::Success);
}
