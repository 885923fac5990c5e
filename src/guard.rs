//! Drop guards that make the final transition of a running future or revoke.
//!
//! A guard is created when the store accepts `Launch` (or `RevokeBegin`) and travels
//! with the future. Whatever ends the future (a return, a panic, the caller dropping a
//! `*_block` future, an abort, a runtime shutdown), the guard settles the record exactly
//! once: explicitly, or from `Drop` with the failure move. So no id can stay in Working
//! or Revoking. After the record moved, the guard settles the record's cell (waking
//! waiters) and, for a task with a handle, tells the handle.

use std::hash::Hash;
use std::ops::Deref;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::Poll;

use crate::cell::{poll_unless_cancelled, TaskCell};
use crate::core::Core;
use crate::fault::Fault;
use crate::kept::Kept;
use crate::observe::Watch;
use crate::status::{End, FailureReason, Settled};
use crate::store::{Outcome, Retried, Store};
use crate::sync::Arc;

/// Told how a task ended when its guard settles from `Drop` (the normal path hands
/// the value over itself).
pub(crate) trait Reply: Send + Sync + 'static {
    fn dropped(self, settled: Settled);
}

/// Receives a spawned task's output on the normal path.
pub(crate) trait Deliver<O>: Reply {
    fn deliver(self, output: Result<O, Fault>);
}

/// No handle: nothing to tell.
#[derive(Debug)]
pub(crate) struct NoReply;

impl Reply for NoReply {
    fn dropped(self, _: Settled) {}
}

impl<O> Deliver<O> for NoReply {
    fn deliver(self, _: Result<O, Fault>) {}
}

/// Which running phase a guard ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Task,
    Revoke,
}

/// Owns the right to end one Working (or Revoking) phase of one id.
///
/// `C` is how the guard reaches its recorder: an `Arc` for a guard that travels with a
/// spawned task, a borrow for one that lives in its caller's future (`launch_block`,
/// `revoke_task_block`), which so touches no reference count that every core shares.
pub(crate) struct Guard<K, S, P = NoReply, C = Arc<Core<K, S>>>
where
    K: Eq + Hash,
    S: Store<K>,
    P: Reply,
    C: Deref<Target = Core<K, S>>,
{
    core: C,
    key: K,
    hash: u64,
    /// The low 32 bits of the phase's fencing token: what the in-memory store keeps
    /// and checks when the phase ends (see its `WorkingRec` and `RevokingRec` records). Kept this small so
    /// that the guard, which every spawned task carries, stays 32 bytes for `u64` ids.
    token: u32,
    kind: Kind,
    reply: Option<P>,
    settled: bool,
    /// The phase's span and start time (zero-sized without `tracing` and `metrics`).
    watch: Watch,
}

impl<K: Eq + Hash, S: Store<K>, C: Deref<Target = Core<K, S>>> Guard<K, S, NoReply, C> {
    /// The guard of a revoke the store has just accepted (which it reports).
    pub(crate) fn revoke(core: C, key: K, hash: u64, token: u64) -> Self {
        let mut guard = Guard {
            core,
            key,
            hash,
            token: token as u32,
            kind: Kind::Revoke,
            reply: None,
            settled: false,
            watch: Watch::empty(),
        };
        if let Some(watch) = observing(|| guard.core.observer.revoke_started(&guard.key)) {
            guard.watch = watch;
        }
        guard
    }

    /// Ends the revoke: `ok` moves the id to NotFound, otherwise back to Success.
    pub(crate) fn settle_revoke(mut self, ok: bool) {
        self.settled = true;
        self.end_revoke(ok);
    }
}

impl<K: Eq + Hash, S: Store<K>, P: Reply, C: Deref<Target = Core<K, S>>> Guard<K, S, P, C> {
    /// Makes the `RevokeEnd` move, reports it, then wakes the waiters.
    fn end_revoke(&self, ok: bool) {
        let ended = self
            .core
            .store
            .revoke_end(self.hash, &self.key, u64::from(self.token), ok);
        observing(|| self.core.observer.revoke_ended(&self.watch, &self.key, ok));
        if let Some((Some(cell), settled)) = ended {
            cell.settle(settled);
        }
    }

    /// Makes the `Finish` move, reports it, then wakes the waiters (who receive
    /// `kept`). Returns how the task ended, unless the record was gone. Inlined so
    /// that a launch that keeps nothing passes no value around.
    #[inline(always)]
    fn finish(&self, outcome: Outcome, kept: Option<Kept>) -> Option<End> {
        let (cell, end) = self.core.store.finish(
            self.hash,
            &self.key,
            u64::from(self.token),
            outcome,
            kept.as_ref(),
        )?;
        // Reported before anybody is woken, so that a woken waiter sees it done.
        observing(|| {
            self.core
                .observer
                .task_ended(&self.watch, &self.key, end.failure)
        });
        if let Some(cell) = cell {
            cell.settle(end.settled(kept));
        }
        Some(end)
    }

    /// The queued task got its running slot: its record says it runs, and its run's
    /// clock starts.
    pub(crate) fn start(&mut self) {
        self.core
            .store
            .start(self.hash, &self.key, u64::from(self.token));
        self.watch.dequeued(&self.core.observer);
    }

    /// A retry's next attempt starts: the record no longer reads its wait.
    pub(crate) fn resume(&self) {
        self.core
            .store
            .start(self.hash, &self.key, u64::from(self.token));
    }

    /// The running attempt failed for `reason`; the next is to start after `wait`.
    pub(crate) fn retry(&self, reason: FailureReason, wait: std::time::Duration) -> Retried {
        self.core
            .store
            .retry(self.hash, &self.key, u64::from(self.token), reason, wait)
    }

    /// The record's cell, created if needed, for a future that returned `Pending` for
    /// the first time (see [`poll_unless_cancelled`]).
    pub(crate) fn first_pending(&self) -> Option<Arc<TaskCell>> {
        self.core.store.first_pending(self.hash, &self.key)
    }

    /// The most bytes a kept value may have in this guard's store.
    pub(crate) fn kept_limit(&self) -> usize {
        self.core.store.kept_limit()
    }

    /// The phase's span and clock, to run the user's future in.
    pub(crate) fn watch(&self) -> &Watch {
        &self.watch
    }
}

impl<K: Eq + Hash, S: Store<K>, P: Reply, C: Deref<Target = Core<K, S>>> Guard<K, S, P, C> {
    /// The guard of a task the store has just accepted (which it reports).
    pub(crate) fn task(core: C, key: K, hash: u64, token: u64, reply: Option<P>) -> Self {
        let mut guard = Guard {
            core,
            key,
            hash,
            token: token as u32,
            kind: Kind::Task,
            reply,
            settled: false,
            watch: Watch::empty(),
        };
        if let Some(watch) = observing(|| guard.core.observer.task_started(&guard.key)) {
            guard.watch = watch;
        }
        guard
    }

    /// Ends the task with `outcome`, keeping `kept` with the record; returns the reply
    /// for the caller to use.
    #[inline]
    pub(crate) fn settle(mut self, outcome: Outcome, kept: Option<Kept>) -> Option<P> {
        self.settled = true;
        let _ = self.finish(outcome, kept);
        self.reply.take()
    }

    fn settle_from_drop(&mut self) {
        self.settled = true;
        match self.kind {
            Kind::Task => {
                let reason = if std::thread::panicking() {
                    FailureReason::Panicked
                } else {
                    FailureReason::Dropped
                };
                // No record (a broken invariant): the failure is as given.
                let end = self.finish(Outcome::Failed(reason), None).unwrap_or(End {
                    phase: crate::state::TaskPhase::Failed,
                    failure: Some(reason),
                });
                if let Some(reply) = self.reply.take() {
                    reply.dropped(end.settled(None));
                }
            }
            Kind::Revoke => self.end_revoke(false),
        }
    }
}

impl<K: Eq + Hash, S: Store<K>, P: Reply, C: Deref<Target = Core<K, S>>> Guard<K, S, P, C> {
    /// Polls a spawned task's future once, catching its panics, and stops it with
    /// `Err(Cancelled)` when [`cancel`](crate::AsyncTasksRecorder::cancel) asks.
    ///
    /// A task that completes without ever suspending costs nothing extra. At its first
    /// `Pending` it fetches its record's cell (one write lock; the cell is created then
    /// if nobody made one) and registers its waker there, so that a cancel can wake it;
    /// from then on each poll asks the cell (an uncontended mutex). `cell` is the
    /// task's own state. A plain function over borrowed state (not an `async fn`)
    /// keeps the spawned future small: tokio copies it into the task.
    pub(crate) fn poll_task<F: std::future::Future>(
        &self,
        fut: std::pin::Pin<&mut F>,
        cell: &mut Option<Arc<TaskCell>>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Result<F::Output, Fault>> {
        let polled = poll_unless_cancelled(
            cell,
            cx,
            |cx| poll_catching(fut, cx),
            || self.first_pending(),
        );
        polled.map(|polled| match polled {
            Some(Ok(out)) => Ok(out),
            Some(Err(payload)) => Err(Fault::Panicked(payload)),
            None => Err(Fault::Cancelled),
        })
    }
}

impl<K: Eq + Hash, S: Store<K>, P: Reply, C: Deref<Target = Core<K, S>>> Drop
    for Guard<K, S, P, C>
{
    fn drop(&mut self) {
        if !self.settled {
            // A panic here (only from a user `Hash`/`Eq` impl) must not escape a drop
            // that may run during unwinding.
            let _ = catch_unwind(AssertUnwindSafe(|| self.settle_from_drop()));
        }
    }
}

impl<K: Eq + Hash, S: Store<K>, P: Reply, C: Deref<Target = Core<K, S>>> std::fmt::Debug
    for Guard<K, S, P, C>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("kind", &self.kind)
            .field("settled", &self.settled)
            .finish_non_exhaustive()
    }
}

/// Runs an observer hook (which may call user code: a tracing subscriber, a metrics
/// exporter, the id's `Debug`). The guard exists before and settles after every hook,
/// so a panicking hook can neither leave an id running nor its waiters asleep: the
/// panic is caught here (the panic hook has printed it) and the report is lost.
/// Without the observability features the hooks are empty and this is a plain call.
pub(crate) fn observing<T>(hook: impl FnOnce() -> T) -> Option<T> {
    #[cfg(any(feature = "tracing", feature = "metrics"))]
    return catch_unwind(AssertUnwindSafe(hook)).ok();
    #[cfg(not(any(feature = "tracing", feature = "metrics")))]
    return Some(hook());
}

/// Polls `fut` to completion, turning a panic inside it into `Err(payload)`.
pub(crate) async fn catch_panic<F: std::future::Future>(
    fut: F,
) -> Result<F::Output, Box<dyn std::any::Any + Send>> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(move |cx| poll_catching(fut.as_mut(), cx)).await
}

/// Polls `fut` once, turning a panic inside the poll into `Ready(Err(payload))`.
fn poll_catching<F: std::future::Future>(
    fut: std::pin::Pin<&mut F>,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<F::Output, Box<dyn std::any::Any + Send>>> {
    match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
        Ok(Poll::Pending) => Poll::Pending,
        Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
        Err(payload) => Poll::Ready(Err(payload)),
    }
}

#[cfg(all(
    test,
    not(atr_loom),
    not(any(feature = "tracing", feature = "metrics"))
))]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    /// Every spawned task carries its guard: 32 bytes for `u64` ids (the store, the
    /// key, the hash, the token's low half and two flags).
    #[test]
    fn a_task_guard_stays_small() {
        assert_eq!(
            std::mem::size_of::<Guard<u64, MemoryStore<u64>, NoReply>>(),
            32
        );
    }
}
