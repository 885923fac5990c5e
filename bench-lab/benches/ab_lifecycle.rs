//! Interleaved A/B of the `lifecycle` workload (see benches/recorder.rs): one task
//! launches `id(0..200_000)` with `async { Ok(()) }` on a fresh recorder, then queries
//! each id until it reads `Success`; `bare_spawn` spawns the same jobs and awaits a
//! countdown. Criterion's run-to-run noise on this machine (±20–40%) hides a 5%
//! difference, so instead every subject runs once per round, in a shuffled order, on
//! the same runtime in the same process, and the comparison is made per round: the
//! slow and fast stretches of the machine hit both sides of a round alike.
//!
//! Two ways to run it:
//!
//! - `bench-lab/ab.sh [rounds]`: builds this file, outside the repo, into a program that
//!   links two copies of the crate, the current source (`after`) and the commit before
//!   issue 5 (`before`, 892fe81), and prints per-round rates, the medians and the
//!   after/before ratio with its spread. This is the comparison.
//! - `cargo bench -p atr_bench_lab --bench ab_lifecycle`: the same harness with the current source only:
//!   `after` against itself (an A/A run, which shows how far apart two identical
//!   subjects land with this method on this machine) and against `bare_spawn`.
//!
//! `ATR_AB_WORKLOAD=query_hit` times queries instead: each round fills a fresh
//! recorder with the ids (untimed), then queries every id five times (timed); the
//! rates are queries/s and `bare_spawn` is left out.
//!
//! Settings (environment): `ATR_AB_ROUNDS` (default 21), `ATR_AB_WARMUP` (untimed
//! rounds first, default 2), `ATR_AB_TASKS` (ids per round, default 200,000),
//! `ATR_AB_SEED` (the order shuffle). In smoke mode (`ATR_BENCH_SMOKE=1`, or
//! `cargo test --benches`) the defaults are 3 rounds of 200 ids.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

#[path = "rounds/mod.rs"]
mod rounds;
use rounds::{bare_spawn, cpu_ticks, median, median_ci, min_max, others_cpus, Shuffle};

/// A [`Subject`] running the lifecycle workload on `AsyncTasksRecorder<u64>` of the
/// crate `$krate` (any version with the 2.x `launch` and `query_task_state`). `$h` is
/// the path of this module where the macro is used (`self` in this file).
macro_rules! lifecycle_of {
    ($h:ident, $name:expr, $krate:ident) => {{
        #[derive(Clone)]
        struct Rec($krate::AsyncTasksRecorder<u64>);

        impl $h::Lifecycle for Rec {
            fn create() -> Self {
                Rec($krate::AsyncTasksRecorder::new())
            }

            async fn launch(&self, id: u64) -> bool {
                self.0.launch(id, $h::ok_job()).await.is_ok()
            }

            async fn state(&self, id: u64) -> $h::St {
                match self.0.query_task_state(&id).await {
                    $krate::TaskState::Success => $h::St::Success,
                    $krate::TaskState::Working => $h::St::Working,
                    other => $h::St::Other(format!("{other:?}")),
                }
            }
        }

        $h::Subject {
            name: $name,
            round: $h::round_of::<Rec>(),
        }
    }};
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !rounds::selected("ab_lifecycle") {
        return;
    }
    let env = std::env::var("ATR_BENCH_SMOKE").is_ok_and(|v| !v.is_empty() && v != "0");
    let bench_mode = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let after = lifecycle_of!(self, "after", async_tasks_recorder);
    run(after, None, Config::from_env(env || !bench_mode));
    println!(
        "\n(no reference build here: bench-lab/ab.sh runs this harness against the commit \
         before issue 5)"
    );
}

/// A state as the workload needs it.
#[derive(Debug)]
pub(crate) enum St {
    Working,
    Success,
    /// Anything else, by name: the round fails.
    Other(String),
}

/// What the lifecycle workload needs from a recorder.
pub(crate) trait Lifecycle: Send + Sync + 'static {
    fn create() -> Self;

    /// Launches `ok_job()` under `id` (spawned); `true` if accepted.
    fn launch(&self, id: u64) -> impl Future<Output = bool> + Send + '_;

    fn state(&self, id: u64) -> impl Future<Output = St> + Send + '_;
}

/// One side of the comparison: a name and one timed round of `n` ids.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject {
    pub(crate) name: &'static str,
    pub(crate) round: fn(&Runtime, usize) -> Duration,
}

/// Rounds, warm-up rounds and ids per round.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) rounds: usize,
    pub(crate) warmup: usize,
    pub(crate) tasks: usize,
    pub(crate) seed: u64,
}

impl Config {
    /// The defaults (21 rounds of 200,000 ids, 2 warm-up rounds; in smoke mode 3 of
    /// 200, 1), each overridden by its environment variable.
    pub(crate) fn from_env(smoke: bool) -> Self {
        let var = |name: &str, default: usize| match std::env::var(name) {
            Ok(v) => v
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
            Err(_) => default,
        };
        let (rounds, warmup, tasks) = if smoke { (3, 1, 200) } else { (21, 2, 200_000) };
        Config {
            rounds: var("ATR_AB_ROUNDS", rounds).max(1),
            warmup: var("ATR_AB_WARMUP", warmup),
            tasks: var("ATR_AB_TASKS", tasks).max(1),
            seed: var("ATR_AB_SEED", 1) as u64,
        }
    }
}

/// The trivial job of the workload.
pub(crate) async fn ok_job() -> Result<(), ()> {
    Ok(())
}

/// The id of the `i`-th record, as in benches/common (the splitmix64 finaliser).
const fn id(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Tokio multi-thread with two workers, as in benches/common.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("building the Tokio runtime")
}

/// Runs `fut` as a task on the runtime's workers, as in benches/common.
fn on_workers<T, F>(rt: &Runtime, fut: F) -> T
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    rt.block_on(async move { tokio::spawn(fut).await.expect("bench task panicked") })
}

/// One lifecycle round on a fresh recorder (created and dropped outside the timing),
/// the same as `lifecycle` in benches/recorder.rs (`launch_and_wait` of benches/common).
pub(crate) fn round<L: Lifecycle>(rt: &Runtime, n: usize) -> Duration {
    let rec = L::create();
    let (elapsed, rec) = on_workers(rt, async move {
        let start = Instant::now();
        for i in 0..n as u64 {
            if !rec.launch(id(i)).await {
                panic!("fresh id refused");
            }
        }
        for i in 0..n as u64 {
            loop {
                match rec.state(id(i)).await {
                    St::Success => break,
                    St::Working => tokio::task::yield_now().await,
                    St::Other(other) => panic!("id {i} ended {other}"),
                }
            }
        }
        (start.elapsed(), rec)
    });
    drop(rec);
    elapsed
}

/// Whether `ATR_AB_WORKLOAD` asks for the query_hit workload (else lifecycle).
fn query_hit() -> bool {
    match std::env::var("ATR_AB_WORKLOAD").as_deref() {
        Ok("query_hit") => true,
        Ok("lifecycle") | Err(_) => false,
        Ok(other) => panic!("ATR_AB_WORKLOAD={other:?}: use lifecycle or query_hit"),
    }
}

/// The round of the workload `ATR_AB_WORKLOAD` names.
pub(crate) fn round_of<L: Lifecycle>() -> fn(&Runtime, usize) -> Duration {
    if query_hit() {
        query_round::<L>
    } else {
        round::<L>
    }
}

/// How many times a query_hit round queries each id.
const PASSES: u32 = 5;

/// One query_hit round: `n` ids launched and settled on a fresh recorder (untimed),
/// then every id queried [`PASSES`] times; returns the time per pass, so that the
/// rates are queries per second.
pub(crate) fn query_round<L: Lifecycle>(rt: &Runtime, n: usize) -> Duration {
    let rec = L::create();
    let (elapsed, rec) = on_workers(rt, async move {
        for i in 0..n as u64 {
            assert!(rec.launch(id(i)).await, "fresh id refused");
        }
        for i in 0..n as u64 {
            while !matches!(rec.state(id(i)).await, St::Success) {
                tokio::task::yield_now().await;
            }
        }
        let start = Instant::now();
        for _ in 0..PASSES {
            for i in 0..n as u64 {
                if !matches!(rec.state(id(i)).await, St::Success) {
                    panic!("id {i} is no longer Success");
                }
            }
        }
        (start.elapsed() / PASSES, rec)
    });
    drop(rec);
    elapsed
}

/// Runs the rounds and prints the table and the summary. The subjects are `before`
/// (if given), `after`, `after` again (the A/A control) and `bare_spawn`.
pub(crate) fn run(after: Subject, before: Option<Subject>, cfg: Config) {
    let again = Subject {
        name: "after_again",
        ..after
    };
    let bare = Subject {
        name: "bare_spawn",
        round: bare_spawn,
    };
    let floor = (!query_hit()).then_some(bare);
    let subjects: Vec<Subject> = before
        .into_iter()
        .chain([after, again])
        .chain(floor)
        .collect();
    let index = |name: &str| subjects.iter().position(|s| s.name == name);
    let (a, aa, b) = (index("after"), index("after_again"), index("bare_spawn"));
    let mut pairs = Vec::new();
    if let (Some(a), Some(r)) = (a, index("before")) {
        pairs.push(("after/before", a, r));
    }
    if let (Some(a), Some(aa)) = (a, aa) {
        pairs.push(("after/after_again (A/A)", a, aa));
    }
    if let (Some(a), Some(b)) = (a, b) {
        pairs.push(("after/bare_spawn", a, b));
    }
    let (k, n) = (subjects.len(), cfg.tasks);
    let rt = runtime();
    let mut shuffle = Shuffle(id(cfg.seed) | 1);

    println!(
        "ab_lifecycle ({}): {} rounds (+{} warm-up) of {n} ids, {} in millions; order \
         shuffled per round (seed {})\n",
        if query_hit() {
            "query_hit"
        } else {
            "lifecycle"
        },
        cfg.rounds,
        cfg.warmup,
        if query_hit() { "queries/s" } else { "tasks/s" },
        cfg.seed
    );
    for _ in 0..cfg.warmup {
        for &i in &shuffle.order(k) {
            (subjects[i].round)(&rt, n);
        }
    }

    let mut header = format!("{:>5}  {:<9} {:>7}", "round", "order", "others");
    for s in &subjects {
        header.push_str(&format!(" {:>12}", s.name));
    }
    for (name, ..) in &pairs {
        header.push_str(&format!(" {:>24}", name));
    }
    println!("{header}");
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); k];
    let (run_start, run_ticks) = (Instant::now(), cpu_ticks());
    for r in 0..cfg.rounds {
        let order = shuffle.order(k);
        let (round_start, round_ticks) = (Instant::now(), cpu_ticks());
        let mut this = vec![0.0; k];
        for &i in &order {
            let elapsed = (subjects[i].round)(&rt, n);
            this[i] = n as f64 / elapsed.as_secs_f64();
            rates[i].push(this[i]);
        }
        let others = others_cpus(round_ticks, cpu_ticks(), round_start.elapsed())
            .map_or("-".to_string(), |c| format!("{c:.2}"));
        let order: String = order.iter().map(|i| i.to_string()).collect();
        let mut line = format!("{:>5}  {:<9} {:>7}", r + 1, order, others);
        for rate in &this {
            line.push_str(&format!(" {:>12.3}", rate / 1e6));
        }
        for &(_, x, y) in &pairs {
            line.push_str(&format!(" {:>24.3}", this[x] / this[y]));
        }
        println!("{line}");
    }
    if let Some(c) = others_cpus(run_ticks, cpu_ticks(), run_start.elapsed()) {
        println!(
            "(others: CPUs' worth of time used by other processes during the round; \
             {c:.2} over all rounds)"
        );
    }
    println!(
        "(order: subjects by column number, {})",
        subjects
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{i} = {}", s.name))
            .collect::<Vec<_>>()
            .join(", ")
    );

    println!("\ntasks/s (millions)      median      min      max");
    for (s, r) in subjects.iter().zip(&rates) {
        let (lo, hi) = min_max(r);
        println!(
            "{:<20} {:>9.3} {:>8.3} {:>8.3}",
            s.name,
            median(r) / 1e6,
            lo / 1e6,
            hi / 1e6
        );
    }

    let coverage = median_ci(&vec![1.0; cfg.rounds])
        .map_or("-".to_string(), |(.., c)| format!("{:.1}%", c * 100.0));
    println!(
        "\nper-round ratio of tasks/s    median      min      max   CI of median \
         ({coverage})  first faster  ratio of medians"
    );
    for &(name, x, y) in &pairs {
        let ratios: Vec<f64> = rates[x].iter().zip(&rates[y]).map(|(p, q)| p / q).collect();
        let (lo, hi) = min_max(&ratios);
        let ci = match median_ci(&ratios) {
            Some((l, h, _)) => format!("{l:.3} .. {h:.3}"),
            None => "-".to_string(),
        };
        let wins = ratios.iter().filter(|&&q| q > 1.0).count();
        println!(
            "{name:<28} {:>8.3} {lo:>8.3} {hi:>8.3} {ci:>18} {:>14} {:>17.3}",
            median(&ratios),
            format!("{wins}/{}", ratios.len()),
            median(&rates[x]) / median(&rates[y])
        );
    }
    if let Some(&(_, x, y)) = pairs.first().filter(|p| p.0 == "after/before") {
        let times: Vec<f64> = rates[y].iter().zip(&rates[x]).map(|(q, p)| q / p).collect();
        let t = median(&times);
        let (lo, hi) = min_max(&times);
        let coverage = median_ci(&times).map_or(String::new(), |(l, h, c)| {
            format!(
                "; {:.1}% CI of the median {:+.1}% .. {:+.1}%",
                c * 100.0,
                (l - 1.0) * 100.0,
                (h - 1.0) * 100.0
            )
        });
        println!(
            "\nafter takes {:+.1}% the time of before per round (median of time ratios; \
             rounds range {:+.1}% .. {:+.1}%{coverage})",
            (t - 1.0) * 100.0,
            (lo - 1.0) * 100.0,
            (hi - 1.0) * 100.0
        );
    }
}
