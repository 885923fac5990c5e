//! [`LaunchOptions`] and the recorder [`Builder`].

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use crate::observe::FmtId;

/// Per-launch options for [`launch_with`](crate::AsyncTasksRecorder::launch_with).
///
/// ```
/// use std::time::Duration;
/// use async_tasks_recorder::LaunchOptions;
///
/// let options = LaunchOptions::new().timeout(Duration::from_secs(30));
/// assert_eq!(options.timeout, Some(Duration::from_secs(30)));
/// assert_eq!(options.run_timeout, None);
/// ```
///
/// The fields say what was set; the methods of the same names set them. New options
/// may be added, so the struct is built with [`new`](Self::new) or `default()`, not
/// with a literal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub struct LaunchOptions {
    /// The timeout counted from the launch, if one was set (see
    /// [`timeout`](Self::timeout())).
    pub timeout: Option<Duration>,
    /// The timeout counted from the start of the run, if one was set (see
    /// [`run_timeout`](Self::run_timeout())).
    pub run_timeout: Option<Duration>,
}

impl LaunchOptions {
    /// No timeout.
    pub const fn new() -> Self {
        LaunchOptions {
            timeout: None,
            run_timeout: None,
        }
    }

    /// Fail the task with [`FailureReason::TimedOut`](crate::FailureReason::TimedOut),
    /// dropping its future, if it has not finished `timeout` after it was launched
    /// (a wait for a [`max_running`](crate::Builder::max_running) slot included; see
    /// [`run_timeout`](Self::run_timeout) for a timeout of the run alone).
    ///
    /// The runtime must have its time driver enabled (`enable_time` or `enable_all`,
    /// as `#[tokio::main]` does); without it the task fails as `Panicked`. A timeout
    /// too large for the clock to reach (`Duration::MAX`, say) is no timeout.
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Fail the task with [`FailureReason::TimedOut`](crate::FailureReason::TimedOut),
    /// dropping its future, if it has not finished `timeout` after **it started
    /// running**: with [`Builder::max_running`](crate::Builder::max_running), after it
    /// got its slot, so that time spent queued does not count; without a limit that is
    /// the launch. [`timeout`](Self::timeout) counts from the launch, the wait for a
    /// slot included, and is the one to use to bound the whole; both may be set, and
    /// whichever ends first fails the task. Same runtime requirements as `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use async_tasks_recorder::LaunchOptions;
    ///
    /// let options = LaunchOptions::new()
    ///     .run_timeout(Duration::from_secs(30)) // for the upload itself
    ///     .timeout(Duration::from_secs(600)); // for the wait and the upload
    /// assert_eq!(options.run_timeout, Some(Duration::from_secs(30)));
    /// ```
    pub const fn run_timeout(mut self, timeout: Duration) -> Self {
        self.run_timeout = Some(timeout);
        self
    }
}

/// What happens to a `Success` record when it expires (after
/// [`Builder::success_ttl`], or evicted by [`Builder::max_finished`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SuccessExpiry {
    /// Keep a compact tombstone: the id alone, no attempts, no timestamps, not counted
    /// by `max_finished`. The id still reads `Success`, so **at most one success per
    /// id keeps holding** for as long as the tombstone lives (until a revoke removes
    /// it). Memory per record drops to the plain record's (about 20 bytes for `u64`
    /// ids, see BENCHMARKS.md) but does not reach zero. The default.
    #[default]
    Tombstone,
    /// Forget the record: the id becomes `NotFound`, **so a later launch of it is
    /// accepted and its future runs again**. Choose this only when running a task
    /// twice is harmless, or when something outside the recorder stops duplicates.
    Forget,
}

/// The retention settings of a [`Builder`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Retention {
    pub(crate) failed_ttl: Option<Duration>,
    pub(crate) success_ttl: Option<Duration>,
    pub(crate) success_expiry: SuccessExpiry,
    pub(crate) max_finished: Option<usize>,
    /// The background sweeper is turned off ([`Builder::background_sweep`]).
    pub(crate) no_background_sweep: bool,
}

impl Retention {
    /// Whether any retention is asked for.
    pub(crate) fn is_on(&self) -> bool {
        self.failed_ttl.is_some() || self.success_ttl.is_some() || self.max_finished.is_some()
    }
}

/// Configures an [`AsyncTasksRecorder`](crate::AsyncTasksRecorder); from
/// [`AsyncTasksRecorder::builder`](crate::AsyncTasksRecorder::builder).
///
/// ```
/// use async_tasks_recorder::AsyncTasksRecorder;
///
/// let recorder: AsyncTasksRecorder<u64> = AsyncTasksRecorder::builder()
///     .track_details(true)
///     .event_capacity(4096)
///     .build();
/// ```
///
/// The id type is carried by the builder, so it is inferred from how the recorder is
/// used, as with `AsyncTasksRecorder::new()`.
#[must_use]
pub struct Builder<K> {
    pub(crate) track_details: bool,
    pub(crate) event_capacity: usize,
    pub(crate) max_running: Option<usize>,
    pub(crate) retention: Retention,
    pub(crate) max_kept_len: usize,
    pub(crate) progress_interval: Duration,
    _ids: PhantomData<fn() -> K>,
    /// `<K as Debug>::fmt`, set by [`record_ids`](Builder::record_ids).
    pub(crate) fmt_id: Option<FmtId<K>>,
}

impl<K> Default for Builder<K> {
    fn default() -> Self {
        Builder {
            track_details: false,
            event_capacity: 1024,
            max_running: None,
            retention: Retention::default(),
            max_kept_len: crate::kept::DEFAULT_MAX_KEPT_LEN,
            progress_interval: crate::progress::DEFAULT_INTERVAL,
            _ids: PhantomData,
            fmt_id: None,
        }
    }
}

impl<K> Clone for Builder<K> {
    fn clone(&self) -> Self {
        Builder {
            track_details: self.track_details,
            event_capacity: self.event_capacity,
            max_running: self.max_running,
            retention: self.retention,
            max_kept_len: self.max_kept_len,
            progress_interval: self.progress_interval,
            _ids: PhantomData,
            fmt_id: self.fmt_id,
        }
    }
}

impl<K> fmt::Debug for Builder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("track_details", &self.track_details)
            .field("event_capacity", &self.event_capacity)
            .field("max_running", &self.max_running)
            .field("retention", &self.retention)
            .field("max_kept_len", &self.max_kept_len)
            .field("progress_interval", &self.progress_interval)
            .field("record_ids", &self.fmt_id.is_some())
            .finish()
    }
}

impl<K> Builder<K> {
    /// Keep, for every record, when its current phase began and (for successes too) how
    /// many attempts it took; reported by
    /// [`status`](crate::AsyncTasksRecorder::status). Off by default: it costs a clock
    /// read per transition and, for `Success` records, 24 bytes of details in the
    /// record's entry (and, for those under a [`success_ttl`](Self::success_ttl) or
    /// [`max_finished`](Self::max_finished), a side entry with a second copy of the
    /// key, since their entries are shared with the expiry queue's bookkeeping).
    pub fn track_details(mut self, on: bool) -> Self {
        self.track_details = on;
        self
    }

    /// How many transitions a [`subscribe`](crate::AsyncTasksRecorder::subscribe)r may
    /// fall behind before it is told it missed some (default 1024). The value is kept
    /// within 1 ..= 2^20 and rounded up to a power of two (Tokio's broadcast buffer is
    /// sized so: 1000 gives 1024). The buffer is allocated on the first subscription.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    /// Run at most `n` launched futures at once (values above Tokio's semaphore limit,
    /// `usize::MAX >> 3`, are capped there). Launches beyond the limit
    /// are still accepted: the id reads `Working` ("running or pending", as in 2.x),
    /// [`status`](crate::AsyncTasksRecorder::status) says
    /// [`queued`](crate::TaskStatus::queued), [`counts`](crate::AsyncTasksRecorder::counts)
    /// counts it in [`queued`](crate::StateCounts::queued), and its future starts when
    /// a running one ends. Waiting tasks get slots in the order
    /// they first ran (Tokio's semaphore is fair), which is launch order from one
    /// launching task on a current-thread runtime and roughly launch order otherwise
    /// (a multi-thread scheduler may first run tasks out of order). A waiting task can
    /// be [cancelled](crate::AsyncTasksRecorder::cancel); its
    /// [timeout](crate::LaunchOptions::timeout) counts from the launch, waiting
    /// included, and its [run timeout](crate::LaunchOptions::run_timeout) from the
    /// moment it got its slot. `launch_block` callers wait for a slot too. Revoke futures are not
    /// limited: a compensating action never queues behind new work.
    ///
    /// The limit counts futures, not records: a future gives its slot back when it
    /// ends, just before its record reads final, so for that moment the next task
    /// may already run while the last one still reads `Working`; and a queued task
    /// reads `queued: false` from when it got its slot, just before its future is
    /// first polled (or cancelled unpolled).
    ///
    /// A future that itself awaits a `launch_block` of the same recorder holds its slot
    /// while the inner one waits for another: with `n` such nested tasks running, they
    /// wait for each other for ever. Use `launch` (which does not wait) inside tasks.
    ///
    /// Default: no limit.
    ///
    /// # Panics
    /// If `n` is 0: a limit of no futures would never run a task.
    pub fn max_running(mut self, n: usize) -> Self {
        assert!(n > 0, "max_running must be at least 1");
        self.max_running = Some(n);
        self
    }

    /// The most bytes a value kept by
    /// [`launch_kept`](crate::AsyncTasksRecorder::launch_kept) may have (default 8 KiB):
    /// a longer failure message is cut to it, and a longer output is not kept
    /// ([`Kept::TooLarge`](crate::Kept::TooLarge)). See [`Kept`](crate::Kept) for what
    /// the limit is for.
    pub fn max_kept_len(mut self, bytes: usize) -> Self {
        self.max_kept_len = bytes;
        self
    }

    /// How often one running attempt's [progress](crate::TaskContext::progress) reaches
    /// [`subscribe`](crate::AsyncTasksRecorder::subscribe)rs (default 250 ms): at most
    /// one progress event per attempt per interval, however often the task reports.
    /// `status` reads the last value whatever this says.
    pub fn progress_interval(mut self, interval: Duration) -> Self {
        self.progress_interval = interval;
        self
    }

    /// Forget `Failed` records `ttl` after they failed: the id becomes `NotFound` (so a
    /// failed upload nobody retried stops being listed). A relaunch before then starts
    /// a new attempt as usual.
    ///
    /// Expiry (of this and the TTL below) happens in three places:
    /// - every launch and every finish expires what is due in its own shard (at most
    ///   64 records, and nothing but two atomic loads and a clock read when nothing
    ///   is due), so a busy recorder keeps itself trim;
    /// - [`AsyncTasksRecorder::sweep`](crate::AsyncTasksRecorder::sweep) expires
    ///   everything due, at once;
    /// - a background task per recorder, started by the first launch made inside a
    ///   Tokio runtime, wakes every `ttl / 16` (between 1 ms and 1 s, from the
    ///   shortest TTL), so that a record lives at least `ttl` and at most one such
    ///   tick longer even when nothing else happens. It works in batches of at most 64
    ///   records per shard lock and does not lock shards with nothing due, so queries
    ///   never wait long behind it. It ends soon after the recorder is dropped, and a
    ///   new one starts on the next launch if its runtime shut down while the recorder
    ///   lives on. It needs the runtime's time driver (`enable_time`, or `enable_all`
    ///   as `#[tokio::main]` does), as Tokio's timers do: on a runtime without one,
    ///   turn it off with [`background_sweep(false)`](Self::background_sweep).
    ///
    /// [`max_finished`](Self::max_finished) needs no background task.
    ///
    /// Default: kept until relaunched.
    pub fn failed_ttl(mut self, ttl: Duration) -> Self {
        self.retention.failed_ttl = Some(ttl);
        self
    }

    /// Expire `Success` records `ttl` after they became `Success` (a failed revoke,
    /// which puts an id back to `Success`, starts the time again). What expiring means
    /// is set by [`success_expiry`](Self::success_expiry): by default the record
    /// shrinks to a tombstone and the id keeps reading `Success`;
    /// **with [`SuccessExpiry::Forget`] the id becomes `NotFound` and could run
    /// again**.
    ///
    /// Default: kept until revoked.
    pub fn success_ttl(mut self, ttl: Duration) -> Self {
        self.retention.success_ttl = Some(ttl);
        self
    }

    /// What an expiring `Success` record becomes: a [`Tombstone`](SuccessExpiry::Tombstone)
    /// (the default: at most one success per id still holds) or nothing
    /// ([`Forget`](SuccessExpiry::Forget): **the id may run again**).
    pub fn success_expiry(mut self, expiry: SuccessExpiry) -> Self {
        self.retention.success_expiry = expiry;
        self
    }

    /// Keep at most `n` finished records with their details: `Success` records (not
    /// tombstones) and `Failed` records. When a task's end brings the count above
    /// `n`, the oldest finished records (by when they finished, across all shards)
    /// expire at once: a `Failed` one is forgotten, a `Success` one follows
    /// [`success_expiry`](Self::success_expiry). The cap holds whenever no finish is
    /// in progress (a finishing task may exceed it for the moment between adding its
    /// record and evicting). `n = 0` keeps none: every finished record expires at
    /// once.
    ///
    /// Cost: records are numbered from one counter for the whole recorder (their
    /// finishing order) and counted in another, two atomic operations per finish on
    /// lines all cores share; each record gets a 24-byte queue entry in its shard and
    /// a 16-byte slot instead of the key alone. An eviction reads the 64 shards'
    /// published oldest entries and locks the one shard that holds the oldest.
    ///
    /// Default: no cap.
    pub fn max_finished(mut self, n: usize) -> Self {
        self.retention.max_finished = Some(n);
        self
    }

    /// Whether a background task sweeps expired records (default `true`; see
    /// [`failed_ttl`](Self::failed_ttl) for how expiry runs). Turn it off on a
    /// runtime without a time driver, where the task's timer would panic (and, in a
    /// program built with `panic = "abort"`, abort the process), or to decide when
    /// expiry runs: launches and finishes still expire what is due in their shard,
    /// and [`AsyncTasksRecorder::sweep`](crate::AsyncTasksRecorder::sweep) expires
    /// everything due. Without a TTL no task is started whatever this says.
    pub fn background_sweep(mut self, on: bool) -> Self {
        self.retention.no_background_sweep = !on;
        self
    }
}

impl<K: fmt::Debug> Builder<K> {
    /// Put each task's id, formatted with `Debug`, in the `id` field of its `tracing`
    /// spans and events (off by default: ids may be long, or personal data).
    ///
    /// Only the `tracing` feature uses it; without that feature this does nothing.
    /// Ids never become metric labels, whatever this says: one series per id would
    /// grow without bound.
    ///
    /// ```
    /// use async_tasks_recorder::AsyncTasksRecorder;
    ///
    /// let recorder: AsyncTasksRecorder<u64> =
    ///     AsyncTasksRecorder::builder().record_ids(true).build();
    /// ```
    pub fn record_ids(mut self, on: bool) -> Self {
        self.fmt_id = on.then_some(<K as fmt::Debug>::fmt as FmtId<K>);
        self
    }
}

#[cfg(all(test, not(atr_loom)))]
mod tests {

    #[test]
    #[should_panic(expected = "max_running must be at least 1")]
    fn a_limit_of_no_running_futures_is_refused() {
        let _ = crate::AsyncTasksRecorder::<u64>::builder().max_running(0);
    }

    #[test]
    fn a_limit_of_one_is_kept() {
        assert_eq!(
            crate::AsyncTasksRecorder::<u64>::builder()
                .max_running(1)
                .max_running,
            Some(1)
        );
    }
}
