//! Running a spawned task under its guard: finding the runtime, polling the future
//! (catching panics, honouring cancel requests, timeouts and the running limit), and
//! settling the guard with the outcome.

use std::future::Future;
use std::hash::Hash;

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::guard::{Deliver, Fault, Guard, Keeping, Resultish};
use crate::kept::Kept;
use crate::status::FailureReason;
use crate::store::{Outcome, Store};
use crate::TaskContext;

/// Where spawned futures go: the current runtime. Found before the record is touched,
/// so that a call outside a runtime leaves nothing behind.
pub(crate) enum Spawner {
    /// Called from a task: `tokio::spawn` reaches its runtime without cloning a handle
    /// (a clone is an atomic increment on one shared counter, which two cores
    /// launching at once fight over).
    Task,
    /// Called from outside any task but inside a runtime context (`block_on`,
    /// `Runtime::enter`).
    Handle(tokio::runtime::Handle),
}

impl Spawner {
    pub(crate) fn find(method: &str) -> Self {
        if tokio::task::try_id().is_some() {
            Spawner::Task
        } else {
            Spawner::Handle(runtime(method))
        }
    }

    pub(crate) fn spawn<F>(self, fut: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match self {
            Spawner::Task => tokio::spawn(fut),
            Spawner::Handle(handle) => handle.spawn(fut),
        }
    }
}

/// The runtime of the calling context; panics with a clear message outside one.
pub(crate) fn runtime(method: &str) -> tokio::runtime::Handle {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle,
        Err(_) => panic!(
            "AsyncTasksRecorder::{method} spawns the task on Tokio and must be called from \
             within a Tokio runtime (inside a task, or after `Runtime::enter`); the record \
             was left unchanged"
        ),
    }
}

/// Runs a spawned task's future and settles its guard with the outcome, then hands
/// the output to the handle, if any.
///
/// Generic over the future only (not over its `R` and `E`), so that `launch` keeps the
/// 2.x bounds: `R` and `E` need not be `'static`. Kept apart from the timed variant
/// so that untimed tasks do not carry a timer in their (copied, allocated) state.
pub(crate) async fn run_spawned<K, S, P, Fut>(guard: Guard<K, S, P>, task: Fut)
where
    K: Eq + Hash,
    S: Store<K>,
    P: Deliver<Fut::Output>,
    Fut: Future,
    Fut::Output: Resultish,
{
    let result = {
        let mut task = std::pin::pin!(task);
        let mut cell = None;
        std::future::poll_fn(|cx| guard.poll_task(task.as_mut(), &mut cell, cx)).await
    };
    finish_spawned(guard, result);
}

/// A spawned task's running slot, under [`Builder::max_running`](crate::Builder::max_running).
pub(crate) enum Slot {
    /// No limit.
    Free,
    /// The slot it took at its launch, free then.
    Held(OwnedSemaphorePermit),
    /// None was free at its launch: it waits for one, queued.
    Wait(Arc<Semaphore>),
}

impl Slot {
    /// The slot of a task launched now under `limit`: one that is free, else a place
    /// in the queue. Tokio's semaphore hands released permits to its waiters in order,
    /// so a free permit means that no queued task waits in the semaphore yet; a task
    /// queued but not yet polled (it joins the semaphore's waiters at its first poll)
    /// may still be passed by a launch made in between, as the `max_running` docs
    /// say for the order of first runs.
    pub(crate) fn take(limit: Option<&Arc<Semaphore>>) -> Slot {
        match limit {
            None => Slot::Free,
            Some(limit) => match limit.clone().try_acquire_owned() {
                Ok(permit) => Slot::Held(permit),
                Err(_) => Slot::Wait(limit.clone()),
            },
        }
    }

    /// Whether the task must wait for its slot.
    pub(crate) fn queued(&self) -> bool {
        matches!(self, Slot::Wait(_))
    }

    /// Waits for the slot: at once unless queued. The semaphore is never closed, so a
    /// permit always comes.
    pub(crate) async fn acquire(self) -> Option<OwnedSemaphorePermit> {
        match self {
            Slot::Free => None,
            Slot::Held(permit) => Some(permit),
            Slot::Wait(limit) => limit.acquire_owned().await.ok(),
        }
    }
}

/// When a task is to time out: `deadline` from its launch, `run` after its start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) deadline: Option<tokio::time::Instant>,
    pub(crate) run: Option<std::time::Duration>,
}

impl Timeouts {
    /// The timeouts of `options`, for a task launched now. A deadline past the end of
    /// the clock (`Duration::MAX`, say) can never fire: none.
    pub(crate) fn of(options: &crate::LaunchOptions) -> Timeouts {
        Timeouts {
            deadline: options
                .get_timeout()
                .and_then(|t| tokio::time::Instant::now().checked_add(t)),
            run: options.get_run_timeout(),
        }
    }

    pub(crate) fn none(&self) -> bool {
        self.deadline.is_none() && self.run.is_none()
    }

    /// The deadline of a run starting now: the earlier of the two.
    fn of_run(&self) -> Option<tokio::time::Instant> {
        let run = self
            .run
            .and_then(|t| tokio::time::Instant::now().checked_add(t));
        match (self.deadline, run) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// `fut`, failed with `TimedOut` at `deadline` (if any).
async fn until<F: Future>(
    deadline: Option<tokio::time::Instant>,
    fut: F,
) -> Result<F::Output, Fault> {
    match deadline {
        // Creating the timer panics on a runtime without a time driver; that panic is
        // caught with the task's own.
        Some(at) => tokio::time::timeout_at(at, fut)
            .await
            .map_err(|_elapsed| Fault::TimedOut),
        None => Ok(fut.await),
    }
}

/// [`run_spawned`] with a running slot to wait for or timeouts: first the wait for
/// the slot (queued: cancellable, and timed from the launch), then the run (timed by
/// both timeouts). The slot is given back once the future is dropped.
pub(crate) async fn run_spawned_in<K, S, P, Fut>(
    mut guard: Guard<K, S, P>,
    task: Fut,
    slot: Slot,
    timeouts: Timeouts,
) where
    K: Eq + Hash,
    S: Store<K>,
    P: Deliver<Fut::Output>,
    Fut: Future,
    Fut::Output: Resultish,
{
    let mut cell = None;
    let queued = slot.queued();
    let permit = {
        let mut wait = std::pin::pin!(until(timeouts.deadline, slot.acquire()));
        std::future::poll_fn(|cx| guard.poll_task(wait.as_mut(), &mut cell, cx)).await
    };
    let permit = match permit {
        Ok(Ok(permit)) => permit,
        Ok(Err(fault)) | Err(fault) => {
            finish_spawned::<K, S, P, Fut::Output>(guard, Err(fault));
            return;
        }
    };
    if queued {
        guard.start();
    }
    let result = {
        let mut timed = std::pin::pin!(until(timeouts.of_run(), task));
        std::future::poll_fn(|cx| guard.poll_task(timed.as_mut(), &mut cell, cx)).await
    };
    drop(permit);
    let result = match result {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(fault)) | Err(fault) => Err(fault),
    };
    finish_spawned(guard, result);
}

fn finish_spawned<K, S, P, O>(guard: Guard<K, S, P>, result: Result<O, Fault>)
where
    K: Eq + Hash,
    S: Store<K>,
    P: Deliver<O>,
    O: Resultish,
{
    let outcome = match &result {
        Ok(output) if output.is_ok() => Outcome::Ok,
        Ok(_) => Outcome::Failed(FailureReason::Error),
        Err(fault) => Outcome::Failed(fault.reason()),
    };
    let kept = if O::KEEPS {
        let limit = guard.kept_limit();
        match &result {
            Ok(output) => output.kept(limit),
            Err(Fault::Panicked(payload)) => Some(Kept::panic_message(&**payload, limit)),
            // The reason says it all.
            Err(_) => None,
        }
    } else {
        None
    };
    // The record is final before the handle hears of it.
    if let Some(reply) = guard.settle(outcome, kept) {
        reply.deliver(result);
    }
}

/// The future of a plain launch: the task itself, whatever its context.
pub(crate) fn plain<Fut>(task: Fut, _: TaskContext) -> Fut {
    task
}

/// The future of a launch that keeps a value: the task, its output marked so.
pub(crate) async fn keeping<Fut: Future>(task: Fut, _: TaskContext) -> Keeping<Fut::Output> {
    Keeping(task.await)
}
