//! Counting and listing all ids in one state.

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_tasks_recorder::{AsyncTasksRecorder, StateCounts, TaskState};
use common::*;

on_both_runtimes!(
    counts_and_lists_follow_the_records,
    visitor_may_call_the_recorder,
    lists_are_exact_while_nothing_changes_and_sane_while_things_do,
);

async fn counts_and_lists_follow_the_records() {
    let rec = AsyncTasksRecorder::new();
    assert_eq!(rec.counts().await, StateCounts::default());
    for id in 0..1000u64 {
        if id % 10 == 0 {
            rec.launch_block(id, err()).await.launched();
        } else {
            rec.launch_block(id, ok()).await.launched();
        }
    }
    let mut gates = Vec::new();
    for id in 1000..1005u64 {
        let (g, fut) = gate();
        rec.launch(id, fut).await.launched();
        gates.push(g);
    }
    let counts = rec.counts().await;
    assert_eq!(
        (
            counts.working,
            counts.success,
            counts.failed,
            counts.revoking
        ),
        (5, 900, 100, 0)
    );
    assert_eq!(counts.total(), 1005);
    for state in TaskState::ALL {
        assert_eq!(rec.count(state).await, counts.get(state));
    }
    assert_eq!(rec.count(TaskState::NotFound).await, 0);

    let failed: HashSet<u64> = rec
        .ids_in_state(TaskState::Failed)
        .await
        .into_iter()
        .collect();
    assert_eq!(failed, (0..1000).filter(|i| i % 10 == 0).collect());
    let working: HashSet<u64> = rec
        .ids_in_state(TaskState::Working)
        .await
        .into_iter()
        .collect();
    assert_eq!(working, (1000..1005).collect());
    let success = rec.ids_in_state(TaskState::Success).await;
    assert_eq!(success.len(), 900);
    assert!(rec.ids_in_state(TaskState::NotFound).await.is_empty());

    // A running revoke counts as Success and as revoking.
    let (rg, revoke) = gate();
    rec.revoke_task(1u64, revoke)
        .await
        .map_err(|e| e.to_string())
        .unwrap();
    let counts = rec.counts().await;
    assert_eq!((counts.success, counts.revoking), (900, 1));
    assert!(rec.ids_in_state(TaskState::Success).await.contains(&1));
    rg.release.send(Ok(0)).unwrap();
    until_state(&rec, &1, TaskState::NotFound).await;
    assert_eq!(rec.count(TaskState::Success).await, 899);

    for g in gates {
        g.release.send(Ok(0)).unwrap();
    }
    for id in 1000..1005u64 {
        until_state(&rec, &id, TaskState::Success).await;
    }
    assert_eq!(rec.count(TaskState::Working).await, 0);
}

async fn visitor_may_call_the_recorder() {
    let rec = AsyncTasksRecorder::new();
    for id in 0..200u64 {
        rec.launch_block(id, err()).await.launched();
    }
    // Relaunch every failed id from inside the visitor: no deadlock, every id seen once.
    let mut seen = HashSet::new();
    let rec2 = rec.clone();
    rec.for_each_in_state(TaskState::Failed, |id| {
        assert!(seen.insert(*id));
        let mut fut = std::pin::pin!(rec2.launch_block(*id, ok()));
        let polled = fut
            .as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
        assert!(matches!(polled, std::task::Poll::Ready(Ok(()))));
    })
    .await;
    assert_eq!(seen.len(), 200);
    assert_eq!(rec.count(TaskState::Success).await, 200);
    assert_eq!(rec.count(TaskState::Failed).await, 0);
}

async fn lists_are_exact_while_nothing_changes_and_sane_while_things_do() {
    // Ids 0..500 stay Failed for the whole test, 1000..1050 stay Success and 1050..1100
    // stay Working; ids 500..1000 flip between Failed and Working concurrently. Each
    // listing must contain all stable failed ids, no id twice, and no id that was never
    // Failed.
    const ROUNDS: u32 = 20;
    const LISTINGS: usize = 50;
    let rec = AsyncTasksRecorder::new();
    for id in 0..1000u64 {
        rec.launch_block(id, err()).await.launched();
    }
    for id in 1000..1050u64 {
        rec.launch_block(id, ok()).await.launched();
    }
    let mut held = Vec::new();
    for id in 1050..1100u64 {
        let (g, fut) = gate();
        rec.launch(id, fut).await.launched();
        held.push(g);
    }
    // The flipping futures of round `r` end (with Err) once `round` reaches `r`.
    let (round_tx, round_rx) = tokio::sync::watch::channel(0u32);
    let listings = Arc::new(AtomicUsize::new(0));
    let flipper = tokio::spawn({
        let rec = rec.clone();
        let listings = listings.clone();
        async move {
            for round in 1..=ROUNDS {
                for id in 500..1000u64 {
                    let mut rx = round_rx.clone();
                    let fut = async move {
                        let _ = rx.wait_for(|&r| r >= round).await;
                        Err::<(), ()>(())
                    };
                    rec.launch(id, fut).await.launched();
                }
                // All flipping ids are Working now. Let a whole listing run in this
                // state: the second listing to end from here began after this point.
                let seen = listings.load(Ordering::SeqCst);
                bounded("a listing while the ids are Working", async {
                    while listings.load(Ordering::SeqCst) < seen + 2 {
                        tokio::task::yield_now().await;
                    }
                })
                .await;
                // Then let them fail while the listings go on.
                round_tx.send_replace(round);
                for id in 500..1000u64 {
                    until_state(&rec, &id, TaskState::Failed).await;
                }
            }
        }
    });
    // Listings with some flipping ids missing (Working when they were read).
    let mut saw_working = 0;
    bounded("listings", async {
        while !flipper.is_finished() || listings.load(Ordering::SeqCst) < LISTINGS {
            let ids = rec.ids_in_state(TaskState::Failed).await;
            let set: HashSet<u64> = ids.iter().copied().collect();
            assert_eq!(set.len(), ids.len(), "an id listed twice");
            assert!((0..500).all(|i| set.contains(&i)), "a stable id was missed");
            assert!(
                ids.iter().all(|&i| i < 1000),
                "a Success or Working id was listed as Failed"
            );
            if (500..1000).any(|i| !set.contains(&i)) {
                saw_working += 1;
            }
            let counts = rec.counts().await;
            assert_eq!(
                (counts.working + counts.failed, counts.success),
                (1050, 50),
                "counts are one instant"
            );
            listings.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
        }
    })
    .await;
    bounded("flipper", flipper).await.unwrap();
    assert!(
        saw_working >= ROUNDS as usize,
        "only {saw_working} listings saw flipping ids Working"
    );
    let counts = rec.counts().await;
    assert_eq!((counts.working, counts.failed), (50, 1000));
    for g in held {
        g.release.send(Ok(0)).unwrap();
    }
    bounded("idle", rec.wait_idle()).await;
    assert_eq!(rec.count(TaskState::Success).await, 100);
}

/// An id that counts its clones (equal and hashed by its number alone).
#[derive(Debug)]
struct Counted(u64, Arc<AtomicUsize>);

impl PartialEq for Counted {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Counted {}

impl std::hash::Hash for Counted {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.1.fetch_add(1, Ordering::SeqCst);
        Counted(self.0, self.1.clone())
    }
}

#[tokio::test]
async fn a_listing_clones_each_id_once() {
    let clones = Arc::new(AtomicUsize::new(0));
    let rec = AsyncTasksRecorder::new();
    for n in 0..100 {
        rec.launch_block(Counted(n, clones.clone()), ok())
            .await
            .launched();
    }
    let before = clones.load(Ordering::SeqCst);
    let ids = rec.ids_in_state(TaskState::Success).await;
    assert_eq!(ids.len(), 100);
    assert_eq!(
        clones.load(Ordering::SeqCst) - before,
        100,
        "one clone per id"
    );
}
