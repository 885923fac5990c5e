//! Retention (issue 6): memory per record before and after expiry, and whether expiry
//! work stalls queries.
//!
//! 1. **Memory** (paused clock, current-thread runtime, so expiry happens exactly when
//!    the clock is moved): live heap bytes per record, counted by the same allocator as
//!    `benches/memory.rs`, for 1,000,000 `Success` records (`u64` ids), with and
//!    without `track_details`:
//!    - `plain`: no retention (the default recorder);
//!    - `full`: `success_ttl(60 s)` before expiry (a timed record, its queue entry and,
//!      with details, the side-table entry);
//!    - `tombstone`: the same after expiry with `SuccessExpiry::Tombstone`;
//!    - `forgotten`: after expiry with `SuccessExpiry::Forget`.
//! 2. **Stall** (real clock, two workers): 1,000,000 `Success` records plus 100,000
//!    `Failed` probe ids (failures never expire here). One task queries random probe
//!    ids in a loop and records each query's latency, once while nothing expires
//!    (success TTL one hour) and once while all 1,000,000 successes expire (`Forget`,
//!    TTL 1.5 s, the querying window covering the whole expiry). The probes take the
//!    same path through the same shards in both cases, so the difference is what the
//!    sweeper's work costs the queries. Reported: latency percentiles and maximum, and
//!    how many records expired inside the window.
//!
//! Prints a table and writes it to `target/criterion/retention.txt` (smoke mode:
//! `retention-smoke.txt`, 1,000 records).

#[allow(dead_code)]
mod common;

#[path = "rounds/mod.rs"]
mod rounds;

use std::time::{Duration, Instant};

use async_tasks_recorder::{AsyncTasksRecorder, SuccessExpiry, TaskState};
use common::{id, ok_job, on_workers, runtime, size, smoke, write_report};

#[global_allocator]
static ALLOC: alloc_counter::Counting = alloc_counter::Counting;

fn main() {
    if !rounds::selected("retention") {
        return;
    }
    let n = size(1_000_000);
    let mut table = memory(n);
    table.push('\n');
    table.push_str(&stall(n));
    println!("\n{table}");
    write_report(
        if smoke() {
            "retention-smoke.txt"
        } else {
            "retention.txt"
        },
        &table,
    );
}

fn live() -> isize {
    alloc_counter::live_bytes() as isize
}

/// Bytes per record in each configuration (see the module docs).
fn memory(n: usize) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let per = |bytes: isize| bytes as f64 / n as f64;
    let mut out = format!(
        "retention memory: live heap bytes per Success record, {n} records (u64 ids)\n\n\
         {:<16} {:>8} {:>8} {:>11} {:>11}\n",
        "track_details", "plain", "full", "tombstone", "forgotten"
    );
    for details in [false, true] {
        let plain = rt.block_on(async {
            let before = live();
            let rec: AsyncTasksRecorder<u64> =
                AsyncTasksRecorder::builder().track_details(details).build();
            fill(&rec, n).await;
            let bytes = live() - before;
            drop(rec);
            bytes
        });
        let mut cells = Vec::new();
        for expiry in [SuccessExpiry::Tombstone, SuccessExpiry::Forget] {
            let (full, after) = rt.block_on(async {
                let before = live();
                let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::builder()
                    .track_details(details)
                    .success_ttl(Duration::from_secs(60))
                    .success_expiry(expiry)
                    .build();
                fill(&rec, n).await;
                let full = live() - before;
                // The paused clock jumps to each sweeper tick.
                tokio::time::sleep(Duration::from_secs(70)).await;
                let status = rec.status(&id(0)).await;
                match expiry {
                    SuccessExpiry::Forget => {
                        assert_eq!(rec.counts().await.total(), 0, "all forgotten")
                    }
                    _ => {
                        assert_eq!(status.phase.state(), TaskState::Success);
                        assert!(status.since.is_none(), "a tombstone has no details");
                    }
                }
                let after = live() - before;
                drop(rec);
                (full, after)
            });
            cells.push((full, after));
        }
        out.push_str(&format!(
            "{:<16} {:>8.1} {:>8.1} {:>11.1} {:>11.1}\n",
            details,
            per(plain),
            per(cells[0].0),
            per(cells[0].1),
            per(cells[1].1),
        ));
    }
    out.push_str(
        "\nplain: no retention; full: success_ttl(60 s) before expiry; tombstone / forgotten:\n\
         after expiry with SuccessExpiry::Tombstone / Forget (tables and queues shrink as\n\
         they empty; what is left for `forgotten` is the shards' minimum table sizes).\n",
    );
    out
}

async fn fill(rec: &AsyncTasksRecorder<u64>, n: usize) {
    for i in 0..n as u64 {
        assert!(rec.launch_block(id(i), ok_job()).await.is_ok());
    }
}

/// Query latencies with and without a mass expiry running.
fn stall(n: usize) -> String {
    let probes = (n / 10) as u64;
    let mut out = format!(
        "retention stall: one task querying random Failed probe ids ({probes}) among {n} \
         Success records, 2 workers\n\n\
         {:<22} {:>9} {:>7} {:>7} {:>9} {:>10} {:>8} {:>9} {:>8}\n",
        "window",
        "queries",
        "p50 ns",
        "p99 ns",
        "p99.9 ns",
        "p99.99 ns",
        "max µs",
        "expired",
        "fill ms"
    );
    for expiring in [false, true] {
        let rt = runtime();
        let row = on_workers(&rt, async move {
            let ttl = if expiring {
                Duration::from_millis(1500)
            } else {
                Duration::from_secs(3600)
            };
            let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::builder()
                .success_ttl(ttl)
                .success_expiry(SuccessExpiry::Forget)
                .build();
            let start = Instant::now();
            for i in 0..n as u64 {
                assert!(rec.launch_block(id(i), ok_job()).await.is_ok());
            }
            let fill = start.elapsed();
            for i in 0..probes {
                let failing = async { Err::<(), ()>(()) };
                assert!(rec.launch_block(id(n as u64 + i), failing).await.is_ok());
            }
            let at_start = rec.counts().await.success;
            // The window ends well after the last record's TTL and sweeper tick.
            let window_end =
                start + Duration::from_millis(1500) + fill + Duration::from_millis(400);
            let mut lat = Vec::with_capacity(1 << 20);
            let mut x = 0x2545_F491_4F6C_DD1Du64;
            while Instant::now() < window_end {
                for _ in 0..64 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let q = id(n as u64 + x % probes);
                    let t = Instant::now();
                    let state = std::hint::black_box(rec.query_task_state(&q).await);
                    debug_assert_eq!(state, TaskState::Failed);
                    lat.push(t.elapsed().as_nanos() as u64);
                }
                // Let the sweeper (on the other worker, or this one) run.
                tokio::task::yield_now().await;
            }
            let expired = at_start - rec.counts().await.success;
            lat.sort_unstable();
            let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
            format!(
                "{:<22} {:>9} {:>7} {:>7} {:>9} {:>10} {:>8.1} {:>9} {:>8}\n",
                if expiring {
                    "all records expiring"
                } else {
                    "nothing expiring"
                },
                lat.len(),
                pct(0.5),
                pct(0.99),
                pct(0.999),
                pct(0.9999),
                *lat.last().unwrap_or(&0) as f64 / 1000.0,
                expired,
                fill.as_millis(),
            )
        });
        out.push_str(&row);
    }
    out.push_str(
        "\nThe sweeper expires at most 64 records per shard-lock hold and yields between\n\
         batches; a query waits at most for one batch of its own shard.\n",
    );
    out
}
