//! The in-memory store: a fixed number of shards, each a lock over one small hash table
//! per phase.
//!
//! Why one table per phase rather than one map from id to phase:
//! - a record costs only its key (no phase byte, no padding): for `u64` ids a slot is 9
//!   bytes instead of 17;
//! - all ids in one state are found by walking that state's tables, whose size follows
//!   the number of ids in that state, not the number of records;
//! - a transition moves the key from one table to another under the shard's write lock,
//!   so readers (who take the read lock) never see an id in two phases or in none.
//!
//! An id always lives in the shard chosen by its hash, so every operation on one id
//! takes exactly one lock, and no code path ever holds two shard locks except
//! [`counts`](MemoryStore::counts), which takes them in index order.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;

use super::{StateCounts, Store};
use crate::state::{next, Op, Phase, TaskState};
use crate::sync::{self, RwLock};

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

/// Keeps each shard's lock on its own cache lines, so two cores working on neighbouring
/// shards do not invalidate each other's lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

#[derive(Debug)]
struct Shard<K> {
    working: HashTable<K>,
    success: HashTable<K>,
    failed: HashTable<K>,
    revoking: HashTable<K>,
}

impl<K> Default for Shard<K> {
    fn default() -> Self {
        Shard {
            working: HashTable::new(),
            success: HashTable::new(),
            failed: HashTable::new(),
            revoking: HashTable::new(),
        }
    }
}

impl<K> Shard<K> {
    fn table(&self, phase: Phase) -> Option<&HashTable<K>> {
        match phase {
            Phase::NotFound => None,
            Phase::Working => Some(&self.working),
            Phase::Success => Some(&self.success),
            Phase::Failed => Some(&self.failed),
            Phase::Revoking => Some(&self.revoking),
        }
    }

    fn table_mut(&mut self, phase: Phase) -> Option<&mut HashTable<K>> {
        match phase {
            Phase::NotFound => None,
            Phase::Working => Some(&mut self.working),
            Phase::Success => Some(&mut self.success),
            Phase::Failed => Some(&mut self.failed),
            Phase::Revoking => Some(&mut self.revoking),
        }
    }

    fn contains<Q>(table: &HashTable<K>, hash: u64, id: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        // An empty table is skipped without touching its (shared, static) control bytes.
        !table.is_empty() && table.find(hash, |k| k.borrow() == id).is_some()
    }

    /// The phase of an id. Success is looked at first (the common hit in a long-running
    /// service), then Failed, Working and Revoking; a miss looks at all four.
    fn phase<Q>(&self, hash: u64, id: &Q) -> Phase
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        for phase in [
            Phase::Success,
            Phase::Failed,
            Phase::Working,
            Phase::Revoking,
        ] {
            if let Some(table) = self.table(phase) {
                if Self::contains(table, hash, id) {
                    return phase;
                }
            }
        }
        Phase::NotFound
    }
}

/// The hasher: foldhash, seeded at random per store (so keys chosen by an attacker
/// cannot be aimed at one bucket across processes). Under loom the seed is fixed, since
/// a model must make the same lock choices in every explored execution.
#[cfg(not(atr_loom))]
type Hasher = foldhash::fast::RandomState;
#[cfg(atr_loom)]
type Hasher = foldhash::fast::FixedState;

/// The default store. See the module docs for its layout.
pub(crate) struct MemoryStore<K> {
    hasher: Hasher,
    shards: Box<[Padded<RwLock<Shard<K>>>]>,
}

impl<K> std::fmt::Debug for MemoryStore<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash> MemoryStore<K> {
    pub(crate) fn new() -> Self {
        MemoryStore {
            hasher: Hasher::default(),
            shards: (0..SHARDS)
                .map(|_| Padded(RwLock::new(Shard::default())))
                .collect(),
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

    fn maybe_shrink(&self, table: &mut HashTable<K>) {
        let capacity = table.capacity();
        if capacity >= SHRINK_MIN_CAPACITY && table.len() * SHRINK_FACTOR < capacity {
            table.shrink_to(table.len() * 2, |k| self.hasher.hash_one(k));
        }
    }

    /// Takes the key of `id` out of `from`'s table (`None` for NotFound, which has none).
    fn remove_from<Q>(&self, shard: &mut Shard<K>, from: Phase, hash: u64, id: &Q) -> Option<K>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let table = shard.table_mut(from)?;
        let (key, _) = table
            .find_entry(hash, |k| k.borrow() == id)
            .ok()
            .expect("the phase was read under the same lock")
            .remove();
        self.maybe_shrink(table);
        Some(key)
    }

    /// Puts a key into `to`'s table (NotFound keeps nothing: the key is dropped).
    fn insert_into(&self, shard: &mut Shard<K>, to: Phase, hash: u64, key: K) {
        if let Some(table) = shard.table_mut(to) {
            table.insert_unique(hash, key, |k| self.hasher.hash_one(k));
        }
    }
}

impl<K> Store<K> for MemoryStore<K>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
{
    fn hash<Q: Hash + ?Sized>(&self, id: &Q) -> u64 {
        self.hasher.hash_one(id)
    }

    fn launch(&self, hash: u64, id: K) -> Result<(), Phase> {
        let mut shard = sync::write(self.shard(hash));
        let current = shard.phase(hash, &id);
        let to = next(current, Op::Launch)?;
        // A relaunch of a Failed id keeps the stored key and drops the new one.
        let key = self
            .remove_from(&mut shard, current, hash, &id)
            .unwrap_or(id);
        self.insert_into(&mut shard, to, hash, key);
        Ok(())
    }

    fn apply<Q>(&self, hash: u64, id: &Q, op: Op) -> Result<Phase, Phase>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = sync::write(self.shard(hash));
        let current = shard.phase(hash, id);
        let to = next(current, op)?;
        let key = self
            .remove_from(&mut shard, current, hash, id)
            .expect("only Launch creates a record, and Launch does not come here");
        self.insert_into(&mut shard, to, hash, key);
        Ok(to)
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
        if Shard::contains(&shard.success, hash, id) || Shard::contains(&shard.revoking, hash, id) {
            TaskState::Success
        } else if Shard::contains(&shard.failed, hash, id) {
            TaskState::Failed
        } else {
            TaskState::Working
        }
    }

    fn counts(&self) -> StateCounts {
        // All read locks are held together so that the four numbers describe one
        // instant; they are taken in index order, and no other path holds two.
        let guards: Vec<_> = self.shards.iter().map(|s| sync::read(&s.0)).collect();
        let mut counts = StateCounts::default();
        for shard in &guards {
            counts.working += shard.working.len();
            counts.success += shard.success.len() + shard.revoking.len();
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
                    if let Some(table) = shard.table(phase) {
                        batch.extend(table.iter().cloned());
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
