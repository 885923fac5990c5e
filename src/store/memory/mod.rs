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
//! count, the task's abort handle and, once somebody waits or cancels, a [`TaskCell`].
//! They are few at any time, so their size does not matter.
//!
//! An id always lives in the shard chosen by its hash, so every operation on one id
//! takes exactly one lock, and no code path ever holds two shard locks except
//! [`counts`](Store::counts), which takes them all in index order.

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use hashbrown::HashTable;

use super::{Launched, Outcome, Refused, Retried, StateCounts, Store};

mod retention;

use crate::cell::TaskCell;
use crate::events::Events;
use crate::kept::Kept;
use crate::observe::Gauges;
use crate::options::Retention;
use crate::state::{next, Op, Phase, TaskState};
use crate::status::{End, FailureReason, Settled, TaskStatus, Transition};
use crate::sync::{self, Arc, RwLock};
use retention::SWEEP_BATCH;
use retention::{Expiry, Queued};

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

/// Gives every record type's key to the generic table helpers.
trait Keyed<K> {
    fn key(&self) -> &K;
}

/// Implements [`Keyed`] for record types whose key is the field `key`.
macro_rules! keyed_by_field {
    ($($record:ident),*) => {
        $(
            impl<K> Keyed<K> for $record<K> {
                fn key(&self) -> &K {
                    &self.key
                }
            }
        )*
    };
}

keyed_by_field!(DetailsOf, KeptOf, Running, FailedRec, RevokingRec, Timed);

/// A `Success` record: the key alone.
#[derive(Debug)]
struct Done<K>(K);

impl<K> Keyed<K> for Done<K> {
    fn key(&self) -> &K {
        &self.0
    }
}

/// A `Success` record that will expire (retention is on): the key and its sequence
/// number, which the shard's expiry queue refers to.
#[derive(Debug)]
struct Timed<K> {
    key: K,
    seq: u64,
}

/// Attempt count and start of the current phase of a finished record, kept only when
/// the recorder tracks details.
#[derive(Debug, Clone, Copy)]
struct Details {
    attempts: u32,
    since: Instant,
}

#[derive(Debug)]
struct DetailsOf<K> {
    key: K,
    details: Details,
}

/// The value a `Success` or `Failed` record keeps (launches that keep one only; a
/// `Revoking` record's success keeps its entry here until the revoke succeeds).
#[derive(Debug)]
struct KeptOf<K> {
    key: K,
    kept: Kept,
}

/// A `Working` record. Kept small (24 bytes for `u64` ids): a burst of launches can
/// fill the working tables faster than tasks finish, and every byte here is memory
/// traffic on the launch path (BENCHMARKS.md shows what 8 more bytes cost).
#[derive(Debug)]
struct Running<K> {
    key: K,
    attempts: u32,
    /// The low 32 bits of the attempt's fencing token, which a finish must present.
    /// Only the attempt's guard holds its token, so this is a check of that invariant,
    /// not a lease: a stale token could only pass after exactly 2^32 further launches
    /// and revokes in the shard while its guard still lived. The full token, handed to
    /// the task by `launch_fenced`, is the shard's 64-bit counter.
    token: u32,
    /// Waiters, cancellers and the task's own waker, a cancel request, and the start
    /// time when details are tracked. Created on first need: at launch when details
    /// are tracked or for `launch_block`, when a spawned task first suspends, or by
    /// `wait`/`cancel`. A task that never suspends and that nobody waits for or cancels
    /// never gets one.
    cell: Option<Arc<TaskCell>>,
}

/// The part of a token a [`Running`] record keeps.
fn token_bits(token: u64) -> u32 {
    // Truncation is the point: see `Running::token`.
    token as u32
}

/// Picks the running record of `id` whose attempt holds `token`.
fn held_by<'a, K, Q>(id: &'a Q, token: u64) -> impl Fn(&Running<K>) -> bool + Copy + 'a
where
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    move |r| r.token == token_bits(token) && r.key.borrow() == id
}

/// A `Failed` record.
#[derive(Debug)]
struct FailedRec<K> {
    key: K,
    /// Its expiry-queue sequence number, 0 when failures are not queued.
    seq: u64,
    attempts: u32,
    reason: FailureReason,
    since: Option<Instant>,
}

/// A `Revoking` record.
#[derive(Debug)]
struct RevokingRec<K> {
    key: K,
    /// The low 32 bits of the revoke's fencing token (as for [`Running::token`]).
    token: u32,
    /// The success's details, to put back if the revoke fails.
    details: Option<Details>,
    /// Whether the success was a tombstone (or kept with no expiry), to put it back
    /// as one if the revoke fails.
    plain: bool,
    since: Option<Instant>,
    cell: Option<Arc<TaskCell>>,
}

#[derive(Debug)]
struct Shard<K> {
    working: HashTable<Running<K>>,
    /// `Working` records whose future waits for a `max_running` slot (empty without a
    /// limit). A record moves to `working` when its future gets one.
    queued: HashTable<Running<K>>,
    /// `Success` records kept with no expiry, and tombstones.
    success: HashTable<Done<K>>,
    /// `Success` records that will expire (empty unless retention is on).
    timed: HashTable<Timed<K>>,
    failed: HashTable<FailedRec<K>>,
    revoking: HashTable<RevokingRec<K>>,
    /// `Success` records with details (tracked, and kept with no expiry): the key
    /// and its details in one entry, instead of a plain record and a side entry.
    detailed: HashTable<DetailsOf<K>>,
    /// Details of the `Success` records in `timed`, when tracked.
    details: HashTable<DetailsOf<K>>,
    /// Values kept by finished records of the launches that keep one. Empty, and never
    /// looked into, while no launch keeps anything.
    kept: HashTable<KeptOf<K>>,
    /// Expiry queues (empty unless retention is on), in finishing order.
    success_q: VecDeque<Queued>,
    failed_q: VecDeque<Queued>,
    /// The next sequence number for a queued record (0 means "not queued").
    next_seq: u64,
    /// The next fencing token. An id always lives in this shard and the counter never
    /// goes back, so every id's tokens increase over the store's life, across revokes
    /// and expiry.
    next_token: u64,
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

fn find<'t, K, Q, T>(table: &'t HashTable<T>, hash: u64, id: &Q) -> Option<&'t T>
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

fn find_mut<'t, K, Q, T>(table: &'t mut HashTable<T>, hash: u64, id: &Q) -> Option<&'t mut T>
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

impl<K> Shard<K> {
    /// The `Working` record of an id, running or queued.
    fn running_mut<Q>(&mut self, hash: u64, id: &Q) -> Option<&mut Running<K>>
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
    fn is_success<Q>(&self, hash: u64, id: &Q) -> bool
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

    /// Calls `f` with the key of every record in `phase` (Success: the plain and the
    /// timed table).
    fn each_key<'a>(&'a self, phase: Phase, mut f: impl FnMut(&'a K)) {
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

    /// The phase of an id. Success is looked at first (the common hit in a long-running
    /// service), then Failed, Working and Revoking; a miss looks at all four.
    fn phase<Q>(&self, hash: u64, id: &Q) -> Phase
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        if self.is_success(hash, id) {
            Phase::Success
        } else if find(&self.failed, hash, id).is_some() {
            Phase::Failed
        } else if find(&self.working, hash, id).is_some() || find(&self.queued, hash, id).is_some()
        {
            Phase::Working
        } else if find(&self.revoking, hash, id).is_some() {
            Phase::Revoking
        } else {
            Phase::NotFound
        }
    }
}

/// The default store. See the module docs for its layout.
pub(crate) struct MemoryStore<K> {
    hasher: Hasher,
    shards: Box<[Padded<RwLock<Shard<K>>>]>,
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
                .collect(),
            track_details,
            kept_limit,
            progress_interval,
            events: Events::new(event_capacity),
            closed: AtomicBool::new(false),
            expiry: retention.is_on().then(|| Box::new(Expiry::new(retention))),
            gauges,
        }
    }

    fn shard_index(hash: u64) -> usize {
        // Truncation is intended: only the low bits of the shifted hash are used.
        (hash >> SHARD_SHIFT) as usize & (SHARDS - 1)
    }

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
    fn keep(&self, shard: &mut Shard<K>, hash: u64, key: &K, kept: Kept) {
        let key = key.clone();
        self.put(&mut shard.kept, hash, KeptOf { key, kept });
    }

    /// Removes what the record of `id` kept, if anything: its phase is over.
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

    fn launch(&self, hash: u64, id: K, with_cell: bool, queued: bool) -> Result<Launched, Refused> {
        let mut shard = sync::write(self.shard(hash));
        let current = shard.phase(hash, &id);
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
        let (key, attempts) = match self.take(&mut shard.failed, hash, &id) {
            Some(failed) => {
                if failed.seq != 0 {
                    self.unqueued();
                }
                self.unkeep(&mut shard, hash, &id);
                (failed.key, failed.attempts.saturating_add(1))
            }
            None => (id, 1),
        };
        // With details tracked, the cell carries the start time.
        let since = self.now();
        let cell = (with_cell || since.is_some()).then(|| TaskCell::started_at(since));
        let token = shard.next_token;
        shard.next_token += 1;
        self.emit(&key, current, Phase::Working, None);
        let record = Running {
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

    fn suspend<Q>(&self, hash: u64, id: &Q) -> Option<Arc<TaskCell>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = sync::write(self.shard(hash));
        // Not found cannot happen while the task's guard is alive.
        let running = shard.running_mut(hash, id)?;
        // A cancel made before now is in the cell already: `cancel` marks it under
        // this lock.
        Some(running.cell.get_or_insert_with(TaskCell::new).clone())
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
        Some(running.cell.get_or_insert_with(TaskCell::new).clone())
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
        Some((running.cell, End { phase: to, failure }))
    }

    fn revoke_begin<Q>(&self, hash: u64, id: &Q) -> Result<u64, Phase>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = sync::write(self.shard(hash));
        let current = shard.phase(hash, id);
        next(current, Op::RevokeBegin)?;
        let token = shard.next_token;
        shard.next_token += 1;
        let (key, plain, details) = if let Some(Done(key)) = self.take(&mut shard.success, hash, id)
        {
            (key, true, None)
        } else if let Some(d) = self.take(&mut shard.detailed, hash, id) {
            (d.key, true, Some(d.details))
        } else {
            let timed = self
                .take(&mut shard.timed, hash, id)
                .expect("the phase was read under the same lock");
            self.unqueued();
            (timed.key, false, None)
        };
        let details = match details {
            Some(details) => Some(details),
            None => self.take(&mut shard.details, hash, id).map(|d| d.details),
        };
        self.emit(&key, current, Phase::Revoking, None);
        let since = self.now();
        self.put(
            &mut shard.revoking,
            hash,
            RevokingRec {
                key,
                token: token_bits(token),
                details,
                plain,
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
        let revoking = self.take_where(&mut shard.revoking, hash, |r| {
            r.token == token_bits(token) && r.key.borrow() == id
        })?;
        let to = next(Phase::Revoking, Op::RevokeEnd { ok }).expect("Revoking may end");
        self.emit(&revoking.key, Phase::Revoking, to, None);
        if to == Phase::Success {
            // Back to what it was; a timed record's time to live starts again.
            let (key, details, plain) = (revoking.key, revoking.details, revoking.plain);
            let cell = revoking.cell;
            self.put_success(&mut shard, hash, key, details, plain);
            drop(shard);
            self.enforce_cap();
            let settled = Settled {
                phase: to,
                failure: None,
                kept: None,
            };
            return Some((cell, settled));
        }
        self.unkeep(&mut shard, hash, id);
        let settled = Settled {
            phase: to,
            failure: None,
            kept: None,
        };
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
        let shard = sync::read(self.shard(hash));
        if shard.is_success(hash, id) || find(&shard.revoking, hash, id).is_some() {
            TaskState::Success
        } else if find(&shard.failed, hash, id).is_some() {
            TaskState::Failed
        } else {
            TaskState::Working
        }
    }

    fn status<Q>(&self, hash: u64, id: &Q) -> TaskStatus
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shard = sync::read(self.shard(hash));
        let status = |phase, attempts, last_failure, since: Option<Instant>| TaskStatus {
            phase,
            attempts,
            last_failure,
            since,
            started_at: since.and_then(|at| std::time::SystemTime::now().checked_sub(at.elapsed())),
            // Only finished records (and a revoking success) keep anything.
            kept: match phase {
                Phase::Working => None,
                _ => find(&shard.kept, hash, id).map(|k| k.kept.clone()),
            },
            queued: false,
            progress: None,
            retry_at: None,
        };
        if shard.is_success(hash, id) {
            let d = shard.success_details(hash, id);
            status(
                Phase::Success,
                d.map(|d| d.attempts),
                None,
                d.map(|d| d.since),
            )
        } else if let Some(f) = find(&shard.failed, hash, id) {
            status(Phase::Failed, Some(f.attempts), Some(f.reason), f.since)
        } else if let Some(r) = find(&shard.working, hash, id) {
            let since = r.cell.as_ref().and_then(|c| c.since());
            let retry = r.cell.as_ref().and_then(|c| c.retry());
            TaskStatus {
                progress: r.cell.as_ref().and_then(|c| c.progress()),
                retry_at: retry.map(|(_, at)| at),
                ..status(
                    Phase::Working,
                    Some(r.attempts),
                    retry.map(|(reason, _)| reason),
                    since,
                )
            }
        } else if let Some(r) = find(&shard.queued, hash, id) {
            let since = r.cell.as_ref().and_then(|c| c.since());
            TaskStatus {
                queued: true,
                ..status(Phase::Working, Some(r.attempts), None, since)
            }
        } else if let Some(r) = find(&shard.revoking, hash, id) {
            status(
                Phase::Revoking,
                r.details.map(|d| d.attempts),
                None,
                r.since,
            )
        } else {
            TaskStatus::NOT_FOUND
        }
    }

    fn watch<Q>(&self, hash: u64, id: &Q) -> Result<Arc<TaskCell>, Settled>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // The phase and its failure reason are read under one lock, so they agree.
        fn settled<K, Q>(shard: &Shard<K>, hash: u64, id: &Q) -> Settled
        where
            K: Borrow<Q>,
            Q: Eq + ?Sized,
        {
            let phase = shard.phase(hash, id);
            let failure = find(&shard.failed, hash, id).map(|f| f.reason);
            let kept = find(&shard.kept, hash, id).map(|k| k.kept.clone());
            Settled {
                phase,
                failure,
                kept,
            }
        }
        // A final phase is answered under the read lock; a running one needs the write
        // lock to attach a cell.
        {
            let shard = sync::read(self.shard(hash));
            let now = settled(&shard, hash, id);
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
            return Err(settled(&shard, hash, id));
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
            let cell = running.cell.get_or_insert_with(TaskCell::new).clone();
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
        // All read locks are held together so that the numbers describe one instant;
        // they are taken in index order, and no other path holds two.
        let guards: Vec<_> = self.shards.iter().map(|s| sync::read(&s.0)).collect();
        let mut counts = StateCounts::default();
        for shard in &guards {
            counts.working += shard.working.len() + shard.queued.len();
            counts.queued += shard.queued.len();
            counts.success += shard.success.len()
                + shard.detailed.len()
                + shard.timed.len()
                + shard.revoking.len();
            counts.failed += shard.failed.len();
            counts.revoking += shard.revoking.len();
        }
        counts
    }

    fn kept_limit(&self) -> usize {
        self.kept_limit
    }

    fn visit(&self, phases: &[Phase], visit: &mut dyn FnMut(&mut Vec<K>)) {
        let mut batch = Vec::new();
        for shard in self.shards.iter() {
            {
                let shard = sync::read(&shard.0);
                for &phase in phases {
                    shard.each_key(phase, |key| batch.push(key.clone()));
                }
            }
            // The visitor runs with no lock held.
            if !batch.is_empty() {
                visit(&mut batch);
                batch.clear();
            }
        }
    }

    fn page(
        &self,
        phases: &[Phase],
        after: Option<(usize, u64)>,
        limit: usize,
    ) -> (Vec<K>, Option<(usize, u64)>) {
        let limit = limit.max(1);
        let mut out: Vec<K> = Vec::with_capacity(limit);
        let (first, mut above) = match after {
            Some((shard, hash)) => (shard, Some(hash)),
            None => (0, None),
        };
        for s in first..SHARDS {
            let need = limit - out.len();
            let shard = sync::read(&self.shards[s].0);
            let mut found: Vec<(u64, &K)> = Vec::new();
            for &phase in phases {
                shard.each_key(phase, |key| {
                    let hash = self.hasher.hash_one(key);
                    if above.is_none_or(|a| hash > a) {
                        found.push((hash, key));
                    }
                });
            }
            if found.len() > need {
                // The `need` lowest hashes, and any that tie with the last of them, so
                // that the next page can start strictly after a hash.
                found.select_nth_unstable_by_key(need - 1, |e| e.0);
                let cut = found[need - 1].0;
                found.retain(|e| e.0 <= cut);
            }
            found.sort_unstable_by_key(|e| e.0);
            let last = found.last().map(|e| e.0);
            out.extend(found.iter().map(|e| e.1.clone()));
            drop(shard);
            if out.len() >= limit {
                // This shard gave ids, so `last` is known.
                return (out, last.map(|last| (s, last)));
            }
            above = None;
        }
        (out, None)
    }

    fn subscribe(&self) -> crate::events::TransitionStream<K> {
        self.events.subscribe()
    }

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
        assert_eq!(std::mem::size_of::<Running<u64>>(), 24);
    }

    #[test]
    fn a_stale_token_ends_nothing() {
        let store = store();
        let hash = store.hash(&1u64);
        let first = store.launch(hash, 1, false, false).unwrap();
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
        let again = store.launch(hash, 1, false, false).unwrap();
        assert!(again.token > revoke, "tokens increase across revokes");
        assert_eq!(again.attempts, 1);
    }
}
