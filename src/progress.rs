//! Progress reports of running attempts: the rate gate both stores use, and the
//! in-memory store's reporter.

use std::hash::Hash;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::cell::TaskCell;
use crate::context::Progress;
use crate::core::Core;
use crate::store::{MemoryStore, Store};
use crate::sync::Arc;

/// How often a running attempt's progress reaches subscribers (and, on Redis, the
/// server) unless the builder says otherwise.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_millis(250);

/// Lets one report through per interval.
#[derive(Debug)]
pub(crate) struct Gate {
    interval: Duration,
    last: Mutex<Option<Instant>>,
}

impl Gate {
    pub(crate) fn new(interval: Duration) -> Gate {
        Gate {
            interval,
            last: Mutex::new(None),
        }
    }

    /// Whether a report may pass now (and if so, the interval starts again).
    pub(crate) fn open(&self) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match *last {
            Some(at) if now.saturating_duration_since(at) < self.interval => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

/// How a reporter refers to its recorder: weakly (loom's `Arc` has no weak form, so
/// the models hold it).
#[cfg(not(atr_loom))]
type Held<K> = std::sync::Weak<Core<K, MemoryStore<K>>>;
#[cfg(atr_loom)]
type Held<K> = Arc<Core<K, MemoryStore<K>>>;

#[cfg(not(atr_loom))]
fn hold<K>(core: &Arc<Core<K, MemoryStore<K>>>) -> Held<K> {
    Arc::downgrade(core)
}

#[cfg(atr_loom)]
fn hold<K>(core: &Arc<Core<K, MemoryStore<K>>>) -> Held<K> {
    core.clone()
}

#[cfg(not(atr_loom))]
fn upgrade<K>(held: &Held<K>) -> Option<Arc<Core<K, MemoryStore<K>>>> {
    held.upgrade()
}

#[cfg(atr_loom)]
fn upgrade<K>(held: &Held<K>) -> Option<Arc<Core<K, MemoryStore<K>>>> {
    Some(held.clone())
}

/// The in-memory store's reporter for one attempt: the value goes to the attempt's
/// cell (an atomic store, read by `status`), and at most one report per interval to
/// the subscribers.
pub(crate) struct MemoryProgress<K> {
    /// The recorder, not kept alive by a context that outlives its task.
    core: Held<K>,
    key: K,
    hash: u64,
    token: u64,
    /// The attempt's cell, fetched at the first report (`None`: the attempt ended).
    cell: OnceLock<Option<Arc<TaskCell>>>,
    gate: Gate,
    /// A retry's next attempt has its own reporter: this one's reports are ignored.
    ended: std::sync::atomic::AtomicBool,
}

impl<K> MemoryProgress<K>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
{
    pub(crate) fn new(
        core: Arc<Core<K, MemoryStore<K>>>,
        key: K,
        hash: u64,
        token: u64,
    ) -> MemoryProgress<K> {
        let interval = core.store.progress_interval();
        MemoryProgress::held(hold(&core), key, hash, token, interval)
    }

    fn held(core: Held<K>, key: K, hash: u64, token: u64, interval: Duration) -> Self {
        MemoryProgress {
            core,
            key,
            hash,
            token,
            cell: OnceLock::new(),
            gate: Gate::new(interval),
            ended: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl<K> Progress for MemoryProgress<K>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
{
    fn report(&self, value: u64) {
        if self.ended.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let Some(core) = upgrade(&self.core) else {
            return;
        };
        let cell = self
            .cell
            .get_or_init(|| core.store.cell_of(self.hash, &self.key, self.token));
        let Some(cell) = cell else {
            return;
        };
        if cell.is_settled() {
            return;
        }
        cell.set_progress(value);
        if self.gate.open() {
            core.store
                .emit_progress(self.hash, &self.key, self.token, value);
        }
    }

    fn next(&self) -> std::sync::Arc<dyn Progress> {
        self.ended.store(true, std::sync::atomic::Ordering::Release);
        let (key, interval) = (self.key.clone(), self.gate.interval);
        let next = MemoryProgress::held(self.core.clone(), key, self.hash, self.token, interval);
        std::sync::Arc::new(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_lets_one_report_through_per_interval() {
        let gate = Gate::new(Duration::from_secs(3600));
        assert!(gate.open());
        assert!(!gate.open());
        let open = Gate::new(Duration::ZERO);
        assert!(open.open() && open.open());
    }
}
