//! Retention of the in-memory store: the expiry queues of each shard, the TTL sweep,
//! and the cap on finished records.

// The loom models leave the TTL sweeper out (it needs Tokio's timer).
#![cfg_attr(atr_loom, allow(dead_code))]

use std::collections::VecDeque;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hashbrown::HashTable;

use super::records::{Details, DetailsRec, FailedRec, SuccessRec, TimedRec};
use super::shard::Shard;
use super::{MemoryStore, Padded, SHARDS, SHRINK_FACTOR, SHRINK_MIN_CAPACITY};
use crate::options::{Retention, SuccessExpiry};
use crate::state::{next, Op, Phase};
use crate::sync;

/// An expiry-queue entry: the record with this hash and sequence number (unique in the
/// shard) finished at `at_ms` (milliseconds since the store's epoch). Entries are in
/// finishing order. An entry whose record left meanwhile (relaunched, revoked) is
/// stale: it is skipped when it reaches the front, and dropped by compaction.
#[derive(Debug, Clone, Copy)]
pub(super) struct ExpiryEntry {
    pub(super) hash: u64,
    pub(super) seq: u64,
    pub(super) at_ms: u64,
}

/// The two expiry queues of a shard: finished successes that will expire (in the
/// `timed` table) and queued failures. The queue bookkeeping (compaction, stale fronts,
/// the sweep, the choice of the oldest) is written once, over a line, through
/// [`Sequenced`]; only entering a queue and expiring from it differ per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Line {
    Success = 0,
    Failed = 1,
}

/// Both lines, failures first: a sweep expires due failures before due successes.
const LINES: [Line; 2] = [Line::Failed, Line::Success];

/// A record that a queue entry can point at, by its sequence number.
pub(super) trait Sequenced {
    fn seq(&self) -> u64;
}

impl<K> Sequenced for TimedRec<K> {
    fn seq(&self) -> u64 {
        self.seq
    }
}

impl<K> Sequenced for FailedRec<K> {
    fn seq(&self) -> u64 {
        self.seq
    }
}

/// Whether the record a queue entry points at is still in its table.
fn live<T: Sequenced>(table: &HashTable<T>, q: &ExpiryEntry) -> bool {
    table.find(q.hash, |r| r.seq() == q.seq).is_some()
}

/// Drops the stale entries of a queue once they outnumber the live ones (records
/// relaunched or revoked before they expired, which would otherwise stay until they
/// reach the front). This keeps a queue within twice its records plus a constant, at
/// amortised O(1) per record (one pass over one shard's queue, under its lock).
fn compact<T: Sequenced>(queue: &mut VecDeque<ExpiryEntry>, table: &HashTable<T>) {
    if queue.len() > 2 * table.len() + QUEUE_SLACK {
        queue.retain(|q| live(table, q));
    }
}

/// Pops the entries at the front of a queue whose records are gone, so that its front
/// names a live record.
fn drop_stale_front<T: Sequenced>(queue: &mut VecDeque<ExpiryEntry>, table: &HashTable<T>) {
    while queue.front().is_some_and(|q| !live(table, q)) {
        queue.pop_front();
    }
}

impl<K> Shard<K> {
    fn queue(&self, line: Line) -> &VecDeque<ExpiryEntry> {
        match line {
            Line::Success => &self.success_q,
            Line::Failed => &self.failed_q,
        }
    }

    fn queue_mut(&mut self, line: Line) -> &mut VecDeque<ExpiryEntry> {
        match line {
            Line::Success => &mut self.success_q,
            Line::Failed => &mut self.failed_q,
        }
    }
}

/// A queue is compacted when it holds this many more entries than twice its live ones.
pub(super) const QUEUE_SLACK: usize = 64;

/// Expiry removes at most this many queue entries per shard-lock hold, so a query
/// never waits behind a long sweep.
pub(crate) const SWEEP_BATCH: usize = 64;

/// The store's retention state, present only when retention is configured.
#[derive(Debug)]
pub(super) struct Expiry {
    pub(super) failed_ttl_ms: Option<u64>,
    pub(super) success_ttl_ms: Option<u64>,
    pub(super) forget_success: bool,
    pub(super) cap: Option<usize>,
    /// Successes go to the `timed` tables with a sequence number and an entry in
    /// their shard's queue (a TTL or the cap applies to them).
    pub(super) queue_success: bool,
    /// Failures get a sequence number and a queue entry (a TTL or the cap applies).
    pub(super) queue_failed: bool,
    /// Per shard, when the oldest entry of each queue finished, so that the sweeper
    /// skips shards with nothing due and the cap finds the oldest record of the whole
    /// store without locking every shard. Written under the shard's lock.
    pub(super) fronts: Box<[Fronts]>,
    pub(super) epoch: tokio::time::Instant,
    /// With a cap: the records in the `timed` tables plus the queued `Failed` records,
    /// on a line of its own (finishes on every core update it).
    pub(super) finished: Padded<AtomicUsize>,
    /// With a cap: the sequence numbers, taken from one counter for the whole store
    /// so that they order finishes across shards (without a cap each shard numbers
    /// its own records).
    pub(super) ticket: Padded<AtomicU64>,
    /// Whether the background sweeper was started.
    pub(super) sweeper: AtomicBool,
    /// The sweeper's period, `None` without a TTL (see `tick_of`) or with the
    /// background sweeper turned off.
    pub(super) tick: Option<Duration>,
    /// Whether a TTL applies to anything: then launches and finishes expire what is
    /// due in their shard.
    pub(super) has_ttl: bool,
}

/// The oldest entry of each of a shard's queues, indexed by [`Line`]: when it
/// finished (ms since the epoch) and its sequence number; `u64::MAX` when the queue is
/// empty.
#[derive(Debug)]
pub(super) struct Fronts {
    pub(super) ms: [AtomicU64; 2],
    pub(super) seq: [AtomicU64; 2],
}

impl Expiry {
    pub(super) fn new(r: Retention) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (failed_ttl_ms, success_ttl_ms) = (r.failed_ttl.map(ms), r.success_ttl.map(ms));
        Expiry {
            failed_ttl_ms,
            success_ttl_ms,
            tick: Self::tick_of(failed_ttl_ms, success_ttl_ms).filter(|_| !r.no_background_sweep),
            has_ttl: failed_ttl_ms.is_some() || success_ttl_ms.is_some(),
            forget_success: r.success_expiry == SuccessExpiry::Forget,
            cap: r.max_finished,
            queue_success: r.success_ttl.is_some() || r.max_finished.is_some(),
            queue_failed: r.failed_ttl.is_some() || r.max_finished.is_some(),
            fronts: (0..SHARDS)
                .map(|_| Fronts {
                    ms: [AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)],
                    seq: [AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)],
                })
                .collect(),
            epoch: tokio::time::Instant::now(),
            finished: Padded(AtomicUsize::new(0)),
            ticket: Padded(AtomicU64::new(1)),
            sweeper: AtomicBool::new(false),
        }
    }

    /// Milliseconds since the epoch, rounded down: the clock a sweep compares with.
    pub(super) fn now_ms(&self) -> u64 {
        let since = tokio::time::Instant::now().saturating_duration_since(self.epoch);
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }

    /// Milliseconds since the epoch, rounded up: when a record finished. With `now_ms`
    /// rounded down, a record is never expired before its full TTL.
    pub(super) fn finished_ms(&self) -> u64 {
        let since = tokio::time::Instant::now().saturating_duration_since(self.epoch);
        u64::try_from(since.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }

    /// The sweeper's period: a sixteenth of the shortest TTL, within 1 ms ..= 1 s;
    /// `None` without a TTL.
    pub(super) fn tick_of(
        failed_ttl_ms: Option<u64>,
        success_ttl_ms: Option<u64>,
    ) -> Option<Duration> {
        let shortest = match (failed_ttl_ms, success_ttl_ms) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return None,
        };
        Some(Duration::from_millis((shortest / 16).clamp(1, 1000)))
    }

    /// A record joined what the cap counts (nothing without a cap).
    pub(super) fn count_in(&self) {
        if self.cap.is_some() {
            self.finished.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A record left what the cap counts (nothing without a cap).
    pub(super) fn count_out(&self) {
        if self.cap.is_some() {
            self.finished.0.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(super) fn expired(at_ms: u64, ttl_ms: Option<u64>, now_ms: u64) -> bool {
        ttl_ms.is_some_and(|ttl| at_ms.saturating_add(ttl) <= now_ms)
    }

    fn ttl_ms(&self, line: Line) -> Option<u64> {
        match line {
            Line::Success => self.success_ttl_ms,
            Line::Failed => self.failed_ttl_ms,
        }
    }
}

impl<K> MemoryStore<K> {
    /// The sweeper task ended while the store lives on (its runtime shut down): the
    /// next launch starts another.
    pub(super) fn sweeper_gone(&self) {
        if let Some(e) = self.expiry.as_deref() {
            e.sweeper.store(false, Ordering::Release);
        }
    }
}

impl<K: Eq + Hash + Clone> MemoryStore<K> {
    /// Records a success: as a timed record (with a sequence number and an entry in
    /// the shard's queue) when retention applies to successes and `untimed` is false,
    /// otherwise as a plain record. With a cap, the caller must call
    /// [`enforce_cap`](Self::enforce_cap) once the shard lock is released.
    ///
    /// Inlined: without retention it is one branch and one insert.
    #[inline(always)]
    pub(super) fn put_success(
        &self,
        shard: &mut Shard<K>,
        hash: u64,
        key: K,
        details: Option<Details>,
        untimed: bool,
    ) {
        match self.expiry.as_deref() {
            Some(e) if e.queue_success && !untimed => self.put_timed(shard, e, hash, key, details),
            // Kept with no expiry: one entry, with its details when there are any.
            _ => match details {
                Some(details) => self.put(&mut shard.detailed, hash, DetailsRec { key, details }),
                None => self.put(&mut shard.success, hash, SuccessRec(key)),
            },
        }
    }

    /// Records a success that will expire: see [`put_success`](Self::put_success).
    #[inline(never)]
    fn put_timed(
        &self,
        shard: &mut Shard<K>,
        e: &Expiry,
        hash: u64,
        key: K,
        details: Option<Details>,
    ) {
        if let Some(details) = details {
            let k = key.clone();
            self.put(&mut shard.details, hash, DetailsRec { key: k, details });
        }
        let seq = Self::next_seq(shard, e);
        self.put(&mut shard.timed, hash, TimedRec { key, seq });
        let at_ms = e.finished_ms();
        shard.success_q.push_back(ExpiryEntry { hash, seq, at_ms });
        self.entered_queue(shard, e, hash);
    }

    /// Records a failure, with a sequence number and a queue entry when retention
    /// applies to failures (then, with a cap, see [`put_success`](Self::put_success)).
    pub(super) fn put_failed(&self, shard: &mut Shard<K>, hash: u64, mut record: FailedRec<K>) {
        match self.expiry.as_deref() {
            Some(e) if e.queue_failed => {
                record.seq = Self::next_seq(shard, e);
                let seq = record.seq;
                self.put(&mut shard.failed, hash, record);
                let at_ms = e.finished_ms();
                shard.failed_q.push_back(ExpiryEntry { hash, seq, at_ms });
                self.entered_queue(shard, e, hash);
            }
            _ => self.put(&mut shard.failed, hash, record),
        }
    }

    /// After a record was queued: count it (with a cap), compact the shard's queues if
    /// stale entries pile up, and publish the queues' fronts.
    pub(super) fn entered_queue(&self, shard: &mut Shard<K>, e: &Expiry, hash: u64) {
        e.count_in();
        compact(&mut shard.success_q, &shard.timed);
        compact(&mut shard.failed_q, &shard.failed);
        Self::publish_fronts(e, Self::shard_index(hash), shard);
    }

    /// A sequence number for a record being queued (never 0, unique in the shard,
    /// increasing in finishing order; across shards too with a cap).
    pub(super) fn next_seq(shard: &mut Shard<K>, e: &Expiry) -> u64 {
        if e.cap.is_some() {
            e.ticket.0.fetch_add(1, Ordering::Relaxed)
        } else {
            let seq = shard.next_seq;
            shard.next_seq += 1;
            seq
        }
    }

    /// Publishes the oldest entries of the shard's queues.
    pub(super) fn publish_fronts(e: &Expiry, index: usize, shard: &Shard<K>) {
        let fronts = &e.fronts[index];
        for line in LINES {
            let front = shard.queue(line).front();
            let (at, n) = front.map_or((u64::MAX, u64::MAX), |q| (q.at_ms, q.seq));
            fronts.ms[line as usize].store(at, Ordering::Relaxed);
            fronts.seq[line as usize].store(n, Ordering::Relaxed);
        }
    }

    /// Gives memory back after a queue drained, like the tables do.
    pub(super) fn shrink_queues(shard: &mut Shard<K>) {
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
    ///
    /// Inlined: without a cap it is one branch.
    #[inline(always)]
    pub(super) fn enforce_cap(&self) {
        if let Some(e) = self.expiry.as_deref() {
            if let Some(cap) = e.cap {
                self.evict_over(e, cap);
            }
        }
    }

    /// Evicts while the store holds more than `cap` finished records.
    #[inline(never)]
    fn evict_over(&self, e: &Expiry, cap: usize) {
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
    pub(super) fn evict_oldest(&self, e: &Expiry) -> bool {
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
                    let [a, b] = &f.seq;
                    let seq = a.load(Ordering::Relaxed).min(b.load(Ordering::Relaxed));
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
    pub(super) fn drop_stale_fronts(shard: &mut Shard<K>) {
        drop_stale_front(&mut shard.success_q, &shard.timed);
        drop_stale_front(&mut shard.failed_q, &shard.failed);
    }

    /// The lower sequence number of the shard's two queue fronts (`u64::MAX` if both
    /// are empty), as [`publish_fronts`](Self::publish_fronts) publishes it.
    pub(super) fn front_seq(shard: &Shard<K>) -> u64 {
        LINES
            .iter()
            .filter_map(|&line| shard.queue(line).front().map(|q| q.seq))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Expires the older of the shard's two queue fronts, which
    /// [`drop_stale_fronts`](Self::drop_stale_fronts) left live. Returns whether a
    /// record was expired (`false` only with both queues empty).
    pub(super) fn evict_front(&self, shard: &mut Shard<K>, e: &Expiry) -> bool {
        let older = LINES
            .into_iter()
            .filter_map(|line| shard.queue(line).front().map(|q| (q.seq, line)))
            .min_by_key(|&(seq, _)| seq);
        let Some((_, line)) = older else {
            return false;
        };
        let q = shard.queue_mut(line).pop_front().expect("front seen");
        self.expire(shard, line, q, e, true)
    }

    /// Expires the record a queue entry of `line` points at, if it is still there.
    /// Returns whether it was there. `claimed`: the cap's count was already
    /// decremented for it.
    fn expire(
        &self,
        shard: &mut Shard<K>,
        line: Line,
        q: ExpiryEntry,
        e: &Expiry,
        claimed: bool,
    ) -> bool {
        match line {
            Line::Success => self.expire_success(shard, q, e, claimed),
            Line::Failed => self.expire_failed(shard, q, e, claimed),
        }
    }

    /// Expires the timed success a queue entry points at, if it is still there: it
    /// becomes a tombstone, or is forgotten. Returns whether it was there. `claimed`:
    /// the cap's count was already decremented for it.
    pub(super) fn expire_success(
        &self,
        shard: &mut Shard<K>,
        q: ExpiryEntry,
        e: &Expiry,
        claimed: bool,
    ) -> bool {
        let Some(TimedRec { key, .. }) =
            self.take_where(&mut shard.timed, q.hash, |r| r.seq == q.seq)
        else {
            return false;
        };
        if !claimed {
            e.count_out();
        }
        let _ = self.take(&mut shard.details, q.hash, &key);
        self.unkeep(shard, q.hash, &key);
        if e.forget_success {
            let to = next(Phase::Success, Op::Forget).expect("Success may be forgotten");
            self.emit(&key, Phase::Success, to, None);
        } else {
            self.put(&mut shard.success, q.hash, SuccessRec(key));
        }
        true
    }

    /// Forgets the failure a queue entry points at, if it is still there.
    pub(super) fn expire_failed(
        &self,
        shard: &mut Shard<K>,
        q: ExpiryEntry,
        e: &Expiry,
        claimed: bool,
    ) -> bool {
        let Some(failed) = self.take_where(&mut shard.failed, q.hash, |r| r.seq == q.seq) else {
            return false;
        };
        if !claimed {
            e.count_out();
        }
        self.unkeep(shard, q.hash, &failed.key);
        let to = next(Phase::Failed, Op::Forget).expect("Failed may be forgotten");
        self.emit(&failed.key, Phase::Failed, to, None);
        true
    }

    /// A queued record left its table by a transition (a relaunch, a revoke): it no
    /// longer counts against the cap. Its queue entry goes stale.
    pub(super) fn left_by_transition(&self) {
        if let Some(e) = self.expiry.as_deref() {
            e.count_out();
        }
    }

    /// Whether retention needs a sweeper and none is running: one branch on a store
    /// without retention.
    #[inline]
    pub(super) fn wants_sweeper(&self) -> bool {
        self.expiry
            .as_deref()
            .is_some_and(|e| e.tick.is_some() && !e.sweeper.load(Ordering::Relaxed))
    }

    /// The period of the background sweeper, if one is needed and has not been
    /// started yet; the caller must start it. Returns `Some` at most once (until
    /// [`sweeper_gone`](Self::sweeper_gone)).
    pub(super) fn claim_sweeper(&self) -> Option<Duration> {
        let e = self.expiry.as_deref()?;
        let tick = e.tick?;
        if e.sweeper.load(Ordering::Relaxed) || e.sweeper.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(tick)
    }

    /// Expires what is due in the shard of `hash`, if a TTL applies (one branch
    /// otherwise): what a launch or a finish does on its way. Called with no shard
    /// lock held.
    #[inline]
    pub(super) fn sweep_own_shard(&self, hash: u64) {
        if self.expiry.as_deref().is_some_and(|e| e.has_ttl) {
            self.sweep_shard(Self::shard_index(hash));
        }
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
        let due = |line: Line, at_ms: u64| Expiry::expired(at_ms, e.ttl_ms(line), now_ms);
        if !LINES
            .iter()
            .any(|&line| due(line, fronts.ms[line as usize].load(Ordering::Relaxed)))
        {
            return 0;
        }
        let mut shard = sync::write(&self.shards[index].0);
        let mut taken = 0;
        while taken < SWEEP_BATCH {
            let next = LINES.into_iter().find(|&line| {
                let front = shard.queue(line).front();
                front.is_some_and(|q| due(line, q.at_ms))
            });
            let Some(line) = next else {
                break;
            };
            let q = shard.queue_mut(line).pop_front().expect("front seen");
            self.expire(&mut shard, line, q, e, false);
            taken += 1;
        }
        Self::shrink_queues(&mut shard);
        Self::publish_fronts(e, index, &shard);
        taken
    }
}
