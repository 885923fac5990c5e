//! loom models of the crate's own synchronisation: the per-shard locks, the moves
//! between phase tables, the drop guards, and the all-shard snapshot of `counts`.
//!
//! Built only with `RUSTFLAGS="--cfg atr_loom"`, where the crate's `sync` shim swaps
//! std's `RwLock` and `Arc` for loom's and uses 2 shards. The recorder is driven through
//! its public runtime-free entry points (`launch_block`, `revoke_task_block`, queries),
//! whose futures complete in one poll when the user future is ready, so every
//! interleaving loom explores is one of the crate's own lock acquisitions.
//!
//! What is assumed of dependencies: hashbrown's `HashTable` is a plain single-threaded
//! table (only touched under our locks), and foldhash's hasher is immutable after
//! construction.
//!
//! Run: `RUSTFLAGS="--cfg atr_loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release --test loom`
#![cfg(atr_loom)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use async_tasks_recorder::{AsyncTasksRecorder, RevokeFailReason, TaskState};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

/// Polls a future that must complete in one poll.
fn now<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("expected to complete in one poll"),
    }
}

fn counting(
    runs: &Arc<AtomicUsize>,
    ok: bool,
) -> impl Future<Output = Result<(), ()>> + Send + 'static {
    let runs = runs.clone();
    async move {
        runs.fetch_add(1, Ordering::SeqCst);
        if ok {
            Ok(())
        } else {
            Err(())
        }
    }
}

#[test]
fn racing_launches_run_once() {
    loom::model(|| {
        let rec = AsyncTasksRecorder::<u64>::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let rec = rec.clone();
                let runs = runs.clone();
                thread::spawn(move || now(rec.launch_block(7, counting(&runs, true))).is_ok())
            })
            .collect();
        // A concurrent reader never sees an id vanish once launched.
        let first = now(rec.query_task_state(&7));
        let second = now(rec.query_task_state(&7));
        if first != TaskState::NotFound {
            assert_ne!(second, TaskState::NotFound);
        }
        if first == TaskState::Success {
            assert_eq!(second, TaskState::Success);
        }
        let accepted = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|a| *a)
            .count();
        assert!(accepted >= 1);
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "a succeeded id never runs again"
        );
        assert_eq!(now(rec.query_task_state(&7)), TaskState::Success);
    });
}

#[test]
fn failure_then_relaunch_race() {
    loom::model(|| {
        let rec = AsyncTasksRecorder::<u64>::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let failing = {
            let rec = rec.clone();
            let runs = runs.clone();
            thread::spawn(move || now(rec.launch_block(1, counting(&runs, false))).is_ok())
        };
        let succeeding = {
            let rec = rec.clone();
            let runs = runs.clone();
            thread::spawn(move || now(rec.launch_block(1, counting(&runs, true))).is_ok())
        };
        let failed_ran = failing.join().unwrap();
        let success_ran = succeeding.join().unwrap();
        let state = now(rec.query_task_state(&1));
        // If the successful launch ran, the id is Success whatever the order; if only the
        // failing one ran, it is Failed.
        match (failed_ran, success_ran) {
            (_, true) => assert_eq!(state, TaskState::Success),
            // The failing one ran and the other was refused while it was Working.
            (true, false) => assert_eq!(state, TaskState::Failed),
            (false, false) => unreachable!("one of them must run"),
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            usize::from(failed_ran) + usize::from(success_ran)
        );
    });
}

#[test]
fn racing_revokes_and_launch() {
    loom::model(|| {
        let rec = AsyncTasksRecorder::<u64>::new();
        assert!(now(rec.launch_block(3, async { Ok::<(), ()>(()) })).is_ok());
        let revoked = Arc::new(AtomicUsize::new(0));
        let revokers: Vec<_> = (0..2)
            .map(|_| {
                let rec = rec.clone();
                let revoked = revoked.clone();
                thread::spawn(move || {
                    let fut = async move {
                        revoked.fetch_add(1, Ordering::SeqCst);
                        Ok::<(), ()>(())
                    };
                    match now(rec.revoke_task_block(3, fut)) {
                        Ok(()) => true,
                        Err(RevokeFailReason::NotSuccess(_) | RevokeFailReason::Revoking(_)) => {
                            false
                        }
                        Err(RevokeFailReason::RevokeTaskError(())) => unreachable!(),
                    }
                })
            })
            .collect();
        let runs = Arc::new(AtomicUsize::new(0));
        let launched = now(rec.launch_block(3, counting(&runs, true))).is_ok();
        let ok_revokes = revokers
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|r| *r)
            .count();
        assert_eq!(
            revoked.load(Ordering::SeqCst),
            ok_revokes,
            "refused revokes never run"
        );
        assert!(ok_revokes >= 1);
        // Each success is revoked at most once: revokes ≤ successes (1 + relaunch).
        assert!(ok_revokes <= 1 + usize::from(launched));
        let state = now(rec.query_task_state(&3));
        let live = 1 + usize::from(launched) - ok_revokes;
        assert_eq!(state == TaskState::Success, live == 1);
        assert_eq!(state == TaskState::NotFound, live == 0);
    });
}

#[test]
fn dropped_blocking_calls_settle() {
    loom::model(|| {
        let rec = AsyncTasksRecorder::<u64>::new();
        let t = {
            let rec = rec.clone();
            thread::spawn(move || {
                // Poll once with a future that never ends, then drop: the guard settles.
                let mut fut =
                    Box::pin(rec.launch_block(1, std::future::pending::<Result<(), ()>>()));
                let polled = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
                assert!(polled.is_pending());
                drop(fut);
            })
        };
        // The id only moves NotFound -> Working -> Failed, and queries are
        // linearizable: two reads in a row never see it go back.
        let order = |s: TaskState| match s {
            TaskState::NotFound => 0,
            TaskState::Working => 1,
            TaskState::Failed => 2,
            TaskState::Success => panic!("nothing here succeeds"),
        };
        let first = order(now(rec.query_task_state(&1)));
        let second = order(now(rec.query_task_state(&1)));
        assert!(first <= second, "went back from {first} to {second}");
        t.join().unwrap();
        assert_eq!(now(rec.query_task_state(&1)), TaskState::Failed);
    });
}

#[test]
fn counts_are_one_instant() {
    loom::model(|| {
        let rec = AsyncTasksRecorder::<u64>::new();
        // Two ids in different shards; one thread fails the first, then succeeds the
        // second. A snapshot can never show the second's success without the first's
        // failure; reading the shards one at a time (without holding both) could.
        // Shards are read in index order, so the first id lives in shard 0 and the second
        // in shard 1: that is the order in which a non-snapshot read could go wrong.
        let first = (0..64u64)
            .find(|id| rec.loom_shard_of(id) == 0)
            .expect("an id in shard 0");
        let second = (0..64u64)
            .find(|id| rec.loom_shard_of(id) == 1)
            .expect("an id in shard 1");
        let mover = {
            let rec = rec.clone();
            thread::spawn(move || {
                assert!(now(rec.launch_block(first, async { Err::<(), ()>(()) })).is_ok());
                assert!(now(rec.launch_block(second, async { Ok::<(), ()>(()) })).is_ok());
            })
        };
        let c = now(rec.counts());
        if c.success == 1 {
            assert_eq!(
                c.failed, 1,
                "a success of the second id without the first's failure"
            );
        }
        assert!(c.total() <= 2);
        mover.join().unwrap();
        let c = now(rec.counts());
        assert_eq!((c.working, c.success, c.failed, c.revoking), (0, 1, 1, 0));
    });
}
