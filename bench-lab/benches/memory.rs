//! Heap bytes per finished record: each competitor is filled with `n` Success records
//! (1,000,000; 1,000 in smoke mode) and the live heap bytes after, minus before, are
//! divided by `n`. A counting global allocator (the `alloc_counter` helper package next
//! to this file) keeps the live byte count.
//!
//! Criterion cannot time memory, so this bench prints a table and writes it to
//! `target/criterion/memory.txt`. Two fillings are measured per competitor:
//! `launch` (spawned jobs, then waiting for all to read Success, as in the `lifecycle`
//! workload) and `launch_block` (jobs run inline, one at a time).
//!
//! Ours is measured twice: as `AsyncTasksRecorder::new()` builds it (`ours`), and
//! built with `.track_details(true)` (`ours_details`), where a Success record also
//! keeps its attempt count and the time it succeeded, in a side table.

// Shared with benches/recorder.rs, which uses the parts this bench does not.
#[allow(dead_code)]
mod common;

#[path = "rounds/mod.rs"]
mod rounds;

use std::future::Future;
use std::time::Duration;

use tokio::runtime::Runtime;

use common::{
    fill_block, id, launch_and_wait, ok_job, on_workers, runtime, size, smoke, write_report,
    MinimalMap, Ours, Query, Recorder, St, StateMap, V2,
};

#[global_allocator]
static ALLOC: alloc_counter::Counting = alloc_counter::Counting;

fn main() {
    if !rounds::selected("memory") {
        return;
    }

    let n = size(1_000_000);
    check_details();
    warm_up();

    let control = measure(|rt| {
        on_workers(rt, async move {
            for _ in 0..n {
                tokio::spawn(ok_job());
            }
            // Let every job run and be freed.
            tokio::time::sleep(Duration::from_millis(50)).await;
        })
    })
    .1;

    let rows = [
        row::<Ours>(n),
        row::<OursDetails>(n),
        row::<V2>(n),
        row::<StateMap>(n),
        row::<MinimalMap>(n),
    ];
    let v2 = rows
        .iter()
        .find(|r| r.0 == V2::NAME)
        .map(|r| r.1)
        .expect("the v2_0_2 row");

    let mut table = format!(
        "memory: live heap bytes per Success record, {n} records (u64 ids)\n\n\
         {:<12} {:>22} {:>22} {:>14}\n",
        "competitor", "bytes/record (launch)", "bytes/record (block)", "vs v2_0_2"
    );
    for (name, via_launch, via_block) in rows {
        table.push_str(&format!(
            "{name:<12} {via_launch:>22.1} {via_block:>22.1} {:>13.2}x\n",
            via_launch / v2
        ));
    }
    table
        .push_str("\nours_details: built with AsyncTasksRecorder::builder().track_details(true)\n");
    table.push_str(&format!(
        "control: bare tokio::spawn of {n} jobs leaves {control} bytes live in the runtime\n"
    ));
    println!("\n{table}");
    write_report(
        if smoke() {
            "memory-smoke.txt"
        } else {
            "memory.txt"
        },
        &table,
    );
}

/// Runs a runtime once, so that what the process allocates lazily and keeps (thread
/// locals of the main thread, the allocator counters' first touch) is there before
/// anything is measured.
fn warm_up() {
    let _ = measure(|rt| {
        on_workers(rt, async {
            let rec = MinimalMap::create();
            launch_and_wait(&rec, 10_000).await;
        });
    });
}

/// Frees what the `scc` maps (2.0.2, state_map, minimal_map) retired but left to their
/// epoch-based collector: a few epochs are forced from this thread, the only one left
/// (the runtime's workers have exited, handing their garbage over).
fn reclaim_deferred() {
    for _ in 0..64 {
        let guard = scc::ebr::Guard::new();
        guard.accelerate();
        drop(guard);
    }
}

/// Live bytes added by `build`, which runs with a fresh two-worker runtime; what it
/// returns is kept alive while measuring. The runtime is shut down (its workers joined)
/// and the deferred frees of `scc` are forced before the second reading, so that only
/// what the returned value holds is counted. The control row (bare spawns, nothing
/// kept) shows what is left otherwise.
fn measure<T>(build: impl FnOnce(&Runtime) -> T) -> (T, isize) {
    reclaim_deferred();
    let before = alloc_counter::live_bytes();
    let rt = runtime();
    let built = build(&rt);
    rt.shutdown_timeout(Duration::from_secs(30));
    reclaim_deferred();
    let after = alloc_counter::live_bytes();
    (built, after as isize - before as isize)
}

/// `(name, bytes per record via launch, bytes per record via launch_block)`.
fn row<R: Recorder>(n: usize) -> (&'static str, f64, f64) {
    let (rec, launched) = measure(|rt| {
        on_workers(rt, async move {
            let rec = R::create();
            launch_and_wait(&rec, n).await;
            rec
        })
    });
    drop(rec);
    let (rec, blocked) = measure(|rt| on_workers(rt, fill_block::<R>(n, |_| false)));
    drop(rec);
    let per = |bytes: isize| bytes as f64 / n as f64;
    (R::NAME, per(launched), per(blocked))
}

/// This crate built with `.track_details(true)`: Success records keep their attempts
/// and timestamp in a side table. Driven exactly as `Ours`.
#[derive(Debug, Clone)]
struct OursDetails(Ours);

impl Query for OursDetails {
    const NAME: &'static str = "ours_details";

    fn query(&self, id: u64) -> impl Future<Output = St> + Send + '_ {
        self.0.query(id)
    }
}

impl Recorder for OursDetails {
    fn create() -> Self {
        OursDetails(Ours(
            async_tasks_recorder::AsyncTasksRecorder::builder()
                .track_details(true)
                .build(),
        ))
    }

    fn launch<F>(&self, id: u64, task: F) -> impl Future<Output = bool> + Send + '_
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        self.0.launch(id, task)
    }

    fn launch_block<F>(&self, id: u64, task: F) -> impl Future<Output = bool> + Send + '_
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        self.0.launch_block(id, task)
    }

    fn revoke_block<F>(&self, id: u64, task: F) -> impl Future<Output = bool> + Send + '_
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        self.0.revoke_block(id, task)
    }
}

/// Makes sure the two rows of ours measure what they say: with details, a Success
/// record reports its attempts and when it succeeded; without, neither.
fn check_details() {
    let rt = runtime();
    on_workers(&rt, async {
        for (rec, details) in [(Ours::create(), false), (OursDetails::create().0, true)] {
            for i in 0..2 {
                assert!(rec.launch_block(id(i), ok_job()).await);
            }
            let status = rec.0.status(&id(1)).await;
            assert_eq!(status.phase, async_tasks_recorder::TaskPhase::Success);
            assert_eq!(status.attempts.is_some(), details, "attempts: {status:?}");
            assert_eq!(status.since.is_some(), details, "since: {status:?}");
        }
    });
}
