//! Retention: TTLs for finished records, tombstones, the cap on finished records.
//! Time is Tokio's paused clock throughout: `sleep` jumps the clock, nothing waits for
//! real.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_tasks_recorder::{
    AsyncTasksRecorder, FailureReason, RevokeFailReason, SuccessExpiry, TaskPhase, TaskState,
};
use common::{bounded, counted, Launched};

const TTL: Duration = Duration::from_secs(10);
/// The sweeper's period for `TTL` (a sixteenth of it).
const TICK: Duration = Duration::from_millis(625);

/// A recorder that forgets successes `TTL` after they succeeded.
fn forgetful() -> AsyncTasksRecorder<u64> {
    AsyncTasksRecorder::builder()
        .success_ttl(TTL)
        .success_expiry(SuccessExpiry::Forget)
        .build()
}

/// Sleeps on the paused clock (which jumps) and lets the sweeper run.
async fn pass(d: Duration) {
    tokio::time::sleep(d).await;
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn failed_records_are_forgotten_after_their_ttl() {
    let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::builder().failed_ttl(TTL).build();
    let mut events = rec.subscribe();
    rec.launch_block(1, async { Err::<(), ()>(()) })
        .await
        .launched();
    rec.launch_block(2, async { Ok::<(), ()>(()) })
        .await
        .launched();
    pass(TTL - TICK).await;
    assert_eq!(rec.query_task_state(&1).await, TaskState::Failed);
    // Id 3 fails later, so it is forgotten later.
    rec.launch_block(3, async { Err::<(), ()>(()) })
        .await
        .launched();
    pass(2 * TICK).await;
    assert_eq!(rec.query_task_state(&1).await, TaskState::NotFound);
    assert_eq!(rec.query_task_state(&3).await, TaskState::Failed);
    // Successes are kept: only failures have a TTL here.
    assert_eq!(rec.query_task_state(&2).await, TaskState::Success);
    pass(TTL).await;
    assert_eq!(rec.query_task_state(&3).await, TaskState::NotFound);
    assert_eq!(rec.counts().await.total(), 1);
    assert_eq!(rec.ids_in_state(TaskState::Failed).await, Vec::<u64>::new());

    // The forgetting is a transition like any other.
    let mut seen = Vec::new();
    while let Ok(Some(Ok(t))) = tokio::time::timeout(Duration::ZERO, events.next()).await {
        seen.push((t.id, t.from, t.to));
    }
    assert!(seen.contains(&(1, TaskPhase::Failed, TaskPhase::NotFound)));
    assert!(seen.contains(&(3, TaskPhase::Failed, TaskPhase::NotFound)));
}

/// A relaunch before expiry starts over: the new failure gets its own full TTL, and the
/// old one's expiry does not touch it.
#[tokio::test(start_paused = true)]
async fn a_relaunched_failure_gets_a_new_ttl() {
    let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::builder().failed_ttl(TTL).build();
    rec.launch_block(1, async { Err::<(), ()>(()) })
        .await
        .launched();
    pass(TTL / 2).await;
    rec.launch_block(1, async { Err::<(), ()>(()) })
        .await
        .launched();
    pass(TTL / 2 + 2 * TICK).await;
    let status = rec.status(&1).await;
    assert_eq!(status.phase, TaskPhase::Failed);
    assert_eq!(status.attempts, Some(2));
    pass(TTL / 2).await;
    assert_eq!(rec.query_task_state(&1).await, TaskState::NotFound);
}

/// The acceptance pair: a Success forgotten after its TTL can run again, while
/// a tombstoned one cannot.
#[tokio::test(start_paused = true)]
async fn forgotten_success_runs_again_tombstoned_one_does_not() {
    let forget: AsyncTasksRecorder<u64> = forgetful();
    let keep: AsyncTasksRecorder<u64> = AsyncTasksRecorder::builder()
        .success_ttl(TTL)
        .track_details(true)
        .build(); // Tombstone is the default
    let runs = Arc::new(AtomicUsize::new(0));
    for rec in [&forget, &keep] {
        rec.launch_block(7, counted(&runs, Ok(()))).await.launched();
    }
    assert_eq!(keep.status(&7).await.attempts, Some(1));
    assert_eq!(keep.query_task_state_quick(&7).await, TaskState::Success);
    pass(TTL + 2 * TICK).await;
    assert_eq!(keep.query_task_state_quick(&7).await, TaskState::Success);

    assert_eq!(forget.query_task_state(&7).await, TaskState::NotFound);
    forget
        .launch_block(7, counted(&runs, Ok(())))
        .await
        .launched();
    assert_eq!(runs.load(Ordering::SeqCst), 3, "the forgotten id ran again");

    // The tombstone still says Success, refuses launches, and has lost its details.
    assert_eq!(keep.query_task_state(&7).await, TaskState::Success);
    match keep.launch_block(7, counted(&runs, Ok(()))).await {
        Err((state, _)) => assert_eq!(state, TaskState::Success),
        Ok(()) => panic!("a tombstoned success must not run again"),
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    let status = keep.status(&7).await;
    assert_eq!(status.phase, TaskPhase::Success);
    assert_eq!((status.attempts, status.since), (None, None));
    assert_eq!(keep.counts().await.success, 1);
    assert_eq!(keep.ids_in_state(TaskState::Success).await, vec![7]);

    // A tombstone is revoked like any success; then the id may launch again.
    assert!(keep
        .revoke_task_block(7, async { Ok::<(), ()>(()) })
        .await
        .is_ok());
    keep.launch_block(7, counted(&runs, Ok(())))
        .await
        .launched();
    assert_eq!(runs.load(Ordering::SeqCst), 4);
}

/// A failed revoke puts the id back to Success and its TTL starts again; a tombstone
/// stays a tombstone.
#[tokio::test(start_paused = true)]
async fn a_failed_revoke_restarts_the_ttl() {
    let rec: AsyncTasksRecorder<u64> = forgetful();
    rec.launch_block(1, async { Ok::<(), ()>(()) })
        .await
        .launched();
    pass(TTL / 2).await;
    let failed = rec.revoke_task_block(1, async { Err::<(), ()>(()) }).await;
    assert!(matches!(failed, Err(RevokeFailReason::RevokeTaskError(()))));
    pass(TTL / 2 + 2 * TICK).await;
    assert_eq!(rec.query_task_state(&1).await, TaskState::Success);
    pass(TTL / 2).await;
    assert_eq!(rec.query_task_state(&1).await, TaskState::NotFound);
}

/// With a revoke running when the TTL passes, nothing expires under it; the id is
/// handled when the revoke ends.
#[tokio::test(start_paused = true)]
async fn a_running_revoke_is_not_expired() {
    let rec: AsyncTasksRecorder<u64> = forgetful();
    rec.launch_block(1, async { Ok::<(), ()>(()) })
        .await
        .launched();
    let (tx, rx) = tokio::sync::oneshot::channel::<bool>();
    let revoke = async move {
        if rx.await.unwrap_or(false) {
            Ok(())
        } else {
            Err(())
        }
    };
    assert!(rec.revoke_task(1, revoke).await.is_ok());
    pass(2 * TTL).await;
    assert_eq!(rec.status(&1).await.phase, TaskPhase::Revoking);
    tx.send(false).unwrap();
    assert_eq!(
        bounded("revoke", rec.wait(&1)).await.phase,
        TaskPhase::Success
    );
    pass(TTL + 2 * TICK).await;
    assert_eq!(rec.query_task_state(&1).await, TaskState::NotFound);
}

/// The cap on finished records holds after every finish (with `Forget`, the records
/// kept are exactly those counted), and it evicts the oldest records first.
#[tokio::test(start_paused = true)]
async fn max_finished_is_never_exceeded() {
    const CAP: usize = 10;
    let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::builder()
        .max_finished(CAP)
        .success_expiry(SuccessExpiry::Forget)
        .build();
    for id in 0..300u64 {
        let fut = async move {
            if id % 3 == 0 {
                Err(())
            } else {
                Ok(())
            }
        };
        rec.launch_block(id, fut).await.launched();
        let counts = rec.counts().await;
        assert_eq!(
            counts.success + counts.failed,
            (id as usize + 1).min(CAP),
            "after {id}"
        );
    }
    // The oldest go first, whatever shard they are in: the 10 newest are kept.
    let mut kept = rec.ids_in_state(TaskState::Success).await;
    kept.extend(rec.ids_in_state(TaskState::Failed).await);
    kept.sort_unstable();
    assert_eq!(kept, (290..300).collect::<Vec<u64>>());
}

/// Stale queue entries (records that left by a relaunch or a revoke) do not make the
/// cap evict a younger record of the same shard: after failures relaunched into
/// successes, the cap still evicts in finishing order across all shards.
#[tokio::test(start_paused = true)]
async fn max_finished_skips_stale_entries_in_finishing_order() {
    const FAILS: u64 = 200;
    const OLD: u64 = 200;
    let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::builder()
        .max_finished((FAILS + OLD) as usize)
        .success_expiry(SuccessExpiry::Forget)
        .build();
    // Failures first (the oldest queue entries, spread over the shards), then
    // successes, then the failures relaunched into successes: every shard's queue
    // front is now a stale entry of a relaunched failure.
    for id in 0..FAILS {
        rec.launch_block(id, async { Err::<(), ()>(()) })
            .await
            .launched();
    }
    for id in 1000..1000 + OLD {
        rec.launch_block(id, async { Ok::<(), ()>(()) })
            .await
            .launched();
    }
    for id in 0..FAILS {
        rec.launch_block(id, async { Ok::<(), ()>(()) })
            .await
            .launched();
    }
    assert_eq!(rec.count(TaskState::Success).await, (FAILS + OLD) as usize);
    // Each new success evicts the oldest record of the store: 1000, 1001, ... in order.
    for (i, id) in (5000..5000 + OLD / 2).enumerate() {
        rec.launch_block(id, async { Ok::<(), ()>(()) })
            .await
            .launched();
        let evicted = 1000 + i as u64;
        assert_eq!(
            rec.query_task_state(&evicted).await,
            TaskState::NotFound,
            "new success {id} should have evicted {evicted}, the oldest"
        );
        assert_eq!(
            rec.query_task_state(&(evicted + 1)).await,
            TaskState::Success,
            "new success {id} evicted a younger record than {}",
            evicted + 1
        );
    }
    for id in 0..FAILS {
        assert_eq!(rec.query_task_state(&id).await, TaskState::Success);
    }
}

/// With tombstones, the cap counts full records only: evicted successes stay Success
/// (as tombstones, without details), evicted failures are forgotten.
#[tokio::test(start_paused = true)]
async fn max_finished_with_tombstones() {
    const CAP: usize = 5;
    let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::builder()
        .max_finished(CAP)
        .track_details(true)
        .build();
    for id in 0..100u64 {
        rec.launch_block(id, async { Ok::<(), ()>(()) })
            .await
            .launched();
    }
    rec.launch_block(1000, async { Err::<(), ()>(()) })
        .await
        .launched();
    // Tombstones still count as Success; the failure is the newest finished record, so
    // it keeps its details and is not forgotten.
    let counts = rec.counts().await;
    assert_eq!(
        (
            counts.success,
            counts.failed,
            counts.working,
            counts.revoking
        ),
        (100, 1, 0, 0),
        "successes become tombstones: {counts:?}"
    );
    // The full records are the CAP most recent finishes: the last four successes and
    // the failure. The failure's finish evicted success 95, the oldest full one then.
    let mut full = Vec::new();
    for id in (0..100u64).chain([1000]) {
        if rec.status(&id).await.since.is_some() {
            full.push(id);
        }
    }
    assert_eq!(full, [96, 97, 98, 99, 1000]);
    assert_eq!(full.len(), CAP);
    // Every success is still refused a relaunch.
    for id in 0..100u64 {
        assert_eq!(rec.query_task_state(&id).await, TaskState::Success);
    }
}

/// `max_finished(0)` keeps nothing with details: every finish expires at once.
#[tokio::test(start_paused = true)]
async fn max_finished_zero() {
    let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::builder()
        .max_finished(0)
        .success_expiry(SuccessExpiry::Forget)
        .build();
    rec.launch_block(1, async { Ok::<(), ()>(()) })
        .await
        .launched();
    rec.launch_block(2, async { Err::<(), ()>(()) })
        .await
        .launched();
    assert_eq!(rec.counts().await.total(), 0);
    let status = rec.status(&2).await;
    assert_eq!(status.last_failure, None::<FailureReason>);
}

/// Many records expiring at once are all handled (in batches across shards), and
/// queries answer while it runs (their latency is measured in bench-lab/benches/retention.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_expiry_completes() {
    const N: u64 = 20_000;
    let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::builder()
        .success_ttl(Duration::from_millis(50))
        .success_expiry(SuccessExpiry::Forget)
        .build();
    for id in 0..N {
        rec.launch(id, async { Ok::<(), ()>(()) }).await.launched();
    }
    bounded("all expired", async {
        loop {
            let _ = rec.query_task_state(&(N / 2)).await;
            let counts = rec.counts().await;
            if counts.total() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// The sweeper holds the store only while it sweeps: dropping the last recorder frees
/// the records (here, keys that count their clones).
#[tokio::test(start_paused = true)]
async fn the_sweeper_does_not_keep_the_recorder_alive() {
    let alive = Arc::new(());
    let rec: AsyncTasksRecorder<(u64, Arc<()>)> = AsyncTasksRecorder::builder()
        .success_ttl(Duration::from_secs(3600))
        .build();
    rec.launch((1, alive.clone()), async { Ok::<(), ()>(()) })
        .await
        .launched();
    let _ = bounded("finish", rec.wait(&(1, alive.clone()))).await;
    assert!(Arc::strong_count(&alive) > 1);
    drop(rec);
    pass(Duration::from_secs(2)).await;
    assert_eq!(Arc::strong_count(&alive), 1, "the records were freed");
}

/// A recorder that outlives the runtime its sweeper ran on gets a new sweeper on the
/// next runtime it launches on.
#[test]
fn the_sweeper_restarts_on_a_new_runtime() {
    let paused = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    };
    let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::builder().failed_ttl(TTL).build();
    let first = paused();
    first.block_on(async {
        rec.launch_block(1, async { Err::<(), ()>(()) })
            .await
            .launched();
    });
    drop(first);
    paused().block_on(async {
        rec.launch_block(2, async { Err::<(), ()>(()) })
            .await
            .launched();
        pass(TTL + 2 * TICK).await;
        assert_eq!(rec.query_task_state(&2).await, TaskState::NotFound);
        assert_eq!(rec.query_task_state(&1).await, TaskState::NotFound);
    });
}

/// Many tasks finishing at once on two workers: the cap is exact once they are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_finished_under_concurrent_finishes() {
    const CAP: usize = 100;
    let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::builder()
        .max_finished(CAP)
        .success_expiry(SuccessExpiry::Forget)
        .build();
    let launchers: Vec<_> = (0..4u64)
        .map(|t| {
            let rec = rec.clone();
            tokio::spawn(async move {
                for i in 0..2000u64 {
                    let id = t * 10_000 + i;
                    let fut = async move {
                        tokio::task::yield_now().await;
                        if id % 5 == 0 {
                            Err(())
                        } else {
                            Ok(())
                        }
                    };
                    rec.launch(id, fut).await.launched();
                }
            })
        })
        .collect();
    for l in launchers {
        bounded("launcher", l).await.unwrap();
    }
    rec.close();
    bounded("idle", rec.wait_idle()).await;
    // A task leaves `Working` before its finish evicts (the documented moment when the
    // cap may be exceeded), so `wait_idle` can return just before the last evictions:
    // wait for them (a cap that is never restored trips the hang guard).
    bounded("the last evictions", async {
        while rec.counts().await.total() > CAP {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let counts = rec.counts().await;
    assert_eq!(counts.success + counts.failed, CAP, "{counts:?}");
}
