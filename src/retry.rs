//! [`RetryPolicy`]: how many attempts a launch gets, how long it waits between them,
//! and which failures are worth another attempt.

use std::time::Duration;

use crate::status::FailureReason;

/// How a launch made with `launch_retrying` retries a failed attempt: up to
/// [`attempts`](Self::new) attempts in all, the `n`-th retry after a backoff of
/// `initial × multiplier^(n-1)`, capped at `max`, with jitter, for the failure
/// reasons it [retries on](Self::retry_on).
///
/// Between attempts the id reads `Working`, and
/// [`TaskStatus`](crate::TaskStatus) shows the number of the attempt to come in
/// `attempts`, the failed attempt's reason in `last_failure`, and in `retry_at` when
/// the next attempt starts. A cancel (or a timeout counted from the launch) stops the
/// retries: the id ends `Failed`. Only one attempt runs at a time, and a success ends
/// the launch, so an id still succeeds at most once.
///
/// The defaults: a backoff from 100 ms, doubling, capped at 30 s, with a jitter of
/// 0.5 (each wait is drawn evenly from the upper half of its backoff), retrying on
/// [`Error`](FailureReason::Error), [`Panicked`](FailureReason::Panicked) and
/// [`TimedOut`](FailureReason::TimedOut) (a run timeout; the launch's own timeout
/// ends the launch). [`Cancelled`](FailureReason::Cancelled) never retries.
///
/// ```
/// use std::time::Duration;
/// use async_tasks_recorder::{FailureReason, RetryPolicy};
///
/// let policy = RetryPolicy::new(4)
///     .backoff(Duration::from_millis(200), Duration::from_secs(5))
///     .jitter(0.0)
///     .retry_on(&[FailureReason::Error]);
/// assert_eq!(policy.attempts(), 4);
/// assert_eq!(policy.backoff_after(1), Duration::from_millis(200));
/// assert_eq!(policy.backoff_after(3), Duration::from_millis(800));
/// assert!(policy.retries(FailureReason::Error));
/// assert!(!policy.retries(FailureReason::Panicked));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use]
pub struct RetryPolicy {
    attempts: u32,
    initial: Duration,
    max: Duration,
    multiplier: f64,
    jitter: f64,
    /// The reasons retried, one bit each (by their place in `FailureReason::ALL`).
    on: u8,
}

const fn min(a: Duration, b: Duration) -> Duration {
    if a.as_nanos() < b.as_nanos() {
        a
    } else {
        b
    }
}

const fn bit(reason: FailureReason) -> u8 {
    1 << reason as u8
}

impl RetryPolicy {
    /// Up to `attempts` attempts in all (the first included; 0 counts as 1, which
    /// never retries), with the default backoff and reasons.
    pub const fn new(attempts: u32) -> Self {
        RetryPolicy {
            attempts: if attempts == 0 { 1 } else { attempts },
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
            on: bit(FailureReason::Error)
                | bit(FailureReason::Panicked)
                | bit(FailureReason::TimedOut),
        }
    }

    /// The first backoff, and the most any backoff grows to. Both are capped at
    /// [`MAX_BACKOFF`](Self::MAX_BACKOFF), so that no clock overflows.
    pub const fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial = min(initial, Self::MAX_BACKOFF);
        self.max = min(max, Self::MAX_BACKOFF);
        self
    }

    /// The longest backoff a policy waits: 365 days.
    pub const MAX_BACKOFF: Duration = Duration::from_secs(365 * 24 * 3600);

    /// How much each backoff grows over the one before (default 2; values below 1,
    /// and NaN, count as 1: a constant backoff).
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = if multiplier >= 1.0 { multiplier } else { 1.0 };
        self
    }

    /// The share of each backoff that is random (0 to 1, default 0.5): a wait is
    /// drawn evenly between `backoff × (1 - jitter)` and the backoff, so that tasks
    /// that failed together do not all come back at once. Out of range (or NaN)
    /// values are clamped (NaN to 0).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        self
    }

    /// The failure reasons that get another attempt, replacing the default set.
    /// [`Cancelled`](FailureReason::Cancelled) is never retried, nor a failure the
    /// task does not see itself (`Dropped`, `WorkerLost`: the launch is over then).
    pub fn retry_on(mut self, reasons: &[FailureReason]) -> Self {
        self.on = 0;
        for &reason in reasons {
            self.on |= bit(reason);
        }
        self
    }

    /// The most attempts a launch makes.
    #[must_use]
    pub const fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Whether a failure for `reason` gets another attempt, while attempts are left.
    #[must_use]
    pub const fn retries(&self, reason: FailureReason) -> bool {
        match reason {
            FailureReason::Cancelled | FailureReason::Dropped | FailureReason::WorkerLost => false,
            _ => self.on & bit(reason) != 0,
        }
    }

    /// The backoff after the `failed`-th attempt failed, before jitter:
    /// `initial × multiplier^(failed-1)`, at most `max`.
    #[must_use]
    pub fn backoff_after(&self, failed: u32) -> Duration {
        let exponent = i32::try_from(failed.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        if secs.is_finite() && secs < self.max.as_secs_f64() {
            Duration::from_secs_f64(secs)
        } else {
            self.max
        }
    }

    /// The wait after the `failed`-th attempt failed, with jitter from `random`
    /// (any `u64`, drawn by the caller).
    fn wait_after(&self, failed: u32, random: u64) -> Duration {
        let backoff = self.backoff_after(failed);
        // A fraction in [0, 1) from the top 53 bits.
        let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
        backoff.mul_f64(1.0 - self.jitter * unit)
    }

    /// Whether the attempt numbered `attempt`, failed for `reason`, gets another.
    fn again(&self, attempt: u32, reason: FailureReason) -> bool {
        attempt < self.attempts && self.retries(reason)
    }

    /// The wait before the next attempt, when the `made`-th attempt of a launch failed
    /// for `reason`: `None` if there is none (no attempts left, a reason not retried,
    /// or no time for it before the launch's `deadline`). `salt` spreads the jitter.
    pub(crate) fn next_wait(
        &self,
        made: u32,
        reason: FailureReason,
        salt: u64,
        deadline: Option<tokio::time::Instant>,
    ) -> Option<Duration> {
        if !self.again(made, reason) {
            return None;
        }
        let wait = self.wait_after(made, random(salt));
        let in_time = match deadline {
            Some(at) => tokio::time::Instant::now()
                .checked_add(wait)
                .is_some_and(|next| next < at),
            None => true,
        };
        in_time.then_some(wait)
    }
}

impl Default for RetryPolicy {
    /// Three attempts with the default backoff and reasons.
    fn default() -> Self {
        RetryPolicy::new(3)
    }
}

/// A random `u64` for a jitter: the splitmix64 finaliser over a per-process counter
/// mixed with the clock and `salt` (an attempt's token, say). Not for cryptography:
/// it only spreads retries apart.
fn random(salt: u64) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64 ^ d.as_secs());
    let mut z = COUNTER
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(nanos)
        .wrapping_add(salt.rotate_left(32));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap() {
        let p = RetryPolicy::new(10).backoff(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(p.backoff_after(1), Duration::from_millis(100));
        assert_eq!(p.backoff_after(2), Duration::from_millis(200));
        assert_eq!(p.backoff_after(4), Duration::from_millis(800));
        assert_eq!(p.backoff_after(5), Duration::from_secs(1));
        assert_eq!(p.backoff_after(u32::MAX), Duration::from_secs(1));
        let huge = RetryPolicy::new(2).backoff(Duration::MAX, Duration::MAX);
        assert_eq!(huge.backoff_after(1), RetryPolicy::MAX_BACKOFF);
    }

    #[test]
    fn jitter_stays_within_the_upper_share() {
        let p = RetryPolicy::new(3).backoff(Duration::from_secs(1), Duration::from_secs(1));
        for salt in 0..1000 {
            let w = p.wait_after(1, random(salt));
            assert!(
                w > Duration::from_millis(500) && w <= Duration::from_secs(1),
                "{w:?}"
            );
        }
        let none = p.jitter(0.0);
        assert_eq!(none.wait_after(1, u64::MAX), Duration::from_secs(1));
        let full = p.jitter(f64::NAN);
        assert_eq!(full.wait_after(1, u64::MAX), Duration::from_secs(1));
    }

    #[test]
    fn reasons_and_attempts() {
        let p = RetryPolicy::new(2).retry_on(&FailureReason::ALL);
        assert!(p.again(1, FailureReason::Error));
        assert!(!p.again(2, FailureReason::Error));
        assert!(!p.again(1, FailureReason::Cancelled));
        assert!(!p.again(1, FailureReason::WorkerLost));
        assert_eq!(RetryPolicy::new(0).attempts(), 1);
        assert_eq!(
            RetryPolicy::new(5).multiplier(0.5).backoff_after(3),
            Duration::from_millis(100)
        );
    }
}
