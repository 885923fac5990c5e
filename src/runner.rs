//! Running a spawned task under its guard: finding the runtime, polling the future
//! (catching panics, honouring cancel requests, timeouts and the running limit), and
//! settling the guard with the outcome.

use std::future::Future;
use std::hash::Hash;

use tokio::sync::Semaphore;

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

/// [`run_spawned`] with a deadline: on expiry the future is dropped and the task fails
/// as `TimedOut`.
pub(crate) async fn run_spawned_timed<K, S, P, Fut>(
    guard: Guard<K, S, P>,
    task: Fut,
    deadline: tokio::time::Instant,
) where
    K: Eq + Hash,
    S: Store<K>,
    P: Deliver<Fut::Output>,
    Fut: Future,
    Fut::Output: Resultish,
{
    // Creating the timer panics on a runtime without a time driver; that panic is
    // caught with the task's own.
    let timed = async move { tokio::time::timeout_at(deadline, task).await };
    let result = {
        let mut timed = std::pin::pin!(timed);
        let mut cell = None;
        std::future::poll_fn(|cx| guard.poll_task(timed.as_mut(), &mut cell, cx)).await
    };
    let result = match result {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(_elapsed)) => Err(Fault::TimedOut),
        Err(fault) => Err(fault),
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

/// `task`, run once a slot of `limit` (if any) is free; the slot is given back when it
/// ends.
pub(crate) fn in_slot<Fut: Future>(
    limit: Option<&std::sync::Arc<Semaphore>>,
    task: Fut,
) -> impl Future<Output = Fut::Output> {
    let slot = limit.map(|limit| limit.clone().acquire_owned());
    async move {
        // The semaphore is never closed, so a permit is always `Ok`.
        let _permit = match slot {
            Some(slot) => Some(slot.await),
            None => None,
        };
        task.await
    }
}
