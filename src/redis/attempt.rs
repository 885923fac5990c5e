//! A launched task on Redis: its attempts, each run under its [`Holder`] with its
//! timeouts, its cancel request and its lease watched, the retries a policy asks for,
//! and the end recorded with the attempt's fencing token.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::runner::Holder;
use crate::fault::{failure_of, kept_of_fault, kept_of_output, Fault};
use crate::guard::catch_panic;
use crate::handle::{task_output, TaskHandle};
use crate::kept::{Kept, KeptOutput};
use crate::runner::{Retry, Slot, Timeouts};
use crate::store::{Records, Retried};
use crate::TaskContext;

/// What a launch keeps of its task's end, within a limit: `None` for the launches
/// that keep nothing.
pub(super) type KeepFn<R, E> = fn(&Result<Result<R, E>, Fault>, usize) -> Option<Kept>;

/// What [`launch_kept`](super::RedisRecorder::launch_kept) keeps: the output's or the
/// error's `Display`, or a panic's message.
pub(super) fn kept_of<R: KeptOutput, E: fmt::Display>(
    result: &Result<Result<R, E>, Fault>,
    limit: usize,
) -> Option<Kept> {
    match result {
        Ok(output) => kept_of_output(output, limit),
        Err(fault) => kept_of_fault(fault, limit),
    }
}

/// Spawns a granted task on the current runtime; its handle resolves once the end is
/// recorded.
pub(super) fn spawn_task<K, Fut, R, E>(
    holder: Holder<K>,
    slot: Slot,
    task: Fut,
    timeouts: Timeouts,
    keep: Option<KeepFn<R, E>>,
) -> TaskHandle<R, E>
where
    K: Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
    R: Send + 'static,
    E: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let output = run_task(holder, slot, task, timeouts, keep).await;
        let _ = tx.send(task_output(output));
    });
    TaskHandle::new(rx)
}

/// Runs a task's future under its holder: until it ends, is cancelled, times out or
/// loses its lease; then records the end.
pub(super) async fn run_task<K, Fut, R, E>(
    holder: Holder<K>,
    slot: Slot,
    task: Fut,
    timeouts: Timeouts,
    keep: Option<KeepFn<R, E>>,
) -> Result<Result<R, E>, Fault>
where
    Fut: Future<Output = Result<R, E>>,
{
    let started = std::sync::OnceLock::new();
    let task = holder.watch.instrument(task);
    let result = {
        let queued = slot.queued().then_some(&started);
        let run = attempt(&holder, slot, task, timeouts.run, queued, false);
        guarded(&holder, timeouts.deadline, run).await
    };
    end_task(holder, result, &started, keep).await
}

/// One attempt of a task: waits for its running slot (timing `started` by it, for a
/// queued first attempt), tells the store that it starts (`queued`, or `resumes`: a
/// retry's next attempt), then runs `task` within `run_timeout` of the slot.
pub(super) async fn attempt<K, Fut, R, E>(
    holder: &Holder<K>,
    slot: Slot,
    task: Fut,
    run_timeout: Option<Duration>,
    queued: Option<&std::sync::OnceLock<Instant>>,
    resumes: bool,
) -> Result<Result<R, E>, Fault>
where
    Fut: Future<Output = Result<R, E>>,
{
    let permit = slot.acquire().await;
    let got = Instant::now();
    if let Some(started) = queued {
        let _ = started.set(got);
    }
    // The run's timeout counts from the slot, the `start` call included.
    let timed = async {
        if queued.is_some() || resumes {
            holder.start().await;
        }
        catch_panic(task).await
    };
    let out = match run_timeout.and_then(|t| got.checked_add(t)) {
        Some(at) => match tokio::time::timeout_at(at, timed).await {
            Ok(out) => out.map_err(Fault::Panicked),
            Err(_elapsed) => Err(Fault::TimedOut),
        },
        None => timed.await.map_err(Fault::Panicked),
    };
    drop(permit);
    out
}

/// `run` under the holder's watch: it ends early when a cancel is asked for, the lease
/// is lost or `deadline` passes (dropping `run`); meanwhile the lease is renewed and
/// the task's progress written.
pub(super) async fn guarded<K, T>(
    holder: &Holder<K>,
    deadline: Option<Instant>,
    run: impl Future<Output = Result<T, Fault>>,
) -> Result<T, Fault> {
    let timer = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        () = holder.running.cancelled() => Err(Fault::Cancelled),
        () = holder.keep_lease() => Err(Fault::Lost),
        () = timer => Err(Fault::TimedOut),
        never = holder.send_progress() => match never {},
        out = run => out,
    }
}

/// Records a task's end (the future is dropped by now: two futures of one id never
/// run in one process, and none runs past its lease) and returns what its handle
/// gets: the result, or `Lost` when the end recorded is not the one asked for.
pub(super) async fn end_task<K, R, E>(
    mut holder: Holder<K>,
    result: Result<Result<R, E>, Fault>,
    started: &std::sync::OnceLock<Instant>,
    keep: Option<KeepFn<R, E>>,
) -> Result<Result<R, E>, Fault> {
    if let Some(&at) = started.get() {
        holder.watch.dequeued_at(&holder.shared.observer, at);
    }
    let asked = failure_of(&result);
    let kept = keep.and_then(|keep| keep(&result, holder.shared.store.kept_limit()));
    let recorded = holder.finish(asked, kept).await;
    match recorded {
        Some(s) if s.failure == asked => result,
        _ => Err(Fault::Lost),
    }
}

/// A retrying launch's task under its holder (see
/// [`launch_retrying`](super::RedisRecorder::launch_retrying)): attempts one after another,
/// each in a slot taken anew, a backoff between them recorded by the store's retry
/// (which the holder's lease renewals keep alive); the whole under one watch, so a
/// cancel, a lost lease or the launch's deadline ends it at any point.
pub(super) async fn run_retrying<K, F, Fut, R, E>(
    holder: Holder<K>,
    make: F,
    mut context: TaskContext,
    retry: Retry,
    timeouts: Timeouts,
) -> Result<Result<R, E>, Fault>
where
    F: FnMut(TaskContext) -> Fut,
    Fut: Future<Output = Result<R, E>>,
{
    let Retry {
        policy,
        limit,
        mut slot,
    } = retry;
    let started = std::sync::OnceLock::new();
    let attempts = async {
        let mut make = make;
        let queued = slot.queued().then_some(&started);
        // The attempts of this launch (the context counts those since the id was last
        // `NotFound`).
        let mut made = 1;
        loop {
            // Made inside the attempt, so that a panic in `make` fails it.
            let task = holder
                .watch
                .instrument(async { make(context.clone()).await });
            let resumes = made > 1;
            let queued = queued.filter(|_| !resumes);
            let out = attempt(&holder, slot, task, timeouts.run, queued, resumes).await;
            let retry = failure_of(&out).and_then(|reason| {
                let wait = policy.next_wait(made, reason, context.token, timeouts.deadline)?;
                Some((reason, wait))
            });
            let Some((reason, wait)) = retry else {
                return out;
            };
            // The next attempt reports on its own: a late report of this one cannot
            // pass for it.
            context.progress = context.progress.as_ref().map(|p| p.next());
            let store = &holder.shared.store;
            match Records::<Vec<u8>, [u8]>::retry(store, &holder.loc, holder.token(), reason, wait)
                .await
            {
                Ok(Retried::Next(next)) => {
                    context.attempts = next;
                    made += 1;
                }
                Ok(Retried::Cancelled) => return Err(Fault::Cancelled),
                Ok(Retried::Gone) => return Err(Fault::Lost),
                // Not known to be recorded: no retry that the record may not show. (If
                // it was recorded and only its reply lost, the record counts one
                // attempt more than ran.)
                Err(_) => return out,
            }
            drop(out);
            tokio::time::sleep(wait).await;
            slot = Slot::take(limit.as_ref());
        }
    };
    let result = guarded(&holder, timeouts.deadline, attempts).await;
    end_task(holder, result, &started, None).await
}
