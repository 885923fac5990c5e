//! A page of 20 failed ids among many: `list_page` against what a user had before it,
//! `for_each_in_state` keeping the first 20 (the visitor cannot stop, so it sees every
//! id), in one run. Prints medians; `ATR_LIST_IDS` sets the number of failed ids
//! (default 1,000,000); a run as a test (`cargo test --benches`) uses 10,000.
//!
//! Run: `cargo bench -p atr_bench_lab --bench listing`.

use std::time::{Duration, Instant};

use async_tasks_recorder::{AsyncTasksRecorder, TaskState};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let ids: u64 = if bench_mode {
        std::env::var("ATR_LIST_IDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    } else {
        10_000
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let rec = AsyncTasksRecorder::new();
        for id in 0..ids {
            let _ = rec.launch_block(id, async { Err::<(), ()>(()) }).await;
        }
        let mut visit = Vec::new();
        for _ in 0..11 {
            let started = Instant::now();
            let mut page = Vec::with_capacity(20);
            rec.for_each_in_state(TaskState::Failed, |id| {
                if page.len() < 20 {
                    page.push(*id);
                }
            })
            .await;
            visit.push(started.elapsed());
            assert_eq!(page.len(), 20);
        }
        let mut first = Vec::new();
        for _ in 0..101 {
            let started = Instant::now();
            let page = rec.list_page(TaskState::Failed, None, 20).await;
            first.push(started.elapsed());
            assert_eq!(page.ids.len(), 20);
        }
        // Every page of the listing, to the end.
        let mut all = Vec::new();
        let mut cursor = None;
        let mut listed = 0u64;
        loop {
            let started = Instant::now();
            let page = rec.list_page(TaskState::Failed, cursor.as_ref(), 20).await;
            all.push(started.elapsed());
            listed += page.ids.len() as u64;
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(listed, ids);
        let pages = all.len();
        let mut sorted = all.clone();
        sorted.sort();
        let p99 = sorted[(pages - 1) * 99 / 100];
        println!("failed ids: {ids}");
        println!(
            "for_each_in_state, first 20: median {:?} (11 runs)",
            median(visit.clone())
        );
        println!(
            "list_page, first page of 20: median {:?} (101 runs)",
            median(first.clone())
        );
        println!(
            "list_page, every page of 20 to the end: median {:?}, p99 {p99:?} ({pages} pages)",
            median(all)
        );
        println!(
            "ratio for_each / list_page (first page): {:.0}x",
            median(visit).as_secs_f64() / median(first).as_secs_f64()
        );
    });
}
