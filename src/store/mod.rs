//! The storage seam: what the recorder needs from the place that keeps its records.
//!
//! A store keeps, for every id it knows, the id's [`Phase`]. It changes a record only
//! through [`state::next`](crate::state::next), atomically per id: a transition decides
//! on the phase it read and writes the phase it computed with no other transition of
//! the same id in between. Every running phase has a fencing token; its end must
//! present it.
//!
//! [`Store`] has three tiers: locating an id ([`hash`](Store::hash)); one atomic step
//! per record operation (launch, finish, revoke begin and end, status, watch, cancel);
//! and the whole store (counts, listing, close, the event stream, maintenance). The
//! recorder reaches the in-memory store only through it. The Redis store
//! (`redis::store`) offers the same record operations and vocabulary (tokens,
//! [`Refused`], [`Settled`]) to the Redis recorder, asynchronous and fallible, each one
//! server-side script generated from the same state machine.

use std::borrow::Borrow;
use std::hash::Hash;

use crate::cell::TaskCell;
use crate::events::TransitionStream;
pub(crate) use crate::state::Refused;
use crate::state::{Phase, TaskState};
use crate::status::{FailureReason, Settled, TaskStatus};
use crate::sync::Arc;
use std::time::Duration;

mod memory;

pub(crate) use memory::MemoryStore;

/// How many ids are in each state, read at one instant.
///
/// `success` includes the ids whose revoke is running, and `revoking` counts those ids
/// again, on their own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct StateCounts {
    /// Ids in [`TaskState::Working`].
    pub working: usize,
    /// Ids in [`TaskState::Success`], including those being revoked.
    pub success: usize,
    /// Ids in [`TaskState::Failed`].
    pub failed: usize,
    /// Ids whose revoke future is running (a subset of `success`).
    pub revoking: usize,
}

impl StateCounts {
    /// The count for one state; `NotFound` is always 0, since no record is kept for it.
    #[must_use]
    pub const fn get(&self, state: TaskState) -> usize {
        match state {
            TaskState::Working => self.working,
            TaskState::Success => self.success,
            TaskState::Failed => self.failed,
            TaskState::NotFound => 0,
        }
    }

    /// The number of records kept: `working + success + failed`.
    #[must_use]
    pub const fn total(&self) -> usize {
        self.working + self.success + self.failed
    }
}

/// A launch the store accepted: the attempt's fencing token (larger than every earlier
/// token of the id), its number since the id was last `NotFound`, and, if asked for,
/// the record's cell.
#[derive(Debug)]
pub(crate) struct Launched {
    pub(crate) token: u64,
    pub(crate) attempts: u32,
    pub(crate) cell: Option<Arc<TaskCell>>,
}

/// How a running future ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Failed(FailureReason),
}

/// The operations every store provides. Ids are passed with their hash, computed once by
/// the store's [`hash`](Store::hash), so that borrowed forms (`&str` for `String`) work
/// as with `HashMap`. Every transition is checked with [`crate::state::next`].
pub(crate) trait Store<K>: Send + Sync + 'static {
    /// The hash of an id or of a borrowed form of it (equal for equal ids).
    fn hash<Q: Hash + ?Sized>(&self, id: &Q) -> u64;

    /// `Launch`: records the id `Working` if it may launch and the store is open,
    /// otherwise says why not. With `with_cell`, the record gets a cell at once,
    /// returned too.
    fn launch(&self, hash: u64, id: K, with_cell: bool) -> Result<Launched, Refused>;

    /// Refuses every launch from now on. When this returns, every launch accepted
    /// before it is visible to [`visit`](Store::visit) and [`counts`](Store::counts).
    fn close(&self);

    /// Whether [`close`](Store::close) was called.
    fn is_closed(&self) -> bool;

    /// A spawned task suspended for the first time: returns the record's cell
    /// (created if needed), on which the task listens for a cancellation. `None` only
    /// if the record is gone, which cannot happen while the task's guard is alive.
    fn suspend<Q>(&self, hash: u64, id: &Q) -> Option<Arc<TaskCell>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// `Finish` of the attempt holding `token`: the running future ended. Returns how
    /// it settled (the reason may differ from `outcome`'s: a drop after a cancel
    /// request is `Cancelled`), with the record's cell, if any, to settle once the lock
    /// is released. `None` if `token` does not hold the id's running attempt (refused,
    /// the record unchanged), which cannot happen while the task's guard is alive.
    fn finish<Q>(
        &self,
        hash: u64,
        id: &Q,
        token: u64,
        outcome: Outcome,
    ) -> Option<(Option<Arc<TaskCell>>, Settled)>
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
    fn watch<Q>(&self, hash: u64, id: &Q) -> Result<Arc<TaskCell>, Settled>
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

    /// Visit the ids in `phases`, in batches handed to `visit` with no lock held.
    fn visit(&self, phases: &[Phase], visit: &mut dyn FnMut(&[K]));

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
