//! Reads of the in-memory store that cover every shard: the counts, the copy of all
//! ids in some phases, and paged listings.

use std::hash::{BuildHasher, Hash};

use super::{MemoryStore, SHARDS};
use crate::state::Phase;
use crate::sync;
use crate::StateCounts;

impl<K: Eq + Hash + Clone> MemoryStore<K> {
    pub(super) fn count_all(&self) -> StateCounts {
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

    pub(super) fn copy_keys(&self, phases: &[Phase], visit: &mut dyn FnMut(&mut Vec<K>)) {
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

    pub(super) fn page_of(
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
}
