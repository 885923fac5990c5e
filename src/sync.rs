//! The synchronisation primitives the crate uses, swapped for loom's under `cfg(atr_loom)`
//! so that `tests/loom.rs` can explore every interleaving of our own locking.

#[cfg(atr_loom)]
pub(crate) use loom::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
#[cfg(not(atr_loom))]
pub(crate) use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Read-lock, ignoring poisoning.
///
/// A lock is poisoned only if a panic unwound while it was held for writing. Our
/// critical sections call no user code except the key's `Hash` and `Eq` (and, when a
/// table grows, `Hash`), and hashbrown tables stay valid when those panic, so the data
/// behind a poisoned lock is still a well-formed set of records.
pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Write-lock, ignoring poisoning (see [`read`]).
pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
