//! The mixes of operations a history is made of, and the seeded generator that draws
//! them: deterministic, no crates.

use crate::history::End;

/// Ids used by the histories: 0, 1 and 2.
pub(crate) const IDS: u64 = 3;

/// The timeouts of timed launches, in microseconds. Real time: they only make the
/// timeouts fire, at instants that race the other operations (a history takes about a
/// millisecond) or, for the longer ones, the end of the history. Nothing waits for
/// them to let something else happen.
pub(crate) const TIMEOUTS_US: [u64; 4] = [0, 200, 1_000, 5_000];

/// A seeded xorshift64 generator: deterministic, no crates.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
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

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `true` with `p`%. Draws nothing for 0 (so that a workload without some choice
    /// makes the same draws as before the choice existed).
    pub(crate) fn percent(&mut self, p: u64) -> bool {
        p > 0 && self.below(100) < p
    }

    /// `Ok` with `ok`%, `Panic` with `panic`%, otherwise `Err`.
    pub(crate) fn end(&mut self, ok: u64, panic: u64) -> End {
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
pub(crate) enum Action {
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

pub(crate) const ACTIONS: [Action; 13] = [
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
pub(crate) struct Workload {
    pub(crate) name: &'static str,
    pub(crate) clients: usize,
    pub(crate) min_ops: u64,
    pub(crate) max_ops: u64,
    /// Relative weights, in the order of [`ACTIONS`].
    pub(crate) weights: [u64; 13],
    /// Percentages of launched futures released to end `Ok` / to panic (else `Err`).
    pub(crate) finish_ok: u64,
    pub(crate) finish_panic: u64,
    /// The same for revoke futures.
    pub(crate) revoke_ok: u64,
    pub(crate) revoke_panic: u64,
    /// Percentage of revokes whose future waits for a release (else it ends at once).
    pub(crate) gated_revoke: u64,
    /// Percentage of operations after which the client yields to the scheduler.
    pub(crate) yield_after: u64,
    /// Percentage of untimed launches made with `launch_with`, whose handle then tells
    /// how the attempt ended (else with `launch`).
    pub(crate) with_handle: u64,
    /// Percentage of timed attempts whose gate is released when they are finished
    /// (racing the timeout); the others are left to time out.
    pub(crate) release_timed: u64,
    /// Percentage of cancels of a held attempt that release its gate just before
    /// (racing the cancel).
    pub(crate) cancel_race: u64,
    /// Percentage of cancels made on a random id rather than on a held attempt (made
    /// only while nothing can run for the id, else a quick query is made).
    pub(crate) free_cancel: u64,
    /// Percentage of cancels followed at once by a query of the id.
    pub(crate) query_after_cancel: u64,
    /// Percentages of untimed launches made with `launch_kept`, with `launch_fenced`
    /// (whose task can report progress) and with `launch_retrying` (the rest as
    /// `with_handle` says).
    pub(crate) kept: u64,
    pub(crate) fenced: u64,
    pub(crate) retrying: u64,
    /// The recorder's `max_running` limit.
    pub(crate) max_running: Option<usize>,
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
pub(crate) const QUERIES: Workload = Workload {
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
pub(crate) const SUCCESSES: Workload = Workload {
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
pub(crate) const WAITS: Workload = Workload {
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
pub(crate) const FEATURES: Workload = Workload {
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

pub(crate) const WORKLOADS: [Workload; 7] =
    [MIXED, QUERIES, SUCCESSES, WAITS, TIMEOUTS, FEATURES, QUEUED];
