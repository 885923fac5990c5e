//! The operations of a history and their answers: what the clients call, how the
//! futures they launch end and what those ends leave, and what `status` is compared
//! in.

use std::fmt;

use async_tasks_recorder::{FailureReason, Kept, TaskPhase, TaskState, TaskStatus};
use std::time::Instant;

use crate::model::RevokeOutcome;

/// The message of the panics the test plans; the panic hook keeps them quiet.
pub(crate) const PLANNED_PANIC: &str = "planned panic of the linearizability test";

/// How a launched or revoke future ends when it is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum End {
    Ok,
    Err,
    Panic,
    /// Never sent through a gate: the end of a timed attempt whose timeout fired.
    TimedOut,
}

impl End {
    /// The future's output for this end (a panic for `Panic`).
    pub(crate) fn output(self) -> Result<(), ()> {
        match self {
            End::Ok => Ok(()),
            End::Err | End::TimedOut => Err(()),
            End::Panic => panic!("{PLANNED_PANIC}"),
        }
    }

    /// The failure reason the recorder gives an attempt that ended so.
    pub(crate) fn reason(self) -> Option<FailureReason> {
        match self {
            End::Ok => None,
            End::Err => Some(FailureReason::Error),
            End::Panic => Some(FailureReason::Panicked),
            End::TimedOut => Some(FailureReason::TimedOut),
        }
    }
}

/// What a kept launch kept, as the checker compares it. Each kept launch of a history
/// has a number `n` of its own: its future returns `Ok(n)` (kept as the output `n`) or
/// `Err("e{n}")` (kept as that message), or panics (kept as the planned panic's
/// message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum KeptCode {
    Output(u32),
    Message(u32),
    Panic,
}

impl KeptCode {
    /// What a kept launch numbered `n` keeps when it ends so (a timeout keeps nothing).
    pub(crate) fn of(end: End, n: u32) -> Option<KeptCode> {
        match end {
            End::Ok => Some(KeptCode::Output(n)),
            End::Err => Some(KeptCode::Message(n)),
            End::Panic => Some(KeptCode::Panic),
            End::TimedOut => None,
        }
    }

    /// The code of a value a recorder kept.
    fn read(kept: &Kept) -> KeptCode {
        let parsed = match kept {
            Kept::Output(text) => text.parse().ok().map(KeptCode::Output),
            Kept::Message(text) if &**text == PLANNED_PANIC => Some(KeptCode::Panic),
            Kept::Message(text) => text
                .strip_prefix('e')
                .and_then(|n| n.parse().ok())
                .map(KeptCode::Message),
            _ => None,
        };
        parsed.unwrap_or_else(|| panic!("no kept launch of a history keeps {kept:?}"))
    }
}

/// What an attempt's end leaves besides its phase: nothing more, a kept value (of the
/// kept launch numbered so), or, for a retrying launch's failure, a wait for the next
/// attempt (its backoff outlasts the history, so the next attempt never starts in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leaves {
    Nothing,
    Kept(u32),
    Retry,
}

/// What `status` answered, as far as the model knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatusView {
    pub(crate) phase: TaskPhase,
    /// For `Working` and `Failed` only (a success's count is kept only with details).
    pub(crate) attempts: Option<u32>,
    pub(crate) last_failure: Option<FailureReason>,
    pub(crate) kept: Option<KeptCode>,
    /// For a running attempt; read only where `status` sees a report at once (memory).
    pub(crate) progress: Option<u64>,
    /// `retry_at` is set: the launch waits for its next attempt.
    pub(crate) retry_pending: bool,
    /// The attempt waits for a `max_running` slot.
    pub(crate) queued: bool,
}

impl StatusView {
    pub(crate) fn of(status: &TaskStatus, exact_progress: bool) -> StatusView {
        let counted = matches!(status.phase, TaskPhase::Working | TaskPhase::Failed);
        StatusView {
            phase: status.phase,
            attempts: if counted { status.attempts } else { None },
            last_failure: status.last_failure,
            kept: status.kept.as_ref().map(KeptCode::read),
            progress: if exact_progress {
                status.progress
            } else {
                None
            },
            retry_pending: status.retry_at.is_some(),
            queued: status.queued,
        }
    }
}

/// An operation of a history, with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    Launch(u64),
    /// `launch_with`, with the timeout in microseconds if any.
    LaunchWith(u64, Option<u64>),
    /// `launch_kept`, of the kept launch numbered so.
    LaunchKept(u64, u32),
    /// `launch_fenced`, whose task reports progress when told.
    LaunchFenced(u64),
    /// `launch_retrying`: two attempts, an hour apart.
    LaunchRetrying(u64),
    Finish(u64, End, Leaves),
    /// A running attempt reported this progress (from the report until the task saw
    /// it return).
    Progress(u64, u64),
    /// `status`, with the queued flag it read. Whether an attempt queues at its
    /// launch, and when it leaves the queue, the model cannot tell: a slot is a
    /// semaphore permit, given back when a future ends, just before its record moves,
    /// and the record says it left the queue before its future is first polled (or
    /// is cancelled unpolled). So the model takes the flag as read, and checks what
    /// holds: nothing queues without a limit, an attempt queues only from its launch
    /// (it never reads queued again once it read not queued), and not once its
    /// future has run.
    Status(u64, bool),
    /// The running attempt of an id started its future: from its launch's invocation
    /// until the future's first poll. It is queued no more.
    Start(u64),
    Query(u64),
    Quick(u64),
    RevokeBegin(u64),
    RevokeEnd(u64, End),
    Count(TaskState),
    Counts,
    Wait(u64),
    Cancel(u64),
}

/// What an operation answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Launch(Result<(), TaskState>),
    Finished,
    State(TaskState),
    RevokeBegin(Result<(), RevokeOutcome>),
    /// `TaskError` also stands for a revoke future that panicked (the panic reached the
    /// caller after the id was set back to `Success`, as the model's failed end does).
    RevokeEnd(RevokeOutcome),
    Count(usize),
    /// Working, success (including revoking), failed, revoking.
    Counts([usize; 4]),
    /// What `wait` answered: the phase and the failure reason.
    Settled(TaskPhase, Option<FailureReason>),
    /// What `cancel` answered.
    Cancelled(bool),
    Status(StatusView),
}

/// One operation of a history.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// The client that issued it (the drain at the end of a history counts as one).
    pub(crate) client: usize,
    pub(crate) call: Call,
    pub(crate) invoked: Instant,
    /// When it returned and what it answered; `None` for an operation still pending.
    pub(crate) response: Option<(Instant, Answer)>,
}

fn end_name(end: End) -> &'static str {
    match end {
        End::Ok => "ok",
        End::Err => "err",
        End::Panic => "panic",
        End::TimedOut => "timed_out",
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match *self {
            Call::Launch(id) => format!("launch({id})"),
            Call::LaunchWith(id, None) => format!("launch_with({id})"),
            Call::LaunchWith(id, Some(us)) => format!("launch_with({id}, {us} µs)"),
            Call::LaunchKept(id, n) => format!("launch_kept({id}, #{n})"),
            Call::LaunchFenced(id) => format!("launch_fenced({id})"),
            Call::LaunchRetrying(id) => format!("launch_retrying({id})"),
            Call::Finish(id, end, Leaves::Nothing) => format!("finish({id}, {})", end_name(end)),
            Call::Finish(id, end, Leaves::Kept(n)) => {
                format!("finish({id}, {}, keeps #{n})", end_name(end))
            }
            Call::Finish(id, end, Leaves::Retry) => {
                format!("finish({id}, {}, retrying)", end_name(end))
            }
            Call::Progress(id, value) => format!("progress({id}, {value})"),
            Call::Status(id, _) => format!("status({id})"),
            Call::Start(id) => format!("start({id})"),
            Call::Query(id) => format!("query({id})"),
            Call::Quick(id) => format!("quick({id})"),
            Call::RevokeBegin(id) => format!("revoke_begin({id})"),
            Call::RevokeEnd(id, end) => format!("revoke_end({id}, {})", end_name(end)),
            Call::Count(state) => format!("count({state})"),
            Call::Counts => "counts".to_string(),
            Call::Wait(id) => format!("wait({id})"),
            Call::Cancel(id) => format!("cancel({id})"),
        };
        f.pad(&text)
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Answer::Launch(Ok(())) | Answer::RevokeBegin(Ok(())) => write!(f, "Ok"),
            Answer::Launch(Err(state)) => write!(f, "Err({state})"),
            Answer::Finished => write!(f, "done"),
            Answer::State(state) => write!(f, "{state}"),
            Answer::RevokeBegin(Err(refused)) => write!(f, "Err({refused:?})"),
            Answer::RevokeEnd(outcome) => write!(f, "{outcome:?}"),
            Answer::Count(n) => write!(f, "{n}"),
            Answer::Counts([w, s, fa, r]) => {
                write!(f, "working {w}, success {s}, failed {fa}, revoking {r}")
            }
            Answer::Settled(phase, None) => write!(f, "{phase}"),
            Answer::Settled(phase, Some(reason)) => write!(f, "{phase} ({reason})"),
            Answer::Cancelled(cancelled) => write!(f, "{cancelled}"),
            Answer::Status(view) => write!(f, "{view:?}"),
        }
    }
}
