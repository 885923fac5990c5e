//! Criterion benchmarks of `async_tasks_recorder` 3 side by side with its competitors:
//! `async_tasks_recorder` 2.0.2, `async_tasks_state_map` 1.0.1, a minimal recorder on
//! one `scc::HashMap` (`minimal_map`), the floor of every workload (`sharded_map`: 64
//! locked shards of one `HashMap` each, updated in place), bare `tokio::spawn`
//! (`bare_spawn`, what `lifecycle` costs with nothing recorded) and, for the queries,
//! an `RwLock<HashMap>` (`rwlock_map`). benches/interleaved.rs runs the same
//! workloads in interleaved rounds, which is what the ratios of BENCHMARKS.md come
//! from.
//!
//! Workloads: `lifecycle`, `launch_wait`, `query_hit`, `query_miss`, `revoke_cycle`,
//! `hot_key`, `iterate_failed`; memory is measured by the `memory` bench. See BENCHMARKS.md for
//! what each one does and for the numbers.
//!
//! `cargo bench -p atr_bench_lab --bench recorder` runs the full sizes; `ATR_BENCH_SMOKE=1` (or
//! criterion's test mode, `cargo test --benches`) runs sizes / 1000 with short timings.

mod common;
#[path = "rounds/mod.rs"]
mod rounds;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use tokio::runtime::Runtime;

use async_tasks_recorder::{LaunchOptions, TaskPhase};
use common::{
    fill_block, id, launch_and_wait, ok_job, on_workers, query_arrays, runtime, size, smoke,
    write_report, ByteSlots, CellMap, MinimalMap, Ours, PhaseTables, Query, Recorder, Rng,
    RwLockMap, ShardedMap, St, StateMap, V2,
};

fn main() {
    let mut c = config();
    let rt = runtime();
    lifecycle(&mut c, &rt);
    launch_wait(&mut c, &rt);
    queries(&mut c, &rt, true);
    queries(&mut c, &rt, false);
    revoke_cycle(&mut c, &rt);
    hot_key(&mut c, &rt);
    iterate_failed(&mut c, &rt);
    c.final_summary();
}

/// Ten samples, eight seconds in all (one iteration is a whole workload of
/// 10^5..10^6 operations, so the numbers are stable with few samples); in smoke mode
/// criterion's minimum. Command-line options (`--quick`, `--sample-size`, filters)
/// override these.
fn config() -> Criterion {
    let c = Criterion::default().sample_size(10).without_plots();
    let c = if smoke() {
        c.warm_up_time(Duration::from_millis(20))
            .measurement_time(Duration::from_millis(100))
            .nresamples(1_000)
    } else {
        c.warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(8))
    };
    c.configure_from_args()
}

/// A benchmark group; in smoke mode its name gets a `-smoke` suffix, so that smoke runs
/// neither overwrite nor get compared with the saved results of full runs.
fn group<'a>(c: &'a mut Criterion, name: &str, elements: usize) -> BenchmarkGroup<'a, WallTime> {
    let name = if smoke() {
        format!("{name}-smoke")
    } else {
        name.to_string()
    };
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(elements as u64))
        .sampling_mode(SamplingMode::Flat);
    g
}

// ---------------------------------------------------------------------------------
// lifecycle
// ---------------------------------------------------------------------------------

/// Launch `n` fresh ids (trivial `Ok` job) from one task, then wait until all read
/// `Success`. A fresh recorder per iteration, created and dropped outside the timing.
fn lifecycle(c: &mut Criterion, rt: &Runtime) {
    let n = size(200_000);
    let mut g = group(c, "lifecycle", n);
    lifecycle_one::<Ours>(&mut g, rt, n);
    lifecycle_one::<V2>(&mut g, rt, n);
    lifecycle_one::<StateMap>(&mut g, rt, n);
    lifecycle_one::<MinimalMap>(&mut g, rt, n);
    lifecycle_one::<ShardedMap>(&mut g, rt, n);
    lifecycle_one::<PhaseTables>(&mut g, rt, n);
    lifecycle_one::<CellMap>(&mut g, rt, n);
    lifecycle_one::<ByteSlots>(&mut g, rt, n);
    g.bench_function("bare_spawn", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| rounds::bare_spawn(rt, n)).sum())
    });
    g.finish();
}

fn lifecycle_one<R: Recorder>(g: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, n: usize) {
    g.bench_function(R::NAME, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let rec = R::create();
                let (elapsed, rec) = on_workers(rt, async move {
                    let start = Instant::now();
                    launch_and_wait(&rec, n).await;
                    (start.elapsed(), rec)
                });
                total += elapsed;
                drop(rec);
            }
            total
        });
    });
}

// ---------------------------------------------------------------------------------
// launch_wait
// ---------------------------------------------------------------------------------

/// Launch `n` fresh ids (trivial `Ok` job) from one task, each awaited by exactly one
/// waiter; the iteration ends when every waiter has its answer.
///
/// - `ours`: per id, `launch` then spawn a task running `recorder.wait(&id)`; then the
///   waiters' `JoinHandle`s are awaited in launch order (each must say `Success`).
/// - `ours_handle`: per id, `launch_with` (no options); then the `TaskHandle`s are
///   awaited in launch order (each must be `Ok(())`).
/// - `bare_spawn`: per id, `tokio::spawn` of the job; then the `JoinHandle`s are
///   awaited in launch order. The floor: one spawned task and one awaited handle per
///   id, nothing recorded.
///
/// A fresh recorder per iteration, created and dropped outside the timing; the answers
/// are counted inside the timed task and checked after it.
fn launch_wait(c: &mut Criterion, rt: &Runtime) {
    let n = size(200_000);
    let mut g = group(c, "launch_wait", n);
    launch_wait_one(&mut g, rt, n, "ours", launch_wait_ours);
    launch_wait_one(&mut g, rt, n, "ours_handle", launch_wait_handle);
    launch_wait_one(&mut g, rt, n, "bare_spawn", launch_wait_bare);
    g.finish();
}

/// Runs one `launch_wait` round of `driver` per iteration; the driver returns its time
/// and how many of its `n` waits ended as expected.
fn launch_wait_one<F, Fut>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    n: usize,
    name: &str,
    driver: F,
) where
    F: Fn(Ours, usize) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = (Duration, usize)> + Send + 'static,
{
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let rec = Ours::create();
                let (elapsed, ok, rec) = on_workers(rt, async move {
                    let (elapsed, ok) = driver(rec.clone(), n).await;
                    (elapsed, ok, rec)
                });
                assert_eq!(
                    ok, n,
                    "launch_wait/{name}: waits that did not end in success"
                );
                total += elapsed;
                drop(rec);
            }
            total
        });
    });
}

async fn launch_wait_ours(rec: Ours, n: usize) -> (Duration, usize) {
    let start = Instant::now();
    let mut waiters = Vec::with_capacity(n);
    for i in 0..n as u64 {
        if rec.0.launch(id(i), ok_job()).await.is_err() {
            panic!("ours: fresh id refused");
        }
        let rec = rec.clone();
        waiters.push(tokio::spawn(async move { rec.0.wait(&id(i)).await }));
    }
    let mut ok = 0;
    for waiter in waiters {
        if waiter.await.expect("waiter panicked").phase == TaskPhase::Success {
            ok += 1;
        }
    }
    (start.elapsed(), ok)
}

async fn launch_wait_handle(rec: Ours, n: usize) -> (Duration, usize) {
    let start = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n as u64 {
        match rec
            .0
            .launch_with(id(i), ok_job(), LaunchOptions::new())
            .await
        {
            Ok(handle) => handles.push(handle),
            Err(_) => panic!("ours_handle: fresh id refused"),
        }
    }
    let mut ok = 0;
    for handle in handles {
        if handle.await.is_ok() {
            ok += 1;
        }
    }
    (start.elapsed(), ok)
}

/// The recorder is not used (it is only created and dropped, outside the timing).
async fn launch_wait_bare(_: Ours, n: usize) -> (Duration, usize) {
    let start = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        handles.push(tokio::spawn(ok_job()));
    }
    let mut ok = 0;
    for handle in handles {
        if handle.await.expect("job panicked").is_ok() {
            ok += 1;
        }
    }
    (start.elapsed(), ok)
}

// ---------------------------------------------------------------------------------
// query_hit / query_miss
// ---------------------------------------------------------------------------------

/// `records` Success records `id(0..records)` built once per competitor; per iteration
/// two tasks query `per_task` precomputed random ids each, existing ones (`hit`) or
/// never-launched ones `id(records..2 * records)`.
fn queries(c: &mut Criterion, rt: &Runtime, hit: bool) {
    let records = size(1_000_000);
    let per_task = size(500_000);
    let arrays: [Arc<Vec<u64>>; 2] = [1, 2].map(|seed| {
        let mut rng = Rng::new(seed + if hit { 0 } else { 100 });
        let base = if hit { 0 } else { records as u64 };
        Arc::new(
            (0..per_task)
                .map(|_| id(base + rng.below(records as u64)))
                .collect(),
        )
    });
    let expect = if hit { St::Success } else { St::NotFound };
    let name = if hit { "query_hit" } else { "query_miss" };
    let mut g = group(c, name, 2 * per_task);
    query_one::<Ours>(
        &mut g,
        rt,
        || on_workers(rt, fill_block(records, never)),
        &arrays,
        expect,
    );
    query_one::<V2>(
        &mut g,
        rt,
        || on_workers(rt, fill_block(records, never)),
        &arrays,
        expect,
    );
    query_one::<StateMap>(
        &mut g,
        rt,
        || on_workers(rt, fill_block(records, never)),
        &arrays,
        expect,
    );
    query_one::<MinimalMap>(
        &mut g,
        rt,
        || on_workers(rt, fill_block(records, never)),
        &arrays,
        expect,
    );
    query_one::<ShardedMap>(
        &mut g,
        rt,
        || on_workers(rt, fill_block(records, never)),
        &arrays,
        expect,
    );
    if hit {
        query_one(&mut g, rt, || RwLockMap::filled(records), &arrays, expect);
    }
    g.finish();
}

fn never(_: u64) -> bool {
    false
}

fn query_one<Q: Query>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    build: impl Fn() -> Q,
    arrays: &[Arc<Vec<u64>>; 2],
    expect: St,
) {
    // Built on first use only, so that a filter skipping this benchmark skips the build.
    let mut built: Option<Q> = None;
    g.bench_function(Q::NAME, |b| {
        let rec = built.get_or_insert_with(&build).clone();
        b.iter_custom(|iters| {
            let rec = rec.clone();
            let arrays = arrays.clone();
            let expected: usize = arrays.iter().map(|a| a.len()).sum::<usize>() * iters as usize;
            let (elapsed, matched) = on_workers(rt, async move {
                let mut total = Duration::ZERO;
                let mut matched = 0;
                for _ in 0..iters {
                    let start = Instant::now();
                    matched += query_arrays(&rec, &arrays, expect).await;
                    total += start.elapsed();
                }
                (total, matched)
            });
            assert_eq!(matched, expected, "{}: wrong answers", Q::NAME);
            elapsed
        });
    });
}

// ---------------------------------------------------------------------------------
// revoke_cycle
// ---------------------------------------------------------------------------------

/// `n` ids, each `launch_block` (→ Success) then `revoke_task_block` (→ NotFound), split
/// over two tasks (even / odd ids). A fresh recorder per iteration; afterwards every id
/// is checked to read `NotFound` (outside the timing).
fn revoke_cycle(c: &mut Criterion, rt: &Runtime) {
    let n = size(100_000);
    let mut g = group(c, "revoke_cycle", n);
    revoke_one::<Ours>(&mut g, rt, n);
    revoke_one::<V2>(&mut g, rt, n);
    revoke_one::<StateMap>(&mut g, rt, n);
    revoke_one::<MinimalMap>(&mut g, rt, n);
    revoke_one::<ShardedMap>(&mut g, rt, n);
    revoke_one::<PhaseTables>(&mut g, rt, n);
    g.finish();
}

fn revoke_one<R: Recorder>(g: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, n: usize) {
    g.bench_function(R::NAME, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let rec = R::create();
                let (elapsed, rec) = on_workers(rt, async move {
                    let start = Instant::now();
                    let halves = [0u64, 1].map(|half| {
                        let rec = rec.clone();
                        tokio::spawn(async move {
                            for i in (half..n as u64).step_by(2) {
                                if !rec.launch_block(id(i), ok_job()).await {
                                    panic!("{}: launch refused", R::NAME);
                                }
                                if !rec.revoke_block(id(i), ok_job()).await {
                                    panic!("{}: revoke failed", R::NAME);
                                }
                            }
                        })
                    });
                    for half in halves {
                        half.await.expect("revoke task panicked");
                    }
                    (start.elapsed(), rec)
                });
                total += elapsed;
                let left = on_workers(rt, async move {
                    let mut left = 0;
                    for i in 0..n as u64 {
                        if rec.query(id(i)).await != St::NotFound {
                            left += 1;
                        }
                    }
                    left
                });
                assert_eq!(left, 0, "{}: ids not NotFound after revoke", R::NAME);
            }
            total
        });
    });
}

// ---------------------------------------------------------------------------------
// hot_key
// ---------------------------------------------------------------------------------

const HOT: u64 = 0x0ddba11;

/// How one hot-key round ended.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    accepted: usize,
    runs: usize,
    state: St,
}

/// Two tasks launch the same id `per_task` times each; the job counts its runs. Only
/// the launches are timed. Returns the time, the recorder and the run counter.
async fn hot_round<R: Recorder>(per_task: usize) -> (Duration, usize, R, Arc<AtomicUsize>) {
    let rec = R::create();
    let runs = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks = [0, 1].map(|_| {
        let rec = rec.clone();
        let runs = runs.clone();
        tokio::spawn(async move {
            let mut accepted = 0;
            for _ in 0..per_task {
                let runs = runs.clone();
                let job = async move {
                    runs.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                };
                if rec.launch(HOT, job).await {
                    accepted += 1;
                }
            }
            accepted
        })
    });
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await.expect("launch task panicked");
    }
    (start.elapsed(), accepted, rec, runs)
}

/// Waits (at most `patience`) until the job has run and the id reads a final state.
async fn settle<R: Recorder>(rec: &R, runs: &AtomicUsize, patience: Duration) -> St {
    let until = Instant::now() + patience;
    loop {
        let state = rec.query(HOT).await;
        if (runs.load(Ordering::SeqCst) > 0 && state != St::Working) || Instant::now() >= until {
            return state;
        }
        tokio::time::sleep(Duration::from_micros(50)).await;
    }
}

fn hot_key(c: &mut Criterion, rt: &Runtime) {
    let per_task = size(100_000);
    let mut report = format!(
        "hot_key: 2 tasks x {per_task} launches of one id per round; outcome of the probe \
         rounds (and, for ours, of every timed round: asserted)\n\n\
         {:<12} {:>7} {:>16} {:>12}  final states\n",
        "competitor", "rounds", "accepted (min-max)", "runs (min-max)"
    );
    let mut g = group(c, "hot_key", 2 * per_task);
    hot_one::<Ours>(&mut g, rt, per_task, true, &mut report);
    hot_one::<V2>(&mut g, rt, per_task, false, &mut report);
    hot_one::<StateMap>(&mut g, rt, per_task, false, &mut report);
    hot_one::<MinimalMap>(&mut g, rt, per_task, false, &mut report);
    hot_one::<ShardedMap>(&mut g, rt, per_task, false, &mut report);
    g.finish();
    if report.lines().count() > 3 {
        println!("\n{report}");
        write_report(
            if smoke() {
                "hot_key-smoke.txt"
            } else {
                "hot_key.txt"
            },
            &report,
        );
    }
}

fn check_ours(o: Outcome) {
    assert_eq!(o.runs, 1, "ours: the hot job must run exactly once: {o:?}");
    assert_eq!(o.accepted, 1, "ours: exactly one launch accepted: {o:?}");
    assert_eq!(
        o.state,
        St::Success,
        "ours: the hot id must end Success: {o:?}"
    );
}

/// The probe: a few rounds whose outcome is waited for and recorded (one report line).
/// A competitor that leaves the id Working is given `patience` and reported as it is
/// then.
fn probe<R: Recorder>(rt: &Runtime, per_task: usize, strict: bool) -> String {
    let patience = if smoke() {
        Duration::from_millis(20)
    } else {
        Duration::from_millis(500)
    };
    let probes = if smoke() { 2 } else { 5 };
    let outcomes: Vec<Outcome> = (0..probes)
        .map(|_| {
            on_workers(rt, async move {
                let (_, accepted, rec, runs) = hot_round::<R>(per_task).await;
                let state = settle(&rec, &runs, patience).await;
                Outcome {
                    accepted,
                    runs: runs.load(Ordering::SeqCst),
                    state,
                }
            })
        })
        .collect();
    if strict {
        outcomes.iter().copied().for_each(check_ours);
    }
    let range = |f: fn(&Outcome) -> usize| {
        let min = outcomes.iter().map(f).min().unwrap_or(0);
        let max = outcomes.iter().map(f).max().unwrap_or(0);
        format!("{min}-{max}")
    };
    let mut states: Vec<String> = Vec::new();
    for s in [St::Success, St::Working, St::Failed, St::NotFound] {
        let k = outcomes.iter().filter(|o| o.state == s).count();
        if k > 0 {
            states.push(format!("{s:?} x{k}"));
        }
    }
    format!(
        "{:<12} {:>7} {:>18} {:>14}  {}\n",
        R::NAME,
        outcomes.len(),
        range(|o| o.accepted),
        range(|o| o.runs),
        states.join(", ")
    )
}

fn hot_one<R: Recorder>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    per_task: usize,
    strict: bool,
    report: &mut String,
) {
    let mut probed = false;
    g.bench_function(R::NAME, |b| {
        // Probed on first use only, so that a filter skipping this benchmark skips it.
        if !probed {
            probed = true;
            report.push_str(&probe::<R>(rt, per_task, strict));
        }
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (elapsed, outcome) = on_workers(rt, async move {
                    let (elapsed, accepted, rec, runs) = hot_round::<R>(per_task).await;
                    // Only ours is waited for (it must settle); the others are not, as
                    // 2.0.2 may stay Working for good.
                    let state = if strict {
                        settle(&rec, &runs, Duration::from_secs(10)).await
                    } else {
                        St::Working
                    };
                    let runs = runs.load(Ordering::SeqCst);
                    (
                        elapsed,
                        Outcome {
                            accepted,
                            runs,
                            state,
                        },
                    )
                });
                if strict {
                    check_ours(outcome);
                }
                total += elapsed;
            }
            total
        });
    });
}

// ---------------------------------------------------------------------------------
// iterate_failed
// ---------------------------------------------------------------------------------

/// One id in a hundred fails.
fn one_in_100(i: u64) -> bool {
    i % 100 == 0
}

/// `records` records of which 1% are Failed (built once per competitor); time to
/// collect all Failed ids into a `Vec`.
fn iterate_failed(c: &mut Criterion, rt: &Runtime) {
    let records = size(1_000_000);
    let failed = (0..records as u64).filter(|&i| one_in_100(i)).count();
    let mut g = group(c, "iterate_failed", failed);
    collect_one(
        &mut g,
        rt,
        "ours_ids_in_state",
        || on_workers(rt, fill_block::<Ours>(records, one_in_100)),
        failed,
        |rec: Ours| async move {
            rec.0
                .ids_in_state(async_tasks_recorder::TaskState::Failed)
                .await
        },
    );
    collect_one(
        &mut g,
        rt,
        "v2_0_2_failed_set",
        || on_workers(rt, fill_block::<V2>(records, one_in_100)),
        failed,
        |rec: V2| async move {
            let mut out = Vec::new();
            rec.0.get_failed_tasks_ref().scan(|k| out.push(*k));
            out
        },
    );
    collect_one(
        &mut g,
        rt,
        "state_map_full_scan",
        || on_workers(rt, fill_block::<StateMap>(records, one_in_100)),
        failed,
        |rec: StateMap| async move {
            let mut out = Vec::new();
            rec.0.get_recorder_ref().scan(|k, v| {
                if *v == async_tasks_state_map::TaskState::Failed {
                    out.push(*k);
                }
            });
            out
        },
    );
    g.finish();
}

fn collect_one<T, B, F, Fut>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    build: B,
    expected: usize,
    collect: F,
) where
    T: Clone + Send + Sync + 'static,
    B: Fn() -> T,
    F: Fn(T) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = Vec<u64>> + Send,
{
    let mut built: Option<T> = None;
    g.bench_function(name, |b| {
        let rec = built.get_or_insert_with(&build).clone();
        b.iter_custom(|iters| {
            let rec = rec.clone();
            on_workers(rt, async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let rec = rec.clone();
                    let start = Instant::now();
                    let ids = collect(rec).await;
                    total += start.elapsed();
                    assert_eq!(ids.len(), expected, "wrong number of Failed ids");
                }
                total
            })
        });
    });
}
