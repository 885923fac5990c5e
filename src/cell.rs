//! [`TaskCell`]: what waiters and cancellers of one running phase share.
//!
//! A cell is created only when somebody needs it (the first `wait` or `cancel` of a
//! running id, or the task's future returning `Pending` for the first time, from when
//! on a cancel must be able to wake it), and hangs off the
//! record of the running phase. When the phase ends, the store takes the cell out of
//! the record under the shard lock and the guard settles it after the lock is
//! released: every waiter registered before that is woken with the outcome, and every
//! later waiter finds the outcome already there. No wake-up can be lost: registration
//! and settling both happen under the cell's own mutex.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::status::{FailureReason, Settled};
use crate::sync::{self, Arc, Mutex};

#[derive(Debug, Default)]
struct CellState {
    outcome: Option<Settled>,
    /// Waker slots of the registered waiters; `None` marks a free slot.
    waiters: Vec<Option<Waker>>,
    free: Vec<usize>,
    cancel_requested: bool,
    /// The `launch_block` caller waiting to hear of a cancellation.
    canceller: Option<Waker>,
    /// A retrying launch between attempts: why the last one failed and when the next
    /// starts.
    retry: Option<(FailureReason, std::time::SystemTime)>,
}

/// Shared by the waiters and cancellers of one running phase of one id.
#[derive(Debug)]
pub(crate) struct TaskCell {
    state: Mutex<CellState>,
    /// When the running phase began, if the recorder tracks details (kept here rather
    /// than in every running record, to keep those small).
    since: Option<std::time::Instant>,
    /// The attempt's last reported progress, [`NO_PROGRESS`] before any.
    progress: std::sync::atomic::AtomicU64,
}

/// No progress reported (reports of `u64::MAX` are kept as `u64::MAX - 1`).
const NO_PROGRESS: u64 = u64::MAX;

impl TaskCell {
    pub(crate) fn new() -> Arc<Self> {
        TaskCell::started_at(None)
    }

    pub(crate) fn started_at(since: Option<std::time::Instant>) -> Arc<Self> {
        Arc::new(TaskCell {
            state: Mutex::default(),
            since,
            progress: std::sync::atomic::AtomicU64::new(NO_PROGRESS),
        })
    }

    /// Keeps the attempt's latest progress.
    pub(crate) fn set_progress(&self, value: u64) {
        let value = value.min(NO_PROGRESS - 1);
        self.progress
            .store(value, std::sync::atomic::Ordering::Relaxed);
    }

    /// The attempt's latest progress, if it reported any.
    pub(crate) fn progress(&self) -> Option<u64> {
        let value = self.progress.load(std::sync::atomic::Ordering::Relaxed);
        (value != NO_PROGRESS).then_some(value)
    }

    /// The attempt failed for `reason`; the next starts at `at`. Its progress is the
    /// next attempt's, none yet.
    pub(crate) fn set_retry(&self, reason: FailureReason, at: std::time::SystemTime) {
        sync::lock(&self.state).retry = Some((reason, at));
        self.progress
            .store(NO_PROGRESS, std::sync::atomic::Ordering::Relaxed);
    }

    /// The next attempt started; `false` if no retry waited.
    pub(crate) fn clear_retry(&self) -> bool {
        sync::lock(&self.state).retry.take().is_some()
    }

    /// Between two attempts: why the last failed and when the next starts.
    pub(crate) fn retry(&self) -> Option<(FailureReason, std::time::SystemTime)> {
        sync::lock(&self.state).retry
    }

    /// Whether the phase has ended.
    pub(crate) fn is_settled(&self) -> bool {
        sync::lock(&self.state).outcome.is_some()
    }

    pub(crate) fn since(&self) -> Option<std::time::Instant> {
        self.since
    }

    /// Records how the phase ended and wakes every waiter. Later calls do nothing.
    pub(crate) fn settle(&self, outcome: Settled) {
        let wakers = {
            let mut state = sync::lock(&self.state);
            if state.outcome.is_some() {
                return;
            }
            state.outcome = Some(outcome);
            state.free.clear();
            std::mem::take(&mut state.waiters)
        };
        // Wake outside the mutex: a woken waiter may be polled at once on another
        // thread and would otherwise contend for it.
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }

    /// Records a cancellation request and returns the waker of whoever listens for
    /// one, for the caller to wake once it has released its own locks.
    pub(crate) fn mark_cancel(&self) -> Option<Waker> {
        let mut state = sync::lock(&self.state);
        state.cancel_requested = true;
        state.canceller.take()
    }

    /// Whether a cancellation was requested (without registering a waker).
    pub(crate) fn cancel_was_requested(&self) -> bool {
        sync::lock(&self.state).cancel_requested
    }

    /// `Ready` once a cancellation was requested; otherwise registers `cx`'s waker to
    /// be woken by the request.
    pub(crate) fn poll_cancel_requested(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = sync::lock(&self.state);
        if state.cancel_requested {
            Poll::Ready(())
        } else {
            match &mut state.canceller {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        }
    }
}

/// Polls a running phase's future once unless its cell says it was cancelled: the one
/// cancellation check of every running future, spawned or run by `launch_block`.
///
/// `Ready(None)` means cancelled: a request made before this poll stops the future
/// without polling it again, one made while it is pending wakes it through the cell.
/// `cell` may be absent until the future first returns `Pending`; `first_pending` then
/// fetches it (so a spawned task that never returns `Pending`, and that nobody waits
/// for or cancels, never needs one).
pub(crate) fn poll_unless_cancelled<T>(
    cell: &mut Option<Arc<TaskCell>>,
    cx: &mut Context<'_>,
    poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    first_pending: impl FnOnce() -> Option<Arc<TaskCell>>,
) -> Poll<Option<T>> {
    if cell.as_ref().is_some_and(|c| c.cancel_was_requested()) {
        return Poll::Ready(None);
    }
    if let Poll::Ready(out) = poll(cx) {
        return Poll::Ready(Some(out));
    }
    if cell.is_none() {
        *cell = first_pending();
    }
    match cell {
        // Registers (or refreshes) the waker, or sees a request made meanwhile.
        Some(cell) if cell.poll_cancel_requested(cx).is_ready() => Poll::Ready(None),
        _ => Poll::Pending,
    }
}

/// A future that resolves with the outcome of a [`TaskCell`] once the phase has
/// settled. Dropping it unregisters the waiter.
#[derive(Debug)]
pub(crate) struct Settling {
    cell: Arc<TaskCell>,
    slot: Option<usize>,
}

impl Settling {
    pub(crate) fn new(cell: Arc<TaskCell>) -> Self {
        Settling { cell, slot: None }
    }
}

impl Future for Settling {
    type Output = Settled;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Settled> {
        let this = self.get_mut();
        let mut state = sync::lock(&this.cell.state);
        if let Some(outcome) = &state.outcome {
            let outcome = outcome.clone();
            this.slot = None;
            return Poll::Ready(outcome);
        }
        match this.slot {
            Some(i) => match &mut state.waiters[i] {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            },
            None => {
                let waker = Some(cx.waker().clone());
                let i = match state.free.pop() {
                    Some(i) => {
                        state.waiters[i] = waker;
                        i
                    }
                    None => {
                        state.waiters.push(waker);
                        state.waiters.len() - 1
                    }
                };
                this.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for Settling {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let mut state = sync::lock(&self.cell.state);
            // After settling, the slots were cleared and must not be reused.
            if state.outcome.is_none() {
                state.waiters[i] = None;
                state.free.push(i);
            }
        }
    }
}

/// loom models of the waiter list: no wake-up is lost, whatever the interleaving of
/// registering, dropping and settling. Run with `RUSTFLAGS="--cfg atr_loom"`.
#[cfg(all(test, atr_loom))]
mod loom_tests {
    use super::*;
    use crate::state::TaskPhase;

    const DONE: Settled = Settled {
        phase: TaskPhase::Success,
        failure: None,
        kept: None,
    };

    #[test]
    fn a_waiter_racing_the_settle_is_woken() {
        loom::model(|| {
            let cell = TaskCell::new();
            let settler = {
                let cell = cell.clone();
                loom::thread::spawn(move || cell.settle(DONE))
            };
            // block_on parks on Pending and deadlocks (loom reports it) if the wake-up
            // is lost.
            assert_eq!(loom::future::block_on(Settling::new(cell)), DONE);
            settler.join().unwrap();
        });
    }

    #[test]
    fn two_waiters_and_a_dropped_one() {
        loom::model(|| {
            let cell = TaskCell::new();
            let waiter = {
                let cell = cell.clone();
                loom::thread::spawn(move || loom::future::block_on(Settling::new(cell)))
            };
            {
                // Registered, then dropped before the settle or after it.
                let mut dropped = Box::pin(Settling::new(cell.clone()));
                let _ = dropped
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()));
            }
            let settler = {
                let cell = cell.clone();
                loom::thread::spawn(move || cell.settle(DONE))
            };
            assert_eq!(loom::future::block_on(Settling::new(cell)), DONE);
            assert_eq!(waiter.join().unwrap(), DONE);
            settler.join().unwrap();
        });
    }

    #[test]
    fn cancel_request_reaches_a_listener() {
        loom::model(|| {
            let cell = TaskCell::new();
            let canceller = {
                let cell = cell.clone();
                loom::thread::spawn(move || {
                    if let Some(waker) = cell.mark_cancel() {
                        waker.wake();
                    }
                })
            };
            loom::future::block_on(std::future::poll_fn(|cx| cell.poll_cancel_requested(cx)));
            canceller.join().unwrap();
        });
    }
}
