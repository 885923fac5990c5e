//! At most one success per id, and only allowed moves seen, under bounded randomized
//! load: many ids, random latency and outcome (including panics), relaunch on failure,
//! concurrent queriers checking every per-id sequence they observe, at-most-once
//! success counted inside the futures, and revoke loops with duplicate launches and
//! revokes. Sizes are small enough for a slow 2-core machine; every wait is bounded.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use async_tasks_recorder::{AsyncTasksRecorder, TaskState};
use common::*;

/// xorshift64*: deterministic per seed, no dependency.
#[derive(Clone)]
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn random_yields(rng: &mut Rng, max: u64) {
    for _ in 0..rng.below(max) {
        tokio::task::yield_now().await;
    }
}

/// Allowed moves as seen by one observer that may miss intermediate states, when no
/// revoke happens: Success is absorbing and nothing returns to NotFound.
fn observed_move_allowed(prev: TaskState, now: TaskState) -> bool {
    match prev {
        TaskState::NotFound => true,
        TaskState::Working | TaskState::Failed => now != TaskState::NotFound,
        TaskState::Success => now == TaskState::Success,
    }
}

struct Shared {
    rec: AsyncTasksRecorder<u64>,
    ids: u64,
    /// Futures that started, per id.
    runs: Vec<AtomicUsize>,
    /// Futures that returned Ok, per id.
    successes: Vec<AtomicUsize>,
    /// Successful revoke futures, per id.
    revokes: Vec<AtomicUsize>,
    violations: AtomicUsize,
    done: AtomicBool,
}

impl Shared {
    fn new(ids: u64) -> Arc<Self> {
        let counters = || (0..ids).map(|_| AtomicUsize::new(0)).collect();
        Arc::new(Shared {
            rec: AsyncTasksRecorder::new(),
            ids,
            runs: counters(),
            successes: counters(),
            revokes: counters(),
            violations: AtomicUsize::new(0),
            done: AtomicBool::new(false),
        })
    }

    fn violation(&self, what: &str) {
        eprintln!("VIOLATION: {what}");
        self.violations.fetch_add(1, Ordering::SeqCst);
    }

    /// A task future with a random latency and outcome (Ok, Err, or panic). When it
    /// returns Ok it checks that no other success of the id is live (at most once
    /// between revokes).
    fn task(
        self: &Arc<Self>,
        id: u64,
        mut rng: Rng,
    ) -> impl std::future::Future<Output = Result<(), ()>> + Send + 'static {
        let shared = self.clone();
        async move {
            let i = id as usize;
            shared.runs[i].fetch_add(1, Ordering::SeqCst);
            random_yields(&mut rng, 20).await;
            match rng.below(10) {
                0..=6 => {
                    let before = shared.successes[i].fetch_add(1, Ordering::SeqCst);
                    if before != shared.revokes[i].load(Ordering::SeqCst) {
                        shared.violation(&format!("id {id} succeeded twice without a revoke"));
                    }
                    Ok(())
                }
                7 | 8 => Err(()),
                _ => panic!("random panic of task {id} (expected by the stress test)"),
            }
        }
    }

    /// A revoke future that checks it runs only on a live success, and sometimes fails.
    fn revoke(
        self: &Arc<Self>,
        id: u64,
        mut rng: Rng,
    ) -> impl std::future::Future<Output = Result<(), ()>> + Send + 'static {
        let shared = self.clone();
        async move {
            let i = id as usize;
            if shared.successes[i].load(Ordering::SeqCst)
                != shared.revokes[i].load(Ordering::SeqCst) + 1
            {
                shared.violation(&format!("revoke of {id} ran without a live success"));
            }
            random_yields(&mut rng, 10).await;
            if rng.below(4) == 0 {
                return Err(());
            }
            shared.revokes[i].fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }
}

/// Launchers relaunch until every id succeeded; queriers check what they observe.
async fn launch_until_all_succeed(ids: u64, launchers: u64, queriers: u64, seed: u64) {
    let shared = Shared::new(ids);
    let mut set = tokio::task::JoinSet::new();
    for l in 0..launchers {
        let shared = shared.clone();
        set.spawn(async move {
            let mut rng = Rng(seed ^ (l + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            loop {
                let mut all_success = true;
                for _ in 0..shared.ids {
                    let id = rng.below(shared.ids);
                    match shared.rec.query_task_state(&id).await {
                        TaskState::Success => continue,
                        TaskState::NotFound | TaskState::Failed => {
                            all_success = false;
                            let fut = shared.task(id, Rng(rng.next() | 1));
                            let _ = shared.rec.launch(id, fut).await;
                        }
                        TaskState::Working => all_success = false,
                    }
                    random_yields(&mut rng, 3).await;
                }
                if all_success && shared.rec.count(TaskState::Success).await == shared.ids as usize
                {
                    break;
                }
                tokio::task::yield_now().await;
            }
        });
    }
    let mut observers = tokio::task::JoinSet::new();
    for q in 0..queriers {
        let shared = shared.clone();
        observers.spawn(async move {
            let mut rng = Rng(seed ^ (q + 101).wrapping_mul(0xD1B5_4A32_D192_ED03));
            let mut last = vec![TaskState::NotFound; shared.ids as usize];
            let mut observed = 0u64;
            while !shared.done.load(Ordering::SeqCst) {
                let id = rng.below(shared.ids);
                let now = shared.rec.query_task_state(&id).await;
                let quick = shared.rec.query_task_state_quick(&id).await;
                let prev = last[id as usize];
                if !observed_move_allowed(prev, now) {
                    shared.violation(&format!("id {id}: observed {prev:?} then {now:?}"));
                }
                // A quick Success/Failed answer after a full one must be consistent with
                // the moves too (quick may say Working for NotFound).
                if quick != TaskState::Working && !observed_move_allowed(now, quick) {
                    shared.violation(&format!("id {id}: full {now:?} then quick {quick:?}"));
                }
                last[id as usize] = if quick == TaskState::Working {
                    now
                } else {
                    quick
                };
                observed += 1;
                if observed % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            observed
        });
    }
    bounded("launchers", async {
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    })
    .await;
    shared.done.store(true, Ordering::SeqCst);
    let mut total_observed = 0;
    bounded("observers", async {
        while let Some(r) = observers.join_next().await {
            total_observed += r.unwrap();
        }
    })
    .await;
    assert!(total_observed > 0);
    assert_eq!(shared.violations.load(Ordering::SeqCst), 0);
    for i in 0..ids as usize {
        assert_eq!(shared.successes[i].load(Ordering::SeqCst), 1, "id {i}");
        // Every run that did not succeed failed or panicked, and was relaunched.
        assert!(shared.runs[i].load(Ordering::SeqCst) >= 1);
    }
    let counts = shared.rec.counts().await;
    assert_eq!(
        (counts.success, counts.working, counts.failed),
        (ids as usize, 0, 0)
    );
}

/// Duplicate launchers and duplicate revokers hammer a few ids for a fixed number of
/// rounds; futures check at-most-once success and revoke inside themselves.
async fn revoke_loops(ids: u64, workers: u64, rounds: u64, seed: u64) {
    let shared = Shared::new(ids);
    let mut set = tokio::task::JoinSet::new();
    for w in 0..workers {
        let shared = shared.clone();
        set.spawn(async move {
            let mut rng = Rng(seed ^ (w + 7).wrapping_mul(0x94D0_49BB_1331_11EB));
            for _ in 0..rounds {
                let id = rng.below(shared.ids);
                match rng.below(4) {
                    0 => {
                        let fut = shared.task(id, Rng(rng.next() | 1));
                        let _ = shared.rec.launch(id, fut).await;
                    }
                    1 => {
                        let fut = shared.task(id, Rng(rng.next() | 1));
                        // launch_block in a spawned task so a panic stays there.
                        let rec = shared.rec.clone();
                        let _ = tokio::spawn(async move {
                            let _ = rec.launch_block(id, fut).await;
                        })
                        .await;
                    }
                    2 => {
                        let fut = shared.revoke(id, Rng(rng.next() | 1));
                        let _ = shared.rec.revoke_task_block(id, fut).await;
                    }
                    _ => {
                        let fut = shared.revoke(id, Rng(rng.next() | 1));
                        let _ = shared.rec.revoke_task(id, fut).await;
                    }
                }
                random_yields(&mut rng, 3).await;
            }
        });
    }
    bounded("revoke loops", async {
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    })
    .await;
    // Spawned tasks and revokes still settle; nothing may stay Working or Revoking.
    bounded("settling", async {
        loop {
            let c = shared.rec.counts().await;
            if c.working == 0 && c.revoking == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(shared.violations.load(Ordering::SeqCst), 0);
    for id in 0..ids {
        let i = id as usize;
        let live =
            shared.successes[i].load(Ordering::SeqCst) - shared.revokes[i].load(Ordering::SeqCst);
        let state = shared.rec.query_task_state(&id).await;
        // One live success exactly when the record says Success.
        assert_eq!(
            live == 1,
            state == TaskState::Success,
            "id {id}: live {live}, {state:?}"
        );
        assert!(live <= 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_launch_relaunch_query_multi_thread() {
    launch_until_all_succeed(200, 4, 2, 0x5EED_0001).await;
}

#[tokio::test(flavor = "current_thread")]
async fn stress_launch_relaunch_query_current_thread() {
    launch_until_all_succeed(100, 3, 1, 0x5EED_0002).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_revoke_loops_multi_thread() {
    revoke_loops(16, 6, 3000, 0x5EED_0003).await;
}

#[tokio::test(flavor = "current_thread")]
async fn stress_revoke_loops_current_thread() {
    revoke_loops(8, 4, 2000, 0x5EED_0004).await;
}
