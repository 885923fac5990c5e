//! Drop guards that make the final transition of a running future or revoke.
//!
//! A guard is created right after the store accepted `Launch` (or `RevokeBegin`) and
//! travels with the future. Whatever ends the future (a return, a panic, the caller
//! dropping a `*_block` future, the runtime aborting a spawned task), the guard settles
//! the record exactly once: explicitly through [`Guard::settle`], or from `Drop` with
//! the failure move. So no id can stay in Working or Revoking.

use std::hash::Hash;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::state::Op;
use crate::store::Store;
use crate::sync::Arc;

/// Owns the right to end one Working (or Revoking) phase of one id.
pub(crate) struct Guard<K: Eq + Hash, S: Store<K>> {
    store: Arc<S>,
    key: K,
    hash: u64,
    /// The move made from `Drop` if the guard was not settled.
    on_drop: Op,
    settled: bool,
}

impl<K, S> Guard<K, S>
where
    K: Eq + Hash,
    S: Store<K>,
{
    pub(crate) fn new(store: Arc<S>, key: K, hash: u64, on_drop: Op) -> Self {
        Guard {
            store,
            key,
            hash,
            on_drop,
            settled: false,
        }
    }

    /// Makes the final move `op` now.
    pub(crate) fn settle(mut self, op: Op) {
        self.settled = true;
        self.apply(op);
    }

    fn apply(&self, op: Op) {
        let result = self.store.apply(self.hash, &self.key, op);
        // The guard is the only owner of this phase, so the store cannot refuse. If it
        // ever did, that is a bug in the crate; panicking in a `Drop` during unwinding
        // would abort, so this is checked in debug builds only.
        debug_assert!(
            result.is_ok() || std::thread::panicking(),
            "guard move {op:?} refused in {result:?}"
        );
    }
}

impl<K: Eq + Hash, S: Store<K>> Drop for Guard<K, S> {
    fn drop(&mut self) {
        if !self.settled {
            self.settled = true;
            let (store, hash, op) = (&self.store, self.hash, self.on_drop);
            let key = &self.key;
            // A panic here (only from a user `Hash`/`Eq` impl) must not escape a drop
            // that may run during unwinding.
            let _ = catch_unwind(AssertUnwindSafe(|| store.apply(hash, key, op)));
        }
    }
}

impl<K: Eq + Hash, S: Store<K>> std::fmt::Debug for Guard<K, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("on_drop", &self.on_drop)
            .field("settled", &self.settled)
            .finish_non_exhaustive()
    }
}

/// Polls `fut` to completion, turning a panic inside it into `Err(payload)`.
pub(crate) async fn catch_panic<F: std::future::Future>(
    fut: F,
) -> Result<F::Output, Box<dyn std::any::Any + Send>> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(
        move |cx| match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(out)) => std::task::Poll::Ready(Ok(out)),
            Err(payload) => std::task::Poll::Ready(Err(payload)),
        },
    )
    .await
}
