//! Helpers shared by the custom-harness benches: which of them a command line selects,
//! the `bare_spawn` floor, the shuffled order of each round, the CPU time other
//! processes used, and order statistics (median, range, a distribution-free interval of the median).
//! Only `std`, so that `bench-lab/ab.sh` can copy it into its temporary project.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Whether the bench `name` (a `harness = false` program) runs for this command line,
/// as libtest and criterion behave: `--list` prints it and runs nothing, and a name
/// filter (`cargo bench -- query`) that does not select it skips it.
pub(crate) fn selected(name: &str) -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{name}: benchmark");
        return false;
    }
    let mut filters = args
        .iter()
        .filter(|a| !a.starts_with('-') && a.chars().any(char::is_alphabetic))
        .peekable();
    filters.peek().is_none() || filters.any(|f| name.contains(f.as_str()))
}

/// xorshift64* for the order of the subjects in each round.
pub(crate) struct Shuffle(pub(crate) u64);

impl Shuffle {
    pub(crate) fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) % bound as u64) as usize
    }

    pub(crate) fn order(&mut self, k: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..k).collect();
        for i in (1..k).rev() {
            order.swap(i, self.below(i + 1));
        }
        order
    }
}

/// CPU time of the whole machine and of this process, from `/proc` (Linux), in clock
/// ticks: `(busy ticks of all CPUs, ticks of this process)`. `None` elsewhere.
pub(crate) fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy = cpu.iter().take(8).sum::<u64>() - cpu.get(3)? - cpu.get(4)?;
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the command name: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = own.rsplit_once(')')?.1.split_whitespace().collect();
    let own = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((busy, own))
}

/// CPUs' worth of time that other processes used between two [`cpu_ticks`] readings
/// `wall` apart (ticks are 1/100 s on Linux).
pub(crate) fn others_cpus(
    from: Option<(u64, u64)>,
    to: Option<(u64, u64)>,
    wall: Duration,
) -> Option<f64> {
    let ((b0, o0), (b1, o1)) = (from?, to?);
    let others = (b1 - b0).saturating_sub(o1 - o0);
    Some(others as f64 / 100.0 / wall.as_secs_f64())
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

pub(crate) fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// A distribution-free confidence interval of the median of `values`: the `k`-th
/// smallest and `k`-th largest value, with `k` the largest such that the interval
/// covers the median with probability ≥ 95% (a binomial(n, 1/2) tail). `None` below 6
/// values. Returns `(low, high, coverage)`.
pub(crate) fn median_ci(values: &[f64]) -> Option<(f64, f64, f64)> {
    let n = values.len();
    // P(B <= j) for B ~ binomial(n, 1/2).
    let cdf = |j: usize| -> f64 {
        let mut term = 0.5f64.powi(n as i32); // C(n, 0) / 2^n
        let mut sum = term;
        for i in 1..=j {
            term *= (n + 1 - i) as f64 / i as f64;
            sum += term;
        }
        sum
    };
    let k = (1..=n / 2).take_while(|&k| cdf(k - 1) <= 0.025).last()?;
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    Some((v[k - 1], v[n - k], 1.0 - 2.0 * cdf(k - 1)))
}

/// Jobs of the running `bare_spawn` not finished yet (runs never overlap).
static REMAINING: AtomicUsize = AtomicUsize::new(0);
static ALL_DONE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// The floor of `lifecycle`: spawn `n` jobs (`async { Ok::<(), ()>(()) }`, the job every
/// competitor runs) on the runtime's workers and wait for all of them, recording
/// nothing. The last job to finish wakes the launcher (a permit is kept if it is not
/// waiting yet).
pub(crate) fn bare_spawn(rt: &tokio::runtime::Runtime, n: usize) -> Duration {
    rt.block_on(async move {
        tokio::spawn(async move {
            REMAINING.store(n, Ordering::SeqCst);
            let start = Instant::now();
            for _ in 0..n {
                tokio::spawn(async {
                    let out = Ok::<(), ()>(());
                    if REMAINING.fetch_sub(1, Ordering::AcqRel) == 1 {
                        ALL_DONE.notify_one();
                    }
                    out
                });
            }
            ALL_DONE.notified().await;
            start.elapsed()
        })
        .await
        .expect("bench task panicked")
    })
}
