//! Linearizability check of the recorder.
//!
//! Concurrent histories are recorded on a multi-thread Tokio runtime: a few clients run
//! random operations on a handful of ids, and every operation is logged with the
//! instant it was invoked, the instant it returned, and its answer. A Wing & Gong
//! search with Lowe's memoization then looks for an order of the operations that
//! respects real time (an operation that returned before another was invoked comes
//! first) and that the sequential model in `tests/model` accepts, answer for answer.
//!
//! The operations are the launches (`launch`, `launch_with` with or without a
//! timeout, `launch_kept`, `launch_fenced` and `launch_retrying`), the queries and
//! counts, `status`, `wait` and `cancel`, and progress reports. `status` is compared
//! in what the model knows of it: the phase, the attempts of a `Working` or `Failed`
//! id, the failure reason, the kept value, the last progress (on the in-memory store
//! only: on Redis a report reaches the store later, by design), whether a retry
//! waits, and, on a recorder with `max_running(1)` (the `queued` workload), whether
//! the attempt is queued: the model cannot tell when an attempt leaves the queue
//! (see `Call::Status`), so it checks that nothing queues without a limit, that an
//! attempt queues only from its launch on, and that it no longer does once its
//! future has run (a `start` operation, logged from the launch until the future's
//! first poll). A retrying launch retries once, an hour later, so that a failed first
//! attempt leaves it waiting (`Working`, with the next attempt's number, the failure
//! and a `retry_at`) for the rest of the history, until a cancel ends it. In the
//! sequential model:
//! - `wait(id)` answers the phase of the id (with the failure reason) and can only take
//!   effect while nothing runs for it: a wait that answers `P` takes effect at an
//!   instant inside its interval at which the id is final and in `P`. Its waiter is
//!   woken by the transition that ended the phase it waited for, which lies inside its
//!   interval, so the instant just after that transition is one (the id may have moved
//!   on by the time the wait returns).
//! - `cancel(id)` answering `true` is the running attempt's end itself (`Working` to
//!   `Failed`, reason `Cancelled`): the cancel asks before that end and returns after
//!   it. Answering `false`, it takes effect at an instant at which the id is not
//!   `Working` (the attempt ended on its own first, or nothing ran).
//!
//! Six state changes are not calls the clients make, and are logged as operations of
//! their own, with an interval measured around the change:
//! - `start(id)`: see above;
//! - `progress(id, value)`: from just before a client tells a held `launch_fenced`
//!   attempt to report until the task has seen its report return;
//! - `finish(id, end)`: a launched future ended on its own, from just before a client
//!   releases it until the client sees that the attempt ended: its handle resolved,
//!   or (without a handle) its own polling sees the id leave `Working` or sees a later
//!   launch of the id succeed, which can only follow the end, or (a retrying launch's
//!   failed first attempt) `status` shows the retry's wait;
//! - `finish(id, timed_out)`: a timeout fired, from the invocation of the timed launch
//!   until a client sees the task's handle resolve to `TimedOut`;
//! - `revoke_begin(id)`: from the `revoke_task_block` call until the revoke future
//!   starts (until the call returns, when it is refused);
//! - `revoke_end(id, end)`: from just before the revoke future returns until the call
//!   returns.
//!
//! For these to be the only ends, a cancel must never stop an attempt whose end
//! another client may log. So an attempt is cancelled only by the client that holds
//! its gate (taken out of the shared registry, so that nobody else releases it), and
//! when the attempt may have ended before the cancel takes effect (its timeout, or a
//! release just before the cancel, to race it), launches of the id are held back until
//! the cancel returns, and none may be in flight: the cancel then meets that attempt or
//! none. A cancel of an id whose gate nobody holds is made only while no attempt of the
//! id can run (no launch of it in flight, every attempt's end seen, launches held back),
//! so it must answer `false`.
//!
//! The same harness runs against subjects with an injected fault, and the checker must
//! report them.

mod model;
#[cfg(feature = "redis")]
#[path = "support/redis_server.rs"]
mod redis_server;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_tasks_recorder::{
    FailureReason, Kept, LaunchOptions, RetryPolicy, TaskContext, TaskError, TaskPhase, TaskState,
    TaskStatus,
};
use model::{Fault, Model, ModelState, RevokeOutcome, Subject};
use tokio::sync::{mpsc, oneshot, Barrier};
use tokio::task::JoinHandle;

/// Ids used by the histories: 0, 1 and 2.
const IDS: u64 = 3;

/// The longest any single wait may take before the history is declared hung. A guard,
/// not a timing: nothing waits for time to pass.
const HANG: Duration = Duration::from_secs(30);

/// The message of the panics the test plans; the panic hook keeps them quiet.
const PLANNED_PANIC: &str = "planned panic of the linearizability test";

/// The timeouts of timed launches, in microseconds. Real time: they only make the
/// timeouts fire, at instants that race the other operations (a history takes about a
/// millisecond) or, for the longer ones, the end of the history. Nothing waits for
/// them to let something else happen.
const TIMEOUTS_US: [u64; 4] = [0, 200, 1_000, 5_000];

/// How a launched or revoke future ends when it is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum End {
    Ok,
    Err,
    Panic,
    /// Never sent through a gate: the end of a timed attempt whose timeout fired.
    TimedOut,
}

impl End {
    /// The future's output for this end (a panic for `Panic`).
    fn output(self) -> Result<(), ()> {
        match self {
            End::Ok => Ok(()),
            End::Err | End::TimedOut => Err(()),
            End::Panic => panic!("{PLANNED_PANIC}"),
        }
    }

    /// The failure reason the recorder gives an attempt that ended so.
    fn reason(self) -> Option<FailureReason> {
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
enum KeptCode {
    Output(u32),
    Message(u32),
    Panic,
}

impl KeptCode {
    /// What a kept launch numbered `n` keeps when it ends so (a timeout keeps nothing).
    fn of(end: End, n: u32) -> Option<KeptCode> {
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
enum Leaves {
    Nothing,
    Kept(u32),
    Retry,
}

/// What `status` answered, as far as the model knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatusView {
    phase: TaskPhase,
    /// For `Working` and `Failed` only (a success's count is kept only with details).
    attempts: Option<u32>,
    last_failure: Option<FailureReason>,
    kept: Option<KeptCode>,
    /// For a running attempt; read only where `status` sees a report at once (memory).
    progress: Option<u64>,
    /// `retry_at` is set: the launch waits for its next attempt.
    retry_pending: bool,
    /// The attempt waits for a `max_running` slot.
    queued: bool,
}

impl StatusView {
    fn of(status: &TaskStatus, exact_progress: bool) -> StatusView {
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
enum Call {
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
enum Answer {
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
struct Event {
    /// The client that issued it (the drain at the end of a history counts as one).
    client: usize,
    call: Call,
    invoked: Instant,
    /// When it returned and what it answered; `None` for an operation still pending.
    response: Option<(Instant, Answer)>,
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

// ---------------------------------------------------------------------------------------
// The sequential specification, as the checker uses it.
// ---------------------------------------------------------------------------------------

/// The model, with the reason of every `Failed` id (which `wait` answers too) and what
/// `status` reads besides the phase.
#[derive(Debug, Clone, Default)]
struct Spec {
    model: Model,
    reasons: HashMap<u64, FailureReason>,
    /// What the final record of an id keeps (a `Revoking` one: its success's).
    kept: HashMap<u64, KeptCode>,
    /// Attempts of an id since it was last `NotFound`, the running one included.
    attempts: HashMap<u64, u32>,
    /// `Working` ids whose retrying launch waits for its next attempt: why the last
    /// attempt failed.
    backoff: HashMap<u64, FailureReason>,
    /// The last progress the running attempt of an id reported.
    progress: HashMap<u64, u64>,
    /// Whether a history's recorder has a `max_running` limit: else nothing queues.
    may_queue: bool,
    /// The queued flag of running attempts as last read (or `false`: started).
    queued: HashMap<u64, bool>,
}

impl Spec {
    /// What `status(id)` reads, for a read that saw the queued flag `read`.
    fn status(&mut self, id: u64, read: bool) -> StatusView {
        let state = self.model.state(id);
        let phase = match state {
            None => TaskPhase::NotFound,
            Some(ModelState::Working) => TaskPhase::Working,
            Some(ModelState::Success) => TaskPhase::Success,
            Some(ModelState::Failed) => TaskPhase::Failed,
            Some(ModelState::Revoking) => TaskPhase::Revoking,
        };
        let working = phase == TaskPhase::Working;
        let counted = working || phase == TaskPhase::Failed;
        StatusView {
            phase,
            attempts: if counted {
                self.attempts.get(&id).copied()
            } else {
                None
            },
            last_failure: match phase {
                TaskPhase::Failed => self.reasons.get(&id).copied(),
                TaskPhase::Working => self.backoff.get(&id).copied(),
                _ => None,
            },
            kept: if working || state.is_none() {
                None
            } else {
                self.kept.get(&id).copied()
            },
            progress: if working {
                self.progress.get(&id).copied()
            } else {
                None
            },
            retry_pending: working && self.backoff.contains_key(&id),
            queued: working && !self.backoff.contains_key(&id) && self.queued_flag(id, read),
        }
    }

    /// The queued flag of the running attempt of `id`, for a read that saw `read`:
    /// `read` where it may be (then the flag as last read), else `false`.
    fn queued_flag(&mut self, id: u64, read: bool) -> bool {
        if self.queued.get(&id) == Some(&false) {
            // Out of the queue (or never in it): for good.
            return false;
        }
        let flag = read && self.may_queue;
        self.queued.insert(id, flag);
        flag
    }
}

/// Applies `call` to `spec` and returns what the model answers, or `None` when the
/// operation cannot happen in the model's state (a future ending for an id that is not
/// `Working`, a revoke ending for an id that is not `Revoking`, a wait for an id that
/// is not final).
fn apply(spec: &mut Spec, call: Call) -> Option<Answer> {
    let model = &mut spec.model;
    Some(match call {
        // A timeout changes nothing at the launch: the timed attempt's end is a
        // `finish` of its own.
        Call::Launch(id)
        | Call::LaunchWith(id, _)
        | Call::LaunchKept(id, _)
        | Call::LaunchFenced(id)
        | Call::LaunchRetrying(id) => {
            let relaunch = model.state(id) == Some(ModelState::Failed);
            let launched = model.launch(id);
            if launched.is_ok() {
                let before = if relaunch {
                    spec.attempts.get(&id).copied()
                } else {
                    None
                };
                spec.attempts.insert(id, before.unwrap_or(0) + 1);
                spec.kept.remove(&id);
                spec.progress.remove(&id);
                spec.queued.remove(&id);
            }
            Answer::Launch(launched)
        }
        Call::Finish(id, end, leaves) => {
            if model.state(id) != Some(ModelState::Working) || spec.backoff.contains_key(&id) {
                return None;
            }
            spec.progress.remove(&id);
            spec.queued.remove(&id);
            match (leaves, end.reason()) {
                (Leaves::Retry, Some(reason)) => {
                    // Still Working: the next attempt's number, the failure, its time.
                    spec.backoff.insert(id, reason);
                    *spec.attempts.entry(id).or_default() += 1;
                }
                (_, reason) => {
                    model.finish(id, end == End::Ok);
                    if let Some(reason) = reason {
                        spec.reasons.insert(id, reason);
                    }
                    match leaves {
                        Leaves::Kept(n) => match KeptCode::of(end, n) {
                            Some(code) => spec.kept.insert(id, code),
                            None => spec.kept.remove(&id),
                        },
                        _ => spec.kept.remove(&id),
                    };
                }
            }
            Answer::Finished
        }
        Call::Progress(id, value) => {
            if model.state(id) != Some(ModelState::Working) || spec.backoff.contains_key(&id) {
                return None;
            }
            spec.progress.insert(id, value);
            Answer::Finished
        }
        Call::Status(id, queued) => Answer::Status(spec.status(id, queued)),
        Call::Start(id) => {
            if model.state(id) != Some(ModelState::Working) {
                return None;
            }
            spec.queued.insert(id, false);
            Answer::Finished
        }
        Call::Query(id) => Answer::State(model.query(id)),
        Call::Quick(id) => Answer::State(model.quick(id)),
        Call::RevokeBegin(id) => Answer::RevokeBegin(model.revoke_begin(id)),
        Call::RevokeEnd(id, end) => {
            if model.state(id) != Some(ModelState::Revoking) {
                return None;
            }
            let outcome = model.revoke_end(id, end == End::Ok);
            if model.state(id).is_none() {
                spec.kept.remove(&id);
                spec.attempts.remove(&id);
            }
            Answer::RevokeEnd(outcome)
        }
        Call::Count(state) => Answer::Count(model.count(state)),
        Call::Counts => {
            let revoking = model
                .states
                .values()
                .filter(|&&s| s == ModelState::Revoking)
                .count();
            Answer::Counts([
                model.count(TaskState::Working),
                model.count(TaskState::Success),
                model.count(TaskState::Failed),
                revoking,
            ])
        }
        Call::Wait(id) => {
            let phase = model.wait(id)?;
            let reason = match phase {
                TaskPhase::Failed => spec.reasons.get(&id).copied(),
                _ => None,
            };
            Answer::Settled(phase, reason)
        }
        Call::Cancel(id) => {
            let cancelled = model.cancel(id);
            if cancelled {
                spec.reasons.insert(id, FailureReason::Cancelled);
                spec.backoff.remove(&id);
                spec.kept.remove(&id);
                spec.progress.remove(&id);
                spec.queued.remove(&id);
            }
            Answer::Cancelled(cancelled)
        }
    })
}

/// One record of a [`StateKey`]: the id, its state, the reason of a failed one, and
/// what `status` reads of it.
type RecordKey = (u64, ModelState, Option<FailureReason>, StatusKey);

/// What `status` reads besides the phase: attempts, kept, wait reason, progress, the
/// known queued flag.
type StatusKey = (
    Option<u32>,
    Option<KeptCode>,
    Option<FailureReason>,
    Option<u64>,
    Option<bool>,
);

/// The model's state in a hashable, canonical form: the records sorted by id.
type StateKey = Vec<RecordKey>;

/// The model's state as a [`StateKey`].
fn state_key(spec: &Spec) -> StateKey {
    let mut key: StateKey = spec
        .model
        .states
        .iter()
        .map(|(&id, &state)| {
            let reason = match state {
                ModelState::Failed => spec.reasons.get(&id).copied(),
                _ => None,
            };
            let status = (
                spec.attempts.get(&id).copied(),
                spec.kept.get(&id).copied(),
                spec.backoff.get(&id).copied(),
                spec.progress.get(&id).copied(),
                spec.queued.get(&id).copied(),
            );
            (id, state, reason, status)
        })
        .collect();
    key.sort_unstable_by_key(|&(id, ..)| id);
    key
}
// ---------------------------------------------------------------------------------------
// The checker: Wing & Gong's search with Lowe's memoization.
// ---------------------------------------------------------------------------------------

/// An operation as the checker sees it: times relative to the first invocation.
#[derive(Debug, Clone, Copy)]
struct Op {
    client: usize,
    call: Call,
    invoked: Duration,
    /// `None` for a pending operation: it may take effect at any time after its
    /// invocation, or not at all, and its answer is unknown.
    returned: Option<Duration>,
    answer: Option<Answer>,
}

/// The search state.
struct Search<'a> {
    /// Sorted by invocation.
    ops: &'a [Op],
    /// Bit `i` set: `ops[i]` is linearized.
    done: Vec<u64>,
    /// Completed operations not linearized yet; the search succeeds when it is 0.
    left: usize,
    /// The order being built.
    order: Vec<usize>,
    /// Configurations (linearized set, model state) already explored without success.
    memo: HashSet<(Vec<u64>, StateKey)>,
    /// The longest linearizable prefix seen, and the model after it (for the report).
    deepest: (Vec<usize>, Spec),
}

impl Search<'_> {
    fn is_done(&self, i: usize) -> bool {
        self.done[i / 64] & (1 << (i % 64)) != 0
    }

    fn flip(&mut self, i: usize) {
        self.done[i / 64] ^= 1 << (i % 64);
    }

    /// The earliest response among the completed operations not linearized yet: an
    /// operation invoked after it cannot come next.
    fn horizon(&self) -> Duration {
        (0..self.ops.len())
            .filter(|&i| !self.is_done(i))
            .filter_map(|i| self.ops[i].returned)
            .min()
            .unwrap_or(Duration::MAX)
    }

    fn dfs(&mut self, spec: &Spec) -> bool {
        if self.left == 0 {
            return true;
        }
        if !self.memo.insert((self.done.clone(), state_key(spec))) {
            return false;
        }
        if self.order.len() > self.deepest.0.len() {
            self.deepest = (self.order.clone(), spec.clone());
        }
        let horizon = self.horizon();
        for i in 0..self.ops.len() {
            let op = self.ops[i];
            // Sorted by invocation: nothing further can be minimal either. Equal
            // instants count as concurrent.
            if op.invoked > horizon {
                break;
            }
            if self.is_done(i) {
                continue;
            }
            let mut next = spec.clone();
            let Some(answer) = apply(&mut next, op.call) else {
                continue;
            };
            if op.answer.is_some_and(|observed| observed != answer) {
                continue;
            }
            let completed = usize::from(op.returned.is_some());
            self.flip(i);
            self.order.push(i);
            self.left -= completed;
            if self.dfs(&next) {
                return true;
            }
            self.left += completed;
            self.order.pop();
            self.flip(i);
        }
        false
    }
}

/// What a successful check explored.
#[derive(Debug, Clone, Copy)]
struct Checked {
    /// Configurations (set of linearized operations, model state) visited.
    configurations: usize,
}

/// Checks that `history` is linearizable with respect to the model, starting from an
/// empty recorder. On failure, returns a report of the history.
fn check(history: &[Event]) -> Result<Checked, String> {
    check_on(history, false)
}

/// [`check`] of a history whose recorder has a `max_running` limit if `may_queue`.
fn check_on(history: &[Event], may_queue: bool) -> Result<Checked, String> {
    let start = Spec {
        may_queue,
        ..Spec::default()
    };
    let mut events: Vec<&Event> = history.iter().collect();
    events.sort_by_key(|e| e.invoked);
    let Some(origin) = events.first().map(|e| e.invoked) else {
        return Ok(Checked { configurations: 0 });
    };
    let ops: Vec<Op> = events
        .iter()
        .map(|e| Op {
            client: e.client,
            call: e.call,
            invoked: e.invoked.duration_since(origin),
            returned: e.response.map(|(at, _)| at.duration_since(origin)),
            answer: e.response.map(|(_, answer)| answer),
        })
        .collect();
    let mut search = Search {
        ops: &ops,
        done: vec![0; ops.len().div_ceil(64)],
        left: ops.iter().filter(|op| op.returned.is_some()).count(),
        order: Vec::new(),
        memo: HashSet::new(),
        deepest: (Vec::new(), start.clone()),
    };
    if search.dfs(&start) {
        Ok(Checked {
            configurations: search.memo.len(),
        })
    } else {
        Err(report(&ops, &search.deepest.0, &search.deepest.1))
    }
}

/// A readable account of a history that is not linearizable: every operation in order
/// of invocation, the longest prefix that could be linearized, and why none of the
/// operations that could come after it fits.
fn report(ops: &[Op], prefix: &[usize], spec: &Spec) -> String {
    use fmt::Write as _;

    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "history is NOT linearizable: no order of its {} operations respects real time \
         and the sequential model.",
        ops.len()
    );
    let _ = writeln!(
        out,
        "{:>4}  {:>6}  {:>11}  {:>11}  {:<26}  answer",
        "#", "client", "invoked µs", "returned µs", "operation"
    );
    for (i, op) in ops.iter().enumerate() {
        let returned = op
            .returned
            .map_or_else(|| "pending".to_string(), |d| format!("{:.1}", micros(d)));
        let answer = op.answer.map_or_else(|| "?".to_string(), |a| a.to_string());
        let _ = writeln!(
            out,
            "{i:>4}  {:>6}  {:>11.1}  {returned:>11}  {:<26}  {answer}",
            format!("c{}", op.client),
            micros(op.invoked),
            op.call,
        );
    }
    let order: Vec<String> = prefix.iter().map(|i| format!("#{i}")).collect();
    let _ = writeln!(
        out,
        "longest linearizable prefix ({} of {}): {}",
        prefix.len(),
        ops.len(),
        order.join(" ")
    );
    let _ = writeln!(out, "model state after it: {:?}", state_key(spec));
    let mut done = vec![false; ops.len()];
    for &i in prefix {
        done[i] = true;
    }
    let horizon = (0..ops.len())
        .filter(|&i| !done[i])
        .filter_map(|i| ops[i].returned)
        .min()
        .unwrap_or(Duration::MAX);
    let _ = writeln!(out, "none of the operations that may come next fits:");
    for (i, op) in ops.iter().enumerate() {
        if done[i] || op.invoked > horizon {
            continue;
        }
        let mut next = spec.clone();
        let why = match apply(&mut next, op.call) {
            None => "cannot happen in this state".to_string(),
            Some(expected) => match op.answer {
                Some(observed) if observed != expected => {
                    format!("answered {observed}, the model says {expected}")
                }
                // It fits here, but nothing fits after it.
                _ => "fits here, but every continuation fails".to_string(),
            },
        };
        let _ = writeln!(out, "  #{i} {}: {why}", op.call);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Recording histories.
// ---------------------------------------------------------------------------------------

/// A seeded xorshift64 generator: deterministic, no crates.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // A splitmix64 scramble, so that neighbouring seeds give unrelated streams; the
        // state must not be 0.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `true` with `p`%. Draws nothing for 0 (so that a workload without some choice
    /// makes the same draws as before the choice existed).
    fn percent(&mut self, p: u64) -> bool {
        p > 0 && self.below(100) < p
    }

    /// `Ok` with `ok`%, `Panic` with `panic`%, otherwise `Err`.
    fn end(&mut self, ok: u64, panic: u64) -> End {
        let r = self.below(100);
        if r < ok {
            End::Ok
        } else if r < ok + panic {
            End::Panic
        } else {
            End::Err
        }
    }
}

/// What a client may do next.
#[derive(Debug, Clone, Copy)]
enum Action {
    /// Launch with `launch`, or with `launch_with` without a timeout.
    Launch,
    /// Release a running launched future (any client's), or see a timed one time out.
    Finish,
    Query,
    Quick,
    Revoke,
    /// Release a gated revoke future (any client's).
    ReleaseRevoke,
    Count,
    Counts,
    /// Launch with `launch_with` and a timeout.
    TimedLaunch,
    /// Wait for an id (in a task of its own if it does not resolve at once).
    Wait,
    /// Cancel a running attempt (any client's, taken from the registry), or an id that
    /// nothing runs for.
    Cancel,
    Status,
    /// Have a running attempt (of `launch_fenced`) report a progress.
    Progress,
}

const ACTIONS: [Action; 13] = [
    Action::Launch,
    Action::Finish,
    Action::Query,
    Action::Quick,
    Action::Revoke,
    Action::ReleaseRevoke,
    Action::Count,
    Action::Counts,
    Action::TimedLaunch,
    Action::Wait,
    Action::Cancel,
    Action::Status,
    Action::Progress,
];

/// The mix of operations of a history.
#[derive(Debug, Clone, Copy)]
struct Workload {
    name: &'static str,
    clients: usize,
    min_ops: u64,
    max_ops: u64,
    /// Relative weights, in the order of [`ACTIONS`].
    weights: [u64; 13],
    /// Percentages of launched futures released to end `Ok` / to panic (else `Err`).
    finish_ok: u64,
    finish_panic: u64,
    /// The same for revoke futures.
    revoke_ok: u64,
    revoke_panic: u64,
    /// Percentage of revokes whose future waits for a release (else it ends at once).
    gated_revoke: u64,
    /// Percentage of operations after which the client yields to the scheduler.
    yield_after: u64,
    /// Percentage of untimed launches made with `launch_with`, whose handle then tells
    /// how the attempt ended (else with `launch`).
    with_handle: u64,
    /// Percentage of timed attempts whose gate is released when they are finished
    /// (racing the timeout); the others are left to time out.
    release_timed: u64,
    /// Percentage of cancels of a held attempt that release its gate just before
    /// (racing the cancel).
    cancel_race: u64,
    /// Percentage of cancels made on a random id rather than on a held attempt (made
    /// only while nothing can run for the id, else a quick query is made).
    free_cancel: u64,
    /// Percentage of cancels followed at once by a query of the id.
    query_after_cancel: u64,
    /// Percentages of untimed launches made with `launch_kept`, with `launch_fenced`
    /// (whose task can report progress) and with `launch_retrying` (the rest as
    /// `with_handle` says).
    kept: u64,
    fenced: u64,
    retrying: u64,
    /// The recorder's `max_running` limit.
    max_running: Option<usize>,
}

/// Everything, a little of each.
const MIXED: Workload = Workload {
    name: "mixed",
    clients: 4,
    min_ops: 10,
    max_ops: 15,
    //       launch finish query quick revoke release count counts timed wait cancel status progress
    weights: [6, 4, 4, 2, 3, 2, 1, 1, 2, 3, 2, 2, 1],
    finish_ok: 60,
    finish_panic: 10,
    revoke_ok: 60,
    revoke_panic: 10,
    gated_revoke: 50,
    yield_after: 30,
    with_handle: 30,
    release_timed: 50,
    cancel_race: 40,
    free_cancel: 20,
    query_after_cancel: 30,
    kept: 15,
    fenced: 15,
    retrying: 10,
    max_running: None,
};

/// Many queries between state changes: a stale answer shows.
const QUERIES: Workload = Workload {
    name: "queries",
    clients: 3,
    min_ops: 10,
    max_ops: 15,
    weights: [5, 4, 10, 1, 2, 1, 1, 0, 0, 0, 0, 0, 0],
    finish_ok: 50,
    finish_panic: 10,
    revoke_ok: 70,
    revoke_panic: 0,
    gated_revoke: 30,
    yield_after: 50,
    with_handle: 0,
    release_timed: 0,
    cancel_race: 0,
    free_cancel: 0,
    query_after_cancel: 0,
    kept: 0,
    fenced: 0,
    retrying: 0,
    max_running: None,
};

/// Futures mostly succeed and are rarely revoked, so launches of succeeded ids (which
/// must be refused) are frequent.
const SUCCESSES: Workload = Workload {
    name: "successes",
    clients: 3,
    min_ops: 10,
    max_ops: 15,
    weights: [8, 5, 3, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    finish_ok: 90,
    finish_panic: 0,
    revoke_ok: 50,
    revoke_panic: 0,
    gated_revoke: 30,
    yield_after: 30,
    with_handle: 0,
    release_timed: 0,
    cancel_race: 0,
    free_cancel: 0,
    query_after_cancel: 0,
    kept: 0,
    fenced: 0,
    retrying: 0,
    max_running: None,
};

/// Waiters on running ids, woken by releases, cancels and revokes, and cancels racing
/// releases.
const WAITS: Workload = Workload {
    name: "waits",
    clients: 4,
    min_ops: 10,
    max_ops: 15,
    weights: [7, 4, 2, 1, 2, 2, 0, 1, 1, 6, 4, 0, 0],
    finish_ok: 50,
    finish_panic: 10,
    revoke_ok: 60,
    revoke_panic: 10,
    gated_revoke: 50,
    yield_after: 30,
    with_handle: 50,
    release_timed: 50,
    cancel_race: 50,
    free_cancel: 20,
    query_after_cancel: 50,
    kept: 0,
    fenced: 0,
    retrying: 0,
    max_running: None,
};

/// Timed launches, their timeouts racing releases, cancels and relaunches.
const TIMEOUTS: Workload = Workload {
    name: "timeouts",
    clients: 3,
    min_ops: 10,
    max_ops: 15,
    weights: [3, 4, 3, 1, 1, 1, 1, 1, 7, 3, 3, 0, 0],
    finish_ok: 60,
    finish_panic: 0,
    revoke_ok: 60,
    revoke_panic: 0,
    gated_revoke: 30,
    yield_after: 50,
    with_handle: 50,
    release_timed: 40,
    cancel_race: 30,
    free_cancel: 10,
    query_after_cancel: 30,
    kept: 0,
    fenced: 0,
    retrying: 0,
    max_running: None,
};

/// Stored results, progress and retries read through `status`, with cancels and
/// revokes.
const FEATURES: Workload = Workload {
    name: "features",
    clients: 3,
    min_ops: 10,
    max_ops: 15,
    //       launch finish query quick revoke release count counts timed wait cancel status progress
    weights: [7, 4, 1, 0, 2, 1, 0, 1, 0, 2, 2, 6, 4],
    finish_ok: 50,
    finish_panic: 15,
    revoke_ok: 60,
    revoke_panic: 0,
    gated_revoke: 30,
    yield_after: 40,
    with_handle: 30,
    release_timed: 0,
    cancel_race: 40,
    free_cancel: 20,
    query_after_cancel: 30,
    kept: 30,
    fenced: 30,
    retrying: 25,
    max_running: None,
};

/// [`FEATURES`] on a recorder that runs one future at a time: launches queue, and
/// `status` tells the queued ones from the running ones.
const QUEUED: Workload = Workload {
    name: "queued",
    max_running: Some(1),
    ..FEATURES
};

const WORKLOADS: [Workload; 7] = [MIXED, QUERIES, SUCCESSES, WAITS, TIMEOUTS, FEATURES, QUEUED];

/// What a client tells a launched future through its gate.
#[derive(Debug)]
enum Msg {
    /// End so.
    End(End),
    /// Report this progress, then say so.
    Progress(u64, oneshot::Sender<()>),
}

/// A launched attempt's body: it waits for its gate to tell how it ends, reporting
/// progress (through `context`, given to `launch_fenced` tasks) when told.
async fn gated(
    mut gate: mpsc::UnboundedReceiver<Msg>,
    context: Option<TaskContext>,
    started: Arc<OnceLock<Instant>>,
) -> Result<(), ()> {
    // At the first poll: the attempt holds its running slot.
    let _ = started.set(Instant::now());
    loop {
        match gate.recv().await {
            Some(Msg::End(end)) => return end.output(),
            Some(Msg::Progress(value, reported)) => {
                if let Some(context) = &context {
                    context.progress(value);
                }
                let _ = reported.send(());
            }
            // A gate dropped unsent never happens while the future runs; it would read
            // as a failure.
            None => return Err(()),
        }
    }
}

/// A launch's handle, reduced to how its attempt ended (`None`: cancelled).
struct Ended(Pin<Box<dyn Future<Output = Option<End>> + Send>>);

impl Ended {
    fn of<R, E>(handle: async_tasks_recorder::TaskHandle<R, E>) -> Ended
    where
        R: Send + 'static,
        E: fmt::Debug + Send + 'static,
    {
        Ended(Box::pin(async move { end_of(&handle.await) }))
    }
}

impl fmt::Debug for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ended")
    }
}

/// How a client launches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// `launch`.
    Plain,
    /// `launch_with`, untimed or with a timeout in microseconds.
    With(Option<u64>),
    /// `launch_kept`, numbered so.
    Kept(u32),
    Fenced,
    Retrying,
}

/// The retry policy of retrying launches: one retry, an hour later, so that a failed
/// first attempt leaves its launch waiting for the rest of the history.
fn retry_later() -> RetryPolicy {
    let hour = Duration::from_secs(3600);
    RetryPolicy::new(2).backoff(hour, hour)
}

/// A launched future that is running (its launch returned `Ok`) and not released yet,
/// or a retrying launch that waits for its next attempt.
#[derive(Debug)]
struct RunningGate {
    id: u64,
    /// Taken when the gate is opened. Kept until the attempt's end has been seen: a
    /// future whose gate is dropped unsent would end `Err`.
    release: Option<mpsc::UnboundedSender<Msg>>,
    /// The handle of a launch that has one (all but `launch`).
    handle: Option<Ended>,
    /// When its launch was invoked: a timeout may fire from then on (the deadline
    /// counts from inside the call).
    launched: Instant,
    timed: bool,
    /// What its end leaves besides the phase.
    leaves: Leaves,
    /// Its task reports progress when told (`launch_fenced`).
    reports: bool,
    /// Its first attempt failed and its launch waits for the next: only a cancel ends it.
    waiting: bool,
    /// When its future was first polled, if it was.
    started: Arc<OnceLock<Instant>>,
    /// Its start is logged.
    start_logged: bool,
}

impl RunningGate {
    /// Releases the future with `end`; returns when, and how.
    fn open(&mut self, end: End) -> (Instant, End) {
        let at = Instant::now();
        if let Some(release) = self.release.take() {
            // The future waits for this message (or has not been polled yet, or was
            // dropped by a timeout, which its handle will tell).
            let _ = release.send(Msg::End(end));
        }
        (at, end)
    }

    /// Whether its future has run: then it holds a running slot, and a release ends it
    /// without waiting for another attempt to end.
    fn started(&self) -> bool {
        self.started.get().is_some()
    }
}

/// A running gate taken out of the registry by a client, which alone releases,
/// cancels or concludes it.
#[derive(Debug)]
struct Held {
    gate: RunningGate,
    /// How many launches of its id had returned `Ok` when it was taken (this one
    /// included: no other launch of the id succeeds while it runs).
    launches: u64,
}

/// The open gates of a history, shared by its clients.
#[derive(Debug, Default)]
struct Gates {
    running: Vec<RunningGate>,
    /// How many launches of each id returned `Ok` so far.
    launched: HashMap<u64, u64>,
    /// Per id: launches in flight, plus attempts whose end has not been seen yet.
    busy: HashMap<u64, usize>,
    /// Per id: cancels in flight that no new attempt of the id may meet. A launch of
    /// the id is not made (a query is made instead) while this is not 0.
    blocking: HashMap<u64, usize>,
    /// Gated revokes not ended yet: (ticket, release).
    revokes: Vec<(u64, oneshot::Sender<End>)>,
    next_ticket: u64,
    /// The number of the last kept launch.
    kept: u32,
}

/// One history being recorded.
struct Shared {
    subject: Subject,
    /// The recorder has a `max_running` limit: a future that has not started may wait
    /// for another attempt's end, so only started ones are released.
    limited: bool,
    log: Mutex<Vec<Event>>,
    gates: Mutex<Gates>,
    /// The tasks running gated revokes.
    revokers: Mutex<Vec<JoinHandle<()>>>,
    /// The tasks awaiting waits that did not resolve at once.
    waiters: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `fut`, failing if it has not finished within [`HANG`].
async fn bounded<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(HANG, fut).await {
        Ok(out) => out,
        Err(_) => panic!("hung: {what}"),
    }
}

/// A future that turns a panic of the inner future into `Err(())`.
struct Caught<F>(Pin<Box<F>>);

impl<F: Future> Future for Caught<F> {
    type Output = Result<F::Output, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(move || inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

/// Keeps the planned panics from printing; every other panic prints as usual.
fn quiet_planned_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if message != Some(PLANNED_PANIC) {
                previous(info);
            }
        }));
    });
}

impl Shared {
    fn record(&self, client: usize, call: Call, span: (Instant, Instant), answer: Answer) {
        lock(&self.log).push(Event {
            client,
            call,
            invoked: span.0,
            response: Some((span.1, answer)),
        });
    }

    /// Counts a launch of `id` in flight, unless launches of it are blocked: then
    /// `false`, and the launch must not be made.
    fn reserve(&self, id: u64) -> bool {
        let mut gates = lock(&self.gates);
        if gates.blocking.get(&id).is_some_and(|&n| n > 0) {
            return false;
        }
        *gates.busy.entry(id).or_default() += 1;
        true
    }

    /// Blocks launches of `id` if exactly `busy` launches of it are in flight or
    /// attempts of it unseen to end (0 for an id that nothing can run for, 1 for the
    /// caller's held attempt alone); then no attempt of the id but those can run until
    /// [`unblock`](Self::unblock).
    fn block(&self, id: u64, busy: usize) -> bool {
        let mut gates = lock(&self.gates);
        let blocked = gates.busy.get(&id).copied().unwrap_or(0) == busy;
        if blocked {
            *gates.blocking.entry(id).or_default() += 1;
        }
        blocked
    }

    fn unblock(&self, id: u64) {
        *lock(&self.gates)
            .blocking
            .get_mut(&id)
            .expect("blocked before") -= 1;
    }

    /// A launch of `id` was refused, or the end of an attempt of it has been seen.
    fn unreserve(&self, id: u64) {
        unreserve(&mut lock(&self.gates), id);
    }

    /// Launches `id` as `how` says.
    async fn launch(&self, me: usize, id: u64, how: How) {
        if !self.reserve(id) {
            // A cancel of the id in flight holds its launches back: no new attempt may
            // meet it.
            return self.query(me, id).await;
        }
        let how = match how {
            How::Kept(_) => {
                let mut gates = lock(&self.gates);
                gates.kept += 1;
                How::Kept(gates.kept)
            }
            other => other,
        };
        let (release, gate) = mpsc::unbounded_channel::<Msg>();
        let started = Arc::new(OnceLock::new());
        let start = Arc::clone(&started);
        let invoked = Instant::now();
        let (result, handle) = match how {
            How::Plain => (
                self.subject.launch(id, gated(gate, None, start)).await,
                None,
            ),
            How::With(timeout_us) => {
                let options = match timeout_us {
                    Some(us) => LaunchOptions::new().timeout(Duration::from_micros(us)),
                    None => LaunchOptions::new(),
                };
                split(
                    self.subject
                        .launch_with(id, gated(gate, None, start), options)
                        .await,
                )
            }
            How::Kept(n) => {
                let task = async move {
                    let output = gated(gate, None, start).await;
                    output.map(|()| n).map_err(|()| format!("e{n}"))
                };
                split(self.subject.launch_kept(id, task).await)
            }
            How::Fenced => {
                let make = move |context| gated(gate, Some(context), start);
                split(self.subject.launch_fenced(id, make).await)
            }
            How::Retrying => {
                // The first attempt waits for the gate; a second, an hour later, would
                // fail at once.
                let mut gate = Some(gate);
                let make = move |context| {
                    let gate = gate.take();
                    let start = Arc::clone(&start);
                    async move {
                        match gate {
                            Some(gate) => gated(gate, Some(context), start).await,
                            None => Err(()),
                        }
                    }
                };
                split(self.subject.launch_retrying(id, make, retry_later()).await)
            }
        };
        let returned = Instant::now();
        let (call, leaves) = match how {
            How::Plain => (Call::Launch(id), Leaves::Nothing),
            How::With(timeout_us) => (Call::LaunchWith(id, timeout_us), Leaves::Nothing),
            How::Kept(n) => (Call::LaunchKept(id, n), Leaves::Kept(n)),
            How::Fenced => (Call::LaunchFenced(id), Leaves::Nothing),
            How::Retrying => (Call::LaunchRetrying(id), Leaves::Retry),
        };
        {
            let mut gates = lock(&self.gates);
            if result.is_ok() {
                gates.running.push(RunningGate {
                    id,
                    release: Some(release),
                    handle,
                    launched: invoked,
                    timed: matches!(how, How::With(Some(_))),
                    leaves,
                    reports: how == How::Fenced,
                    waiting: false,
                    started,
                    start_logged: false,
                });
                *gates.launched.entry(id).or_default() += 1;
            } else {
                unreserve(&mut gates, id);
            }
        }
        self.record(me, call, (invoked, returned), Answer::Launch(result));
    }

    /// Takes a random running gate out of the registry.
    /// A gate whose future has started is logged as started once, here: every gate
    /// is taken at least once, by the drain at the latest.
    fn take_gate(&self, me: usize, rng: &mut Rng) -> Option<Held> {
        let held = {
            let mut gates = lock(&self.gates);
            if gates.running.is_empty() {
                return None;
            }
            let pick = rng.below(gates.running.len() as u64) as usize;
            let gate = gates.running.swap_remove(pick);
            let launches = gates.launched[&gate.id];
            Held { gate, launches }
        };
        let mut held = held;
        if let (Some(&at), false) = (held.gate.started.get(), held.gate.start_logged) {
            held.gate.start_logged = true;
            let span = (held.gate.launched, at);
            self.record(me, Call::Start(held.gate.id), span, Answer::Finished);
        }
        Some(held)
    }

    /// Puts a held gate back in the registry.
    fn put_back(&self, gate: RunningGate) {
        lock(&self.gates).running.push(gate);
    }

    /// Releases a held attempt to end as the workload says (a timed one is left to
    /// time out, but for `release_timed`%) and logs its end.
    async fn finish(&self, me: usize, mut held: Held, rng: &mut Rng, w: &Workload) {
        let end = rng.end(w.finish_ok, w.finish_panic);
        let unstarted = self.limited && !held.gate.started();
        if unstarted && !held.gate.timed {
            // It may wait for a slot that only another client's release frees.
            let id = held.gate.id;
            self.put_back(held.gate);
            return self.status(me, id).await;
        }
        if held.gate.leaves == Leaves::Retry && end != End::Ok {
            return self.fail_to_retry(me, held, end).await;
        }
        let released = if held.gate.timed && (unstarted || !rng.percent(w.release_timed)) {
            None
        } else {
            Some(held.gate.open(end))
        };
        self.conclude(me, held, released).await;
    }

    /// Fails a retrying launch's first attempt, which leaves the launch waiting for its
    /// next; logs the end once `status` shows the wait, and puts the launch back in the
    /// registry for a cancel to end.
    async fn fail_to_retry(&self, me: usize, held: Held, end: End) {
        let Held { mut gate, .. } = held;
        let id = gate.id;
        let (from, _) = gate.open(end);
        // Nothing else ends the attempt, and no other launch of the id can succeed
        // while this one waits: `Working` with a next attempt's time is this retry.
        let seen = bounded("a failed attempt to retry", async {
            loop {
                let status = self.subject.status(id).await;
                assert_eq!(
                    status.phase,
                    TaskPhase::Working,
                    "a retrying launch of id {id} ended after its first attempt failed"
                );
                if status.retry_at.is_some() {
                    return Instant::now();
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        gate.waiting = true;
        self.put_back(gate);
        self.record(
            me,
            Call::Finish(id, end, Leaves::Retry),
            (from, seen),
            Answer::Finished,
        );
    }

    /// Has a held attempt of `launch_fenced` report a progress, logged from the report
    /// until the task has seen it return; another held gate goes back untouched and a
    /// status read is made instead (also where reports may show late: Redis).
    async fn report(&self, me: usize, held: Held, rng: &mut Rng) {
        let Held { gate, .. } = held;
        let id = gate.id;
        let reports =
            gate.reports && self.subject.exact_progress() && (gate.started() || !self.limited);
        let release = gate.release.clone().filter(|_| reports);
        let Some(release) = release else {
            self.put_back(gate);
            return self.status(me, id).await;
        };
        // Held until the report returned: nobody else ends the attempt meanwhile.
        let value = rng.below(1000);
        let (reported, seen) = oneshot::channel();
        let invoked = Instant::now();
        release
            .send(Msg::Progress(value, reported))
            .expect("a running attempt listens to its gate");
        bounded("a progress report", seen)
            .await
            .expect("the task reports before it ends");
        let returned = Instant::now();
        self.put_back(gate);
        self.record(
            me,
            Call::Progress(id, value),
            (invoked, returned),
            Answer::Finished,
        );
    }

    async fn status(&self, me: usize, id: u64) {
        let invoked = Instant::now();
        let status = self.subject.status(id).await;
        let returned = Instant::now();
        let view = StatusView::of(&status, self.subject.exact_progress());
        let call = Call::Status(id, view.queued);
        self.record(me, call, (invoked, returned), Answer::Status(view));
    }

    /// Waits until a held attempt has ended on its own, after its gate was `released`
    /// (when, and how) or by its timeout, and logs the end as a `finish` operation.
    async fn conclude(&self, me: usize, held: Held, released: Option<(Instant, End)>) {
        let Held { mut gate, launches } = held;
        let id = gate.id;
        let (end, from, seen) = match gate.handle.take() {
            Some(handle) => {
                // The record is final before the handle resolves.
                let output = bounded("a task handle to resolve", handle.0).await;
                let seen = Instant::now();
                let Some(ended) = output else {
                    panic!("an attempt of id {id} that nobody cancelled was cancelled")
                };
                match (ended, gate.timed, released) {
                    // The timeout may fire from the launch's invocation on.
                    (End::TimedOut, true, _) => (End::TimedOut, gate.launched, seen),
                    (_, _, Some((at, end))) if end == ended => (end, at, seen),
                    _ => panic!(
                        "an attempt of id {id} ended {ended:?}, but its gate was released \
                         with {released:?} and its launch had a timeout: {}",
                        gate.timed
                    ),
                }
            }
            None => {
                let (at, end) =
                    released.expect("an attempt without a handle is concluded once released");
                // The id is Working from the launch until this future's end (which
                // only its release makes: no timeout, no cancel), and no other launch of
                // it can succeed in between: so reading anything but Working, or seeing
                // that a later launch succeeded, means the end has been recorded.
                let seen = bounded("a released future to end", async {
                    loop {
                        let state = self.subject.query_fresh(id).await;
                        if state != TaskState::Working
                            || lock(&self.gates).launched.get(&id) != Some(&launches)
                        {
                            return Instant::now();
                        }
                        tokio::task::yield_now().await;
                    }
                })
                .await;
                (end, at, seen)
            }
        };
        let leaves = gate.leaves;
        drop(gate);
        self.unreserve(id);
        self.record(
            me,
            Call::Finish(id, end, leaves),
            (from, seen),
            Answer::Finished,
        );
    }

    /// Cancels a held attempt, its gate released just before for `cancel_race`%, and
    /// logs the cancel and, if the attempt ended on its own first, its end.
    async fn cancel_held(&self, me: usize, mut held: Held, rng: &mut Rng, w: &Workload) {
        let id = held.gate.id;
        // A retrying attempt is not raced: failing just before the cancel, it would
        // retry unseen (its next attempt's number is what status reads after).
        let mut race = rng.percent(w.cancel_race) && held.gate.leaves != Leaves::Retry;
        let end = rng.end(w.finish_ok, w.finish_panic);
        // A cancel stops whatever attempt of the id runs when it takes effect. If the
        // held one may have ended by then (by its timeout, or by the release just
        // before), no other may have begun: launches of the id are blocked meanwhile,
        // and no launch of it may be in flight. Otherwise the cancel is made on a shut
        // untimed attempt, which nothing else ends, or (timed) not at all.
        let timed = held.gate.timed;
        let blocked = (race || timed) && self.block(id, 1);
        if !blocked {
            if timed {
                self.put_back(held.gate);
                return self.quick(me, id).await;
            }
            race = false;
        }
        let mut released = race.then(|| held.gate.open(end));
        let invoked = Instant::now();
        let cancelled = bounded("a cancel to return", self.subject.cancel(id)).await;
        let returned = Instant::now();
        // The attempt has ended (with a correct recorder): a new one may begin.
        if blocked {
            self.unblock(id);
        }
        self.record(
            me,
            Call::Cancel(id),
            (invoked, returned),
            Answer::Cancelled(cancelled),
        );
        if rng.percent(w.query_after_cancel) {
            self.query(me, id).await;
        }
        if cancelled {
            // The attempt ended by this cancel, which is its end in the model: nothing
            // else is logged for it.
            if let Some(handle) = held.gate.handle.take() {
                let output = bounded("a cancelled task's handle to resolve", handle.0).await;
                let seen = Instant::now();
                if let Some(ended) = output {
                    // It ended otherwise, so cancel should have answered false (a faulty
                    // subject answers before it knows): log that end too, and let the
                    // checker judge.
                    let from = match (ended, released) {
                        (End::TimedOut, _) | (_, None) => held.gate.launched,
                        (_, Some((at, _))) => at,
                    };
                    let call = Call::Finish(id, ended, held.gate.leaves);
                    self.record(me, call, (from, seen), Answer::Finished);
                }
            }
            drop(held);
            self.unreserve(id);
        } else {
            // It ended on its own first: released, or timed out. An untimed attempt
            // still shut (which a correct recorder never leaves) is released now, as a
            // normal finish.
            if released.is_none() && !timed {
                released = Some(held.gate.open(end));
            }
            self.conclude(me, held, released).await;
        }
    }

    /// Cancels `id` if no attempt of it can run meanwhile (no launch of it in flight,
    /// the end of every attempt seen; launches of it are blocked until the cancel
    /// returns), else makes a quick query of it.
    async fn cancel_free(&self, me: usize, id: u64) {
        if !self.block(id, 0) {
            return self.quick(me, id).await;
        }
        let invoked = Instant::now();
        let cancelled = bounded("a cancel to return", self.subject.cancel(id)).await;
        let returned = Instant::now();
        self.unblock(id);
        self.record(
            me,
            Call::Cancel(id),
            (invoked, returned),
            Answer::Cancelled(cancelled),
        );
    }

    async fn query(&self, me: usize, id: u64) {
        let invoked = Instant::now();
        let state = self.subject.query(id).await;
        let returned = Instant::now();
        self.record(
            me,
            Call::Query(id),
            (invoked, returned),
            Answer::State(state),
        );
    }

    async fn quick(&self, me: usize, id: u64) {
        let invoked = Instant::now();
        let state = self.subject.quick(id).await;
        let returned = Instant::now();
        self.record(
            me,
            Call::Quick(id),
            (invoked, returned),
            Answer::State(state),
        );
    }

    async fn count(&self, me: usize, state: TaskState) {
        let invoked = Instant::now();
        let n = self.subject.count(state).await;
        let returned = Instant::now();
        self.record(
            me,
            Call::Count(state),
            (invoked, returned),
            Answer::Count(n),
        );
    }

    async fn counts(&self, me: usize) {
        let invoked = Instant::now();
        let c = self.subject.counts().await;
        let returned = Instant::now();
        let answer = Answer::Counts([c.working, c.success, c.failed, c.revoking]);
        self.record(me, Call::Counts, (invoked, returned), answer);
    }

    /// A blocking revoke whose future ends as `release` says. Accepted, it is logged as
    /// `revoke_begin` and `revoke_end`; refused, as a refused `revoke_begin`.
    async fn revoke(&self, me: usize, id: u64, release: Release) {
        let started = Arc::new(OnceLock::<Instant>::new());
        let ending = Arc::new(OnceLock::<(Instant, End)>::new());
        let (started_in, ending_in) = (Arc::clone(&started), Arc::clone(&ending));
        let future = async move {
            let _ = started_in.set(Instant::now());
            let end = match release {
                Release::Now(end) => end,
                Release::Gate(gate) => gate.await.unwrap_or(End::Err),
            };
            let _ = ending_in.set((Instant::now(), end));
            end.output()
        };
        let invoked = Instant::now();
        let result = Caught(Box::pin(self.subject.revoke_block(id, future))).await;
        let returned = Instant::now();
        let outcome = result.unwrap_or(RevokeOutcome::TaskError);
        match started.get() {
            None => {
                let answer = Answer::RevokeBegin(Err(outcome));
                self.record(me, Call::RevokeBegin(id), (invoked, returned), answer);
            }
            Some(&began) => {
                let (ended, end) = *ending
                    .get()
                    .expect("a started revoke future ran to its end");
                let answer = Answer::RevokeBegin(Ok(()));
                self.record(me, Call::RevokeBegin(id), (invoked, began), answer);
                let answer = Answer::RevokeEnd(outcome);
                self.record(me, Call::RevokeEnd(id, end), (ended, returned), answer);
            }
        }
    }
}

/// When a revoke future ends.
enum Release {
    /// At once, this way.
    Now(End),
    /// When a message comes through the gate.
    Gate(oneshot::Receiver<End>),
}

/// Starts a revoke whose future waits for a release, in a task of its own (any client
/// may release it, including this one).
fn revoke_gated(shared: &Arc<Shared>, me: usize, id: u64) {
    let (release, gate) = oneshot::channel();
    let ticket = {
        let mut gates = lock(&shared.gates);
        gates.next_ticket += 1;
        let ticket = gates.next_ticket;
        gates.revokes.push((ticket, release));
        ticket
    };
    let task_shared = Arc::clone(shared);
    let task = tokio::spawn(async move {
        task_shared.revoke(me, id, Release::Gate(gate)).await;
        lock(&task_shared.gates)
            .revokes
            .retain(|&(t, _)| t != ticket);
    });
    lock(&shared.revokers).push(task);
}

/// A launch's answer: whether it launched, and its handle then.
fn split<R, E>(
    result: Result<async_tasks_recorder::TaskHandle<R, E>, TaskState>,
) -> (Result<(), TaskState>, Option<Ended>)
where
    R: Send + 'static,
    E: fmt::Debug + Send + 'static,
{
    match result {
        Ok(handle) => (Ok(()), Some(Ended::of(handle))),
        Err(state) => (Err(state), None),
    }
}

/// How a task ended, as its handle tells; `None` for a cancelled one.
fn end_of<R, E: fmt::Debug>(output: &Result<R, TaskError<E>>) -> Option<End> {
    match output {
        Ok(_) => Some(End::Ok),
        Err(TaskError::Failed(_)) => Some(End::Err),
        Err(TaskError::Panicked(_)) => Some(End::Panic),
        Err(TaskError::TimedOut) => Some(End::TimedOut),
        Err(TaskError::Cancelled) => None,
        Err(error) => panic!("nothing drops the tasks of a history, yet: {error:?}"),
    }
}

/// One less launch in flight or attempt running for `id`.
fn unreserve(gates: &mut Gates, id: u64) {
    let busy = gates.busy.get_mut(&id).expect("a reserved id");
    *busy -= 1;
}

/// Waits for `id`. The wait is polled once here, which registers its waiter if the id
/// is running; if it does not resolve at once, a task of its own awaits it, so that the
/// client goes on (the release it waits for may be this client's to make).
async fn start_wait(shared: &Arc<Shared>, me: usize, id: u64) {
    let subject = shared.subject.clone();
    let invoked = Instant::now();
    let mut wait = Box::pin(async move { subject.wait(id).await });
    let now = std::future::poll_fn(|cx| {
        Poll::Ready(match wait.as_mut().poll(cx) {
            Poll::Ready(settled) => Some(settled),
            Poll::Pending => None,
        })
    })
    .await;
    if let Some((phase, reason)) = now {
        let returned = Instant::now();
        let answer = Answer::Settled(phase, reason);
        shared.record(me, Call::Wait(id), (invoked, returned), answer);
        return;
    }
    let task_shared = Arc::clone(shared);
    let task = tokio::spawn(async move {
        let (phase, reason) = bounded("a wait to resolve", wait).await;
        let returned = Instant::now();
        let answer = Answer::Settled(phase, reason);
        task_shared.record(me, Call::Wait(id), (invoked, returned), answer);
    });
    lock(&shared.waiters).push(task);
}

/// One client: a seeded random sequence of operations.
async fn client(shared: Arc<Shared>, me: usize, mut rng: Rng, w: Workload, go: Arc<Barrier>) {
    // Start together, so that the clients overlap from the first operation.
    bounded("the other clients to start", go.wait()).await;
    let ops = w.min_ops + rng.below(w.max_ops - w.min_ops + 1);
    let total: u64 = w.weights.iter().sum();
    for _ in 0..ops {
        let id = rng.below(IDS);
        let mut roll = rng.below(total);
        let mut action = ACTIONS[0];
        for (&a, &weight) in ACTIONS.iter().zip(&w.weights) {
            if roll < weight {
                action = a;
                break;
            }
            roll -= weight;
        }
        match action {
            Action::Launch => {
                let roll = rng.below(100);
                let how = if roll < w.kept {
                    How::Kept(0)
                } else if roll < w.kept + w.fenced {
                    How::Fenced
                } else if roll < w.kept + w.fenced + w.retrying {
                    How::Retrying
                } else if rng.percent(w.with_handle) {
                    How::With(None)
                } else {
                    How::Plain
                };
                shared.launch(me, id, how).await;
            }
            Action::TimedLaunch => {
                let us = TIMEOUTS_US[rng.below(TIMEOUTS_US.len() as u64) as usize];
                shared.launch(me, id, How::With(Some(us))).await;
            }
            Action::Finish => match shared.take_gate(me, &mut rng) {
                // A waiting retry has no attempt to release: only a cancel ends it.
                Some(held) if held.gate.waiting => {
                    let id = held.gate.id;
                    shared.put_back(held.gate);
                    shared.status(me, id).await;
                }
                Some(held) => shared.finish(me, held, &mut rng, &w).await,
                None => shared.query(me, id).await,
            },
            Action::Status => shared.status(me, id).await,
            Action::Progress => match shared.take_gate(me, &mut rng) {
                Some(held) => shared.report(me, held, &mut rng).await,
                None => shared.status(me, id).await,
            },
            Action::Query => shared.query(me, id).await,
            Action::Quick => shared.quick(me, id).await,
            Action::Revoke => {
                if rng.percent(w.gated_revoke) {
                    revoke_gated(&shared, me, id);
                } else {
                    let end = rng.end(w.revoke_ok, w.revoke_panic);
                    shared.revoke(me, id, Release::Now(end)).await;
                }
            }
            Action::ReleaseRevoke => {
                let gate = {
                    let mut gates = lock(&shared.gates);
                    let n = gates.revokes.len() as u64;
                    (n > 0).then(|| gates.revokes.swap_remove(rng.below(n) as usize))
                };
                match gate {
                    Some((_, release)) => {
                        let _ = release.send(rng.end(w.revoke_ok, w.revoke_panic));
                    }
                    None => shared.quick(me, id).await,
                }
            }
            Action::Count => {
                let state = [TaskState::Working, TaskState::Success, TaskState::Failed]
                    [rng.below(3) as usize];
                shared.count(me, state).await;
            }
            Action::Counts => shared.counts(me).await,
            Action::Wait => start_wait(&shared, me, id).await,
            Action::Cancel => {
                let held = if rng.percent(w.free_cancel) {
                    None
                } else {
                    shared.take_gate(me, &mut rng)
                };
                match held {
                    Some(held) => shared.cancel_held(me, held, &mut rng, &w).await,
                    None => shared.cancel_free(me, id).await,
                }
            }
        }
        if rng.percent(w.yield_after) {
            tokio::task::yield_now().await;
        }
    }
}

/// Records one history: the clients run concurrently, then every open gate is released
/// (the launched futures by logged `finish` operations, timed ones left to time out as
/// the workload says) so that nothing is left running, and the waits resolve.
async fn record_history(subject: Subject, w: Workload, seed: u64) -> Vec<Event> {
    let shared = Arc::new(Shared {
        subject,
        limited: w.max_running.is_some(),
        log: Mutex::new(Vec::new()),
        gates: Mutex::new(Gates::default()),
        revokers: Mutex::new(Vec::new()),
        waiters: Mutex::new(Vec::new()),
    });
    let go = Arc::new(Barrier::new(w.clients));
    let clients: Vec<JoinHandle<()>> = (0..w.clients)
        .map(|me| {
            let rng = Rng::new(seed.wrapping_mul(16).wrapping_add(me as u64));
            tokio::spawn(client(Arc::clone(&shared), me, rng, w, Arc::clone(&go)))
        })
        .collect();
    for client in clients {
        bounded("a client", client)
            .await
            .expect("a client panicked");
    }

    // Drain, as one more client.
    let me = w.clients;
    let mut rng = Rng::new(seed.wrapping_mul(16).wrapping_add(15));
    bounded("the drain", async {
        while let Some(held) = shared.take_gate(me, &mut rng) {
            if held.gate.waiting {
                shared.cancel_held(me, held, &mut rng, &w).await;
            } else if shared.limited && !held.gate.started() && !held.gate.timed {
                // Queued, or not polled yet: the releases of the others free its slot.
                shared.put_back(held.gate);
                tokio::task::yield_now().await;
            } else {
                shared.finish(me, held, &mut rng, &w).await;
            }
        }
    })
    .await;
    let revokes = std::mem::take(&mut lock(&shared.gates).revokes);
    for (_, release) in revokes {
        let _ = release.send(rng.end(w.revoke_ok, w.revoke_panic));
    }
    let revokers = std::mem::take(&mut *lock(&shared.revokers));
    for task in revokers {
        bounded("a gated revoke", task)
            .await
            .expect("a revoke task panicked");
    }
    let waiters = std::mem::take(&mut *lock(&shared.waiters));
    for task in waiters {
        bounded("a wait", task).await.expect("a wait task panicked");
    }
    bounded(
        "the early-cancelled attempts",
        shared.subject.settle_early_cancels(),
    )
    .await;
    let counts = shared.subject.counts().await;
    assert_eq!(
        (counts.working, counts.revoking),
        (0, 0),
        "a history must end with nothing running"
    );
    {
        let gates = lock(&shared.gates);
        assert!(
            gates
                .busy
                .values()
                .chain(gates.blocking.values())
                .all(|&n| n == 0),
            "every attempt's end was seen and every cancel returned: {gates:?}"
        );
    }
    let log = std::mem::take(&mut *lock(&shared.log));
    log
}
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a Tokio runtime")
}

/// Totals over a run of histories.
#[derive(Debug, Default)]
struct Totals {
    histories: u64,
    operations: usize,
    configurations: usize,
    max_configurations: usize,
    /// Operations that overlap in time with an operation of another client.
    overlapping: usize,
    /// Of the new operations: waits, cancels, cancels that answered `true`, timed
    /// launches that returned `Ok`, timeouts that fired.
    waits: usize,
    cancels: usize,
    cancelled: usize,
    timed: usize,
    timed_out: usize,
    /// Of the features read through `status`: status reads, ends that kept a value,
    /// progress reports, failed attempts that left their launch waiting to retry.
    statuses: usize,
    /// Status reads that saw a queued attempt.
    queued: usize,
    kept: usize,
    reports: usize,
    retries: usize,
}

impl Totals {
    fn add(&mut self, history: &[Event], checked: Checked) {
        self.histories += 1;
        self.operations += history.len();
        self.configurations += checked.configurations;
        self.max_configurations = self.max_configurations.max(checked.configurations);
        self.overlapping += overlapping(history);
        for e in history {
            let answer = e.response.map(|(_, answer)| answer);
            match (e.call, answer) {
                (Call::Wait(_), _) => self.waits += 1,
                (Call::Cancel(_), cancelled) => {
                    self.cancels += 1;
                    self.cancelled += usize::from(cancelled == Some(Answer::Cancelled(true)));
                }
                (Call::LaunchWith(_, Some(_)), Some(Answer::Launch(Ok(())))) => self.timed += 1,
                (Call::Finish(_, End::TimedOut, _), _) => self.timed_out += 1,
                (Call::Finish(_, end, Leaves::Kept(_)), _) if end != End::TimedOut => {
                    self.kept += 1;
                }
                (Call::Finish(_, End::Err | End::Panic, Leaves::Retry), _) => self.retries += 1,
                (Call::Progress(..), _) => self.reports += 1,
                (Call::Status(_, queued), _) => {
                    self.statuses += 1;
                    self.queued += usize::from(queued);
                }
                _ => {}
            }
        }
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} histories, {} operations ({} overlapping another client's; {} waits, {} \
             cancels of which {} cancelled, {} timed launches of which {} timed out; {} \
             status reads ({} of a queued attempt), {} kept ends, {} progress reports, {} \
             retries), {} \
             configurations searched (at most {} in one)",
            self.histories,
            self.operations,
            self.overlapping,
            self.waits,
            self.cancels,
            self.cancelled,
            self.timed,
            self.timed_out,
            self.statuses,
            self.queued,
            self.kept,
            self.reports,
            self.retries,
            self.configurations,
            self.max_configurations,
        )
    }
}

/// How many operations of `history` overlap in time with an operation of another
/// client.
fn overlapping(history: &[Event]) -> usize {
    let span = |e: &Event| (e.invoked, e.response.map(|(at, _)| at));
    history
        .iter()
        .filter(|a| {
            let (a0, a1) = span(a);
            history.iter().any(|b| {
                let (b0, b1) = span(b);
                a.client != b.client && b1.is_none_or(|b1| a0 <= b1) && a1.is_none_or(|a1| b0 <= a1)
            })
        })
        .count()
}

/// Which store the histories are recorded on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memory,
    /// A server started for the run; every history has a namespace of its own.
    #[cfg(feature = "redis")]
    Redis,
}

/// What a run of histories needs: the runtime, and the server on Redis.
struct Bench {
    rt: tokio::runtime::Runtime,
    backend: Backend,
    #[cfg(feature = "redis")]
    server: Option<redis_server::RedisServer>,
}

impl Bench {
    fn new(backend: Backend) -> Bench {
        Bench {
            rt: match backend {
                Backend::Memory => runtime(),
                // The Redis client needs the I/O driver too.
                #[cfg(feature = "redis")]
                Backend::Redis => tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a Tokio runtime"),
            },
            backend,
            #[cfg(feature = "redis")]
            server: (backend == Backend::Redis).then(redis_server::RedisServer::start),
        }
    }

    /// A fresh subject for history `seed`.
    fn subject(&self, fault: Fault, seed: u64, max_running: Option<usize>) -> Subject {
        #[cfg(not(feature = "redis"))]
        let _ = seed;
        match self.backend {
            Backend::Memory => {
                let mut builder = async_tasks_recorder::AsyncTasksRecorder::builder();
                if let Some(n) = max_running {
                    builder = builder.max_running(n);
                }
                Subject::on(model::Store::Memory(builder.build()), fault)
            }
            #[cfg(feature = "redis")]
            Backend::Redis => {
                let url = self.server.as_ref().expect("a server").url();
                // Two recorders with connections of their own, standing for two
                // replicas; the subject sends each call to the next one.
                let replicas = self.rt.block_on(async {
                    let mut replicas = Vec::new();
                    for _ in 0..2 {
                        let rec = bounded("the Redis recorder to build", {
                            let mut builder =
                                async_tasks_recorder::redis::RedisRecorder::builder(url.clone())
                                    .namespace(format!("h{seed}"))
                                    .lease(Duration::from_secs(30));
                            if let Some(n) = max_running {
                                builder = builder.max_running(n);
                            }
                            builder.build()
                        })
                        .await
                        .expect("the recorder builds on the test server");
                        replicas.push(rec);
                    }
                    replicas
                });
                Subject::on(model::Store::redis(replicas), fault)
            }
        }
    }

    fn record(&self, fault: Fault, w: Workload, seed: u64) -> Vec<Event> {
        let subject = self.subject(fault, seed, w.max_running);
        self.rt.block_on(record_history(subject, w, seed))
    }
}

/// Records and checks `histories` histories of the real recorder (the workloads in
/// turn); panics with a report at the first one that is not linearizable.
fn run_correct(histories: u64, first_seed: u64) -> Totals {
    run_correct_on(Backend::Memory, histories, first_seed)
}

fn run_correct_on(backend: Backend, histories: u64, first_seed: u64) -> Totals {
    quiet_planned_panics();
    let bench = Bench::new(backend);
    let mut totals = Totals::default();
    for n in 0..histories {
        let seed = first_seed + n;
        let w = WORKLOADS[(n % WORKLOADS.len() as u64) as usize];
        let history = bench.record(Fault::None, w, seed);
        match check_on(&history, w.max_running.is_some()) {
            Ok(checked) => totals.add(&history, checked),
            Err(report) => panic!(
                "history {n} (seed {seed}, workload {}) of the real recorder on {backend:?}:\n{report}",
                w.name
            ),
        }
    }
    totals
}

/// Records histories of a faulty subject until one fails the check; returns after how
/// many, with the report, or `None` if all of `attempts` passed.
fn hunt(fault: Fault, w: Workload, attempts: u64) -> Option<(u64, String)> {
    hunt_on(Backend::Memory, fault, w, attempts)
}

fn hunt_on(backend: Backend, fault: Fault, w: Workload, attempts: u64) -> Option<(u64, String)> {
    quiet_planned_panics();
    let bench = Bench::new(backend);
    (1..=attempts).find_map(|n| {
        let history = bench.record(fault, w, n);
        check_on(&history, w.max_running.is_some())
            .err()
            .map(|report| (n, report))
    })
}

// ---------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------

#[test]
fn histories_are_linearizable() {
    let started = Instant::now();
    let totals = run_correct(1000, 1);
    println!("{totals}, {:.2?}", started.elapsed());
    assert_eq!(totals.histories, 1000);
    assert_exercised(&totals, Backend::Memory);
}

/// The new operations did occur, with both answers of cancel, and the features that
/// `status` reads: kept values, retries, and (where reads see them at once: not on
/// Redis) progress reports.
fn assert_exercised(totals: &Totals, backend: Backend) {
    assert!(totals.waits > 0, "no waits: {totals}");
    assert!(
        totals.cancelled > 0 && totals.cancelled < totals.cancels,
        "cancels did not answer both ways: {totals}"
    );
    assert!(totals.timed_out > 0, "no timeout fired: {totals}");
    assert!(
        totals.statuses > 0 && totals.queued > 0 && totals.kept > 0 && totals.retries > 0,
        "no status reads, queued attempts, kept values or retries: {totals}"
    );
    if backend == Backend::Memory {
        assert!(totals.reports > 0, "no progress reports: {totals}");
    }
}

/// `ATR_LIN_HISTORIES` sets the number of histories (default 10,000).
#[test]
#[ignore = "long: run with --release -- --ignored long_run"]
fn long_run() {
    let histories = std::env::var("ATR_LIN_HISTORIES")
        .ok()
        .map(|v| v.parse().expect("ATR_LIN_HISTORIES must be a number"))
        .unwrap_or(10_000);
    let started = Instant::now();
    let totals = run_correct(histories, 1_000_000);
    let elapsed = started.elapsed();
    println!(
        "long_run: linearizable: {totals}, in {:.2} s",
        elapsed.as_secs_f64()
    );
    assert_eq!(totals.histories, histories);
    assert_exercised(&totals, Backend::Memory);
}

/// The same histories on the Redis recorder, against a server the test starts, with
/// the calls spread over two recorders standing for two replicas.
#[cfg(feature = "redis")]
#[test]
fn histories_on_redis_are_linearizable() {
    let started = Instant::now();
    let totals = run_correct_on(Backend::Redis, 300, 1);
    println!("redis: {totals}, {:.2?}", started.elapsed());
    assert_eq!(totals.histories, 300);
    assert_exercised(&totals, Backend::Redis);
}

/// `ATR_LIN_HISTORIES` sets the number of histories (default 10,000).
#[cfg(feature = "redis")]
#[test]
#[ignore = "long: run with --release --features redis -- --ignored long_run_on_redis"]
fn long_run_on_redis() {
    let histories = std::env::var("ATR_LIN_HISTORIES")
        .ok()
        .map(|v| v.parse().expect("ATR_LIN_HISTORIES must be a number"))
        .unwrap_or(10_000);
    let started = Instant::now();
    let totals = run_correct_on(Backend::Redis, histories, 1_000_000);
    println!(
        "long_run_on_redis: linearizable: {totals}, in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(totals.histories, histories);
    assert_exercised(&totals, Backend::Redis);
}

#[cfg(feature = "redis")]
#[test]
fn checker_catches_stale_reads_on_redis() {
    let found = hunt_on(Backend::Redis, Fault::StaleRead, QUERIES, 300);
    let (after, report) = found.expect("300 Redis histories with stale reads all passed the check");
    println!("stale reads on Redis caught after {after} histories:\n{report}");
}

#[cfg(feature = "redis")]
#[test]
fn checker_catches_double_success_on_redis() {
    let found = hunt_on(Backend::Redis, Fault::DoubleSuccess, SUCCESSES, 300);
    let (after, report) = found.expect("300 Redis histories with double successes all passed");
    println!("double success on Redis caught after {after} histories:\n{report}");
}

/// Stale `status` reads: the kept values, progress and retries that status adds to the
/// phase are checked, not only the phase.
#[test]
fn checker_catches_stale_status_reads() {
    let found = hunt(Fault::StaleStatus, FEATURES, 300);
    let (after, report) =
        found.expect("300 histories with stale status reads all passed the check");
    println!("stale status reads caught after {after} histories:\n{report}");
}

#[test]
fn checker_catches_stale_reads() {
    let found = hunt(Fault::StaleRead, QUERIES, 500);
    let (after, report) = found.expect("500 histories with stale reads all passed the check");
    println!("stale reads caught after {after} histories:\n{report}");
}

#[test]
fn checker_catches_double_success() {
    let found = hunt(Fault::DoubleSuccess, SUCCESSES, 500);
    let (after, report) = found.expect("500 histories with double successes all passed the check");
    println!("double success caught after {after} histories:\n{report}");
}

#[test]
fn checker_catches_waits_that_do_not_wait() {
    let found = hunt(Fault::WaitTooSoon, WAITS, 500);
    let (after, report) = found.expect("500 histories with early waits all passed the check");
    println!("early waits caught after {after} histories:\n{report}");
}

#[test]
fn checker_catches_cancels_that_do_not_wait() {
    let found = hunt(Fault::CancelEarly, WAITS, 500);
    let (after, report) = found.expect("500 histories with early cancels all passed the check");
    println!("early cancels caught after {after} histories:\n{report}");
}

/// Hand-written histories: times in microseconds from `base`.
struct Hand {
    base: Instant,
    events: Vec<Event>,
}

impl Hand {
    fn new() -> Self {
        Hand {
            base: Instant::now(),
            events: Vec::new(),
        }
    }

    fn at(&self, micros: u64) -> Instant {
        self.base + Duration::from_micros(micros)
    }

    fn op(mut self, client: usize, call: Call, span: (u64, u64), answer: Answer) -> Self {
        let (invoked, returned) = (self.at(span.0), self.at(span.1));
        self.events.push(Event {
            client,
            call,
            invoked,
            response: Some((returned, answer)),
        });
        self
    }

    fn pending(mut self, client: usize, call: Call, invoked: u64) -> Self {
        let invoked = self.at(invoked);
        self.events.push(Event {
            client,
            call,
            invoked,
            response: None,
        });
        self
    }
}

#[test]
fn checker_on_hand_written_histories() {
    use Answer as A;
    use Call as C;
    use TaskState::{Failed, NotFound, Success, Working};

    // Concurrent and linearizable: the first query overlaps the launch and is placed
    // before it; the query at 16..25 overlaps the future's end and is placed after it;
    // the launch during the revoke is refused with Success; the last query overlaps the
    // revoke's end and is placed before it.
    let good = Hand::new()
        .op(0, C::Launch(1), (0, 10), A::Launch(Ok(())))
        .op(1, C::Query(1), (5, 15), A::State(NotFound))
        .op(2, C::Quick(1), (6, 20), A::State(Working))
        .op(
            0,
            C::Finish(1, End::Ok, Leaves::Nothing),
            (12, 30),
            A::Finished,
        )
        .op(1, C::Query(1), (16, 25), A::State(Success))
        .op(2, C::Count(Success), (21, 28), A::Count(1))
        .op(1, C::Counts, (26, 29), A::Counts([0, 1, 0, 0]))
        .op(0, C::RevokeBegin(1), (31, 35), A::RevokeBegin(Ok(())))
        .op(2, C::Launch(1), (36, 38), A::Launch(Err(Success)))
        .op(
            1,
            C::RevokeBegin(1),
            (36, 39),
            A::RevokeBegin(Err(RevokeOutcome::Revoking)),
        )
        .op(
            0,
            C::RevokeEnd(1, End::Ok),
            (40, 45),
            A::RevokeEnd(RevokeOutcome::Ok),
        )
        .op(1, C::Query(1), (41, 50), A::State(Success))
        .op(2, C::Query(1), (46, 50), A::State(NotFound))
        .op(2, C::Launch(0), (51, 52), A::Launch(Ok(())))
        .op(
            2,
            C::Finish(0, End::Panic, Leaves::Nothing),
            (53, 60),
            A::Finished,
        )
        .op(1, C::Query(0), (61, 62), A::State(Failed))
        .pending(0, C::Launch(2), 55)
        .op(1, C::Quick(2), (63, 64), A::State(Working));
    check(&good.events).expect("a linearizable history");

    // A pending launch may have taken effect...
    let pending =
        Hand::new()
            .pending(0, C::Launch(1), 0)
            .op(1, C::Query(1), (10, 20), A::State(Working));
    check(&pending.events).expect("a pending launch that took effect");
    // ...or not.
    let pending =
        Hand::new()
            .pending(0, C::Launch(1), 0)
            .op(1, C::Query(1), (10, 20), A::State(NotFound));
    check(&pending.events).expect("a pending launch that did not take effect");

    // A query that starts after a launch returned Ok cannot see NotFound (no revoke).
    let lost_launch = Hand::new()
        .op(0, C::Launch(1), (0, 10), A::Launch(Ok(())))
        .op(1, C::Quick(2), (5, 25), A::State(Working))
        .op(1, C::Query(1), (20, 30), A::State(NotFound));
    let report = check(&lost_launch.events).expect_err("a lost launch");
    assert!(report.contains("NOT linearizable"), "{report}");
    assert!(
        report.contains("answered not_found, the model says working"),
        "{report}"
    );

    // Real-time order counts: the same two operations, overlapping, are fine.
    let overlapping = Hand::new()
        .op(0, C::Launch(1), (0, 10), A::Launch(Ok(())))
        .op(1, C::Query(1), (9, 30), A::State(NotFound));
    check(&overlapping.events).expect("an overlapping query may come first");

    // A second success: the id succeeded and no revoke happened, yet a launch is let in.
    let double = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(
            0,
            C::Finish(1, End::Ok, Leaves::Nothing),
            (2, 3),
            A::Finished,
        )
        .op(1, C::Launch(1), (4, 5), A::Launch(Ok(())));
    check(&double.events).expect_err("a second success");

    // A stale read: Working is read after a query already saw the end.
    let stale = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(
            0,
            C::Finish(1, End::Err, Leaves::Nothing),
            (2, 5),
            A::Finished,
        )
        .op(1, C::Query(1), (4, 6), A::State(Failed))
        .op(1, C::Query(1), (7, 8), A::State(Working));
    check(&stale.events).expect_err("a stale read");

    // A count must agree with the other ids' operations: only one id ever succeeded.
    let counts = Hand::new()
        .op(0, C::Launch(0), (0, 1), A::Launch(Ok(())))
        .op(
            0,
            C::Finish(0, End::Ok, Leaves::Nothing),
            (2, 3),
            A::Finished,
        )
        .op(1, C::Count(Success), (4, 5), A::Count(2));
    check(&counts.events).expect_err("a count of ids that never succeeded");
}

#[test]
fn checker_on_hand_written_status_reads() {
    use Answer as A;
    use Call as C;
    let view = |phase, attempts, last_failure, kept, progress, retry_pending| StatusView {
        phase,
        attempts,
        last_failure,
        kept,
        progress,
        retry_pending,
        queued: false,
    };
    let working = |attempts, progress| {
        view(
            TaskPhase::Working,
            Some(attempts),
            None,
            None,
            progress,
            false,
        )
    };

    // A kept value, a progress report, a retry's wait, each read back.
    let history = |kept: StatusView, progress: StatusView, waiting: StatusView| {
        Hand::new()
            .op(0, C::LaunchKept(1, 7), (0, 10), A::Launch(Ok(())))
            .op(
                0,
                C::Finish(1, End::Ok, Leaves::Kept(7)),
                (11, 20),
                A::Finished,
            )
            .op(1, C::Status(1, false), (21, 30), A::Status(kept))
            .op(0, C::LaunchFenced(2), (31, 40), A::Launch(Ok(())))
            .op(
                1,
                C::Status(2, false),
                (41, 45),
                A::Status(working(1, None)),
            )
            .op(0, C::Progress(2, 5), (46, 50), A::Finished)
            .op(1, C::Status(2, false), (51, 55), A::Status(progress))
            .op(0, C::LaunchRetrying(0), (56, 60), A::Launch(Ok(())))
            .op(
                0,
                C::Finish(0, End::Err, Leaves::Retry),
                (61, 70),
                A::Finished,
            )
            .op(1, C::Status(0, false), (71, 80), A::Status(waiting))
            .events
    };
    let kept = view(
        TaskPhase::Success,
        None,
        None,
        Some(KeptCode::Output(7)),
        None,
        false,
    );
    let progress = working(1, Some(5));
    let waiting = view(
        TaskPhase::Working,
        Some(2),
        Some(FailureReason::Error),
        None,
        None,
        true,
    );
    check(&history(kept, progress, waiting)).expect("status reads what happened");

    let other_value = view(
        TaskPhase::Success,
        None,
        None,
        Some(KeptCode::Output(8)),
        None,
        false,
    );
    let no_value = view(TaskPhase::Success, None, None, None, None, false);
    let no_wait = working(1, None);
    let wrong = [
        (
            history(other_value, progress, waiting),
            "another launch's kept value",
        ),
        (history(no_value, progress, waiting), "a kept value lost"),
        (
            history(kept, working(1, None), waiting),
            "a reported progress lost",
        ),
        (
            history(kept, working(1, Some(4)), waiting),
            "another progress",
        ),
        (history(kept, progress, no_wait), "a retry's wait not shown"),
    ];
    for (events, what) in wrong {
        let report = check(&events).expect_err(what);
        assert!(report.contains("NOT linearizable"), "{what}: {report}");
    }

    // Queued until its future starts, with a limit only, and never queued again.
    let queued = |start: (u64, u64), reads: [bool; 3]| {
        let read = |queued| {
            A::Status(view(TaskPhase::Working, Some(1), None, None, None, false))
                .with_queued(queued)
        };
        Hand::new()
            .op(0, C::Launch(1), (0, 10), A::Launch(Ok(())))
            .op(1, C::Status(1, reads[0]), (11, 20), read(reads[0]))
            .op(0, C::Start(1), start, A::Finished)
            .op(1, C::Status(1, reads[1]), (31, 40), read(reads[1]))
            .op(1, C::Status(1, reads[2]), (41, 50), read(reads[2]))
            .events
    };
    check_on(&queued((0, 30), [true, false, false]), true).expect("queued, then started");
    check_on(&queued((0, 30), [false, false, false]), true).expect("never queued");
    check_on(&queued((0, 45), [true, true, false]), true).expect("started during a read");
    // The record leaves the queue before the future's first poll.
    check_on(&queued((0, 50), [true, false, false]), true).expect("out of the queue first");
    let wrong = [
        (
            queued((0, 30), [true, true, false]),
            true,
            "queued after its start",
        ),
        (queued((0, 45), [false, true, false]), true, "queued again"),
        (
            queued((0, 30), [true, false, false]),
            false,
            "queued without a limit",
        ),
    ];
    for (events, may_queue, what) in wrong {
        let report = check_on(&events, may_queue).expect_err(what);
        assert!(report.contains("NOT linearizable"), "{what}: {report}");
    }
}

impl Answer {
    /// A status answer with its queued flag set so.
    fn with_queued(self, queued: bool) -> Answer {
        match self {
            Answer::Status(view) => Answer::Status(StatusView { queued, ..view }),
            other => other,
        }
    }
}

#[test]
fn checker_on_hand_written_waits_cancels_and_timeouts() {
    use Answer as A;
    use Call as C;
    use FailureReason::{Cancelled, Error, TimedOut};
    use TaskState::{Failed, Success, Working};

    // A wait answers the outcome of the phase it waited for, although the id was
    // launched again before the wait returned.
    let moved_on = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(
            1,
            C::Wait(1),
            (2, 30),
            A::Settled(TaskPhase::Failed, Some(Error)),
        )
        .op(
            0,
            C::Finish(1, End::Err, Leaves::Nothing),
            (3, 5),
            A::Finished,
        )
        .op(0, C::Launch(1), (6, 7), A::Launch(Ok(())))
        .op(2, C::Query(1), (8, 9), A::State(Working));
    check(&moved_on.events).expect("a wait for a phase the id has left since");

    // A revoked id: the wait of the revoke answers NotFound.
    let revoked = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(
            0,
            C::Finish(1, End::Ok, Leaves::Nothing),
            (2, 3),
            A::Finished,
        )
        .op(0, C::RevokeBegin(1), (4, 5), A::RevokeBegin(Ok(())))
        .op(
            1,
            C::Wait(1),
            (6, 20),
            A::Settled(TaskPhase::NotFound, None),
        )
        .op(
            0,
            C::RevokeEnd(1, End::Ok),
            (10, 12),
            A::RevokeEnd(RevokeOutcome::Ok),
        );
    check(&revoked.events).expect("a wait for a revoke");

    // A wait that returns while the id runs, all along, cannot answer.
    let early = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(1, C::Wait(1), (2, 3), A::Settled(TaskPhase::Success, None))
        .op(
            0,
            C::Finish(1, End::Ok, Leaves::Nothing),
            (4, 5),
            A::Finished,
        );
    let report = check(&early.events).expect_err("a wait that did not wait");
    assert!(
        report.contains("wait(1): cannot happen in this state"),
        "{report}"
    );

    // The failure reason counts.
    let reason = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(
            0,
            C::Finish(1, End::Err, Leaves::Nothing),
            (2, 3),
            A::Finished,
        )
        .op(
            1,
            C::Wait(1),
            (4, 5),
            A::Settled(TaskPhase::Failed, Some(Cancelled)),
        );
    let report = check(&reason.events).expect_err("a wrong failure reason");
    assert!(
        report.contains("answered failed (cancelled), the model says failed (error)"),
        "{report}"
    );

    // A cancel that answers true is the attempt's end.
    let cancelled = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(
            1,
            C::Wait(1),
            (2, 20),
            A::Settled(TaskPhase::Failed, Some(Cancelled)),
        )
        .op(0, C::Cancel(1), (3, 10), A::Cancelled(true))
        .op(0, C::Query(1), (11, 12), A::State(Failed))
        .op(0, C::Launch(1), (13, 14), A::Launch(Ok(())));
    check(&cancelled.events).expect("a cancelled attempt");

    // Two cancels cannot both stop one attempt.
    let twice = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(0, C::Cancel(1), (2, 5), A::Cancelled(true))
        .op(1, C::Cancel(1), (6, 8), A::Cancelled(true));
    check(&twice.events).expect_err("one attempt cancelled twice");

    // A cancel that answered true returns after the attempt ended.
    let unfinished = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(0, C::Cancel(1), (2, 3), A::Cancelled(true))
        .op(0, C::Query(1), (4, 5), A::State(Working));
    check(&unfinished.events).expect_err("a cancel that did not wait for the end");

    // A cancel that answers false: the attempt ended on its own inside its interval...
    let lost_race = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(0, C::Cancel(1), (2, 10), A::Cancelled(false))
        .op(
            1,
            C::Finish(1, End::Ok, Leaves::Nothing),
            (3, 6),
            A::Finished,
        )
        .op(0, C::Query(1), (11, 12), A::State(Success));
    check(&lost_race.events).expect("a cancel that lost the race");
    // ...and cannot answer so while the id is Working all along.
    let refused = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(0, C::Cancel(1), (2, 3), A::Cancelled(false))
        .op(0, C::Query(1), (4, 5), A::State(Working));
    check(&refused.events).expect_err("a Working id that cancel did not stop");

    // A timeout may fire as soon as the timed launch is invoked, before it returns.
    let timed = Hand::new()
        .op(0, C::LaunchWith(1, Some(0)), (0, 10), A::Launch(Ok(())))
        .op(
            0,
            C::Finish(1, End::TimedOut, Leaves::Nothing),
            (0, 20),
            A::Finished,
        )
        .op(1, C::Query(1), (5, 6), A::State(Failed))
        .op(
            1,
            C::Wait(1),
            (7, 8),
            A::Settled(TaskPhase::Failed, Some(TimedOut)),
        );
    check(&timed.events).expect("a timeout during the launch");
}
