//! Linearizability check of the recorder.
//!
//! Concurrent histories are recorded on a multi-thread Tokio runtime: a few clients run
//! random operations on a handful of ids, and every operation is logged with the
//! instant it was invoked, the instant it returned, and its answer. A Wing & Gong
//! search with Lowe's memoization then looks for an order of the operations that
//! respects real time (an operation that returned before another was invoked comes
//! first) and that the sequential model in `tests/model` accepts, answer for answer.
//!
//! Three state changes are not calls the clients make, and are logged as operations of
//! their own, with an interval measured around the change:
//! - `finish(id, end)`: from just before a client releases the launched future until the
//!   client's own polling sees the id leave `Working` (or sees a later launch of the id
//!   succeed, which can only follow the change);
//! - `revoke_begin(id)`: from the `revoke_task_block` call until the revoke future
//!   starts (until the call returns, when it is refused);
//! - `revoke_end(id, end)`: from just before the revoke future returns until the call
//!   returns.
//!
//! The same harness runs against subjects with an injected fault, and the checker must
//! report them.

mod model;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_tasks_recorder::TaskState;
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

/// How a launched or revoke future ends when it is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum End {
    Ok,
    Err,
    Panic,
}

impl End {
    /// The future's output for this end (a panic for `Panic`).
    fn output(self) -> Result<(), ()> {
        match self {
            End::Ok => Ok(()),
            End::Err => Err(()),
            End::Panic => panic!("{PLANNED_PANIC}"),
        }
    }
}

/// An operation of a history, with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Launch(u64),
    Finish(u64, End),
    Query(u64),
    Quick(u64),
    RevokeBegin(u64),
    RevokeEnd(u64, End),
    Count(TaskState),
    Counts,
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
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match *self {
            Call::Launch(id) => format!("launch({id})"),
            Call::Finish(id, end) => format!("finish({id}, {})", end_name(end)),
            Call::Query(id) => format!("query({id})"),
            Call::Quick(id) => format!("quick({id})"),
            Call::RevokeBegin(id) => format!("revoke_begin({id})"),
            Call::RevokeEnd(id, end) => format!("revoke_end({id}, {})", end_name(end)),
            Call::Count(state) => format!("count({state})"),
            Call::Counts => "counts".to_string(),
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
        }
    }
}

// ---------------------------------------------------------------------------------------
// The sequential specification, as the checker uses it.
// ---------------------------------------------------------------------------------------

/// Applies `call` to `model` and returns what the model answers, or `None` when the
/// operation cannot happen in the model's state (a future ending for an id that is not
/// `Working`, a revoke ending for an id that is not `Revoking`).
fn apply(model: &mut Model, call: Call) -> Option<Answer> {
    Some(match call {
        Call::Launch(id) => Answer::Launch(model.launch(id)),
        Call::Finish(id, end) => {
            if model.state(id) != Some(ModelState::Working) {
                return None;
            }
            model.finish(id, end == End::Ok);
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
    })
}

/// The model's state in a hashable, canonical form: the records sorted by id.
type StateKey = Vec<(u64, ModelState)>;

/// The model's state as a [`StateKey`].
fn state_key(model: &Model) -> StateKey {
    let mut key: StateKey = model.states.iter().map(|(&i, &s)| (i, s)).collect();
    key.sort_unstable_by_key(|&(id, _)| id);
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
    deepest: (Vec<usize>, Model),
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

    fn dfs(&mut self, model: &Model) -> bool {
        if self.left == 0 {
            return true;
        }
        if !self.memo.insert((self.done.clone(), state_key(model))) {
            return false;
        }
        if self.order.len() > self.deepest.0.len() {
            self.deepest = (self.order.clone(), model.clone());
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
            let mut next = model.clone();
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
        deepest: (Vec::new(), Model::default()),
    };
    if search.dfs(&Model::default()) {
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
fn report(ops: &[Op], prefix: &[usize], model: &Model) -> String {
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
        "{:>4}  {:>6}  {:>11}  {:>11}  {:<22}  answer",
        "#", "client", "invoked µs", "returned µs", "operation"
    );
    for (i, op) in ops.iter().enumerate() {
        let returned = op
            .returned
            .map_or_else(|| "pending".to_string(), |d| format!("{:.1}", micros(d)));
        let answer = op.answer.map_or_else(|| "?".to_string(), |a| a.to_string());
        let _ = writeln!(
            out,
            "{i:>4}  {:>6}  {:>11.1}  {returned:>11}  {:<22}  {answer}",
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
    let _ = writeln!(out, "model state after it: {:?}", state_key(model));
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
        let mut next = model.clone();
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

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
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
    Launch,
    /// Release a running launched future (any client's).
    Finish,
    Query,
    Quick,
    Revoke,
    /// Release a gated revoke future (any client's).
    ReleaseRevoke,
    Count,
    Counts,
}

const ACTIONS: [Action; 8] = [
    Action::Launch,
    Action::Finish,
    Action::Query,
    Action::Quick,
    Action::Revoke,
    Action::ReleaseRevoke,
    Action::Count,
    Action::Counts,
];

/// The mix of operations of a history.
#[derive(Debug, Clone, Copy)]
struct Workload {
    name: &'static str,
    clients: usize,
    min_ops: u64,
    max_ops: u64,
    /// Relative weights, in the order of [`ACTIONS`].
    weights: [u64; 8],
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
}

/// Everything, a little of each.
const MIXED: Workload = Workload {
    name: "mixed",
    clients: 4,
    min_ops: 10,
    max_ops: 15,
    //       launch finish query quick revoke release count counts
    weights: [6, 4, 4, 2, 3, 2, 1, 1],
    finish_ok: 60,
    finish_panic: 10,
    revoke_ok: 60,
    revoke_panic: 10,
    gated_revoke: 50,
    yield_after: 30,
};

/// Many queries between state changes: a stale answer shows.
const QUERIES: Workload = Workload {
    name: "queries",
    clients: 3,
    min_ops: 10,
    max_ops: 15,
    weights: [5, 4, 10, 1, 2, 1, 1, 0],
    finish_ok: 50,
    finish_panic: 10,
    revoke_ok: 70,
    revoke_panic: 0,
    gated_revoke: 30,
    yield_after: 50,
};

/// Futures mostly succeed and are rarely revoked, so launches of succeeded ids (which
/// must be refused) are frequent.
const SUCCESSES: Workload = Workload {
    name: "successes",
    clients: 3,
    min_ops: 10,
    max_ops: 15,
    weights: [8, 5, 3, 1, 1, 1, 1, 1],
    finish_ok: 90,
    finish_panic: 0,
    revoke_ok: 50,
    revoke_panic: 0,
    gated_revoke: 30,
    yield_after: 30,
};

const WORKLOADS: [Workload; 3] = [MIXED, QUERIES, SUCCESSES];

/// A launched future that is running (its launch returned `Ok`) and not released yet.
#[derive(Debug)]
struct RunningGate {
    id: u64,
    release: oneshot::Sender<End>,
}

/// The open gates of a history, shared by its clients.
#[derive(Debug, Default)]
struct Gates {
    running: Vec<RunningGate>,
    /// How many launches of each id returned `Ok` so far.
    launched: HashMap<u64, u64>,
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

    async fn launch(&self, me: usize, id: u64) {
        let (release, gate) = oneshot::channel::<End>();
        let future = async move {
            // A gate dropped unsent never happens; it would read as a failure.
            gate.await.unwrap_or(End::Err).output()
        };
        let invoked = Instant::now();
        let result = self.subject.launch(id, future).await;
        let returned = Instant::now();
        if result.is_ok() {
            let mut gates = lock(&self.gates);
            gates.running.push(RunningGate { id, release });
            *gates.launched.entry(id).or_default() += 1;
        }
        self.record(
            me,
            Call::Launch(id),
            (invoked, returned),
            Answer::Launch(result),
        );
    }

    /// Takes a random running gate, with the number of launches of its id so far.
    fn take_gate(&self, rng: &mut Rng) -> Option<(RunningGate, u64)> {
        let mut gates = lock(&self.gates);
        if gates.running.is_empty() {
            return None;
        }
        let pick = rng.below(gates.running.len() as u64) as usize;
        let gate = gates.running.swap_remove(pick);
        let launches = gates.launched[&gate.id];
        Some((gate, launches))
    }

    /// Releases a running future and waits until its end is recorded.
    async fn finish(&self, me: usize, (gate, launches): (RunningGate, u64), end: End) {
        let id = gate.id;
        let invoked = Instant::now();
        // The future waits for this message (or has not been polled yet): it is there.
        let _ = gate.release.send(end);
        // The id is Working from the launch until this future's end, and no other launch
        // of it can succeed in between: so reading anything but Working, or seeing that a
        // later launch succeeded, means the end has been recorded.
        let returned = bounded("a released future to end", async {
            loop {
                let state = self.subject.rec.query_task_state(&id).await;
                if state != TaskState::Working
                    || lock(&self.gates).launched.get(&id) != Some(&launches)
                {
                    return Instant::now();
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        self.record(
            me,
            Call::Finish(id, end),
            (invoked, returned),
            Answer::Finished,
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
        let n = self.subject.rec.count(state).await;
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
        let c = self.subject.rec.counts().await;
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
        let result = Caught(Box::pin(self.subject.rec.revoke_task_block(id, future))).await;
        let returned = Instant::now();
        let outcome = match &result {
            Ok(r) => RevokeOutcome::of(r),
            Err(()) => RevokeOutcome::TaskError,
        };
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
            Action::Launch => shared.launch(me, id).await,
            Action::Finish => match shared.take_gate(&mut rng) {
                Some(gate) => {
                    let end = rng.end(w.finish_ok, w.finish_panic);
                    shared.finish(me, gate, end).await;
                }
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
        }
        if rng.percent(w.yield_after) {
            tokio::task::yield_now().await;
        }
    }
}

/// Records one history: the clients run concurrently, then every open gate is released
/// (the launched futures by logged `finish` operations) so that nothing is left running.
async fn record_history(fault: Fault, w: Workload, seed: u64) -> Vec<Event> {
    let shared = Arc::new(Shared {
        subject: Subject::new(fault),
        log: Mutex::new(Vec::new()),
        gates: Mutex::new(Gates::default()),
        revokers: Mutex::new(Vec::new()),
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
    while let Some(gate) = shared.take_gate(&mut rng) {
        let end = rng.end(w.finish_ok, w.finish_panic);
        shared.finish(me, gate, end).await;
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
    let counts = shared.subject.rec.counts().await;
    assert_eq!(
        (counts.working, counts.revoking),
        (0, 0),
        "a history must end with nothing running"
    );
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

/// Records and checks `histories` histories of the real recorder (the workloads in
/// turn); panics with a report at the first one that is not linearizable.
fn run_correct(histories: u64, first_seed: u64) -> Totals {
    quiet_planned_panics();
    let rt = runtime();
    let mut totals = Totals::default();
    for n in 0..histories {
        let seed = first_seed + n;
        let w = WORKLOADS[(n % WORKLOADS.len() as u64) as usize];
        let history = rt.block_on(record_history(Fault::None, w, seed));
        match check(&history) {
            Ok(checked) => {
                totals.histories += 1;
                totals.operations += history.len();
                totals.configurations += checked.configurations;
                totals.max_configurations = totals.max_configurations.max(checked.configurations);
                totals.overlapping += overlapping(&history);
            }
            Err(report) => panic!(
                "history {n} (seed {seed}, workload {}) of the real recorder:\n{report}",
                w.name
            ),
        }
    }
    totals
}

/// Records histories of a faulty subject until one fails the check; returns after how
/// many, with the report, or `None` if all of `attempts` passed.
fn hunt(fault: Fault, w: Workload, attempts: u64) -> Option<(u64, String)> {
    quiet_planned_panics();
    let rt = runtime();
    (1..=attempts).find_map(|n| {
        let history = rt.block_on(record_history(fault, w, n));
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
    println!(
        "{} histories, {} operations ({} overlapping another client's), {} configurations \
         searched (at most {} in one), {:.2?}",
        totals.histories,
        totals.operations,
        totals.overlapping,
        totals.configurations,
        totals.max_configurations,
        started.elapsed()
    );
    assert_eq!(totals.histories, 1000);
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
        "long_run: {} histories linearizable, {} operations ({} overlapping another \
         client's), {} configurations searched (at most {} in one), in {:.2} s",
        totals.histories,
        totals.operations,
        totals.overlapping,
        totals.configurations,
        totals.max_configurations,
        elapsed.as_secs_f64()
    );
    assert_eq!(totals.histories, histories);
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
