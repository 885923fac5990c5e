//! Interleaved rounds of the `lifecycle` and `query_hit` workloads across competitors,
//! for the target ratios of BENCHMARKS.md.
//!
//! Criterion measures each competitor for about ten seconds, one after another, and this
//! VM drifts by ±20–45% from one minute to the next, so a ratio of two competitors
//! measured minutes apart says as much about the minute as about the code. Here, as in
//! benches/ab_lifecycle.rs, every competitor runs once per round, in an order shuffled
//! per round, on the same runtime in the same process, and each target ratio is taken
//! per round: a slow stretch of the machine hits both sides of a round alike. The
//! summary gives the median of the per-round ratios, their range and a
//! distribution-free confidence interval of that median (order statistics).
//!
//! Workloads (the same work as in benches/recorder.rs, through the drivers of
//! benches/common):
//!
//! - `lifecycle`: one task launches `id(0..200_000)` with `async { Ok(()) }` on a fresh
//!   recorder (created and dropped outside the timing), then queries each id until it
//!   reads `Success`; `bare_spawn` spawns the same jobs and awaits a countdown.
//! - `query_hit`: two tasks query 500,000 precomputed random existing ids each, of
//!   1,000,000 `Success` records (each competitor filled once, before the rounds).
//!
//! `sharded_map` (benches/common) is the cheapest recorder of our shape (sharded
//! locked maps, in-place updates, nothing else): its ratio to `bare_spawn` is what
//! recording in a sharded map costs at the least, the reference for our own ratio.
//!
//! `ours` runs twice per round (`ours_again`, on its own recorder) as an A/A control:
//! the spread of `ours/ours_again` is what this method shows for two identical subjects.
//!
//! Settings (environment): `ATR_IL_ROUNDS` (default 15), `ATR_IL_WARMUP` (untimed
//! rounds first, default 1), `ATR_IL_SEED` (the order shuffle, default 1),
//! `ATR_IL_LIFECYCLE_ONLY=1` (skip `query_hit`, its fills included). In smoke mode
//! (`ATR_BENCH_SMOKE=1`, or `cargo test --benches`) sizes are tiny and the defaults are
//! 2 rounds, no warm-up. A name filter on the command line that does not match
//! "interleaved" skips this bench. The summary is also written to
//! `target/criterion/interleaved.txt`.

// Shared with benches/recorder.rs, which uses the parts this bench does not.
#[allow(dead_code)]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

#[path = "rounds/mod.rs"]
mod rounds;
use rounds::{bare_spawn, cpu_ticks, median, median_ci, min_max, Shuffle};

use common::{
    fill_block, id, launch_and_wait, on_workers, runtime, size, smoke, write_report, ByteSlots,
    CellMap, MinimalMap, Ours, Query, Recorder, Rng, RwLockMap, ShardedMap, St, StateMap, V2,
};

fn main() {
    if !rounds::selected("interleaved") {
        return;
    }
    let cfg = Config::from_env(smoke());
    let rt = runtime();
    let subjects = subjects(&rt);
    run(&rt, subjects, &cfg);
}

/// Rounds, warm-up rounds and the shuffle seed.
#[derive(Debug, Clone, Copy)]
struct Config {
    rounds: usize,
    warmup: usize,
    seed: u64,
}

impl Config {
    /// 15 rounds after 1 warm-up round (smoke: 2 and 0), each overridden by its
    /// environment variable.
    fn from_env(smoke: bool) -> Self {
        let var = |name: &str, default: usize| match std::env::var(name) {
            Ok(v) => v
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
            Err(_) => default,
        };
        let (rounds, warmup) = if smoke { (2, 0) } else { (15, 1) };
        Config {
            rounds: var("ATR_IL_ROUNDS", rounds).max(1),
            warmup: var("ATR_IL_WARMUP", warmup),
            seed: var("ATR_IL_SEED", 1) as u64,
        }
    }
}

/// One timed run of a subject: the elapsed time and the number of operations done.
type Run = Box<dyn Fn(&Runtime) -> (Duration, usize)>;

/// One competitor in one workload.
struct Subject {
    workload: &'static str,
    name: &'static str,
    run: Run,
}

/// A target ratio (or a reported one): `workload`, `num`/`den` of the operations per
/// second, and the target the per-round median should reach.
struct Pair {
    workload: &'static str,
    num: &'static str,
    den: &'static str,
    target: Option<f64>,
}

const PAIRS: &[Pair] = &[
    Pair {
        workload: "lifecycle",
        num: "ours",
        den: "state_map",
        target: Some(1.25),
    },
    Pair {
        workload: "lifecycle",
        num: "ours",
        den: "bare_spawn",
        target: Some(0.7),
    },
    Pair {
        workload: "lifecycle",
        num: "ours",
        den: "ours_again",
        target: None,
    },
    Pair {
        workload: "lifecycle",
        num: "ours",
        den: "v2_0_2",
        target: None,
    },
    Pair {
        workload: "lifecycle",
        num: "ours",
        den: "minimal_map",
        target: None,
    },
    Pair {
        workload: "lifecycle",
        num: "ours",
        den: "sharded_map",
        target: None,
    },
    Pair {
        workload: "lifecycle",
        num: "sharded_map",
        den: "bare_spawn",
        target: None,
    },
    Pair {
        workload: "lifecycle",
        num: "sharded_map",
        den: "state_map",
        target: None,
    },
    Pair {
        workload: "lifecycle",
        num: "cell_map",
        den: "bare_spawn",
        target: None,
    },
    Pair {
        workload: "lifecycle",
        num: "cell_map",
        den: "state_map",
        target: None,
    },
    Pair {
        workload: "lifecycle",
        num: "byte_slots",
        den: "bare_spawn",
        target: None,
    },
    Pair {
        workload: "lifecycle",
        num: "byte_slots",
        den: "state_map",
        target: None,
    },
    Pair {
        workload: "lifecycle",
        num: "ours",
        den: "byte_slots",
        target: None,
    },
    Pair {
        workload: "query_hit",
        num: "ours",
        den: "rwlock_map",
        target: Some(1.0),
    },
    Pair {
        workload: "query_hit",
        num: "ours",
        den: "ours_again",
        target: None,
    },
    Pair {
        workload: "query_hit",
        num: "ours",
        den: "v2_0_2",
        target: None,
    },
    Pair {
        workload: "query_hit",
        num: "ours",
        den: "state_map",
        target: None,
    },
    Pair {
        workload: "query_hit",
        num: "ours",
        den: "minimal_map",
        target: None,
    },
];

/// Every competitor of both workloads; the query_hit maps are filled here, once.
fn subjects(rt: &Runtime) -> Vec<Subject> {
    let n = size(200_000);
    let mut all = vec![
        lifecycle_subject::<Ours>("ours", n),
        lifecycle_subject::<Ours>("ours_again", n),
        lifecycle_subject::<V2>(V2::NAME, n),
        lifecycle_subject::<StateMap>(StateMap::NAME, n),
        lifecycle_subject::<MinimalMap>(MinimalMap::NAME, n),
        lifecycle_subject::<ShardedMap>(ShardedMap::NAME, n),
        lifecycle_subject::<CellMap>(CellMap::NAME, n),
        lifecycle_subject::<ByteSlots>(ByteSlots::NAME, n),
        Subject {
            workload: "lifecycle",
            name: "bare_spawn",
            run: Box::new(move |rt| (bare_spawn(rt, n), n)),
        },
    ];

    if std::env::var("ATR_IL_LIFECYCLE_ONLY").is_ok_and(|v| v == "1") {
        return all;
    }
    let records = size(1_000_000);
    let per_task = size(500_000);
    // The same id arrays as query_hit in benches/recorder.rs (seeds 1 and 2).
    let arrays: [Arc<Vec<u64>>; 2] = [1, 2].map(|seed| {
        let mut rng = Rng::new(seed);
        Arc::new(
            (0..per_task)
                .map(|_| id(rng.below(records as u64)))
                .collect(),
        )
    });
    let fill = Instant::now();
    all.push(query_subject(
        "ours",
        on_workers(rt, fill_block::<Ours>(records, never)),
        &arrays,
    ));
    all.push(query_subject(
        "ours_again",
        on_workers(rt, fill_block::<Ours>(records, never)),
        &arrays,
    ));
    all.push(query_subject(
        V2::NAME,
        on_workers(rt, fill_block::<V2>(records, never)),
        &arrays,
    ));
    all.push(query_subject(
        StateMap::NAME,
        on_workers(rt, fill_block::<StateMap>(records, never)),
        &arrays,
    ));
    all.push(query_subject(
        MinimalMap::NAME,
        on_workers(rt, fill_block::<MinimalMap>(records, never)),
        &arrays,
    ));
    all.push(query_subject(
        RwLockMap::NAME,
        RwLockMap::filled(records),
        &arrays,
    ));
    println!(
        "interleaved: query_hit maps filled ({records} records each) in {:.1} s",
        fill.elapsed().as_secs_f64()
    );
    all
}

fn never(_: u64) -> bool {
    false
}

/// `lifecycle` of `R` under `name`: a fresh recorder per run.
fn lifecycle_subject<R: Recorder>(name: &'static str, n: usize) -> Subject {
    Subject {
        workload: "lifecycle",
        name,
        run: Box::new(move |rt| {
            let rec = R::create();
            let (elapsed, rec) = on_workers(rt, async move {
                let start = Instant::now();
                launch_and_wait(&rec, n).await;
                (start.elapsed(), rec)
            });
            drop(rec);
            (elapsed, n)
        }),
    }
}

/// `query_hit` of the filled `rec` under `name`: two tasks, one array each; every
/// answer must be `Success`.
fn query_subject<Q: Query>(name: &'static str, rec: Q, arrays: &[Arc<Vec<u64>>; 2]) -> Subject {
    let arrays = arrays.clone();
    let total: usize = arrays.iter().map(|a| a.len()).sum();
    Subject {
        workload: "query_hit",
        name,
        run: Box::new(move |rt| {
            let rec = rec.clone();
            let arrays = arrays.clone();
            let (elapsed, matched) = on_workers(rt, async move {
                let start = Instant::now();
                let tasks = arrays.map(|ids| {
                    let rec = rec.clone();
                    tokio::spawn(async move {
                        let mut matched = 0usize;
                        for &id in ids.iter() {
                            if rec.query(id).await == St::Success {
                                matched += 1;
                            }
                        }
                        matched
                    })
                });
                let mut matched = 0;
                for task in tasks {
                    matched += task.await.expect("query task panicked");
                }
                (start.elapsed(), matched)
            });
            assert_eq!(matched, total, "{name}: wrong answers");
            (elapsed, total)
        }),
    }
}

/// [`rounds::others_cpus`], or `None` under a second: ticks are 1/100 s, so below a
/// second the estimate is mostly rounding.
fn others_cpus(from: Option<(u64, u64)>, to: Option<(u64, u64)>, wall: Duration) -> Option<f64> {
    if wall < Duration::from_secs(1) {
        return None;
    }
    rounds::others_cpus(from, to, wall)
}

/// Runs the warm-up and the rounds, prints per-round rates and the summary.
fn run(rt: &Runtime, subjects: Vec<Subject>, cfg: &Config) {
    let k = subjects.len();
    let mut shuffle = Shuffle(id(cfg.seed) | 1);
    let workloads: Vec<&'static str> = subjects.iter().fold(Vec::new(), |mut w, s| {
        if !w.contains(&s.workload) {
            w.push(s.workload);
        }
        w
    });
    let index = |workload: &str, name: &str| {
        subjects
            .iter()
            .position(|s| s.workload == workload && s.name == name)
    };

    println!(
        "interleaved: {} rounds (+{} warm-up); every round runs all {k} subjects once, \
         in one shuffled order (seed {}); rates in millions of operations per second\n",
        cfg.rounds, cfg.warmup, cfg.seed
    );
    for _ in 0..cfg.warmup {
        for &i in &shuffle.order(k) {
            (subjects[i].run)(rt);
        }
    }

    let mut header = format!("{:>5} {:>7}", "round", "others");
    for w in &workloads {
        header.push_str(&format!("  | {w}:"));
        for s in subjects.iter().filter(|s| s.workload == *w) {
            header.push_str(&format!(" {:>11}", s.name));
        }
    }
    println!("{header}");
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); k];
    let (run_start, run_ticks) = (Instant::now(), cpu_ticks());
    for r in 0..cfg.rounds {
        let order = shuffle.order(k);
        let (round_start, round_ticks) = (Instant::now(), cpu_ticks());
        for &i in &order {
            let (elapsed, ops) = (subjects[i].run)(rt);
            rates[i].push(ops as f64 / elapsed.as_secs_f64());
        }
        let others = others_cpus(round_ticks, cpu_ticks(), round_start.elapsed())
            .map_or("-".to_string(), |c| format!("{c:.2}"));
        let mut line = format!("{:>5} {:>7}", r + 1, others);
        for w in &workloads {
            line.push_str(&format!("  | {:>w$}", "", w = w.len() + 1));
            for (i, s) in subjects.iter().enumerate() {
                if s.workload == *w {
                    line.push_str(&format!(" {:>11.3}", rates[i][r] / 1e6));
                }
            }
        }
        println!("{line}");
    }
    let others_all = others_cpus(run_ticks, cpu_ticks(), run_start.elapsed());
    if let Some(c) = others_all {
        println!(
            "(others: CPUs' worth of time used by other processes during the round; \
             {c:.2} over all rounds)"
        );
    }

    let mut report = format!(
        "interleaved: {} rounds (+{} warm-up), seed {}\n\n\
         {:<10} {:<12} {:>10} {:>9} {:>9}   (millions of operations per second)\n",
        cfg.rounds, cfg.warmup, cfg.seed, "workload", "competitor", "median", "min", "max"
    );
    for (s, r) in subjects.iter().zip(&rates) {
        let (lo, hi) = min_max(r);
        report.push_str(&format!(
            "{:<10} {:<12} {:>10.3} {:>9.3} {:>9.3}\n",
            s.workload,
            s.name,
            median(r) / 1e6,
            lo / 1e6,
            hi / 1e6
        ));
    }

    let coverage = median_ci(&vec![1.0; cfg.rounds])
        .map_or("-".to_string(), |(.., c)| format!("{:.1}%", c * 100.0));
    report.push_str(&format!(
        "\n{:<34} {:>7} {:>7} {:>7} {:>17} {:>7} {:>9} {:>6}  verdict\n",
        "per-round ratio of ops/s",
        "median",
        "min",
        "max",
        format!("CI ({coverage})"),
        "wins",
        "of medns",
        "target"
    ));
    for p in PAIRS {
        let (Some(x), Some(y)) = (index(p.workload, p.num), index(p.workload, p.den)) else {
            continue;
        };
        let ratios: Vec<f64> = rates[x].iter().zip(&rates[y]).map(|(a, b)| a / b).collect();
        let m = median(&ratios);
        let (lo, hi) = min_max(&ratios);
        let ci = median_ci(&ratios);
        let ci_text = ci.map_or("-".to_string(), |(l, h, _)| format!("{l:.3} .. {h:.3}"));
        let wins = ratios.iter().filter(|&&q| q > 1.0).count();
        let (target, verdict) = match (p.target, ci) {
            (None, _) if p.den == "ours_again" => ("-".to_string(), "A/A control"),
            (None, _) => ("-".to_string(), "reported only"),
            (Some(t), Some((l, h, _))) => (
                format!("{t:.2}"),
                if l >= t {
                    "met (CI above target)"
                } else if h < t {
                    "missed (CI below target)"
                } else if m >= t {
                    "median meets it; CI straddles"
                } else {
                    "median misses it; CI straddles"
                },
            ),
            (Some(t), None) => (format!("{t:.2}"), "too few rounds for a CI"),
        };
        report.push_str(&format!(
            "{:<34} {m:>7.3} {lo:>7.3} {hi:>7.3} {ci_text:>17} {:>7} {:>9.3} {target:>6}  {verdict}\n",
            format!("{} {}/{}", p.workload, p.num, p.den),
            format!("{wins}/{}", ratios.len()),
            median(&rates[x]) / median(&rates[y]),
        ));
    }
    report.push_str(
        "\n(wins: rounds where the first is faster; of medns: ratio of the two medians, \
         which drift does not cancel in)\n",
    );
    if let Some(c) = others_all {
        report.push_str(&format!(
            "(other processes used {c:.2} CPUs on average during the rounds)\n"
        ));
    }
    println!("\n{report}");
    let name = if smoke() {
        "interleaved-smoke.txt"
    } else {
        "interleaved.txt"
    };
    write_report(name, &report);
}
