//! The storage seam: what the recorder needs from the place that keeps its records.
//!
//! A store keeps, for every id it knows, the id's [`Phase`]. It changes a record only
//! through [`state::next`](crate::state::next), atomically per id: a transition decides
//! on the phase it read and writes the phase it computed with no other transition of
//! the same id in between. The in-memory store is the default; a networked store (Redis)
//! implements the same operations with server-side atomic scripts.

use std::hash::Hash;

use crate::state::{Op, Phase, TaskState};

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

/// The operations every store provides. Ids are passed with their hash, computed once by
/// the store's [`hash`](Store::hash), so that borrowed forms (`&str` for `String`) work
/// as with `HashMap`.
pub(crate) trait Store<K>: Send + Sync + 'static {
    /// The hash of an id or of a borrowed form of it (equal for equal ids).
    fn hash<Q: Hash + ?Sized>(&self, id: &Q) -> u64;

    /// `Op::Launch`: the store takes `id` as the record's key when it accepts.
    fn launch(&self, hash: u64, id: K) -> Result<(), Phase>;

    /// Any other operation on an existing record. Returns the new phase, or the current
    /// one when refused.
    fn apply<Q>(&self, hash: u64, id: &Q, op: Op) -> Result<Phase, Phase>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// The current phase.
    fn phase<Q>(&self, hash: u64, id: &Q) -> Phase
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// `Success` or `Failed` if recorded so, otherwise `Working`, looking at fewer places
    /// than [`phase`](Store::phase).
    fn phase_quick<Q>(&self, hash: u64, id: &Q) -> TaskState
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// Counts of every state at one instant.
    fn counts(&self) -> StateCounts;

    /// Visit the ids in `phases`, in batches handed to `visit` with no lock held.
    fn visit(&self, phases: &[Phase], visit: &mut dyn FnMut(&[K]));
}
