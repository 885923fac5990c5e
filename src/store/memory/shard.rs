//! One shard of the in-memory store: a small hash table per phase, the expiry queues,
//! and the one probe that every read of an id goes through.

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::time::Instant;

use hashbrown::HashTable;

use super::records::{
    Details, DetailsRec, FailedRec, KeptRec, Keyed, RevokingRec, SuccessRec, TimedRec, WorkingRec,
};
use super::retention::ExpiryEntry;
use crate::state::{Phase, TaskState};
use crate::status::{Settled, TaskStatus};

#[derive(Debug)]
pub(super) struct Shard<K> {
    pub(super) working: HashTable<WorkingRec<K>>,
    /// `Working` records whose future waits for a `max_running` slot (empty without a
    /// limit). A record moves to `working` when its future gets one.
    pub(super) queued: HashTable<WorkingRec<K>>,
    /// `Success` records kept with no expiry, and tombstones.
    pub(super) success: HashTable<SuccessRec<K>>,
    /// `Success` records that will expire (empty unless retention is on).
    pub(super) timed: HashTable<TimedRec<K>>,
    pub(super) failed: HashTable<FailedRec<K>>,
    pub(super) revoking: HashTable<RevokingRec<K>>,
    /// `Success` records with details (tracked, and kept with no expiry): the key
    /// and its details in one entry, instead of a plain record and a side entry.
    pub(super) detailed: HashTable<DetailsRec<K>>,
    /// Details of the `Success` records in `timed`, when tracked.
    pub(super) details: HashTable<DetailsRec<K>>,
    /// Values kept by finished records of the launches that keep one. Empty, and never
    /// looked into, while no launch keeps anything.
    pub(super) kept: HashTable<KeptRec<K>>,
    /// Expiry queues (empty unless retention is on), in finishing order.
    pub(super) success_q: VecDeque<ExpiryEntry>,
    pub(super) failed_q: VecDeque<ExpiryEntry>,
    /// The next sequence number for a queued record (0 means "not queued").
    pub(super) next_seq: u64,
    /// The next fencing token. An id always lives in this shard and the counter never
    /// goes back, so every id's tokens increase over the store's life, across revokes
    /// and expiry.
    pub(super) next_token: u64,
}

impl<K> Default for Shard<K> {
    fn default() -> Self {
        Shard {
            working: HashTable::new(),
            queued: HashTable::new(),
            success: HashTable::new(),
            failed: HashTable::new(),
            revoking: HashTable::new(),
            details: HashTable::new(),
            detailed: HashTable::new(),
            kept: HashTable::new(),
            timed: HashTable::new(),
            success_q: VecDeque::new(),
            failed_q: VecDeque::new(),
            next_seq: 1,
            next_token: 1,
        }
    }
}

pub(super) fn find<'t, K, Q, T>(table: &'t HashTable<T>, hash: u64, id: &Q) -> Option<&'t T>
where
    T: Keyed<K>,
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    // An empty table is skipped without touching its (shared, static) control bytes.
    if table.is_empty() {
        return None;
    }
    table.find(hash, |r| r.key().borrow() == id)
}

pub(super) fn find_mut<'t, K, Q, T>(
    table: &'t mut HashTable<T>,
    hash: u64,
    id: &Q,
) -> Option<&'t mut T>
where
    T: Keyed<K>,
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    if table.is_empty() {
        return None;
    }
    table.find_mut(hash, |r| r.key().borrow() == id)
}

/// Where a probe found an id: its phase and, for the phases that have one, its record.
#[derive(Debug)]
pub(super) enum Probe<'s, K> {
    Success,
    Failed(&'s FailedRec<K>),
    /// Running (`queued: false`) or waiting for a `max_running` slot.
    Working(&'s WorkingRec<K>, bool),
    Revoking(&'s RevokingRec<K>),
    NotFound,
}

impl<K> Probe<'_, K> {
    pub(super) fn phase(&self) -> Phase {
        match self {
            Probe::Success => Phase::Success,
            Probe::Failed(_) => Phase::Failed,
            Probe::Working(..) => Phase::Working,
            Probe::Revoking(_) => Phase::Revoking,
            Probe::NotFound => Phase::NotFound,
        }
    }
}

impl<K> Shard<K> {
    /// Where the id is. Success is looked at first (the common hit in a long-running
    /// service), then Failed, Working and Revoking; a miss looks at every table, each
    /// empty one at the cost of one length check.
    pub(super) fn probe<Q>(&self, hash: u64, id: &Q) -> Probe<'_, K>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        if let Some(finished) = self.probe_finished(hash, id) {
            finished
        } else if let Some(r) = find(&self.working, hash, id) {
            Probe::Working(r, false)
        } else if let Some(r) = find(&self.queued, hash, id) {
            Probe::Working(r, true)
        } else if let Some(r) = find(&self.revoking, hash, id) {
            Probe::Revoking(r)
        } else {
            Probe::NotFound
        }
    }

    /// The first half of [`probe`](Self::probe): where a finished id is (`Success`,
    /// then `Failed`), `None` for any other.
    fn probe_finished<Q>(&self, hash: u64, id: &Q) -> Option<Probe<'_, K>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        if self.is_success(hash, id) {
            Some(Probe::Success)
        } else {
            find(&self.failed, hash, id).map(Probe::Failed)
        }
    }

    pub(super) fn phase<Q>(&self, hash: u64, id: &Q) -> Phase
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.probe(hash, id).phase()
    }

    /// The quick query: `Success` (a revoking id included) or `Failed` when recorded
    /// so, `Working` otherwise. It looks at the finished tables and the revoking one,
    /// never at the running ones.
    pub(super) fn quick_state<Q>(&self, hash: u64, id: &Q) -> TaskState
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        match self.probe_finished(hash, id) {
            Some(Probe::Failed(_)) => TaskState::Failed,
            Some(_) => TaskState::Success,
            None if find(&self.revoking, hash, id).is_some() => TaskState::Success,
            None => TaskState::Working,
        }
    }

    /// The `Working` record of an id, running or queued.
    pub(super) fn running_mut<Q>(&mut self, hash: u64, id: &Q) -> Option<&mut WorkingRec<K>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        if find(&self.working, hash, id).is_some() {
            return find_mut(&mut self.working, hash, id);
        }
        find_mut(&mut self.queued, hash, id)
    }

    /// Whether the id is `Success` (not `Revoking`): in one of the three tables.
    pub(super) fn is_success<Q>(&self, hash: u64, id: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        find(&self.success, hash, id).is_some()
            || find(&self.detailed, hash, id).is_some()
            || find(&self.timed, hash, id).is_some()
    }

    /// The details of a `Success` id, if kept.
    fn success_details<Q>(&self, hash: u64, id: &Q) -> Option<Details>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        find(&self.detailed, hash, id)
            .or_else(|| find(&self.details, hash, id))
            .map(|d| d.details)
    }

    /// Calls `f` with the key of every record in `phase` (Success: the untimed, the
    /// detailed and the timed tables; Working: running and queued).
    pub(super) fn each_key<'a>(&'a self, phase: Phase, mut f: impl FnMut(&'a K)) {
        match phase {
            Phase::Working => {
                self.working.iter().for_each(|r| f(&r.key));
                self.queued.iter().for_each(|r| f(&r.key));
            }
            Phase::Success => {
                self.success.iter().for_each(|r| f(&r.0));
                self.detailed.iter().for_each(|r| f(&r.key));
                self.timed.iter().for_each(|r| f(&r.key));
            }
            Phase::Failed => self.failed.iter().for_each(|r| f(&r.key)),
            Phase::Revoking => self.revoking.iter().for_each(|r| f(&r.key)),
            Phase::NotFound => {}
        }
    }

    /// The detailed status of an id.
    pub(super) fn status<Q>(&self, hash: u64, id: &Q) -> TaskStatus
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let found = self.probe(hash, id);
        let phase = found.phase();
        let base = |attempts, last_failure, since: Option<Instant>| TaskStatus {
            phase,
            attempts,
            last_failure,
            since,
            started_at: since.and_then(|at| std::time::SystemTime::now().checked_sub(at.elapsed())),
            // Only finished records (and a revoking success) keep anything.
            kept: match phase {
                Phase::Working => None,
                _ => find(&self.kept, hash, id).map(|k| k.kept.clone()),
            },
            queued: false,
            progress: None,
            retry_at: None,
        };
        match found {
            Probe::Success => {
                let d = self.success_details(hash, id);
                base(d.map(|d| d.attempts), None, d.map(|d| d.since))
            }
            Probe::Failed(f) => base(Some(f.attempts), Some(f.reason), f.since),
            Probe::Working(r, queued) => {
                let since = r.cell.as_ref().and_then(|c| c.since());
                // A queued attempt has not run yet, so it has no progress or retry.
                let running = r.cell.as_ref().filter(|_| !queued);
                let retry = running.and_then(|c| c.retry());
                TaskStatus {
                    queued,
                    progress: running.and_then(|c| c.progress()),
                    retry_at: retry.map(|(_, at)| at),
                    ..base(Some(r.attempts), retry.map(|(reason, _)| reason), since)
                }
            }
            Probe::Revoking(r) => base(r.details.map(|d| d.attempts), None, r.since),
            Probe::NotFound => TaskStatus::NOT_FOUND,
        }
    }

    /// The phase of an id with its failure reason and kept value, read together.
    pub(super) fn settled<Q>(&self, hash: u64, id: &Q) -> Settled
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let found = self.probe(hash, id);
        let failure = match &found {
            Probe::Failed(f) => Some(f.reason),
            _ => None,
        };
        Settled {
            phase: found.phase(),
            failure,
            kept: find(&self.kept, hash, id).map(|k| k.kept.clone()),
        }
    }
}
