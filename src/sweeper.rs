//! The maintenance task of a store that wants one (the in-memory store's retention
//! sweeper): one task per recorder that expires what is due, part by part and batch by
//! batch, through the store's own maintenance operations.

use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

use crate::core::Core;
use crate::store::Store;

/// The retention sweeper: every `tick`, expires what is due, shard by shard and batch
/// by batch, yielding between batches. Ends at the first tick after the store is gone.
pub(crate) fn sweep<K, S>(
    core: std::sync::Weak<Core<K, S>>,
    tick: Duration,
) -> impl Future<Output = ()> + Send + 'static
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    S: Store<K>,
{
    // Made now, not at the first poll, and dropped with the task: if its runtime shuts
    // down (even before the task ever ran) while the store lives on, the next launch,
    // on another runtime, starts a new sweeper.
    let exit = SweeperExit(core.clone());
    async move {
        let _exit = exit;
        // Panics on a runtime without a time driver (documented on the builder); the
        // exit guard then sees the panic and leaves the sweeper stopped for good.
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let Some(core) = core.upgrade() else {
                return;
            };
            let store = &core.store;
            for part in 0..store.parts() {
                while store.maintain(part) {
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

/// Lets the store know its sweeper task is gone, so that the next launch starts
/// another; unless the task panicked (its runtime has no time driver), since a new one
/// would panic again: expiry then runs on launches, finishes and `sweep` alone.
struct SweeperExit<K, S: Store<K>>(std::sync::Weak<Core<K, S>>);

impl<K, S: Store<K>> Drop for SweeperExit<K, S> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if let Some(core) = self.0.upgrade() {
            core.store.sweeper_stopped();
        }
    }
}
