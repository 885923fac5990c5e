//! The synchronisation primitives the crate uses, swapped for loom's under `cfg(atr_loom)`
//! so that `tests/loom.rs` can explore every interleaving of our own locking.

#[cfg(atr_loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
#[cfg(not(atr_loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

// Poisoning is ignored everywhere. A lock is poisoned only if a panic unwound while it
// was held. Our critical sections call no user code except the key's `Hash`, `Eq`,
// `Clone` (for events) and `Drop`, and subscribers' wakers (woken by the broadcast
// send), and hashbrown tables stay valid when those panic, so the data behind a
// poisoned lock is still a well-formed set of records.

/// Read-lock, ignoring poisoning.
pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Write-lock, ignoring poisoning.
pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Write-lock if nobody holds the lock now, ignoring poisoning; `None` if somebody
/// does.
pub(crate) fn try_write<T>(lock: &RwLock<T>) -> Option<RwLockWriteGuard<'_, T>> {
    match lock.try_write() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// Lock a mutex, ignoring poisoning.
pub(crate) fn lock<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
