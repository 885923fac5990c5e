//! [`TaskHandle`]: the output of a task launched with
//! [`launch_with`](crate::AsyncTasksRecorder::launch_with).

use std::any::Any;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::fault::{Fault, Keeping};
use crate::guard::{Deliver, Reply};
use crate::status::{FailureReason, Settled};

/// The payload of a task's panic, as [`std::panic::catch_unwind`] gives it.
///
/// A panic's payload is `Send` but not `Sync`; held here behind a lock, it lets
/// [`TaskError`] be `Send + Sync` (for `?` into `anyhow::Error` or
/// `Box<dyn Error + Send + Sync>`). Read its message, or take it to resume the panic:
///
/// ```
/// # use async_tasks_recorder::{PanicPayload, TaskError};
/// fn report(e: TaskError<std::io::Error>) {
///     if let TaskError::Panicked(payload) = e {
///         eprintln!("the task panicked: {}", payload.message().unwrap_or_default());
///         std::panic::resume_unwind(payload.into_inner());
///     }
/// }
/// ```
pub struct PanicPayload(std::sync::Mutex<Box<dyn Any + Send + 'static>>);

impl PanicPayload {
    pub(crate) fn new(payload: Box<dyn Any + Send + 'static>) -> PanicPayload {
        PanicPayload(std::sync::Mutex::new(payload))
    }

    /// The payload itself, for [`std::panic::resume_unwind`] or a `downcast`.
    #[must_use]
    pub fn into_inner(self) -> Box<dyn Any + Send + 'static> {
        // The lock is only ever taken to read, so it cannot be poisoned; take it anyway.
        self.0.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    /// The panic's message, when the payload is a string (as `panic!` makes it).
    #[must_use]
    pub fn message(&self) -> Option<String> {
        let payload = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = payload.downcast_ref::<&'static str>() {
            return Some((*s).to_owned());
        }
        payload.downcast_ref::<String>().cloned()
    }
}

impl fmt::Debug for PanicPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.message() {
            Some(m) => f.debug_tuple("PanicPayload").field(&m).finish(),
            None => f.write_str("PanicPayload(..)"),
        }
    }
}

/// Why a task gave no `Ok` value: its own error, or a fault the recorder handled.
///
/// `Send + Sync + 'static` when `E` is, and an [`Error`] when `E` is one, so that
/// `handle.await?` works into `anyhow::Result` or `Box<dyn Error + Send + Sync>`.
#[non_exhaustive]
pub enum TaskError<E> {
    /// The future returned `Err(e)`.
    Failed(E),
    /// The future panicked; the payload is the panic's (as with
    /// [`std::panic::catch_unwind`]), or a placeholder string if the panic unwound
    /// through the task before it could be caught.
    Panicked(PanicPayload),
    /// [`cancel`](crate::AsyncTasksRecorder::cancel) stopped the task.
    Cancelled,
    /// The task ran longer than its [`LaunchOptions::timeout`](crate::LaunchOptions::timeout).
    TimedOut,
    /// The future was dropped before it finished for another reason (the runtime shut
    /// down).
    Dropped,
    /// A store shared by several processes (Redis) no longer let this process own the
    /// task: its lease could not be renewed in time, or its end could not be recorded
    /// before the lease ran out. The future was stopped (or its output discarded), and
    /// the id reads `Failed` with [`WorkerLost`](FailureReason::WorkerLost), unless
    /// another process has launched it since.
    Lost,
}

impl<E> TaskError<E> {
    /// The reason recorded for the id, as [`status`](crate::AsyncTasksRecorder::status)
    /// reports it.
    #[must_use]
    pub fn reason(&self) -> FailureReason {
        match self {
            TaskError::Failed(_) => FailureReason::Error,
            TaskError::Panicked(_) => FailureReason::Panicked,
            TaskError::Cancelled => FailureReason::Cancelled,
            TaskError::TimedOut => FailureReason::TimedOut,
            TaskError::Dropped => FailureReason::Dropped,
            TaskError::Lost => FailureReason::WorkerLost,
        }
    }

    /// The future's own error, if it returned one.
    #[must_use]
    pub fn into_failed(self) -> Option<E> {
        match self {
            TaskError::Failed(e) => Some(e),
            _ => None,
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for TaskError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
            TaskError::Panicked(_) => f.write_str("Panicked(..)"),
            TaskError::Cancelled => f.write_str("Cancelled"),
            TaskError::TimedOut => f.write_str("TimedOut"),
            TaskError::Dropped => f.write_str("Dropped"),
            TaskError::Lost => f.write_str("Lost"),
        }
    }
}

impl<E: fmt::Display> fmt::Display for TaskError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Failed(e) => write!(f, "the task failed: {e}"),
            TaskError::Panicked(_) => f.write_str("the task panicked"),
            TaskError::Cancelled => f.write_str("the task was cancelled"),
            TaskError::TimedOut => f.write_str("the task timed out"),
            TaskError::Dropped => f.write_str("the task was dropped before it finished"),
            TaskError::Lost => f.write_str("the task's lease was lost"),
        }
    }
}

impl<E: Error + 'static> Error for TaskError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            TaskError::Failed(e) => Some(e),
            _ => None,
        }
    }
}

impl<E> From<Fault> for TaskError<E> {
    fn from(fault: Fault) -> Self {
        match fault {
            Fault::Panicked(payload) => TaskError::Panicked(PanicPayload::new(payload)),
            Fault::TimedOut => TaskError::TimedOut,
            Fault::Cancelled => TaskError::Cancelled,
            Fault::Lost => TaskError::Lost,
        }
    }
}

/// What a handle resolves to for a task that ended with `output`.
pub(crate) fn task_output<R, E>(output: Result<Result<R, E>, Fault>) -> Result<R, TaskError<E>> {
    output?.map_err(TaskError::Failed)
}

pub(crate) type Sender<R, E> = oneshot::Sender<Result<R, TaskError<E>>>;

impl<R: Send + 'static, E: Send + 'static> Reply for Sender<R, E> {
    fn dropped(self, settled: Settled) {
        let error = settled
            .failure
            .and_then(Fault::from_reason)
            .map_or(TaskError::Dropped, TaskError::from);
        let _ = self.send(Err(error));
    }
}

impl<R: Send + 'static, E: Send + 'static> Deliver<Result<R, E>> for Sender<R, E> {
    fn deliver(self, output: Result<Result<R, E>, Fault>) {
        let value = task_output(output);
        // Nobody listening (the handle was dropped) is fine.
        let _ = self.send(value);
    }
}

impl<R: Send + 'static, E: Send + 'static> Deliver<Keeping<Result<R, E>>> for Sender<R, E> {
    fn deliver(self, output: Result<Keeping<Result<R, E>>, Fault>) {
        <Self as Deliver<Result<R, E>>>::deliver(self, output.map(|kept| kept.0));
    }
}

/// Resolves to the output of a task started by
/// [`launch_with`](crate::AsyncTasksRecorder::launch_with).
///
/// Dropping the handle does **not** cancel the task (as with tokio's `JoinHandle`): it
/// only means nobody receives the output. Use
/// [`cancel`](crate::AsyncTasksRecorder::cancel) to stop a task.
///
/// The record is final before the handle resolves: a query made after `.await` on the
/// handle returned sees `Success` or `Failed` (or a later state).
///
/// # Cancel safety
/// Awaiting a handle is cancel safe: dropping the `.await` loses nothing as long as the
/// handle itself is kept.
#[must_use = "dropping a TaskHandle does not cancel the task, it only discards its output"]
pub struct TaskHandle<R, E> {
    receiver: oneshot::Receiver<Result<R, TaskError<E>>>,
}

impl<R, E> TaskHandle<R, E> {
    pub(crate) fn new(receiver: oneshot::Receiver<Result<R, TaskError<E>>>) -> Self {
        TaskHandle { receiver }
    }

    /// `true` once the task has ended: its output is ready (awaiting the handle then
    /// completes at once) or was already taken.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        // The guard sends before the sender can be dropped, so "not empty" is "sent";
        // a terminated receiver has handed the output out.
        self.receiver.is_terminated() || !self.receiver.is_empty()
    }
}

impl<R, E> fmt::Debug for TaskHandle<R, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle").finish_non_exhaustive()
    }
}

impl<R, E> Future for TaskHandle<R, E> {
    type Output = Result<R, TaskError<E>>;

    /// # Panics
    /// Panics if polled again after it returned the output (awaiting `&mut handle`
    /// a second time), as Tokio's `JoinHandle` does: the output was moved out.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(
            !self.receiver.is_terminated(),
            "TaskHandle polled again after it returned the task's output"
        );
        Pin::new(&mut self.receiver)
            .poll(cx)
            // The guard always answers before the sender goes away; a closed channel
            // can only mean the task was dropped without its guard running.
            .map(|r| r.unwrap_or(Err(TaskError::Dropped)))
    }
}
