//! Interleaved rounds of the in-memory hot-path workloads across competitors, for the
//! ratios of BENCHMARKS.md.
//!
//! Criterion measures each competitor for about ten seconds, one after another, and a
//! shared VM drifts by tens of percent from one minute to the next, so a ratio of two
//! competitors measured minutes apart says as much about the minute as about the code.
//! Here, as in benches/ab_lifecycle.rs, every competitor runs once per round, in an
//! order shuffled per round, on the same runtime in the same process, and each ratio is
//! taken per round: a slow stretch of the machine hits both sides of a round alike. The
//! summary gives the median of the per-round ratios, their range and, from 6 rounds on,
//! a distribution-free confidence interval of that median (order statistics).
//!
//! Workloads (the same work as in benches/recorder.rs, through the drivers of
//! benches/common), all on a two-worker Tokio runtime:
//!
//! - `lifecycle`: one task launches `id(0..200_000)` with `async { Ok(()) }` on a fresh
//!   recorder (created and dropped outside the timing), then queries each id until it
//!   reads `Success`; `bare_spawn` spawns the same jobs and awaits a countdown.
//! - `query_hit`: two tasks query 500,000 precomputed random existing ids each, of
//!   1,000,000 `Success` records (each competitor filled once, before the rounds).
//! - `query_miss`: the same two tasks and records, with ids that were never launched.
//! - `revoke_cycle`: two tasks, 50,000 ids each, `launch_block` (to `Success`) then
//!   `revoke_task_block` (back to `NotFound`), on a fresh recorder; every id is checked
//!   to read `NotFound` after the timing.
//! - `hot_key`: two tasks launch one id 1,000,000 times each, on a fresh recorder where
//!   that id is already `Success` (one untimed `launch_block`): every launch is refused
//!   and the id still reads `Success` after (checked, but for 2.0.2, which may move the
//!   id back to `Working` for good).
//!
//! `sharded_map` (benches/common) is the floor of every workload: 64 `std::sync::RwLock`
//! shards over `HashMap<u64, state>` with foldhash, updated in place, with no guards, no
//! per-state index and no waiters: the least a recorder of this shape does. Our target
//! ratios are to it. `phase_tables` (benches/common) is that floor with ours' table per
//! phase: `phase_tables/sharded_map` prices the per-state index alone. `ours` runs
//! twice per round (`ours_again`, on its own recorder) as an A/A control: the spread
//! of `ours/ours_again` is what this method shows for two identical subjects.
//!
//! Settings (environment): `ATR_IL_ROUNDS` (default 15), `ATR_IL_WARMUP` (untimed
//! rounds first, default 1), `ATR_IL_SEED` (the order shuffle, default 1),
//! `ATR_IL_WORKLOADS` (a comma-separated subset of the workloads above; the query maps
//! are filled only for `query_hit` or `query_miss`), `ATR_IL_SUBJECTS` (a
//! comma-separated subset of the competitors, by name, for a profile of one of them;
//! only their query maps are filled). In smoke mode
//! (`ATR_BENCH_SMOKE=1`, or `cargo test --benches`) sizes are tiny and the defaults are
//! 2 rounds, no warm-up. A name filter on the command line that does not match
//! "interleaved" skips this bench. The summary is also written to
//! `criterion/interleaved.txt` in the target directory, and its medians, one per line
//! with tabs, to `criterion/interleaved.tsv` (read by `summarize.py floor`).

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
    fill_block, id, launch_and_wait, ok_job, on_workers, query_arrays, runtime, size, smoke,
    write_report, ByteSlots, CellMap, MinimalMap, Ours, PhaseTables, Query, Recorder, Rng,
    RwLockMap, ShardedMap, St, StateMap, V2,
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

/// The workloads, in the order of the reports, with the target of `ours/sharded_map`.
const WORKLOADS: &[(&str, f64)] = &[
    ("query_hit", 1.0),
    ("query_miss", 0.95),
    ("revoke_cycle", 0.9),
    ("lifecycle", 0.95),
    ("hot_key", 0.9),
];

/// Ratios reported besides the targets: `(workload, num, den)`, `*` for every workload.
const REPORTED: &[(&str, &str, &str)] = &[
    ("*", "ours", "ours_again"),
    ("*", "ours", "v2_0_2"),
    ("*", "ours", "state_map"),
    ("*", "ours", "minimal_map"),
    ("*", "ours", "phase_tables"),
    ("*", "phase_tables", "sharded_map"),
    ("lifecycle", "ours", "bare_spawn"),
    ("lifecycle", "sharded_map", "bare_spawn"),
    ("lifecycle", "cell_map", "bare_spawn"),
    ("lifecycle", "byte_slots", "bare_spawn"),
    ("query_hit", "ours", "rwlock_map"),
];

/// Every ratio of the summary: the targets first, then the reported ones.
fn pairs() -> Vec<Pair> {
    let mut pairs: Vec<Pair> = WORKLOADS
        .iter()
        .map(|&(workload, target)| Pair {
            workload,
            num: "ours",
            den: ShardedMap::NAME,
            target: Some(target),
        })
        .collect();
    for &(w, num, den) in REPORTED {
        for &(workload, _) in WORKLOADS {
            if w == "*" || w == workload {
                pairs.push(Pair {
                    workload,
                    num,
                    den,
                    target: None,
                });
            }
        }
    }
    pairs
}

/// The workloads `ATR_IL_WORKLOADS` names (all when unset).
fn chosen() -> Vec<&'static str> {
    let all: Vec<&'static str> = WORKLOADS.iter().map(|w| w.0).collect();
    let Some(list) = env_list("ATR_IL_WORKLOADS") else {
        return all;
    };
    list.iter()
        .map(|w| {
            *all.iter()
                .find(|a| **a == w)
                .unwrap_or_else(|| panic!("ATR_IL_WORKLOADS: no workload {w:?}; use {all:?}"))
        })
        .collect()
}

/// The names in the comma-separated environment variable `var`, if it is set.
fn env_list(var: &str) -> Option<Vec<String>> {
    let list = std::env::var(var).ok()?;
    Some(
        list.split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(String::from)
            .collect(),
    )
}

/// The competitors `ATR_IL_SUBJECTS` names (every one when unset).
struct Wanted(Option<Vec<String>>);

impl Wanted {
    fn has(&self, name: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == name))
    }

    /// `all` without the competitors not wanted; a wanted name that none of them has
    /// is a mistake in the setting.
    fn keep(&self, mut all: Vec<Subject>) -> Vec<Subject> {
        all.retain(|s| self.has(s.name));
        for name in self.0.iter().flatten() {
            assert!(
                all.iter().any(|s| s.name == name),
                "ATR_IL_SUBJECTS: no competitor {name:?} in the chosen workloads"
            );
        }
        all
    }
}

/// Every competitor of the chosen workloads; the query maps are filled here, once, and
/// serve both query workloads.
fn subjects(rt: &Runtime) -> Vec<Subject> {
    let wanted = Wanted(env_list("ATR_IL_SUBJECTS"));
    wanted.keep(all_subjects(rt, &wanted))
}

/// [`subjects`] before the `ATR_IL_SUBJECTS` filter, but with only the wanted query
/// maps filled.
fn all_subjects(rt: &Runtime, wanted: &Wanted) -> Vec<Subject> {
    let chosen = chosen();
    let mut all = Vec::new();
    if chosen.contains(&"lifecycle") {
        let n = size(200_000);
        all.extend([
            lifecycle_subject::<Ours>("ours", n),
            lifecycle_subject::<Ours>("ours_again", n),
            lifecycle_subject::<V2>(V2::NAME, n),
            lifecycle_subject::<StateMap>(StateMap::NAME, n),
            lifecycle_subject::<MinimalMap>(MinimalMap::NAME, n),
            lifecycle_subject::<ShardedMap>(ShardedMap::NAME, n),
            lifecycle_subject::<PhaseTables>(PhaseTables::NAME, n),
            lifecycle_subject::<CellMap>(CellMap::NAME, n),
            lifecycle_subject::<ByteSlots>(ByteSlots::NAME, n),
            Subject {
                workload: "lifecycle",
                name: "bare_spawn",
                run: Box::new(move |rt| (bare_spawn(rt, n), n)),
            },
        ]);
    }
    if chosen.contains(&"revoke_cycle") {
        let n = size(100_000);
        all.extend([
            revoke_subject::<Ours>("ours", n),
            revoke_subject::<Ours>("ours_again", n),
            revoke_subject::<V2>(V2::NAME, n),
            revoke_subject::<StateMap>(StateMap::NAME, n),
            revoke_subject::<MinimalMap>(MinimalMap::NAME, n),
            revoke_subject::<ShardedMap>(ShardedMap::NAME, n),
            revoke_subject::<PhaseTables>(PhaseTables::NAME, n),
        ]);
    }
    if chosen.contains(&"hot_key") {
        // Ten times the criterion bench's count: a refused launch takes tens of
        // nanoseconds, and a run of a few milliseconds is mostly scheduling noise.
        let per_task = size(1_000_000);
        all.extend([
            hot_subject::<Ours>("ours", per_task),
            hot_subject::<Ours>("ours_again", per_task),
            hot_subject::<V2>(V2::NAME, per_task),
            hot_subject::<StateMap>(StateMap::NAME, per_task),
            hot_subject::<MinimalMap>(MinimalMap::NAME, per_task),
            hot_subject::<ShardedMap>(ShardedMap::NAME, per_task),
            hot_subject::<PhaseTables>(PhaseTables::NAME, per_task),
        ]);
    }

    let (hit, miss) = (
        chosen.contains(&"query_hit"),
        chosen.contains(&"query_miss"),
    );
    if !hit && !miss {
        return all;
    }
    let records = size(1_000_000);
    let per_task = size(500_000);
    // The same id arrays as query_hit and query_miss in benches/recorder.rs.
    let arrays = |base: u64, seeds: [u64; 2]| -> [Arc<Vec<u64>>; 2] {
        seeds.map(|seed| {
            let mut rng = Rng::new(seed);
            Arc::new(
                (0..per_task)
                    .map(|_| id(base + rng.below(records as u64)))
                    .collect(),
            )
        })
    };
    let hits = arrays(0, [1, 2]);
    let misses = arrays(records as u64, [101, 102]);
    let fill = Instant::now();
    let mut both = |subjects: [Option<Subject>; 2]| all.extend(subjects.into_iter().flatten());
    macro_rules! filled {
        ($name:expr, $rec:expr) => {{
            if wanted.has($name) {
                let rec = $rec;
                both([
                    hit.then(|| query_subject("query_hit", $name, rec.clone(), &hits, St::Success)),
                    miss.then(|| query_subject("query_miss", $name, rec, &misses, St::NotFound)),
                ]);
            }
        }};
    }
    filled!("ours", on_workers(rt, fill_block::<Ours>(records, never)));
    filled!(
        "ours_again",
        on_workers(rt, fill_block::<Ours>(records, never))
    );
    filled!(V2::NAME, on_workers(rt, fill_block::<V2>(records, never)));
    filled!(
        StateMap::NAME,
        on_workers(rt, fill_block::<StateMap>(records, never))
    );
    filled!(
        MinimalMap::NAME,
        on_workers(rt, fill_block::<MinimalMap>(records, never))
    );
    filled!(
        ShardedMap::NAME,
        on_workers(rt, fill_block::<ShardedMap>(records, never))
    );
    filled!(
        PhaseTables::NAME,
        on_workers(rt, fill_block::<PhaseTables>(records, never))
    );
    if hit && wanted.has(RwLockMap::NAME) {
        all.push(query_subject(
            "query_hit",
            RwLockMap::NAME,
            RwLockMap::filled(records),
            &hits,
            St::Success,
        ));
    }
    println!(
        "interleaved: query maps filled ({records} records each) in {:.1} s",
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

/// `workload` (`query_hit` or `query_miss`) of the filled `rec` under `name`: two
/// tasks, one array each; every answer must be `expect`.
fn query_subject<Q: Query>(
    workload: &'static str,
    name: &'static str,
    rec: Q,
    arrays: &[Arc<Vec<u64>>; 2],
    expect: St,
) -> Subject {
    let arrays = arrays.clone();
    let total: usize = arrays.iter().map(|a| a.len()).sum();
    Subject {
        workload,
        name,
        run: Box::new(move |rt| {
            let rec = rec.clone();
            let arrays = arrays.clone();
            let (elapsed, matched) = on_workers(rt, async move {
                let start = Instant::now();
                let matched = query_arrays(&rec, &arrays, expect).await;
                (start.elapsed(), matched)
            });
            assert_eq!(matched, total, "{workload}/{name}: wrong answers");
            (elapsed, total)
        }),
    }
}

/// `revoke_cycle` of `R` under `name`: a fresh recorder per run, two tasks (even and
/// odd ids) each launching and revoking its ids in turn; afterwards (untimed) every id
/// must read `NotFound`.
fn revoke_subject<R: Recorder>(name: &'static str, n: usize) -> Subject {
    Subject {
        workload: "revoke_cycle",
        name,
        run: Box::new(move |rt| {
            let rec = R::create();
            let (elapsed, rec) = on_workers(rt, async move {
                let start = Instant::now();
                let halves = [0u64, 1].map(|half| {
                    let rec = rec.clone();
                    tokio::spawn(async move {
                        for i in (half..n as u64).step_by(2) {
                            assert!(rec.launch_block(id(i), ok_job()).await, "{name}: refused");
                            assert!(
                                rec.revoke_block(id(i), ok_job()).await,
                                "{name}: not revoked"
                            );
                        }
                    })
                });
                for half in halves {
                    half.await.expect("revoke task panicked");
                }
                (start.elapsed(), rec)
            });
            let left = on_workers(rt, async move {
                let mut left = 0;
                for i in 0..n as u64 {
                    if rec.query(id(i)).await != St::NotFound {
                        left += 1;
                    }
                }
                left
            });
            assert_eq!(left, 0, "{name}: ids not NotFound after their revoke");
            (elapsed, n)
        }),
    }
}

/// The one id of `hot_key`.
const HOT: u64 = 0x0ddba11;

/// `hot_key` of `R` under `name`: a fresh recorder per run where `HOT` is `Success`
/// (untimed), then two tasks launch `HOT` `per_task` times each; every launch must be
/// refused and `HOT` still read `Success` after.
fn hot_subject<R: Recorder>(name: &'static str, per_task: usize) -> Subject {
    Subject {
        workload: "hot_key",
        name,
        run: Box::new(move |rt| {
            let (elapsed, accepted, state) = on_workers(rt, async move {
                let rec = R::create();
                assert!(rec.launch_block(HOT, ok_job()).await, "{name}: refused");
                let start = Instant::now();
                let tasks = [0, 1].map(|_| {
                    let rec = rec.clone();
                    tokio::spawn(async move {
                        let mut accepted = 0usize;
                        for _ in 0..per_task {
                            if rec.launch(HOT, ok_job()).await {
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
                let elapsed = start.elapsed();
                (elapsed, accepted, rec.query(HOT).await)
            });
            // 2.0.2 is timed but not checked: a launch of a Success id may move it back
            // to Working there, for good (the flaw its successor fixes).
            if name != V2::NAME {
                assert_eq!(accepted, 0, "{name}: a launch of a Success id was accepted");
                assert_eq!(state, St::Success, "{name}: the hot id left Success");
            }
            (elapsed, 2 * per_task)
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
    let workloads: Vec<&'static str> = WORKLOADS
        .iter()
        .map(|w| w.0)
        .filter(|w| subjects.iter().any(|s| s.workload == *w))
        .collect();
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

    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); k];
    let mut others: Vec<String> = Vec::new();
    let (run_start, run_ticks) = (Instant::now(), cpu_ticks());
    for r in 0..cfg.rounds {
        let order = shuffle.order(k);
        let (round_start, round_ticks) = (Instant::now(), cpu_ticks());
        for &i in &order {
            let (elapsed, ops) = (subjects[i].run)(rt);
            rates[i].push(ops as f64 / elapsed.as_secs_f64());
        }
        others.push(
            others_cpus(round_ticks, cpu_ticks(), round_start.elapsed())
                .map_or("-".to_string(), |c| format!("{c:.2}")),
        );
        println!("round {} of {} done", r + 1, cfg.rounds);
    }
    let others_all = others_cpus(run_ticks, cpu_ticks(), run_start.elapsed());

    // Per-round rates, one table per workload.
    for w in &workloads {
        let mut header = format!("\n{w}\n{:>5} {:>7}", "round", "others");
        for s in subjects.iter().filter(|s| s.workload == *w) {
            header.push_str(&format!(" {:>11}", s.name));
        }
        println!("{header}");
        for (r, others) in others.iter().enumerate() {
            let mut line = format!("{:>5} {:>7}", r + 1, others);
            for (i, s) in subjects.iter().enumerate() {
                if s.workload == *w {
                    line.push_str(&format!(" {:>11.3}", rates[i][r] / 1e6));
                }
            }
            println!("{line}");
        }
    }
    if let Some(c) = others_all {
        println!(
            "(others: CPUs' worth of time used by other processes during the round; \
             {c:.2} over all rounds)"
        );
    }

    let mut report = format!(
        "interleaved: {} rounds (+{} warm-up), seed {}\n\n\
         {:<12} {:<12} {:>10} {:>9} {:>9}   (millions of operations per second)\n",
        cfg.rounds, cfg.warmup, cfg.seed, "workload", "competitor", "median", "min", "max"
    );
    let mut tsv = String::new();
    for w in &workloads {
        for (s, r) in subjects
            .iter()
            .zip(&rates)
            .filter(|(s, _)| s.workload == *w)
        {
            let (lo, hi) = min_max(r);
            let m = median(r);
            report.push_str(&format!(
                "{:<12} {:<12} {:>10.3} {:>9.3} {:>9.3}\n",
                s.workload,
                s.name,
                m / 1e6,
                lo / 1e6,
                hi / 1e6
            ));
            tsv.push_str(&format!(
                "rate\t{}\t{}\t{m}\t{lo}\t{hi}\n",
                s.workload, s.name
            ));
        }
    }

    let coverage = median_ci(&vec![1.0; cfg.rounds])
        .map_or("-".to_string(), |(.., c)| format!("{:.1}%", c * 100.0));
    report.push_str(&format!(
        "\n{:<36} {:>7} {:>7} {:>7} {:>17} {:>7} {:>9} {:>6}  verdict\n",
        "per-round ratio of ops/s",
        "median",
        "min",
        "max",
        format!("CI ({coverage})"),
        "wins",
        "of medns",
        "target"
    ));
    for p in &pairs() {
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
            (Some(t), None) => (
                format!("{t:.2}"),
                if m >= t {
                    "median meets it (no CI under 6 rounds)"
                } else {
                    "median misses it (no CI under 6 rounds)"
                },
            ),
        };
        report.push_str(&format!(
            "{:<36} {m:>7.3} {lo:>7.3} {hi:>7.3} {ci_text:>17} {:>7} {:>9.3} {target:>6}  {verdict}\n",
            format!("{} {}/{}", p.workload, p.num, p.den),
            format!("{wins}/{}", ratios.len()),
            median(&rates[x]) / median(&rates[y]),
        ));
        tsv.push_str(&format!(
            "ratio\t{}\t{}\t{}\t{m}\t{lo}\t{hi}\t{}\n",
            p.workload,
            p.num,
            p.den,
            p.target.map_or("-".to_string(), |t| t.to_string())
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
        tsv.push_str(&format!("others\t{c}\n"));
    }
    tsv.push_str(&format!("rounds\t{}\n", cfg.rounds));
    println!("\n{report}");
    let name = if smoke() {
        "interleaved-smoke"
    } else {
        "interleaved"
    };
    write_report(&format!("{name}.txt"), &report);
    write_report(&format!("{name}.tsv"), &tsv);
}
