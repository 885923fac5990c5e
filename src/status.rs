//! Detailed status of an id, why an attempt failed, and transition events.

use std::fmt;
use std::time::{Instant, SystemTime};

use crate::kept::Kept;
use crate::state::TaskPhase;

/// Why the last attempt of an id failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum FailureReason {
    /// The future returned `Err`.
    Error,
    /// The future panicked.
    Panicked,
    /// [`cancel`](crate::AsyncTasksRecorder::cancel) stopped it.
    Cancelled,
    /// The future was dropped before it finished for another reason: its
    /// `launch_block` caller went away, or the runtime shut down.
    Dropped,
    /// It ran longer than the timeout given at launch.
    TimedOut,
    /// The process running it stopped renewing its lease (it died, paused, or lost its
    /// connection to a shared store) and the lease ran out. Only a store shared by
    /// several processes (Redis) records this; the id may be launched again, by any
    /// process.
    WorkerLost,
}

impl FailureReason {
    /// The lower-case name used by `Display`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureReason::Error => "error",
            FailureReason::Panicked => "panicked",
            FailureReason::Cancelled => "cancelled",
            FailureReason::Dropped => "dropped",
            FailureReason::TimedOut => "timed_out",
            FailureReason::WorkerLost => "worker_lost",
        }
    }

    /// Every reason, in a fixed order (handy for dashboards and tests).
    pub const ALL: [FailureReason; 6] = [
        FailureReason::Error,
        FailureReason::Panicked,
        FailureReason::Cancelled,
        FailureReason::Dropped,
        FailureReason::TimedOut,
        FailureReason::WorkerLost,
    ];

    /// The reason named by [`as_str`](Self::as_str).
    pub(crate) fn from_name(name: &str) -> Option<FailureReason> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Parses the names [`as_str`](FailureReason::as_str) gives (`timed_out`,
/// `worker_lost`, ...).
impl std::str::FromStr for FailureReason {
    type Err = crate::ParseNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FailureReason::from_name(s).ok_or_else(|| {
            crate::ParseNameError::new(
                "failure reason",
                s,
                &FailureReason::ALL.map(FailureReason::as_str),
            )
        })
    }
}

/// A snapshot of one id, from [`status`](crate::AsyncTasksRecorder::status).
///
/// With the `serde` feature it serializes without `since` (an [`Instant`] means
/// nothing outside this process; `started_at` carries the same moment by the wall
/// clock), which reads back as `None`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct TaskStatus {
    /// The phase, including `Revoking`.
    pub phase: TaskPhase,
    /// How many times the id was launched since it was last `NotFound` (the running or
    /// last attempt included). Always known for `Working` and `Failed`; for `Success`
    /// and `Revoking` only when the recorder keeps details
    /// ([`Builder::track_details`](crate::Builder::track_details)); `None` for
    /// `NotFound`.
    pub attempts: Option<u32>,
    /// Why the last attempt failed, when the phase is `Failed`; for `Working`, while
    /// a [retrying](crate::RetryPolicy) launch waits between attempts, why the attempt
    /// before failed.
    pub last_failure: Option<FailureReason>,
    /// When the current phase began, when the recorder keeps details (always on the
    /// Redis recorder, converted from the server's clock).
    #[cfg_attr(feature = "serde", serde(skip))]
    pub since: Option<Instant>,
    /// When the current phase began by the wall clock, to show to people: on the
    /// in-memory recorder whenever `since` is known (computed from it when read); on
    /// the Redis recorder the server's time, so every replica reports the same.
    pub started_at: Option<SystemTime>,
    /// For `Success` and `Failed` (and `Revoking`, the success's), what the launch
    /// kept: the output or the failure's message, when it was made with
    /// [`launch_kept`](crate::AsyncTasksRecorder::launch_kept). `None` otherwise, and
    /// for a tombstone.
    pub kept: Option<Kept>,
    /// For `Working`: its future has not started, it waits for a
    /// [`max_running`](crate::Builder::max_running) slot (the 2.x queries say
    /// `Working` either way). On Redis, a slot of the process that launched it.
    pub queued: bool,
    /// For `Working`: the attempt's last reported progress
    /// ([`TaskContext::progress`](crate::TaskContext::progress)), if it reported any.
    pub progress: Option<u64>,
    /// For `Working`: a [retrying](crate::RetryPolicy) launch waits between attempts,
    /// and its next attempt (numbered `attempts`) starts at this time, or as soon after
    /// it as a [`max_running`](crate::Builder::max_running) slot is free. `None` while
    /// an attempt runs. On Redis, the server's clock (and if the call that starts the
    /// next attempt is lost, it shows until that attempt's first progress report or
    /// its end).
    pub retry_at: Option<SystemTime>,
}

impl TaskStatus {
    pub(crate) const NOT_FOUND: TaskStatus = TaskStatus {
        phase: TaskPhase::NotFound,
        attempts: None,
        last_failure: None,
        since: None,
        started_at: None,
        kept: None,
        queued: false,
        progress: None,
        retry_at: None,
    };
}

/// How an attempt ended, without what it kept: what the finish path hands around
/// (two bytes, `Copy`). The kept value joins it only where a waiter receives a
/// [`Settled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct End {
    pub(crate) phase: TaskPhase,
    pub(crate) failure: Option<FailureReason>,
}

impl End {
    /// The end as a waiter reads it, with `kept`.
    pub(crate) fn settled(self, kept: Option<Kept>) -> Settled {
        Settled {
            phase: self.phase,
            failure: self.failure,
            kept,
        }
    }
}

/// How a running phase ended, from [`wait`](crate::AsyncTasksRecorder::wait): the
/// phase the id moved to (`Success`, `Failed` or `NotFound`) and, for `Failed`, why.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Settled {
    /// The final phase.
    pub phase: TaskPhase,
    /// Why the attempt failed, when `phase` is `Failed`.
    pub failure: Option<FailureReason>,
    /// What the attempt kept, when it was launched with
    /// [`launch_kept`](crate::AsyncTasksRecorder::launch_kept): its output or its
    /// failure's message (see [`Kept`]). A wait that ends a revoke carries none (the
    /// success's value, put back by a failed revoke, is read with `status`).
    pub kept: Option<Kept>,
}

impl Settled {
    /// The 2.x view of the phase.
    #[must_use]
    pub const fn state(&self) -> crate::TaskState {
        self.phase.state()
    }
}

/// One change of an id's phase, as delivered by
/// [`subscribe`](crate::AsyncTasksRecorder::subscribe).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Transition<K> {
    /// The id that changed.
    pub id: K,
    /// Its phase before.
    pub from: TaskPhase,
    /// Its phase after.
    pub to: TaskPhase,
    /// For a move to `Failed`, why.
    pub failure: Option<FailureReason>,
    /// A progress report of a running attempt: `from` and `to` are both `Working`,
    /// and this is the value reported. `None` for every change of phase.
    pub progress: Option<u64>,
}
