//! Running a spawned task under its guard: finding the runtime, polling the future
//! (catching panics, honouring cancel requests, timeouts and the running limit), and
//! settling the guard with the outcome.

use std::future::Future;
use std::hash::Hash;
use std::panic::{catch_unwind, AssertUnwindSafe};

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::fault::{failure_of, kept_of_fault, Fault, Keeping, TaskResult};
use crate::guard::{Deliver, Guard};
use crate::retry::RetryPolicy;
use crate::store::{Outcome, Retried, Store};
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
    Fut::Output: TaskResult,
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
    #[inline(always)]
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

    /// The slot, if it needs no wait (`Ok(None)` without a limit); otherwise the
    /// semaphore to wait on.
    #[inline(always)]
    pub(crate) fn at_once(self) -> Result<Option<OwnedSemaphorePermit>, Arc<Semaphore>> {
        match self {
            Slot::Free => Ok(None),
            Slot::Held(permit) => Ok(Some(permit)),
            Slot::Wait(limit) => Err(limit),
        }
    }

    /// Waits for the slot: at once unless queued.
    pub(crate) async fn acquire(self) -> Option<OwnedSemaphorePermit> {
        match self.at_once() {
            Ok(permit) => permit,
            Err(limit) => wait_for_slot(limit).await,
        }
    }
}

/// A queued task's wait for a slot of `limit`. The semaphore is never closed, so a
/// permit always comes.
pub(crate) async fn wait_for_slot(limit: Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    limit.acquire_owned().await.ok()
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
    #[inline(always)]
    pub(crate) fn of(options: &crate::LaunchOptions) -> Timeouts {
        Timeouts {
            deadline: options
                .timeout
                .and_then(|t| tokio::time::Instant::now().checked_add(t)),
            run: options.run_timeout,
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
    Fut::Output: TaskResult,
{
    let mut cell = None;
    let queued = slot.queued();
    let permit = match guarded(&guard, &mut cell, timeouts.deadline, slot.acquire()).await {
        Ok(permit) => permit,
        Err(fault) => {
            finish_spawned::<K, S, P, Fut::Output>(guard, Err(fault));
            return;
        }
    };
    if queued {
        guard.start();
    }
    let result = guarded(&guard, &mut cell, timeouts.of_run(), task).await;
    drop(permit);
    finish_spawned(guard, result);
}

/// `fut` under `guard` (a cancel or a panic ends it: see [`Guard::poll_task`]),
/// failed with `TimedOut` at `deadline`.
async fn guarded<K, S, P, F>(
    guard: &Guard<K, S, P>,
    cell: &mut Option<crate::sync::Arc<crate::cell::TaskCell>>,
    deadline: Option<tokio::time::Instant>,
    fut: F,
) -> Result<F::Output, Fault>
where
    K: Eq + Hash,
    S: Store<K>,
    P: crate::guard::Reply,
    F: Future,
{
    let mut timed = std::pin::pin!(until(deadline, fut));
    match std::future::poll_fn(|cx| guard.poll_task(timed.as_mut(), cell, cx)).await {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(fault)) | Err(fault) => Err(fault),
    }
}

/// A retrying launch's task: attempts made by `make`, one at a time, each waiting for
/// its running slot (the first one taken at the launch, the later ones taken anew
/// after each wait) and timed by `timeouts` (the launch's deadline over them all, the
/// run timeout per attempt); a failure that `policy` retries waits its backoff, as
/// `Working` with the next attempt's number and time, then the next attempt runs
/// under the same guard and token. A cancel, the launch's deadline, or a failure that
/// is not retried ends the launch with that attempt's outcome.
pub(crate) async fn run_retrying<K, S, P, F, Fut>(
    mut guard: Guard<K, S, P>,
    mut make: F,
    mut context: TaskContext,
    retry: Retry,
    timeouts: Timeouts,
) where
    K: Eq + Hash,
    S: Store<K>,
    P: Deliver<Fut::Output>,
    F: FnMut(TaskContext) -> Fut,
    Fut: Future,
    Fut::Output: TaskResult,
{
    let Retry {
        policy,
        limit,
        mut slot,
    } = retry;
    let mut cell = None;
    // The attempts of this launch (the context counts those since the id was last
    // `NotFound`).
    let mut made = 1;
    loop {
        let queued = slot.queued();
        let permit = match guarded(&guard, &mut cell, timeouts.deadline, slot.acquire()).await {
            Ok(permit) => permit,
            Err(fault) => {
                finish_spawned::<K, S, P, Fut::Output>(guard, Err(fault));
                return;
            }
        };
        if made > 1 {
            guard.resume();
        } else if queued {
            guard.start();
        }
        // A panic in `make` is the attempt's own.
        let result = match catch_unwind(AssertUnwindSafe(|| make(context.clone()))) {
            Ok(task) => {
                let task = guard.watch().instrument(task);
                guarded(&guard, &mut cell, timeouts.of_run(), task).await
            }
            Err(payload) => Err(Fault::Panicked(payload)),
        };
        drop(permit);
        let retry = failure_of(&result).and_then(|reason| {
            let wait = policy.next_wait(made, reason, context.token, timeouts.deadline)?;
            Some((reason, wait))
        });
        let Some((reason, wait)) = retry else {
            finish_spawned(guard, result);
            return;
        };
        // The next attempt reports on its own: a late report of this one cannot pass
        // for it.
        context.progress = context.progress.as_ref().map(|p| p.next());
        match guard.retry(reason, wait) {
            Retried::Next(attempt) => {
                context.attempts = attempt;
                made += 1;
            }
            Retried::Cancelled => {
                finish_spawned(guard, Err(Fault::Cancelled));
                return;
            }
            Retried::Gone => {
                finish_spawned(guard, result);
                return;
            }
        }
        drop(result);
        // The timer is made at the first poll, where a panic (no time driver) is caught.
        let backoff = async { tokio::time::sleep(wait).await };
        if let Err(fault) = guarded(&guard, &mut cell, None, backoff).await {
            finish_spawned::<K, S, P, Fut::Output>(guard, Err(fault));
            return;
        }
        slot = Slot::take(limit.as_ref());
    }
}

/// What a retrying task needs besides its guard: its policy, the running limit (for
/// the later attempts' slots), and the first attempt's slot.
pub(crate) struct Retry {
    pub(crate) policy: RetryPolicy,
    pub(crate) limit: Option<Arc<Semaphore>>,
    pub(crate) slot: Slot,
}

fn finish_spawned<K, S, P, O>(guard: Guard<K, S, P>, result: Result<O, Fault>)
where
    K: Eq + Hash,
    S: Store<K>,
    P: Deliver<O>,
    O: TaskResult,
{
    let outcome = Outcome::of(failure_of(&result));
    let kept = if O::KEEPS {
        let limit = guard.kept_limit();
        match &result {
            Ok(output) => output.kept(limit),
            Err(fault) => kept_of_fault(fault, limit),
        }
    } else {
        None
    };
    // The record is final before the handle hears of it.
    if let Some(reply) = guard.settle(outcome, kept) {
        reply.deliver(result);
    }
}

/// The future of a launch whose task does not see its context: the task itself.
pub(crate) fn ignore_context<Fut>(task: Fut, _: TaskContext) -> Fut {
    task
}

/// The future of a launch that keeps a value: the task, its output marked so.
pub(crate) async fn keeping<Fut: Future>(task: Fut, _: TaskContext) -> Keeping<Fut::Output> {
    Keeping(task.await)
}
