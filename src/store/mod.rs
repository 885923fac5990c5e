//! The storage seam: what a recorder needs from the place that keeps its records.
//!
//! A store keeps, for every id it knows, the id's [`Phase`]. It changes a record only
//! through [`state::next`](crate::state::next), atomically per id: a transition decides
//! on the phase it read and writes the phase it computed with no other transition of
//! the same id in between. Every running phase has a fencing token, larger than every
//! earlier token of the id; its end must present it, and a stale one is refused.
//!
//! Two traits:
//! - [`Records`] is the seam that both stores implement, the in-memory one and the
//!   Redis one (`redis::store`): the record operations (launch, finish, revoke begin
//!   and end, phase, status, counts), asynchronous and fallible, in store-neutral
//!   types. Each store says where an id lives ([`Records::At`]: a hash in memory, a slot
//!   group and the encoded id on Redis) and what can go wrong ([`Records::Error`]:
//!   nothing in memory, [`StoreError`](crate::StoreError) on Redis). Both recorders
//!   make these moves through it, and `tests::follows_the_state_machine` checks every
//!   cell of the state machine through it on both stores.
//! - [`Store`] is what a store inside the process adds: records own a [`TaskCell`]
//!   that waiters sleep on and that carries cancel requests, ends are synchronous (a
//!   drop guard makes them), and maintenance (retention's expiry) runs in parts, from
//!   a background task or an explicit sweep. A store shared by
//!   processes does these differently (a lease that its holder renews, ends retried
//!   from an outbox, a channel for wake-ups and cancels, expiry read by every script),
//!   in `redis::runner` and `redis::hub`. For the same reason `wait` and `cancel` are
//!   not on the seam: what a caller waits on is the store's own (a cell, or the end
//!   of a token that a channel message announces).
use std::borrow::Borrow;
use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::hash::Hash;

use crate::cell::TaskCell;
use crate::events::TransitionStream;
use crate::kept::Kept;
pub(crate) use crate::state::Refused;
use crate::state::{Phase, TaskState};
use crate::status::{End, FailureReason, Settled, TaskStatus};
use crate::sync::Arc;
use std::time::Duration;

mod memory;
#[cfg(all(test, not(atr_loom)))]
pub(crate) mod tests;

pub(crate) use crate::listing::StateCounts;
pub(crate) use memory::MemoryStore;

/// A launch the store accepted: the attempt's fencing token (larger than every earlier
/// token of the id), its number since the id was last `NotFound`, and the record's
/// cell when it was made with one (details are tracked: the cell holds the start).
#[derive(Debug)]
pub(crate) struct Launched {
    pub(crate) token: u64,
    pub(crate) attempts: u32,
    pub(crate) cell: Option<Arc<TaskCell>>,
}

// The in-memory recorder launches and ends its phases through `Store` (with the
// record's cell, and reporting before waking); the Redis recorder and the tests make
// these moves through the seam.
/// A launch or a revoke a store accepted: the phase's fencing token (larger than every
/// earlier token of the id) and, for a launch, its attempt number since the id was
/// last `NotFound`.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Granted {
    pub(crate) token: u64,
    pub(crate) attempts: u32,
}

/// What a store made of a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retried {
    /// The next attempt, by its number.
    Next(u32),
    /// A cancel was requested: no more attempts.
    Cancelled,
    /// The token no longer holds the id (its lease ended).
    Gone,
}

/// The seam both stores implement: every record operation a recorder makes, each one
/// atomic per id and checked with [`state::next`](crate::state::next).
///
/// `Q` is the form ids are given in (`&str` for `String` ids); [`at`](Records::at)
/// turns one into the store's address of its record, computed once per operation.
/// Every method is `async` because a store may be a round trip away; the in-memory
/// store's futures are ready at once ([`Ready`]). No answer is ever a guess: on an
/// `Err` the caller learns nothing about the record, and a move may or may not have
/// been made (a lost reply), which fencing makes safe to retry or to leave to the
/// lease.
pub(crate) trait Records<K, Q: ?Sized = K>: Send + Sync {
    /// Why the store could not answer.
    type Error: Send;
    /// Where the record of one id lives.
    type At<'q>
    where
        Q: 'q;

    /// The address of `id`'s record.
    fn at<'q>(&self, id: &'q Q) -> Self::At<'q>;

    /// `Launch`: records the id `Working` under a new token if it may launch (and the
    /// store is open), or says why not. `id` is the id `at` addresses, for a store that
    /// keeps a copy of it (the in-memory one); the Redis store has it encoded in `at`.
    /// `queued`: the attempt's future waits for a running slot; it reads so until the
    /// store is told it started.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn launch<'q>(
        &self,
        at: &Self::At<'q>,
        id: &K,
        queued: bool,
    ) -> impl Future<Output = Result<Result<Granted, Refused>, Self::Error>> + Send
    where
        Q: 'q;

    /// The queued attempt holding `token` got its running slot: it no longer reads
    /// queued; or a retry's next attempt started: it no longer reads the retry's
    /// wait. `false` if no attempt holding `token` was queued or waited for a retry
    /// (the Redis store says `false` for a retry's wait too).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn start<'q>(
        &self,
        at: &Self::At<'q>,
        token: u64,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send
    where
        Q: 'q;

    /// The attempt holding `token` failed for `reason` and is retried after `wait`
    /// (see [`Store::retry`]).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn retry<'q>(
        &self,
        at: &Self::At<'q>,
        token: u64,
        reason: FailureReason,
        wait: Duration,
    ) -> impl Future<Output = Result<Retried, Self::Error>> + Send
    where
        Q: 'q;

    /// `Finish` of the attempt holding `token`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn finish<'q>(
        &self,
        at: &Self::At<'q>,
        token: u64,
        outcome: Outcome,
        kept: Option<Kept>,
    ) -> impl Future<Output = Result<Finished, Self::Error>> + Send
    where
        Q: 'q;

    /// `RevokeBegin`: Success to Revoking under a new token, or the phase that refused.
    fn revoke_begin<'q>(
        &self,
        at: &Self::At<'q>,
    ) -> impl Future<Output = Result<Result<u64, Phase>, Self::Error>> + Send
    where
        Q: 'q;

    /// `RevokeEnd` of the revoke holding `token`, as [`finish`](Records::finish) is for
    /// attempts.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn revoke_end<'q>(
        &self,
        at: &Self::At<'q>,
        token: u64,
        ok: bool,
    ) -> impl Future<Output = Result<Option<Settled>, Self::Error>> + Send
    where
        Q: 'q;

    /// The current phase.
    fn phase<'q>(
        &self,
        at: &Self::At<'q>,
    ) -> impl Future<Output = Result<Phase, Self::Error>> + Send
    where
        Q: 'q;

    /// The detailed status.
    fn status<'q>(
        &self,
        at: &Self::At<'q>,
    ) -> impl Future<Output = Result<TaskStatus, Self::Error>> + Send
    where
        Q: 'q;

    /// Counts of every state at one instant.
    fn counts(&self) -> impl Future<Output = Result<StateCounts, Self::Error>> + Send;
}

/// What a `Finish` did.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finished {
    /// The attempt ended now, and the record settled so.
    Moved(Settled),
    /// The attempt had already ended, and nothing changed: an earlier finish with the
    /// same token landed (a retry after a lost reply), or its lease ran out first.
    /// Only a store that keeps the token of a final phase says so (Redis); the
    /// in-memory store, whose finishes cannot be retried, answers `Refused`.
    Already(Settled),
    /// `token` does not hold a running attempt of the id; nothing changed.
    Refused,
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl Finished {
    /// How the attempt settled, if this store knows.
    pub(crate) fn settled(self) -> Option<Settled> {
        match self {
            Finished::Moved(settled) | Finished::Already(settled) => Some(settled),
            Finished::Refused => None,
        }
    }
}

/// The value of an operation that cannot fail.
pub(crate) fn sure<T>(result: Result<T, Infallible>) -> T {
    match result {
        Ok(value) => value,
        Err(never) => match never {},
    }
}

/// Where a record lives in an in-process store: the id's hash, computed once, and the
/// id in the form it was given.
#[derive(Debug)]
pub(crate) struct Addr<'q, Q: ?Sized> {
    pub(crate) hash: u64,
    pub(crate) id: &'q Q,
}

/// The in-memory store on the seam: each operation is the in-process one, made at the
/// call (so the returned future is ready), with the record's waiters woken before it
/// returns. Its futures are [`Ready`]: the in-memory recorder takes the value with
/// `into_inner`, without a poll (which would cost an `Option` check and a panic
/// branch on the query path).
#[allow(refining_impl_trait)]
impl<K, Q> Records<K, Q> for MemoryStore<K>
where
    K: Eq + Hash + Clone + Send + Sync + 'static + Borrow<Q>,
    Q: Hash + Eq + ?Sized,
{
    type Error = Infallible;
    type At<'q>
        = Addr<'q, Q>
    where
        Q: 'q;

    fn at<'q>(&self, id: &'q Q) -> Addr<'q, Q> {
        Addr {
            hash: Store::hash(self, id),
            id,
        }
    }

    fn launch<'q>(
        &self,
        at: &Addr<'q, Q>,
        id: &K,
        queued: bool,
    ) -> Ready<Result<Result<Granted, Refused>, Infallible>>
    where
        Q: 'q,
    {
        ready(Ok(Store::launch(self, at.hash, id, queued).map(|l| {
            Granted {
                token: l.token,
                attempts: l.attempts,
            }
        })))
    }

    fn start<'q>(&self, at: &Addr<'q, Q>, token: u64) -> Ready<Result<bool, Infallible>>
    where
        Q: 'q,
    {
        ready(Ok(Store::start(self, at.hash, at.id, token)))
    }

    fn retry<'q>(
        &self,
        at: &Addr<'q, Q>,
        token: u64,
        reason: FailureReason,
        wait: Duration,
    ) -> Ready<Result<Retried, Infallible>>
    where
        Q: 'q,
    {
        ready(Ok(Store::retry(self, at.hash, at.id, token, reason, wait)))
    }

    fn finish<'q>(
        &self,
        at: &Addr<'q, Q>,
        token: u64,
        outcome: Outcome,
        kept: Option<Kept>,
    ) -> Ready<Result<Finished, Infallible>>
    where
        Q: 'q,
    {
        let ended = Store::finish(self, at.hash, at.id, token, outcome, kept.as_ref());
        ready(Ok(ended.map_or(Finished::Refused, |(cell, end)| {
            Finished::Moved(settle_cell((cell, end.settled(kept))))
        })))
    }

    fn revoke_begin<'q>(&self, at: &Addr<'q, Q>) -> Ready<Result<Result<u64, Phase>, Infallible>>
    where
        Q: 'q,
    {
        ready(Ok(Store::revoke_begin(self, at.hash, at.id)))
    }

    fn revoke_end<'q>(
        &self,
        at: &Addr<'q, Q>,
        token: u64,
        ok: bool,
    ) -> Ready<Result<Option<Settled>, Infallible>>
    where
        Q: 'q,
    {
        let ended = Store::revoke_end(self, at.hash, at.id, token, ok);
        ready(Ok(ended.map(settle_cell)))
    }

    fn phase<'q>(&self, at: &Addr<'q, Q>) -> Ready<Result<Phase, Infallible>>
    where
        Q: 'q,
    {
        ready(Ok(Store::phase(self, at.hash, at.id)))
    }

    fn status<'q>(&self, at: &Addr<'q, Q>) -> Ready<Result<TaskStatus, Infallible>>
    where
        Q: 'q,
    {
        ready(Ok(Store::status(self, at.hash, at.id)))
    }

    fn counts(&self) -> Ready<Result<StateCounts, Infallible>> {
        ready(Ok(Store::counts(self)))
    }
}

/// Wakes the waiters of a record that an end settled.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
fn settle_cell((cell, settled): (Option<Arc<TaskCell>>, Settled)) -> Settled {
    if let Some(cell) = cell {
        cell.settle(settled.clone());
    }
    settled
}

/// How a running future ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Failed(FailureReason),
}

impl Outcome {
    /// The outcome of a task whose end asks for `failure` (`None`: a success), as
    /// [`failure_of`](crate::fault::failure_of) reads it from a result.
    pub(crate) fn of(failure: Option<FailureReason>) -> Outcome {
        failure.map_or(Outcome::Ok, Outcome::Failed)
    }
}

/// What a store inside the process provides: the record operations with the id's
/// [`TaskCell`] (waiters sleep on it, cancel requests reach the task through it, and
/// the caller settles it after reporting the end), synchronous ends that a drop guard
/// can make, and maintenance for retention. The in-memory recorder's launch, wait and
/// cancel paths and its guards use these; its other record operations go through
/// [`Records`]. Ids are passed with their hash, computed once by the store's
/// [`hash`](Store::hash), so that borrowed forms (`&str` for `String`) work as with
/// `HashMap`. Every transition is checked with [`crate::state::next`].
pub(crate) trait Store<K>: Send + Sync + 'static {
    /// The hash of an id or of a borrowed form of it (equal for equal ids).
    fn hash<Q: Hash + ?Sized>(&self, id: &Q) -> u64;

    /// `Launch`: records the id `Working` if it may launch and the store is open,
    /// otherwise says why not. `queued`: its future waits for a running slot; it reads
    /// so until [`start`](Store::start). The store copies `id` only into a record it
    /// makes.
    fn launch(&self, hash: u64, id: &K, queued: bool) -> Result<Launched, Refused>;

    /// The cell of the running attempt holding `token` (created if needed), or `None`
    /// when no running attempt holds it.
    fn cell_of<Q>(&self, hash: u64, id: &Q, token: u64) -> Option<Arc<TaskCell>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// The queued attempt holding `token` got its running slot: it is no longer
    /// queued; or the next attempt of a retry started: it no longer waits. `false` if
    /// no such attempt holds `token`.
    fn start<Q>(&self, hash: u64, id: &Q, token: u64) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// The attempt holding `token` failed for `reason` and is retried after `wait`:
    /// the record stays `Working` with the next attempt's number, and reads that
    /// reason and the next attempt's time until [`start`](Store::start) says the
    /// attempt began.
    fn retry<Q>(
        &self,
        hash: u64,
        id: &Q,
        token: u64,
        reason: FailureReason,
        wait: Duration,
    ) -> Retried
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// Refuses every launch from now on. When this returns, every launch accepted
    /// before it is visible to [`visit`](Store::visit) and [`counts`](Store::counts).
    fn close(&self);

    /// Whether [`close`](Store::close) was called.
    fn is_closed(&self) -> bool;

    /// A running task's future (spawned, or run by `launch_block`) returned `Pending`
    /// for the first time: returns the record's cell (created if needed), on which the
    /// task listens for a cancellation. `None` only if the record is gone, which cannot
    /// happen while the task's guard is alive.
    fn first_pending<Q>(&self, hash: u64, id: &Q) -> Option<Arc<TaskCell>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// `Finish` of the attempt holding `token`: the running future ended. Returns how
    /// it settled (the reason may differ from `outcome`'s: a drop after a cancel
    /// request is `Cancelled`), with the record's cell, if any, to settle once the lock
    /// is released. `None` if `token` does not hold the id's running attempt (refused,
    /// the record unchanged), which cannot happen while the task's guard is alive.
    /// A copy of `kept` is kept with the final record (for the launches that keep a
    /// value).
    fn finish<Q>(
        &self,
        hash: u64,
        id: &Q,
        token: u64,
        outcome: Outcome,
        kept: Option<&Kept>,
    ) -> Option<(Option<Arc<TaskCell>>, End)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// `RevokeBegin`: Success to Revoking with a new token, or the current phase when
    /// refused.
    fn revoke_begin<Q>(&self, hash: u64, id: &Q) -> Result<u64, Phase>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// `RevokeEnd` of the revoke holding `token`: the revoke future ended. A stale
    /// token is refused and changes nothing.
    fn revoke_end<Q>(
        &self,
        hash: u64,
        id: &Q,
        token: u64,
        ok: bool,
    ) -> Option<(Option<Arc<TaskCell>>, Settled)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// The current phase.
    fn phase<Q>(&self, hash: u64, id: &Q) -> Phase
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// `Success` or `Failed` if recorded so, otherwise `Working`, looking at fewer places
    /// than [`phase`](Store::phase).
    fn phase_quick<Q>(&self, hash: u64, id: &Q) -> TaskState
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// The detailed status.
    fn status<Q>(&self, hash: u64, id: &Q) -> TaskStatus
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// The cell of a running phase (created if needed), or the final phase with its
    /// failure reason.
    fn wait_on<Q>(&self, hash: u64, id: &Q) -> Result<Arc<TaskCell>, Settled>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// Asks a `Working` id's future to stop; returns its cell to wait on, or `None` if
    /// the id is not `Working`.
    fn cancel<Q>(&self, hash: u64, id: &Q) -> Option<Arc<TaskCell>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// Counts of every state at one instant.
    fn counts(&self) -> StateCounts;

    /// The most bytes a kept value may have.
    fn kept_limit(&self) -> usize;

    /// Visit the ids in `phases`, in batches handed to `visit` with no lock held; the
    /// visitor may take the ids out of the batch (it is cleared after each call).
    fn visit(&self, phases: &[Phase], visit: &mut dyn FnMut(&mut Vec<K>));

    /// Up to `limit` ids in `phases` (more when ids share the last hash), after the
    /// position `after` (a shard and the hash of the last id listed there), in shard
    /// order and by hash within a shard; and the position after them, `None` once no
    /// shard is left. Cloning and sorting follow the page; finding the page reads the
    /// phases' tables of the shards it passes (a 64th of the state each).
    fn page(
        &self,
        phases: &[Phase],
        after: Option<(usize, u64)>,
        limit: usize,
    ) -> (Vec<K>, Option<(usize, u64)>);

    /// A stream of every transition from now on.
    fn subscribe(&self) -> TransitionStream<K>;

    /// Whether the store wants a maintenance task (retention with a TTL) and has none
    /// running: a cheap check, made on the launch path.
    fn sweeper_missing(&self) -> bool;

    /// The period of the maintenance task, if one is wanted and not started yet; the
    /// caller must start it. `Some` at most once until [`sweeper_stopped`](Self::sweeper_stopped).
    fn sweeper_to_start(&self) -> Option<Duration>;

    /// The maintenance task ended while the store lives on: the next launch starts
    /// another.
    fn sweeper_stopped(&self);

    /// How many parts the maintenance task works through, one after another.
    fn parts(&self) -> usize;

    /// One step of maintenance in `part` (expiring what is due, a bounded batch at a
    /// time): `true` if more may be due there now.
    fn maintain(&self, part: usize) -> bool;
}
