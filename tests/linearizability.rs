//! Linearizability check of the recorder.
//!
//! Concurrent histories are recorded on a multi-thread Tokio runtime: a few clients run
//! random operations on a handful of ids, and every operation is logged with the
//! instant it was invoked, the instant it returned, and its answer. A Wing & Gong
//! search with Lowe's memoization then looks for an order of the operations that
//! respects real time (an operation that returned before another was invoked comes
//! first) and that the sequential model in `tests/model` accepts, answer for answer.
//!
//! The operations are the launches (`launch`, and `launch_with` with or without a
//! timeout), the queries and counts, `wait` and `cancel`. In the sequential model:
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
//! Four state changes are not calls the clients make, and are logged as operations of
//! their own, with an interval measured around the change:
//! - `finish(id, end)`: a launched future ended on its own, from just before a client
//!   releases it until the client sees that the attempt ended: its handle resolved,
//!   or (without a handle) its own polling sees the id leave `Working` or sees a later
//!   launch of the id succeed, which can only follow the end;
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
    FailureReason, LaunchOptions, TaskError, TaskHandle, TaskPhase, TaskState,
};
use model::{Fault, Model, ModelState, RevokeOutcome, Subject};
use tokio::sync::{oneshot, Barrier};
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

/// An operation of a history, with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Launch(u64),
    /// `launch_with`, with the timeout in microseconds if any.
    LaunchWith(u64, Option<u64>),
    Finish(u64, End),
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
            Call::Finish(id, end) => format!("finish({id}, {})", end_name(end)),
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
        }
    }
}

// ---------------------------------------------------------------------------------------
// The sequential specification, as the checker uses it.
// ---------------------------------------------------------------------------------------

/// The model, with the reason of every `Failed` id (which `wait` answers too).
#[derive(Debug, Clone, Default)]
struct Spec {
    model: Model,
    reasons: HashMap<u64, FailureReason>,
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
        Call::Launch(id) | Call::LaunchWith(id, _) => Answer::Launch(model.launch(id)),
        Call::Finish(id, end) => {
            if model.state(id) != Some(ModelState::Working) {
                return None;
            }
            model.finish(id, end == End::Ok);
            if let Some(reason) = end.reason() {
                spec.reasons.insert(id, reason);
            }
            Answer::Finished
        }
        Call::Query(id) => Answer::State(model.query(id)),
        Call::Quick(id) => Answer::State(model.quick(id)),
        Call::RevokeBegin(id) => Answer::RevokeBegin(model.revoke_begin(id)),
        Call::RevokeEnd(id, end) => {
            if model.state(id) != Some(ModelState::Revoking) {
                return None;
            }
            Answer::RevokeEnd(model.revoke_end(id, end == End::Ok))
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
            }
            Answer::Cancelled(cancelled)
        }
    })
}

/// The model's state in a hashable, canonical form: the records sorted by id, with the
/// reason of a failed one.
type StateKey = Vec<(u64, ModelState, Option<FailureReason>)>;

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
            (id, state, reason)
        })
        .collect();
    key.sort_unstable_by_key(|&(id, _, _)| id);
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
        deepest: (Vec::new(), Spec::default()),
    };
    if search.dfs(&Spec::default()) {
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
}

const ACTIONS: [Action; 11] = [
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
];

/// The mix of operations of a history.
#[derive(Debug, Clone, Copy)]
struct Workload {
    name: &'static str,
    clients: usize,
    min_ops: u64,
    max_ops: u64,
    /// Relative weights, in the order of [`ACTIONS`].
    weights: [u64; 11],
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
}

/// Everything, a little of each.
const MIXED: Workload = Workload {
    name: "mixed",
    clients: 4,
    min_ops: 10,
    max_ops: 15,
    //       launch finish query quick revoke release count counts timed wait cancel
    weights: [6, 4, 4, 2, 3, 2, 1, 1, 2, 3, 2],
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
};

/// Many queries between state changes: a stale answer shows.
const QUERIES: Workload = Workload {
    name: "queries",
    clients: 3,
    min_ops: 10,
    max_ops: 15,
    weights: [5, 4, 10, 1, 2, 1, 1, 0, 0, 0, 0],
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
};

/// Futures mostly succeed and are rarely revoked, so launches of succeeded ids (which
/// must be refused) are frequent.
const SUCCESSES: Workload = Workload {
    name: "successes",
    clients: 3,
    min_ops: 10,
    max_ops: 15,
    weights: [8, 5, 3, 1, 1, 1, 1, 1, 0, 0, 0],
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
};

/// Waiters on running ids, woken by releases, cancels and revokes, and cancels racing
/// releases.
const WAITS: Workload = Workload {
    name: "waits",
    clients: 4,
    min_ops: 10,
    max_ops: 15,
    weights: [7, 4, 2, 1, 2, 2, 0, 1, 1, 6, 4],
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
};

/// Timed launches, their timeouts racing releases, cancels and relaunches.
const TIMEOUTS: Workload = Workload {
    name: "timeouts",
    clients: 3,
    min_ops: 10,
    max_ops: 15,
    weights: [3, 4, 3, 1, 1, 1, 1, 1, 7, 3, 3],
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
};

const WORKLOADS: [Workload; 5] = [MIXED, QUERIES, SUCCESSES, WAITS, TIMEOUTS];

/// A launched future that is running (its launch returned `Ok`) and not released yet.
#[derive(Debug)]
struct RunningGate {
    id: u64,
    /// Taken when the gate is opened. Kept until the attempt's end has been seen: a
    /// future whose gate is dropped unsent would end `Err`.
    release: Option<oneshot::Sender<End>>,
    /// The handle of a `launch_with` launch.
    handle: Option<TaskHandle<(), ()>>,
    /// When its launch was invoked: a timeout may fire from then on (the deadline
    /// counts from inside the call).
    launched: Instant,
    timed: bool,
}

impl RunningGate {
    /// Releases the future with `end`; returns when, and how.
    fn open(&mut self, end: End) -> (Instant, End) {
        let at = Instant::now();
        if let Some(release) = self.release.take() {
            // The future waits for this message (or has not been polled yet, or was
            // dropped by a timeout, which its handle will tell).
            let _ = release.send(end);
        }
        (at, end)
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
}

/// One history being recorded.
struct Shared {
    subject: Subject,
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

    /// Launches `id`: with `launch` unless `with_handle`, else with `launch_with` and
    /// the timeout, if any, in microseconds.
    async fn launch(&self, me: usize, id: u64, with_handle: bool, timeout_us: Option<u64>) {
        if !self.reserve(id) {
            // A cancel of the id in flight holds its launches back: no new attempt may
            // meet it.
            return self.query(me, id).await;
        }
        let (release, gate) = oneshot::channel::<End>();
        let future = async move {
            // A gate dropped unsent never happens while the future runs; it would read
            // as a failure.
            gate.await.unwrap_or(End::Err).output()
        };
        let with_handle = with_handle || timeout_us.is_some();
        let invoked = Instant::now();
        let (result, handle) = if with_handle {
            let options = match timeout_us {
                Some(us) => LaunchOptions::new().timeout(Duration::from_micros(us)),
                None => LaunchOptions::new(),
            };
            match self.subject.launch_with(id, future, options).await {
                Ok(handle) => (Ok(()), Some(handle)),
                Err(state) => (Err(state), None),
            }
        } else {
            (self.subject.launch(id, future).await, None)
        };
        let returned = Instant::now();
        {
            let mut gates = lock(&self.gates);
            if result.is_ok() {
                gates.running.push(RunningGate {
                    id,
                    release: Some(release),
                    handle,
                    launched: invoked,
                    timed: timeout_us.is_some(),
                });
                *gates.launched.entry(id).or_default() += 1;
            } else {
                unreserve(&mut gates, id);
            }
        }
        let call = if with_handle {
            Call::LaunchWith(id, timeout_us)
        } else {
            Call::Launch(id)
        };
        self.record(me, call, (invoked, returned), Answer::Launch(result));
    }

    /// Takes a random running gate out of the registry.
    fn take_gate(&self, rng: &mut Rng) -> Option<Held> {
        let mut gates = lock(&self.gates);
        if gates.running.is_empty() {
            return None;
        }
        let pick = rng.below(gates.running.len() as u64) as usize;
        let gate = gates.running.swap_remove(pick);
        let launches = gates.launched[&gate.id];
        Some(Held { gate, launches })
    }

    /// Releases a held attempt to end as the workload says (a timed one is left to
    /// time out, but for `release_timed`%) and logs its end.
    async fn finish(&self, me: usize, mut held: Held, rng: &mut Rng, w: &Workload) {
        let end = rng.end(w.finish_ok, w.finish_panic);
        let released = if held.gate.timed && !rng.percent(w.release_timed) {
            None
        } else {
            Some(held.gate.open(end))
        };
        self.conclude(me, held, released).await;
    }

    /// Waits until a held attempt has ended on its own, after its gate was `released`
    /// (when, and how) or by its timeout, and logs the end as a `finish` operation.
    async fn conclude(&self, me: usize, held: Held, released: Option<(Instant, End)>) {
        let Held { mut gate, launches } = held;
        let id = gate.id;
        let (end, from, seen) = match gate.handle.take() {
            Some(handle) => {
                // The record is final before the handle resolves.
                let output = bounded("a task handle to resolve", handle).await;
                let seen = Instant::now();
                let Some(ended) = end_of(&output) else {
                    panic!("an attempt of id {id} that nobody cancelled ended {output:?}")
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
        drop(gate);
        self.unreserve(id);
        self.record(me, Call::Finish(id, end), (from, seen), Answer::Finished);
    }

    /// Cancels a held attempt, its gate released just before for `cancel_race`%, and
    /// logs the cancel and, if the attempt ended on its own first, its end.
    async fn cancel_held(&self, me: usize, mut held: Held, rng: &mut Rng, w: &Workload) {
        let id = held.gate.id;
        let mut race = rng.percent(w.cancel_race);
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
                lock(&self.gates).running.push(held.gate);
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
                let output = bounded("a cancelled task's handle to resolve", handle).await;
                let seen = Instant::now();
                if let Some(ended) = end_of(&output) {
                    // It ended otherwise, so cancel should have answered false (a faulty
                    // subject answers before it knows): log that end too, and let the
                    // checker judge.
                    let from = match (ended, released) {
                        (End::TimedOut, _) | (_, None) => held.gate.launched,
                        (_, Some((at, _))) => at,
                    };
                    let call = Call::Finish(id, ended);
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

/// How a task ended, as its handle tells; `None` for a cancelled one.
fn end_of(output: &Result<(), TaskError<()>>) -> Option<End> {
    match output {
        Ok(()) => Some(End::Ok),
        Err(TaskError::Failed(())) => Some(End::Err),
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
                let with_handle = rng.percent(w.with_handle);
                shared.launch(me, id, with_handle, None).await;
            }
            Action::TimedLaunch => {
                let us = TIMEOUTS_US[rng.below(TIMEOUTS_US.len() as u64) as usize];
                shared.launch(me, id, true, Some(us)).await;
            }
            Action::Finish => match shared.take_gate(&mut rng) {
                Some(held) => shared.finish(me, held, &mut rng, &w).await,
                None => shared.query(me, id).await,
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
                    shared.take_gate(&mut rng)
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
    while let Some(held) = shared.take_gate(&mut rng) {
        shared.finish(me, held, &mut rng, &w).await;
    }
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
                (Call::Finish(_, End::TimedOut), _) => self.timed_out += 1,
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
             cancels of which {} cancelled, {} timed launches of which {} timed out), {} \
             configurations searched (at most {} in one)",
            self.histories,
            self.operations,
            self.overlapping,
            self.waits,
            self.cancels,
            self.cancelled,
            self.timed,
            self.timed_out,
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
    fn subject(&self, fault: Fault, seed: u64) -> Subject {
        #[cfg(not(feature = "redis"))]
        let _ = seed;
        match self.backend {
            Backend::Memory => Subject::new(fault),
            #[cfg(feature = "redis")]
            Backend::Redis => {
                let url = self.server.as_ref().expect("a server").url();
                // Two recorders with connections of their own, standing for two
                // replicas; the subject sends each call to the next one.
                let replicas = self.rt.block_on(async {
                    let mut replicas = Vec::new();
                    for _ in 0..2 {
                        let rec = bounded(
                            "the Redis recorder to build",
                            async_tasks_recorder::redis::RedisRecorder::builder(url.clone())
                                .namespace(format!("h{seed}"))
                                .lease(Duration::from_secs(30))
                                .build(),
                        )
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
        let subject = self.subject(fault, seed);
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
        match check(&history) {
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
        check(&history).err().map(|report| (n, report))
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
    assert_exercised(&totals);
}

/// The new operations did occur, with both answers of cancel.
fn assert_exercised(totals: &Totals) {
    assert!(totals.waits > 0, "no waits: {totals}");
    assert!(
        totals.cancelled > 0 && totals.cancelled < totals.cancels,
        "cancels did not answer both ways: {totals}"
    );
    assert!(totals.timed_out > 0, "no timeout fired: {totals}");
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
    assert_exercised(&totals);
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
    assert_exercised(&totals);
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
    assert_exercised(&totals);
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
        .op(0, C::Finish(1, End::Ok), (12, 30), A::Finished)
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
        .op(2, C::Finish(0, End::Panic), (53, 60), A::Finished)
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
        .op(0, C::Finish(1, End::Ok), (2, 3), A::Finished)
        .op(1, C::Launch(1), (4, 5), A::Launch(Ok(())));
    check(&double.events).expect_err("a second success");

    // A stale read: Working is read after a query already saw the end.
    let stale = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(0, C::Finish(1, End::Err), (2, 5), A::Finished)
        .op(1, C::Query(1), (4, 6), A::State(Failed))
        .op(1, C::Query(1), (7, 8), A::State(Working));
    check(&stale.events).expect_err("a stale read");

    // A count must agree with the other ids' operations: only one id ever succeeded.
    let counts = Hand::new()
        .op(0, C::Launch(0), (0, 1), A::Launch(Ok(())))
        .op(0, C::Finish(0, End::Ok), (2, 3), A::Finished)
        .op(1, C::Count(Success), (4, 5), A::Count(2));
    check(&counts.events).expect_err("a count of ids that never succeeded");
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
        .op(0, C::Finish(1, End::Err), (3, 5), A::Finished)
        .op(0, C::Launch(1), (6, 7), A::Launch(Ok(())))
        .op(2, C::Query(1), (8, 9), A::State(Working));
    check(&moved_on.events).expect("a wait for a phase the id has left since");

    // A revoked id: the wait of the revoke answers NotFound.
    let revoked = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(0, C::Finish(1, End::Ok), (2, 3), A::Finished)
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
        .op(0, C::Finish(1, End::Ok), (4, 5), A::Finished);
    let report = check(&early.events).expect_err("a wait that did not wait");
    assert!(
        report.contains("wait(1): cannot happen in this state"),
        "{report}"
    );

    // The failure reason counts.
    let reason = Hand::new()
        .op(0, C::Launch(1), (0, 1), A::Launch(Ok(())))
        .op(0, C::Finish(1, End::Err), (2, 3), A::Finished)
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
        .op(1, C::Finish(1, End::Ok), (3, 6), A::Finished)
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
        .op(0, C::Finish(1, End::TimedOut), (0, 20), A::Finished)
        .op(1, C::Query(1), (5, 6), A::State(Failed))
        .op(
            1,
            C::Wait(1),
            (7, 8),
            A::Settled(TaskPhase::Failed, Some(TimedOut)),
        );
    check(&timed.events).expect("a timeout during the launch");
}
