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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hashbrown::HashTable;

use super::{Launched, Outcome, Refused, StateCounts, Store};
use crate::cell::TaskCell;
use crate::events::Events;
use crate::observe::Observer;
use crate::options::{Retention, SuccessExpiry};
use crate::state::{next, Op, Phase, TaskState};
use crate::status::{FailureReason, Settled, TaskStatus, Transition};
use crate::sync::{self, Arc, RwLock};

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

keyed_by_field!(DetailsOf, Running, FailedRec, RevokingRec, Timed);

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

/// An expiry-queue entry: the record with this hash and sequence number (unique in the
/// shard) finished at `at_ms` (milliseconds since the store's epoch). Entries are in
/// finishing order. An entry whose record left meanwhile (relaunched, revoked) is
/// stale: it is skipped when it reaches the front, and dropped by compaction.
#[derive(Debug, Clone, Copy)]
struct Queued {
    hash: u64,
    seq: u64,
    at_ms: u64,
}

/// A queue is compacted when it holds this many more entries than twice its live ones.
const QUEUE_SLACK: usize = 64;

/// Expiry removes at most this many queue entries per shard-lock hold, so a query
/// never waits behind a long sweep.
pub(crate) const SWEEP_BATCH: usize = 64;

/// The store's retention state, present only when retention is configured.
#[derive(Debug)]
struct Expiry {
    failed_ttl_ms: Option<u64>,
    success_ttl_ms: Option<u64>,
    forget_success: bool,
    cap: Option<usize>,
    /// Successes go to the `timed` tables with a sequence number and an entry in
    /// their shard's queue (a TTL or the cap applies to them).
    queue_success: bool,
    /// Failures get a sequence number and a queue entry (a TTL or the cap applies).
    queue_failed: bool,
    /// Per shard, when the oldest entry of each queue finished, so that the sweeper
    /// skips shards with nothing due and the cap finds the oldest record of the whole
    /// store without locking every shard. Written under the shard's lock.
    fronts: Box<[Fronts]>,
    epoch: tokio::time::Instant,
    /// With a cap: the records in the `timed` tables plus the queued `Failed` records,
    /// on a line of its own (finishes on every core update it).
    finished: Padded<AtomicUsize>,
    /// With a cap: the sequence numbers, taken from one counter for the whole store
    /// so that they order finishes across shards (without a cap each shard numbers
    /// its own records).
    ticket: Padded<AtomicU64>,
    /// Whether the background sweeper was started.
    sweeper: AtomicBool,
    /// The sweeper's period, `None` without a TTL (see `tick_of`).
    tick: Option<Duration>,
}

/// The oldest entry of a shard's success queue and of its failure queue: when it
/// finished (ms since the epoch) and its sequence number; `u64::MAX` when the queue is
/// empty.
#[derive(Debug)]
struct Fronts {
    success_ms: AtomicU64,
    failed_ms: AtomicU64,
    success_seq: AtomicU64,
    failed_seq: AtomicU64,
}

impl Expiry {
    fn new(r: Retention) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (failed_ttl_ms, success_ttl_ms) = (r.failed_ttl.map(ms), r.success_ttl.map(ms));
        Expiry {
            failed_ttl_ms,
            success_ttl_ms,
            tick: Self::tick_of(failed_ttl_ms, success_ttl_ms),
            forget_success: r.success_expiry == SuccessExpiry::Forget,
            cap: r.max_finished,
            queue_success: r.success_ttl.is_some() || r.max_finished.is_some(),
            queue_failed: r.failed_ttl.is_some() || r.max_finished.is_some(),
            fronts: (0..SHARDS)
                .map(|_| Fronts {
                    success_ms: AtomicU64::new(u64::MAX),
                    failed_ms: AtomicU64::new(u64::MAX),
                    success_seq: AtomicU64::new(u64::MAX),
                    failed_seq: AtomicU64::new(u64::MAX),
                })
                .collect(),
            epoch: tokio::time::Instant::now(),
            finished: Padded(AtomicUsize::new(0)),
            ticket: Padded(AtomicU64::new(1)),
            sweeper: AtomicBool::new(false),
        }
    }

    /// Milliseconds since the epoch, rounded down: the clock a sweep compares with.
    fn now_ms(&self) -> u64 {
        let since = tokio::time::Instant::now().saturating_duration_since(self.epoch);
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }

    /// Milliseconds since the epoch, rounded up: when a record finished. With `now_ms`
    /// rounded down, a record is never expired before its full TTL.
    fn finished_ms(&self) -> u64 {
        let since = tokio::time::Instant::now().saturating_duration_since(self.epoch);
        u64::try_from(since.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }

    /// The sweeper's period: a sixteenth of the shortest TTL, within 1 ms ..= 1 s;
    /// `None` without a TTL.
    fn tick_of(failed_ttl_ms: Option<u64>, success_ttl_ms: Option<u64>) -> Option<Duration> {
        let shortest = match (failed_ttl_ms, success_ttl_ms) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return None,
        };
        Some(Duration::from_millis((shortest / 16).clamp(1, 1000)))
    }

    /// A record joined what the cap counts (nothing without a cap).
    fn count_in(&self) {
        if self.cap.is_some() {
            self.finished.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A record left what the cap counts (nothing without a cap).
    fn count_out(&self) {
        if self.cap.is_some() {
            self.finished.0.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn expired(at_ms: u64, ttl_ms: Option<u64>, now_ms: u64) -> bool {
        ttl_ms.is_some_and(|ttl| at_ms.saturating_add(ttl) <= now_ms)
    }
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

/// A `Working` record. Kept small (24 bytes for `u64` ids): a burst of launches can
/// fill the working tables faster than tasks finish, and every byte here is memory
/// traffic on the launch path (8 more bytes cost about 3% of the lifecycle rate).
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
    /// `Success` records kept with no expiry, and tombstones.
    success: HashTable<Done<K>>,
    /// `Success` records that will expire (empty unless retention is on).
    timed: HashTable<Timed<K>>,
    failed: HashTable<FailedRec<K>>,
    revoking: HashTable<RevokingRec<K>>,
    /// Details of `Success` records, when tracked.
    details: HashTable<DetailsOf<K>>,
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
            success: HashTable::new(),
            failed: HashTable::new(),
            revoking: HashTable::new(),
            details: HashTable::new(),
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
    /// The phase of an id. Success is looked at first (the common hit in a long-running
    /// service), then Failed, Working and Revoking; a miss looks at all four.
    fn phase<Q>(&self, hash: u64, id: &Q) -> Phase
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        if find(&self.success, hash, id).is_some() || find(&self.timed, hash, id).is_some() {
            Phase::Success
        } else if find(&self.failed, hash, id).is_some() {
            Phase::Failed
        } else if find(&self.working, hash, id).is_some() {
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
    events: Events<K>,
    /// Set by [`close`](Store::close); read by launches under their shard lock.
    closed: AtomicBool,
    /// Retention, when configured.
    expiry: Option<Box<Expiry>>,
    /// Told of every transition by [`emit`](Self::emit); zero-sized without the
    /// `tracing` and `metrics` features.
    observer: Observer<K>,
}

impl<K> MemoryStore<K> {
    /// The sweeper task ended while the store lives on (its runtime shut down): the
    /// next launch starts another.
    pub(crate) fn sweeper_stopped(&self) {
        if let Some(e) = self.expiry.as_deref() {
            e.sweeper.store(false, Ordering::Release);
        }
    }
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
        observer: Observer<K>,
    ) -> Self {
        MemoryStore {
            hasher: Hasher::default(),
            shards: (0..SHARDS)
                .map(|_| Padded(RwLock::new(Shard::default())))
                .collect(),
            track_details,
            events: Events::new(event_capacity),
            closed: AtomicBool::new(false),
            expiry: retention.is_on().then(|| Box::new(Expiry::new(retention))),
            observer,
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

    fn put<T: Keyed<K>>(&self, table: &mut HashTable<T>, hash: u64, record: T) {
        table.insert_unique(hash, record, |r| self.hasher.hash_one(r.key()));
    }

    /// Records a success: as a timed record (with a sequence number and an entry in
    /// the shard's queue) when retention applies to successes and `plain` is false,
    /// otherwise as a plain record. With a cap, the caller must call
    /// [`enforce_cap`](Self::enforce_cap) once the shard lock is released.
    fn put_success(
        &self,
        shard: &mut Shard<K>,
        hash: u64,
        key: K,
        details: Option<Details>,
        plain: bool,
    ) {
        if let Some(details) = details {
            let k = key.clone();
            self.put(&mut shard.details, hash, DetailsOf { key: k, details });
        }
        match self.expiry.as_deref() {
            Some(e) if e.queue_success && !plain => {
                let seq = Self::next_seq(shard, e);
                self.put(&mut shard.timed, hash, Timed { key, seq });
                let at_ms = e.finished_ms();
                shard.success_q.push_back(Queued { hash, seq, at_ms });
                self.queued(shard, e, hash);
            }
            _ => self.put(&mut shard.success, hash, Done(key)),
        }
    }

    /// Records a failure, with a sequence number and a queue entry when retention
    /// applies to failures (then, with a cap, see [`put_success`](Self::put_success)).
    fn put_failed(&self, shard: &mut Shard<K>, hash: u64, mut record: FailedRec<K>) {
        match self.expiry.as_deref() {
            Some(e) if e.queue_failed => {
                record.seq = Self::next_seq(shard, e);
                let seq = record.seq;
                self.put(&mut shard.failed, hash, record);
                let at_ms = e.finished_ms();
                shard.failed_q.push_back(Queued { hash, seq, at_ms });
                self.queued(shard, e, hash);
            }
            _ => self.put(&mut shard.failed, hash, record),
        }
    }

    /// After a record was queued: count it (with a cap), compact the shard's queues if
    /// stale entries pile up, and publish the queues' fronts.
    fn queued(&self, shard: &mut Shard<K>, e: &Expiry, hash: u64) {
        e.count_in();
        let Shard {
            timed,
            failed,
            success_q,
            failed_q,
            ..
        } = shard;
        // Stale entries (records relaunched or revoked before they expired) would
        // otherwise stay until they reach the front. Compacting when they outnumber
        // the live ones keeps a queue within twice its records plus a constant, at
        // amortised O(1) per record (one pass over one shard's queue, under its lock).
        if success_q.len() > 2 * timed.len() + QUEUE_SLACK {
            success_q.retain(|q| timed.find(q.hash, |r| r.seq == q.seq).is_some());
        }
        if failed_q.len() > 2 * failed.len() + QUEUE_SLACK {
            failed_q.retain(|q| failed.find(q.hash, |r| r.seq == q.seq).is_some());
        }
        Self::publish_fronts(e, Self::shard_index(hash), shard);
    }

    /// A sequence number for a record being queued (never 0, unique in the shard,
    /// increasing in finishing order; across shards too with a cap).
    fn next_seq(shard: &mut Shard<K>, e: &Expiry) -> u64 {
        if e.cap.is_some() {
            e.ticket.0.fetch_add(1, Ordering::Relaxed)
        } else {
            let seq = shard.next_seq;
            shard.next_seq += 1;
            seq
        }
    }

    /// Publishes the oldest entries of the shard's queues.
    fn publish_fronts(e: &Expiry, index: usize, shard: &Shard<K>) {
        let fronts = &e.fronts[index];
        for (q, ms, seq) in [
            (&shard.success_q, &fronts.success_ms, &fronts.success_seq),
            (&shard.failed_q, &fronts.failed_ms, &fronts.failed_seq),
        ] {
            let (at, n) = q.front().map_or((u64::MAX, u64::MAX), |q| (q.at_ms, q.seq));
            ms.store(at, Ordering::Relaxed);
            seq.store(n, Ordering::Relaxed);
        }
    }

    /// Gives memory back after a queue drained, like the tables do.
    fn shrink_queues(shard: &mut Shard<K>) {
        for q in [&mut shard.success_q, &mut shard.failed_q] {
            if q.capacity() >= SHRINK_MIN_CAPACITY && q.len() * SHRINK_FACTOR < q.capacity() {
                q.shrink_to(q.len() * 2);
            }
        }
    }

    /// With a cap, and while the store holds more finished records than the cap,
    /// expires the oldest finished records of the whole store. Called with no shard
    /// lock held; takes one shard lock at a time.
    ///
    /// Each eviction is claimed first by decrementing the count (only while it is
    /// above the cap), so two finishing tasks never evict more than the excess. The
    /// oldest record is found from the published queue fronts: with a cap, sequence
    /// numbers come from one counter, in finishing order.
    fn enforce_cap(&self) {
        let Some(e) = self.expiry.as_deref() else {
            return;
        };
        let Some(cap) = e.cap else {
            return;
        };
        let claim = |n: usize| (n > cap).then(|| n - 1);
        while e
            .finished
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, claim)
            .is_ok()
        {
            if !self.evict_oldest(e) {
                // Nothing to evict now (the records over the cap are being added and
                // their own finish will evict): give the claim back.
                e.finished.0.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }

    /// Expires the oldest finished record of the store, already taken off the count.
    /// Returns `false` if no shard has one.
    fn evict_oldest(&self, e: &Expiry) -> bool {
        // The shard with the lowest published front holds the oldest record only if
        // that front is live: a stale front (its record left by a relaunch or a
        // revoke) is dropped and the fronts are looked at again, as they are when a
        // shard changed before its lock was taken (another eviction, a sweep). Each
        // retry either dropped stale entries of one shard or saw another thread's
        // change; the bound only keeps a pathological race from spinning.
        for _ in 0..4 * SHARDS {
            let oldest = e
                .fronts
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let seq = f
                        .success_seq
                        .load(Ordering::Relaxed)
                        .min(f.failed_seq.load(Ordering::Relaxed));
                    (seq, i)
                })
                .min();
            let Some((seq, index)) = oldest.filter(|&(seq, _)| seq != u64::MAX) else {
                return false;
            };
            let mut shard = sync::write(&self.shards[index].0);
            Self::drop_stale_fronts(&mut shard);
            let evicted = Self::front_seq(&shard) == seq && self.evict_front(&mut shard, e);
            Self::shrink_queues(&mut shard);
            Self::publish_fronts(e, index, &shard);
            if evicted {
                return true;
            }
        }
        false
    }

    /// Pops the entries at the fronts of the shard's queues whose records are gone, so
    /// that each front names a live record.
    fn drop_stale_fronts(shard: &mut Shard<K>) {
        while let Some(q) = shard.success_q.front() {
            if shard.timed.find(q.hash, |r| r.seq == q.seq).is_some() {
                break;
            }
            shard.success_q.pop_front();
        }
        while let Some(q) = shard.failed_q.front() {
            if shard.failed.find(q.hash, |r| r.seq == q.seq).is_some() {
                break;
            }
            shard.failed_q.pop_front();
        }
    }

    /// The lower sequence number of the shard's two queue fronts (`u64::MAX` if both
    /// are empty), as [`publish_fronts`](Self::publish_fronts) publishes it.
    fn front_seq(shard: &Shard<K>) -> u64 {
        [&shard.success_q, &shard.failed_q]
            .iter()
            .filter_map(|q| q.front().map(|q| q.seq))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Expires the older of the shard's two queue fronts, which
    /// [`drop_stale_fronts`](Self::drop_stale_fronts) left live. Returns whether a
    /// record was expired (`false` only with both queues empty).
    fn evict_front(&self, shard: &mut Shard<K>, e: &Expiry) -> bool {
        let failed_first = match (shard.success_q.front(), shard.failed_q.front()) {
            (None, None) => return false,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(s), Some(f)) => f.seq < s.seq,
        };
        if failed_first {
            let q = shard.failed_q.pop_front().expect("front seen");
            self.expire_failed(shard, q, e, true)
        } else {
            let q = shard.success_q.pop_front().expect("front seen");
            self.expire_success(shard, q, e, true)
        }
    }

    /// Expires the timed success a queue entry points at, if it is still there: it
    /// becomes a tombstone, or is forgotten. Returns whether it was there. `claimed`:
    /// the cap's count was already decremented for it.
    fn expire_success(&self, shard: &mut Shard<K>, q: Queued, e: &Expiry, claimed: bool) -> bool {
        let Some(Timed { key, .. }) = self.take_where(&mut shard.timed, q.hash, |r| r.seq == q.seq)
        else {
            return false;
        };
        if !claimed {
            e.count_out();
        }
        let _ = self.take(&mut shard.details, q.hash, &key);
        if e.forget_success {
            let to = next(Phase::Success, Op::Forget).expect("Success may be forgotten");
            self.emit(&key, Phase::Success, to, None);
        } else {
            self.put(&mut shard.success, q.hash, Done(key));
        }
        true
    }

    /// Forgets the failure a queue entry points at, if it is still there.
    fn expire_failed(&self, shard: &mut Shard<K>, q: Queued, e: &Expiry, claimed: bool) -> bool {
        let Some(failed) = self.take_where(&mut shard.failed, q.hash, |r| r.seq == q.seq) else {
            return false;
        };
        if !claimed {
            e.count_out();
        }
        let to = next(Phase::Failed, Op::Forget).expect("Failed may be forgotten");
        self.emit(&failed.key, Phase::Failed, to, None);
        true
    }

    /// A queued record left its table by a transition (a relaunch, a revoke): it no
    /// longer counts against the cap. Its queue entry goes stale.
    fn unqueued(&self) {
        if let Some(e) = self.expiry.as_deref() {
            e.count_out();
        }
    }

    /// Whether retention needs a sweeper and none is running: one branch on a store
    /// without retention.
    pub(crate) fn sweeper_missing(&self) -> bool {
        self.expiry
            .as_deref()
            .is_some_and(|e| e.tick.is_some() && !e.sweeper.load(Ordering::Relaxed))
    }

    /// The period of the background sweeper, if one is needed and has not been
    /// started yet; the caller must start it. Returns `Some` at most once (until
    /// [`sweeper_stopped`](Self::sweeper_stopped)).
    pub(crate) fn sweeper_to_start(&self) -> Option<Duration> {
        let e = self.expiry.as_deref()?;
        let tick = e.tick?;
        if e.sweeper.load(Ordering::Relaxed) || e.sweeper.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(tick)
    }

    /// Expires, in shard `index`, up to [`SWEEP_BATCH`] queue entries whose TTL has
    /// passed, under one hold of the shard's lock. Returns how many entries it took
    /// off the queues; fewer than `SWEEP_BATCH` means the shard is done for now. A
    /// shard with nothing due (read from its published fronts) is not locked at all.
    pub(crate) fn sweep_shard(&self, index: usize) -> usize {
        let Some(e) = self.expiry.as_deref() else {
            return 0;
        };
        let now_ms = e.now_ms();
        let fronts = &e.fronts[index];
        let due = Expiry::expired(
            fronts.failed_ms.load(Ordering::Relaxed),
            e.failed_ttl_ms,
            now_ms,
        ) || Expiry::expired(
            fronts.success_ms.load(Ordering::Relaxed),
            e.success_ttl_ms,
            now_ms,
        );
        if !due {
            return 0;
        }
        let mut shard = sync::write(&self.shards[index].0);
        let mut taken = 0;
        while taken < SWEEP_BATCH {
            if let Some(q) = shard.failed_q.front().copied() {
                if Expiry::expired(q.at_ms, e.failed_ttl_ms, now_ms) {
                    shard.failed_q.pop_front();
                    self.expire_failed(&mut shard, q, e, false);
                    taken += 1;
                    continue;
                }
            }
            if let Some(q) = shard.success_q.front().copied() {
                if Expiry::expired(q.at_ms, e.success_ttl_ms, now_ms) {
                    shard.success_q.pop_front();
                    self.expire_success(&mut shard, q, e, false);
                    taken += 1;
                    continue;
                }
            }
            break;
        }
        Self::shrink_queues(&mut shard);
        Self::publish_fronts(e, index, &shard);
        taken
    }

    /// The number of shards, for the sweeper.
    pub(crate) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Publishes a transition to subscribers, if there are any (one relaxed load
    /// otherwise), and moves the observer's phase gauges. Called under the shard lock,
    /// so the events of one id come in the order of its transitions.
    fn emit(&self, key: &K, from: Phase, to: Phase, failure: Option<FailureReason>) {
        self.observer.transition(from, to);
        if self.events.has_subscribers() {
            self.events.send(Transition {
                id: key.clone(),
                from,
                to,
                failure,
            });
        }
    }

    pub(crate) fn events(&self) -> &Events<K> {
        &self.events
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
                shard.working.len(),
                shard.success.len() + shard.timed.len(),
                shard.failed.len(),
                shard.revoking.len(),
            ];
            for (count, len) in counts.iter_mut().zip(lens) {
                *count += len;
            }
        }
        self.observer.forget(counts);
    }
}

impl<K> Store<K> for MemoryStore<K>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
{
    fn hash<Q: Hash + ?Sized>(&self, id: &Q) -> u64 {
        self.hasher.hash_one(id)
    }

    fn observer(&self) -> &Observer<K> {
        &self.observer
    }

    fn launch(&self, hash: u64, id: K, with_cell: bool) -> Result<Launched, Refused> {
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
        self.put(
            &mut shard.working,
            hash,
            Running {
                key,
                attempts,
                token: token_bits(token),
                cell: cell.clone(),
            },
        );
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
        let running = find_mut(&mut shard.working, hash, id)?;
        // A cancel made before now is in the cell already: `cancel` marks it under
        // this lock.
        Some(running.cell.get_or_insert_with(TaskCell::new).clone())
    }

    fn finish<Q>(
        &self,
        hash: u64,
        id: &Q,
        token: u64,
        outcome: Outcome,
    ) -> Option<(Option<Arc<TaskCell>>, Settled)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = sync::write(self.shard(hash));
        // Only the attempt holding the token may end it; its guard does, so it is there.
        let running = self.take_where(&mut shard.working, hash, |r| {
            r.token == token_bits(token) && r.key.borrow() == id
        })?;
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
        let settled = Settled { phase: to, failure };
        Some((running.cell, settled))
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
        let (key, plain) = match self.take(&mut shard.success, hash, id) {
            Some(Done(key)) => (key, true),
            None => {
                let timed = self
                    .take(&mut shard.timed, hash, id)
                    .expect("the phase was read under the same lock");
                self.unqueued();
                (timed.key, false)
            }
        };
        let details = self.take(&mut shard.details, hash, id).map(|d| d.details);
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
            };
            return Some((cell, settled));
        }
        let settled = Settled {
            phase: to,
            failure: None,
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
        if find(&shard.success, hash, id).is_some()
            || find(&shard.timed, hash, id).is_some()
            || find(&shard.revoking, hash, id).is_some()
        {
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
        };
        if find(&shard.success, hash, id).is_some() || find(&shard.timed, hash, id).is_some() {
            let d = find(&shard.details, hash, id).map(|d| d.details);
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
            status(Phase::Working, Some(r.attempts), None, since)
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
            Settled { phase, failure }
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
        let slot = if let Some(r) = find_mut(&mut shard.working, hash, id) {
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
            let running = find_mut(&mut shard.working, hash, id)?;
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
            counts.working += shard.working.len();
            counts.success += shard.success.len() + shard.timed.len() + shard.revoking.len();
            counts.failed += shard.failed.len();
            counts.revoking += shard.revoking.len();
        }
        counts
    }

    fn visit(&self, phases: &[Phase], visit: &mut dyn FnMut(&[K])) {
        let mut batch = Vec::new();
        for shard in self.shards.iter() {
            {
                let shard = sync::read(&shard.0);
                for &phase in phases {
                    match phase {
                        Phase::Working => batch.extend(shard.working.iter().map(|r| r.key.clone())),
                        Phase::Success => {
                            batch.extend(shard.success.iter().map(|r| r.0.clone()));
                            batch.extend(shard.timed.iter().map(|r| r.key.clone()));
                        }
                        Phase::Failed => batch.extend(shard.failed.iter().map(|r| r.key.clone())),
                        Phase::Revoking => {
                            batch.extend(shard.revoking.iter().map(|r| r.key.clone()))
                        }
                        Phase::NotFound => {}
                    }
                }
            }
            // The user's code runs with no lock held, so it may call the recorder.
            if !batch.is_empty() {
                visit(&batch);
                batch.clear();
            }
        }
    }
}

#[cfg(all(test, not(atr_loom)))]
mod tests {
    use super::*;

    fn store() -> MemoryStore<u64> {
        MemoryStore::new(false, 16, Retention::default(), Observer::new(None))
    }

    #[test]
    fn a_working_record_stays_small() {
        assert_eq!(std::mem::size_of::<Running<u64>>(), 24);
    }

    #[test]
    fn a_stale_token_ends_nothing() {
        let store = store();
        let hash = store.hash(&1u64);
        let first = store.launch(hash, 1, false).unwrap();
        let ended = store.finish(hash, &1, first.token + 1, Outcome::Ok);
        assert!(
            ended.is_none(),
            "a token that does not hold the attempt is refused"
        );
        assert_eq!(store.phase(hash, &1), Phase::Working);
        let ended = store.finish(hash, &1, first.token, Outcome::Ok);
        assert_eq!(ended.map(|(_, s)| s.phase), Some(Phase::Success));

        let revoke = store.revoke_begin(hash, &1).unwrap();
        assert!(revoke > first.token);
        assert!(store.revoke_end(hash, &1, first.token, true).is_none());
        assert_eq!(store.phase(hash, &1), Phase::Revoking);
        let ended = store.revoke_end(hash, &1, revoke, true);
        assert_eq!(ended.map(|(_, s)| s.phase), Some(Phase::NotFound));
        let again = store.launch(hash, 1, false).unwrap();
        assert!(again.token > revoke, "tokens increase across revokes");
        assert_eq!(again.attempts, 1);
    }
}
