//! The in-memory store: a fixed number of shards, each a lock over one small hash table
//! per phase.
//!
//! Why one table per phase rather than one map from id to phase:
//! - a finished record costs only its key (no phase byte, no padding): for `u64` ids a
//!   `Success` slot is 9 bytes instead of 17;
//! - all ids in one state are found by walking that state's tables, whose size follows
//!   the number of ids in that state, not the number of records;
//! - a transition moves the record from one table to another under the shard's write
//!   lock, so readers (who take the read lock) never see an id in two phases or none.
//!
//! Records of running phases (`Working`, `Revoking`) are larger: they carry the attempt
//! count, the fencing token's low half and, once somebody waits or cancels or the
//! future first returns `Pending`, a [`TaskCell`]. They are few at any time.
//!
//! An id always lives in the shard chosen by its hash, so every operation on one id
//! takes exactly one lock, and no code path ever holds two shard locks except
//! [`counts`](Store::counts), which takes them all in index order.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use hashbrown::HashTable;

use super::{Launched, Outcome, Refused, Retried, StateCounts, Store};

mod listing;
mod records;
mod retention;
mod shard;

use crate::cell::TaskCell;
use crate::events::Events;
use crate::kept::Kept;
use crate::observe::Gauges;
use crate::options::Retention;
use crate::state::{next, Op, Phase, TaskState};
use crate::status::{End, FailureReason, Settled, TaskStatus, Transition};
use crate::sync::{self, Arc, RwLock};
use records::{
    held_by, token_bits, Details, FailedRec, KeptRec, Keyed, RevokingRec, SuccessRec, WorkingRec,
};
use retention::{Expiry, SWEEP_BATCH};
use shard::{find, find_mut, Shard};

/// Number of shards (a power of two). 64 keeps two to a few dozen cores from meeting on
/// the same lock most of the time while costing a few kilobytes when empty.
#[cfg(not(atr_loom))]
const SHARDS: usize = 64;
#[cfg(atr_loom)]
const SHARDS: usize = 2;

/// Shard index bits are taken from the middle of the hash: hashbrown uses the top 7 bits
/// for its control bytes and the low bits for the bucket, so these stay independent of
/// both for tables below 2^40 buckets.
const SHARD_SHIFT: u32 = 40;

/// A table shrinks when it is this many times larger than its contents (and not tiny):
/// after a burst of launches the working table does not keep its peak size forever.
const SHRINK_FACTOR: usize = 8;
const SHRINK_MIN_CAPACITY: usize = 1024;

/// The hasher: foldhash, seeded at random per store (so keys chosen by an attacker
/// cannot be aimed at one bucket across processes). Under loom the seed is fixed, since
/// a model must make the same lock choices in every explored execution.
#[cfg(not(atr_loom))]
type Hasher = foldhash::fast::RandomState;
#[cfg(atr_loom)]
type Hasher = foldhash::fast::FixedState;

/// Keeps each shard's lock on its own cache lines, so two cores working on neighbouring
/// shards do not invalidate each other's lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// The default store. See the module docs for its layout.
pub(crate) struct MemoryStore<K> {
    hasher: Hasher,
    /// A fixed-size array, so that indexing by a masked hash needs no bounds check.
    shards: Box<[Padded<RwLock<Shard<K>>>; SHARDS]>,
    track_details: bool,
    /// The most bytes a kept value may have.
    kept_limit: usize,
    /// How often a running attempt's progress may be published.
    progress_interval: std::time::Duration,
    events: Events<K>,
    /// Set by [`close`](Store::close); read by launches under their shard lock.
    closed: AtomicBool,
    /// Retention, when configured.
    expiry: Option<Box<Expiry>>,
    /// Moved at every transition by [`emit`](Self::emit); zero-sized without the
    /// `metrics` feature.
    gauges: Gauges,
}

impl<K> std::fmt::Debug for MemoryStore<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.shards.len())
            .field("track_details", &self.track_details)
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash + Clone> MemoryStore<K> {
    pub(crate) fn new(
        track_details: bool,
        event_capacity: usize,
        retention: Retention,
        gauges: Gauges,
        kept_limit: usize,
        progress_interval: std::time::Duration,
    ) -> Self {
        MemoryStore {
            hasher: Hasher::default(),
            shards: (0..SHARDS)
                .map(|_| Padded(RwLock::new(Shard::default())))
                .collect::<Box<[_]>>()
                .try_into()
                .unwrap_or_else(|_| unreachable!("SHARDS shards were made")),
            track_details,
            kept_limit,
            progress_interval,
            events: Events::new(event_capacity),
            closed: AtomicBool::new(false),
            expiry: retention.is_on().then(|| Box::new(Expiry::new(retention))),
            gauges,
        }
    }

    #[inline(always)]
    fn shard_index(hash: u64) -> usize {
        // Truncation is intended: only the low bits of the shifted hash are used.
        (hash >> SHARD_SHIFT) as usize & (SHARDS - 1)
    }

    #[inline(always)]
    fn shard(&self, hash: u64) -> &RwLock<Shard<K>> {
        &self.shards[Self::shard_index(hash)].0
    }

    /// Which shard an id lives in (for the loom models, which need ids in different
    /// shards).
    #[cfg(atr_loom)]
    pub(crate) fn shard_of<Q: Hash + ?Sized>(&self, id: &Q) -> usize {
        Self::shard_index(self.hasher.hash_one(id))
    }

    fn now(&self) -> Option<Instant> {
        self.track_details
            .then(|| tokio::time::Instant::now().into_std())
    }

    #[inline]
    fn take<Q, T>(&self, table: &mut HashTable<T>, hash: u64, id: &Q) -> Option<T>
    where
        T: Keyed<K>,
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.take_where(table, hash, |r| r.key().borrow() == id)
    }

    /// Removes the record with this hash that `is` picks, shrinking the table when it
    /// became much larger than its contents.
    #[inline(always)]
    fn take_where<T: Keyed<K>>(
        &self,
        table: &mut HashTable<T>,
        hash: u64,
        is: impl FnMut(&T) -> bool,
    ) -> Option<T> {
        if table.is_empty() {
            return None;
        }
        let (record, _) = table.find_entry(hash, is).ok()?.remove();
        let capacity = table.capacity();
        if capacity >= SHRINK_MIN_CAPACITY && table.len() * SHRINK_FACTOR < capacity {
            table.shrink_to(table.len() * 2, |r| self.hasher.hash_one(r.key()));
        }
        Some(record)
    }

    #[inline(always)]
    fn put<T: Keyed<K>>(&self, table: &mut HashTable<T>, hash: u64, record: T) {
        table.insert_unique(hash, record, |r| self.hasher.hash_one(r.key()));
    }

    /// Keeps `kept` for the finished record of `key` (a copy of the key goes with it).
    #[inline]
    fn keep(&self, shard: &mut Shard<K>, hash: u64, key: &K, kept: Kept) {
        let key = key.clone();
        self.put(&mut shard.kept, hash, KeptRec { key, kept });
    }

    /// Removes what the record of `id` kept, if anything: its phase is over. One
    /// length check while no launch keeps anything.
    #[inline]
    fn unkeep<Q>(&self, shard: &mut Shard<K>, hash: u64, id: &Q)
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let _ = self.take(&mut shard.kept, hash, id);
    }

    /// Publishes a transition to subscribers, if there are any (one relaxed load
    /// otherwise), and moves the phase gauges. Called under the shard lock,
    /// so the events of one id come in the order of its transitions.
    fn emit(&self, key: &K, from: Phase, to: Phase, failure: Option<FailureReason>) {
        self.gauges.transition(from, to);
        if self.events.has_subscribers() {
            self.events.send(Transition {
                id: key.clone(),
                from,
                to,
                failure,
                progress: None,
            });
        }
    }

    /// Publishes a progress report of the running attempt of `key` holding `token`
    /// to subscribers, under the shard's read lock (so after the attempt's start and
    /// before its end in the id's events); nothing once the attempt has ended.
    pub(crate) fn emit_progress(&self, hash: u64, key: &K, token: u64, value: u64) {
        if !self.events.has_subscribers() {
            return;
        }
        let shard = sync::read(self.shard(hash));
        let running = find(&shard.working, hash, key).or_else(|| find(&shard.queued, hash, key));
        if running.is_some_and(|r| r.token == token_bits(token)) {
            self.events.send(Transition {
                id: key.clone(),
                from: Phase::Working,
                to: Phase::Working,
                failure: None,
                progress: Some(value),
            });
        }
    }

    /// How often a running attempt's progress may be published.
    pub(crate) fn progress_interval(&self) -> std::time::Duration {
        self.progress_interval
    }
}

/// Records dropped with the store leave without a transition; the phase gauges are
/// told here so that they do not keep counting them.
#[cfg(feature = "metrics")]
impl<K> Drop for MemoryStore<K> {
    fn drop(&mut self) {
        let mut counts = [0; 4];
        for shard in self.shards.iter() {
            let shard = sync::read(&shard.0);
            let lens = [
                shard.working.len() + shard.queued.len(),
                shard.success.len() + shard.detailed.len() + shard.timed.len(),
                shard.failed.len(),
                shard.revoking.len(),
            ];
            for (count, len) in counts.iter_mut().zip(lens) {
                *count += len;
            }
        }
        let queued = self
            .shards
            .iter()
            .map(|s| sync::read(&s.0).queued.len())
            .sum();
        self.gauges.forget(counts, queued);
    }
}

impl<K> Store<K> for MemoryStore<K>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
{
    fn hash<Q: Hash + ?Sized>(&self, id: &Q) -> u64 {
        self.hasher.hash_one(id)
    }

    fn launch(&self, hash: u64, id: &K, queued: bool) -> Result<Launched, Refused> {
        self.sweep_own_shard(hash);
        let lock = self.shard(hash);
        let mut shard = match sync::try_write(lock) {
            Some(shard) => shard,
            None => {
                // The shard is busy, as it is when many callers launch one hot id that
                // is running or done: a launch that will be refused decides so under
                // the read lock, which they share, instead of queueing for the write
                // lock. Uncontended, the write lock is taken at once.
                let current = sync::read(lock).phase(hash, id);
                next(current, Op::Launch).map_err(|phase| Refused {
                    phase,
                    closed: false,
                })?;
                sync::write(lock)
            }
        };
        let current = shard.phase(hash, id);
        // Read under the shard lock: `close` passes through every shard lock after
        // setting the flag, so a launch either sees it or is visible once `close`
        // returns.
        next(current, Op::Launch).map_err(|phase| Refused {
            phase,
            closed: false,
        })?;
        if self.closed.load(Ordering::Relaxed) {
            return Err(Refused {
                phase: current,
                closed: true,
            });
        }
        // The failed record's key is reused (the probe above found it, so only a
        // `Failed` id looks into that table again); otherwise the record gets a copy of
        // the id, made only now that the launch is accepted.
        let (key, attempts) = if current == Phase::Failed {
            let failed = self
                .take(&mut shard.failed, hash, id)
                .expect("the phase was read under the same lock");
            if failed.seq != 0 {
                self.left_by_transition();
            }
            self.unkeep(&mut shard, hash, id);
            (failed.key, failed.attempts.saturating_add(1))
        } else {
            (id.clone(), 1)
        };
        // With details tracked, the cell carries the start time.
        let since = self.now();
        let cell = since.is_some().then(|| TaskCell::started_at(since));
        let token = shard.next_token;
        shard.next_token += 1;
        self.emit(&key, current, Phase::Working, None);
        let record = WorkingRec {
            key,
            attempts,
            token: token_bits(token),
            cell: cell.clone(),
        };
        let table = if queued {
            self.gauges.queued(1);
            &mut shard.queued
        } else {
            &mut shard.working
        };
        self.put(table, hash, record);
        Ok(Launched {
            token,
            attempts,
            cell,
        })
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // A launch that read the flag unset holds its shard lock until its record is
        // in; passing through every lock waits for those.
        for shard in self.shards.iter() {
            drop(sync::write(&shard.0));
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn first_pending<Q>(&self, hash: u64, id: &Q) -> Option<Arc<TaskCell>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = sync::write(self.shard(hash));
        // Not found cannot happen while the task's guard is alive.
        let running = shard.running_mut(hash, id)?;
        // A cancel made before now is in the cell already: `cancel` marks it under
        // this lock.
        Some(running.cell())
    }

    fn cell_of<Q>(&self, hash: u64, id: &Q, token: u64) -> Option<Arc<TaskCell>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = sync::write(self.shard(hash));
        let running = shard.running_mut(hash, id)?;
        if running.token != token_bits(token) {
            return None;
        }
        Some(running.cell())
    }

    fn start<Q>(&self, hash: u64, id: &Q, token: u64) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = sync::write(self.shard(hash));
        let is = held_by(id, token);
        let Some(record) = self.take_where(&mut shard.queued, hash, is) else {
            // A retry's next attempt: it no longer waits.
            return shard
                .working
                .find(hash, is)
                .and_then(|r| r.cell.as_ref())
                .is_some_and(|cell| cell.clear_retry());
        };
        self.gauges.queued(-1);
        self.put(&mut shard.working, hash, record);
        true
    }

    fn retry<Q>(
        &self,
        hash: u64,
        id: &Q,
        token: u64,
        reason: FailureReason,
        wait: std::time::Duration,
    ) -> Retried
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = sync::write(self.shard(hash));
        let is = held_by(id, token);
        let Some(running) = shard.working.find_mut(hash, is) else {
            return Retried::Gone;
        };
        let cell = running.cell.get_or_insert_with(TaskCell::new);
        if cell.cancel_was_requested() {
            return Retried::Cancelled;
        }
        let at = std::time::SystemTime::now() + wait;
        cell.set_retry(reason, at);
        running.attempts = running.attempts.saturating_add(1);
        Retried::Next(running.attempts)
    }

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
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = sync::write(self.shard(hash));
        // Only the attempt holding the token may end it; its guard does, so it is there.
        let is = held_by(id, token);
        let running = match self.take_where(&mut shard.working, hash, is) {
            Some(running) => running,
            None => {
                let queued = self.take_where(&mut shard.queued, hash, is)?;
                self.gauges.queued(-1);
                queued
            }
        };
        let ok = matches!(outcome, Outcome::Ok);
        let to = next(Phase::Working, Op::Finish { ok }).expect("Working may finish");
        let failure = match outcome {
            Outcome::Ok => None,
            // A drop after a cancel request is the cancellation taking effect.
            Outcome::Failed(FailureReason::Dropped)
                if running
                    .cell
                    .as_ref()
                    .is_some_and(|c| c.cancel_was_requested()) =>
            {
                Some(FailureReason::Cancelled)
            }
            Outcome::Failed(reason) => Some(reason),
        };
        self.emit(&running.key, Phase::Working, to, failure);
        let since = self.now();
        if let Some(kept) = kept {
            self.keep(&mut shard, hash, &running.key, kept.clone());
        }
        match failure {
            None => {
                let details = since.map(|since| Details {
                    attempts: running.attempts,
                    since,
                });
                self.put_success(&mut shard, hash, running.key, details, false)
            }
            Some(reason) => {
                let record = FailedRec {
                    key: running.key,
                    seq: 0,
                    attempts: running.attempts,
                    reason,
                    since,
                };
                self.put_failed(&mut shard, hash, record)
            }
        };
        drop(shard);
        self.enforce_cap();
        self.sweep_own_shard(hash);
        Some((running.cell, End { phase: to, failure }))
    }

    fn revoke_begin<Q>(&self, hash: u64, id: &Q) -> Result<u64, Phase>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = sync::write(self.shard(hash));
        // A plain success record, the usual one, is taken without probing the other
        // tables: the id is in one table only, so that one says its phase.
        let (key, untimed, details) = match self.take(&mut shard.success, hash, id) {
            Some(SuccessRec(key)) => (key, true, None),
            None => {
                next(shard.phase(hash, id), Op::RevokeBegin)?;
                if let Some(d) = self.take(&mut shard.detailed, hash, id) {
                    (d.key, true, Some(d.details))
                } else {
                    let timed = self
                        .take(&mut shard.timed, hash, id)
                        .expect("the phase was read under the same lock");
                    self.left_by_transition();
                    let details = self.take(&mut shard.details, hash, id).map(|d| d.details);
                    (timed.key, false, details)
                }
            }
        };
        let token = shard.next_token;
        shard.next_token += 1;
        self.emit(&key, Phase::Success, Phase::Revoking, None);
        let since = self.now();
        self.put(
            &mut shard.revoking,
            hash,
            RevokingRec {
                key,
                token: token_bits(token),
                details,
                untimed,
                since,
                cell: None,
            },
        );
        Ok(token)
    }

    fn revoke_end<Q>(
        &self,
        hash: u64,
        id: &Q,
        token: u64,
        ok: bool,
    ) -> Option<(Option<Arc<TaskCell>>, Settled)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = sync::write(self.shard(hash));
        let revoking = self.take_where(&mut shard.revoking, hash, held_by(id, token))?;
        let to = next(Phase::Revoking, Op::RevokeEnd { ok }).expect("Revoking may end");
        self.emit(&revoking.key, Phase::Revoking, to, None);
        let settled = Settled {
            phase: to,
            failure: None,
            kept: None,
        };
        if to == Phase::Success {
            // Back to what it was; a timed record's time to live starts again.
            let (key, details, untimed) = (revoking.key, revoking.details, revoking.untimed);
            self.put_success(&mut shard, hash, key, details, untimed);
            drop(shard);
            self.enforce_cap();
        } else {
            self.unkeep(&mut shard, hash, id);
        }
        Some((revoking.cell, settled))
    }

    fn phase<Q>(&self, hash: u64, id: &Q) -> Phase
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        sync::read(self.shard(hash)).phase(hash, id)
    }

    fn phase_quick<Q>(&self, hash: u64, id: &Q) -> TaskState
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        sync::read(self.shard(hash)).quick_state(hash, id)
    }

    fn status<Q>(&self, hash: u64, id: &Q) -> TaskStatus
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        sync::read(self.shard(hash)).status(hash, id)
    }

    fn wait_on<Q>(&self, hash: u64, id: &Q) -> Result<Arc<TaskCell>, Settled>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // A final phase is answered under the read lock; a running one needs the write
        // lock to attach a cell.
        {
            let shard = sync::read(self.shard(hash));
            // The phase and its failure reason are read under one lock, so they agree.
            let now = shard.settled(hash, id);
            if now.phase.is_final() {
                return Err(now);
            }
        }
        let mut shard = sync::write(self.shard(hash));
        let slot = if let Some(r) = shard.running_mut(hash, id) {
            &mut r.cell
        } else if let Some(r) = find_mut(&mut shard.revoking, hash, id) {
            &mut r.cell
        } else {
            return Err(shard.settled(hash, id));
        };
        Ok(slot.get_or_insert_with(TaskCell::new).clone())
    }

    fn cancel<Q>(&self, hash: u64, id: &Q) -> Option<Arc<TaskCell>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (cell, listener) = {
            let mut shard = sync::write(self.shard(hash));
            let running = shard.running_mut(hash, id)?;
            let cell = running.cell();
            // Marked under the shard lock, so that a finish or a first suspension
            // after this sees the request; woken once the lock is released.
            let listener = cell.mark_cancel();
            (cell, listener)
        };
        // A suspended spawned task or a `launch_block` caller listens on the cell; a
        // spawned task that has not suspended yet finds the request when it first does.
        if let Some(waker) = listener {
            waker.wake();
        }
        Some(cell)
    }

    fn counts(&self) -> StateCounts {
        self.count_all()
    }

    fn kept_limit(&self) -> usize {
        self.kept_limit
    }

    fn visit(&self, phases: &[Phase], visit: &mut dyn FnMut(&mut Vec<K>)) {
        self.copy_keys(phases, visit)
    }

    fn page(
        &self,
        phases: &[Phase],
        after: Option<(usize, u64)>,
        limit: usize,
    ) -> (Vec<K>, Option<(usize, u64)>) {
        self.page_of(phases, after, limit)
    }

    fn subscribe(&self) -> crate::events::TransitionStream<K> {
        self.events.subscribe()
    }

    #[inline]
    fn sweeper_missing(&self) -> bool {
        self.wants_sweeper()
    }

    fn sweeper_to_start(&self) -> Option<std::time::Duration> {
        self.claim_sweeper()
    }

    fn sweeper_stopped(&self) {
        self.sweeper_gone()
    }

    fn parts(&self) -> usize {
        self.shards.len()
    }

    fn maintain(&self, part: usize) -> bool {
        self.sweep_shard(part) == SWEEP_BATCH
    }
}

#[cfg(all(test, not(atr_loom)))]
mod tests {
    use super::*;

    fn store() -> MemoryStore<u64> {
        MemoryStore::new(
            false,
            16,
            Retention::default(),
            Gauges::default(),
            crate::kept::DEFAULT_MAX_KEPT_LEN,
            crate::progress::DEFAULT_INTERVAL,
        )
    }

    #[test]
    fn a_working_record_stays_small() {
        assert_eq!(std::mem::size_of::<WorkingRec<u64>>(), 24);
    }

    #[test]
    fn a_stale_token_ends_nothing() {
        let store = store();
        let hash = store.hash(&1u64);
        let first = store.launch(hash, &1, false).unwrap();
        let ended = store.finish(hash, &1, first.token + 1, Outcome::Ok, None);
        assert!(
            ended.is_none(),
            "a token that does not hold the attempt is refused"
        );
        assert_eq!(store.phase(hash, &1), Phase::Working);
        let ended = store.finish(hash, &1, first.token, Outcome::Ok, None);
        assert_eq!(ended.map(|(_, s)| s.phase), Some(Phase::Success));

        let revoke = store.revoke_begin(hash, &1).unwrap();
        assert!(revoke > first.token);
        assert!(store.revoke_end(hash, &1, first.token, true).is_none());
        assert_eq!(store.phase(hash, &1), Phase::Revoking);
        let ended = store.revoke_end(hash, &1, revoke, true);
        assert_eq!(ended.map(|(_, s)| s.phase), Some(Phase::NotFound));
        let again = store.launch(hash, &1, false).unwrap();
        assert!(again.token > revoke, "tokens increase across revokes");
        assert_eq!(again.attempts, 1);
    }
}
