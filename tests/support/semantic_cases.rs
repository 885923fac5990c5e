//! The semantic rules of the 2.x entry points, each an `async fn(Rec)` written once
//! against `tests/support/backend.rs`: `tests/launch_revoke_query.rs` runs every one on
//! both stores and runtimes, `tests/redis_cluster.rs` on a Redis Cluster.
//!
//! Include it with `#[macro_use]` so that [`semantic_cases!`] is in scope:
//! `semantic_cases!(m)` calls the macro `m!` with the name of every rule.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_tasks_recorder::TaskState;

use super::backend::{Rec, RevokeRefusal};
use super::common::*;

/// Calls `$m!` with the names of all the rules, in one list.
macro_rules! semantic_cases {
    ($m:ident) => {
        $m!(
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
            fencing_tokens_increase_with_every_launch_and_revoke,
        );
    };
}

pub async fn launch_reads_working_until_the_future_ends(rec: Rec) {
    let (g, fut) = gate();
    assert_eq!(rec.query(1).await, TaskState::NotFound);
    rec.launch(1, fut).await.unwrap();
    // Rule 1: once launch returned, the id reads Working (never NotFound/Failed).
    for _ in 0..100 {
        assert_eq!(rec.query(1).await, TaskState::Working);
        tokio::task::yield_now().await;
    }
    g.release.send(Ok(7)).unwrap();
    rec.until_state(1, TaskState::Success).await;

    let (g, fut) = gate();
    rec.launch(2, fut).await.unwrap();
    assert_eq!(rec.query(2).await, TaskState::Working);
    g.release.send(Err("no")).unwrap();
    rec.until_state(2, TaskState::Failed).await;
}

pub async fn launch_of_working_id_is_refused_with_the_future(rec: Rec) {
    let (g, fut) = gate();
    rec.launch(10, fut).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let Err((state, handed_back)) = rec.launch_returning(10, counted(&runs, Ok(()))).await else {
        panic!("a Working id launched again");
    };
    assert_eq!(state, TaskState::Working);
    let state = rec
        .launch_block(10, counted(&runs, Ok(())))
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
    rec.until_state(10, TaskState::Success).await;
}

pub async fn launch_of_success_id_is_refused_and_stays_success(rec: Rec) {
    rec.launch_block(5, ok()).await.unwrap();
    for _ in 0..3 {
        let state = rec.launch(5, ok()).await.unwrap_err();
        assert_eq!(state, TaskState::Success);
        let state = rec.launch_block(5, err()).await.unwrap_err();
        assert_eq!(state, TaskState::Success);
        // 2.0.2 turned this into a permanent Working.
        assert_eq!(rec.query(5).await, TaskState::Success);
        assert_eq!(rec.quick(5).await, TaskState::Success);
    }
    // And it can still be revoked.
    assert!(rec.revoke_task_block(5, ok()).await.is_ok());
}

pub async fn failed_ids_launch_again(rec: Rec) {
    rec.launch_block(9, err()).await.unwrap();
    assert_eq!(rec.query(9).await, TaskState::Failed);
    rec.launch(9, err()).await.unwrap();
    rec.until_state(9, TaskState::Failed).await;
    let (g, fut) = gate();
    rec.launch(9, fut).await.unwrap();
    assert_eq!(rec.query(9).await, TaskState::Working);
    g.release.send(Ok(0)).unwrap();
    rec.until_state(9, TaskState::Success).await;
}

pub async fn an_id_succeeds_at_most_once(rec: Rec) {
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
                    .launch(0, async move {
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
    rec.until_state(0, TaskState::Success).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(successes.load(Ordering::SeqCst), 1);
}

pub async fn launch_block_records_the_outcome_before_returning(rec: Rec) {
    rec.launch_block(1, ok()).await.unwrap();
    assert_eq!(rec.query(1).await, TaskState::Success);
    rec.launch_block(2, err()).await.unwrap();
    assert_eq!(rec.query(2).await, TaskState::Failed);
}

pub async fn quick_query_reports_working_for_unknown_ids(rec: Rec) {
    assert_eq!(rec.quick(1).await, TaskState::Working);
    rec.launch_block(1, ok()).await.unwrap();
    rec.launch_block(2, err()).await.unwrap();
    assert_eq!(rec.quick(1).await, TaskState::Success);
    assert_eq!(rec.quick(2).await, TaskState::Failed);
    let (g, fut) = gate();
    rec.launch(3, fut).await.unwrap();
    assert_eq!(rec.quick(3).await, TaskState::Working);
    g.release.send(Ok(1)).unwrap();
    rec.until_state(3, TaskState::Success).await;
    assert_eq!(rec.quick(3).await, TaskState::Success);
    rec.revoke_task_block(1, ok()).await.unwrap();
    assert_eq!(rec.quick(1).await, TaskState::Working);
}

pub async fn revoke_only_succeeds_on_success_and_leaves_no_trace_otherwise(rec: Rec) {
    let runs = Arc::new(AtomicUsize::new(0));
    // NotFound
    let r = rec.revoke_task_block(1, counted(&runs, Ok(()))).await;
    assert!(matches!(r, Err(RevokeRefusal::NotSuccess)));
    // Failed
    rec.launch_block(1, err()).await.unwrap();
    let r = rec.revoke_task_block(1, counted(&runs, Ok(()))).await;
    assert!(matches!(r, Err(RevokeRefusal::NotSuccess)));
    assert_eq!(rec.query(1).await, TaskState::Failed);
    // Working
    let (g, fut) = gate();
    rec.launch(1, fut).await.unwrap();
    let r = rec.revoke_task_block(1, counted(&runs, Ok(()))).await;
    assert!(matches!(r, Err(RevokeRefusal::NotSuccess)));
    assert_eq!(rec.query(1).await, TaskState::Working);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "refused revoke futures never start"
    );
    g.release.send(Ok(1)).unwrap();
    rec.until_state(1, TaskState::Success).await;
    // No trace: the earlier refusals did not leave the id marked as revoking (2.0.2 did).
    assert_eq!(
        rec.revoke_task_block(1, async { Ok::<_, ()>(42) })
            .await
            .ok(),
        Some(42)
    );
    assert_eq!(rec.query(1).await, TaskState::NotFound);
}

pub async fn revoke_in_progress_reads_success_and_refuses_others(rec: Rec) {
    rec.launch_block(1, ok()).await.unwrap();
    let (g, revoke) = gate();
    let started = g.started.clone();
    let task = tokio::spawn({
        let rec = rec.clone();
        async move { rec.revoke_task_block(1, revoke).await }
    });
    bounded("revoke to start", async {
        while !started.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(rec.query(1).await, TaskState::Success);
    assert_eq!(rec.quick(1).await, TaskState::Success);
    let runs = Arc::new(AtomicUsize::new(0));
    let r = rec.revoke_task_block(1, counted(&runs, Ok(()))).await;
    assert!(matches!(r, Err(RevokeRefusal::Revoking)));
    let r = rec.revoke_task(1, counted(&runs, Ok(()))).await;
    assert!(matches!(r, Err(RevokeRefusal::Revoking)));
    let state = rec.launch(1, counted(&runs, Ok(()))).await.unwrap_err();
    assert_eq!(state, TaskState::Success);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    g.release.send(Ok(3)).unwrap();
    assert_eq!(bounded("revoke", task).await.unwrap().ok(), Some(3));
    assert_eq!(rec.query(1).await, TaskState::NotFound);
}

pub async fn revoke_error_keeps_success_and_revocable(rec: Rec) {
    rec.launch_block(11, ok()).await.unwrap();
    let r = rec
        .revoke_task_block(11, async { Err::<(), _>("disk busy") })
        .await;
    match r {
        Err(RevokeRefusal::Failed) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(rec.query(11).await, TaskState::Success);
    assert!(rec.revoke_task_block(11, ok()).await.is_ok());
    assert_eq!(rec.query(11).await, TaskState::NotFound);
}

pub async fn revoke_ok_makes_the_id_launchable_again(rec: Rec) {
    let runs = Arc::new(AtomicUsize::new(0));
    for round in 1..=3 {
        rec.launch(7, counted(&runs, Ok(()))).await.unwrap();
        rec.until_state(7, TaskState::Success).await;
        assert_eq!(runs.load(Ordering::SeqCst), round);
        rec.revoke_task_block(7, ok()).await.unwrap();
        assert_eq!(rec.query(7).await, TaskState::NotFound);
    }
}

pub async fn spawned_revoke_follows_the_same_rules(rec: Rec) {
    let r = rec.revoke_task(1, ok()).await;
    assert!(matches!(r, Err(RevokeRefusal::NotSuccess)));
    rec.launch_block(1, ok()).await.unwrap();
    // An Err revoke: back to Success.
    rec.revoke_task(1, err()).await.unwrap();
    rec.until_state(1, TaskState::Success).await;
    bounded("revoking to end", async {
        while rec.counts().await.revoking != 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // An Ok revoke: NotFound.
    let (g, fut) = gate();
    rec.revoke_task(1, fut).await.unwrap();
    assert_eq!(rec.query(1).await, TaskState::Success);
    assert_eq!(rec.counts().await.revoking, 1);
    g.release.send(Ok(0)).unwrap();
    rec.until_state(1, TaskState::NotFound).await;
    assert_eq!(rec.counts().await.total(), 0);
}

pub async fn fencing_tokens_increase_with_every_launch_and_revoke(rec: Rec) {
    // A failed attempt, then a success, a revoke, and a success again: every launch
    // and the revoke take a token, and each is larger than the one before.
    rec.launch_block(1, err()).await.unwrap();
    let (second, attempt) = rec.fenced_attempt(1).await.unwrap();
    assert_eq!(attempt, 2, "the second attempt since NotFound");
    assert_eq!(
        rec.fenced_attempt(1).await,
        Err(TaskState::Success),
        "refused"
    );
    rec.revoke_task_block(1, ok()).await.unwrap();
    let (third, attempt) = rec.fenced_attempt(1).await.unwrap();
    assert_eq!(attempt, 1, "attempts count from NotFound again");
    // The revoke took a token between the two, so the third is at least two larger.
    assert!(third >= second + 2, "{third} vs {second}");
}
