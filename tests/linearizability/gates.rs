//! The futures the clients launch and end by hand: each attempt waits for its gate to
//! say how it ends (or to report a progress), and the registry of the running gates
//! that the clients share.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use async_tasks_recorder::{RetryPolicy, TaskContext, TaskError, TaskState};
use tokio::sync::{mpsc, oneshot};

use crate::common::timing::{Mark, LOCAL};
use crate::history::{End, Leaves};

/// What a client tells a launched future through its gate.
#[derive(Debug)]
pub(crate) enum Msg {
    /// End so.
    End(End),
    /// Report this progress, then say so.
    Progress(u64, oneshot::Sender<()>),
}

/// A launched attempt's body: it waits for its gate to tell how it ends, reporting
/// progress (through `context`, given to `launch_fenced` tasks) when told.
pub(crate) async fn gated(
    mut gate: mpsc::UnboundedReceiver<Msg>,
    context: Option<TaskContext>,
    started: Mark<Instant>,
) -> Result<(), ()> {
    // At the first poll: the attempt holds its running slot.
    started.set();
    loop {
        match gate.recv().await {
            Some(Msg::End(end)) => return end.output(),
            Some(Msg::Progress(value, reported)) => {
                if let Some(context) = &context {
                    context.progress(value);
                }
                let _ = reported.send(());
            }
            // A gate dropped unsent never happens while the future runs; it would read
            // as a failure.
            None => return Err(()),
        }
    }
}

/// A launch's handle, reduced to how its attempt ended (`None`: cancelled).
pub(crate) struct Ended(pub(crate) Pin<Box<dyn Future<Output = Option<End>> + Send>>);

impl Ended {
    fn of<R, E>(handle: async_tasks_recorder::TaskHandle<R, E>) -> Ended
    where
        R: Send + 'static,
        E: fmt::Debug + Send + 'static,
    {
        Ended(Box::pin(async move { end_of(&handle.await) }))
    }
}

impl fmt::Debug for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ended")
    }
}

/// How a client launches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum How {
    /// `launch`.
    Plain,
    /// `launch_with`, untimed or with a timeout in microseconds.
    With(Option<u64>),
    /// `launch_kept`, numbered so.
    Kept(u32),
    Fenced,
    Retrying,
}

/// The retry policy of retrying launches: one retry, an hour later, so that a failed
/// first attempt leaves its launch waiting for the rest of the history.
pub(crate) fn retry_later() -> RetryPolicy {
    let hour = Duration::from_secs(3600);
    RetryPolicy::new(2).backoff(hour, hour)
}

/// A launched future that is running (its launch returned `Ok`) and not released yet,
/// or a retrying launch that waits for its next attempt.
#[derive(Debug)]
pub(crate) struct RunningGate {
    pub(crate) id: u64,
    /// Taken when the gate is opened. Kept until the attempt's end has been seen: a
    /// future whose gate is dropped unsent would end `Err`.
    pub(crate) release: Option<mpsc::UnboundedSender<Msg>>,
    /// The handle of a launch that has one (all but `launch`).
    pub(crate) handle: Option<Ended>,
    /// When its launch was invoked: a timeout may fire from then on (the deadline
    /// counts from inside the call).
    pub(crate) launched: Instant,
    pub(crate) timed: bool,
    /// What its end leaves besides the phase.
    pub(crate) leaves: Leaves,
    /// Its task reports progress when told (`launch_fenced`).
    pub(crate) reports: bool,
    /// Its first attempt failed and its launch waits for the next: only a cancel ends it.
    pub(crate) waiting: bool,
    /// When its future was first polled, if it was.
    pub(crate) started: Mark<Instant>,
    /// Its start is logged.
    pub(crate) start_logged: bool,
}

impl RunningGate {
    /// Releases the future with `end`; returns when, and how.
    pub(crate) fn open(&mut self, end: End) -> (Instant, End) {
        let at = LOCAL.now();
        if let Some(release) = self.release.take() {
            // The future waits for this message (or has not been polled yet, or was
            // dropped by a timeout, which its handle will tell).
            let _ = release.send(Msg::End(end));
        }
        (at, end)
    }

    /// Whether its future has run: then it holds a running slot, and a release ends it
    /// without waiting for another attempt to end.
    pub(crate) fn started(&self) -> bool {
        self.started.get().is_some()
    }
}

/// A running gate taken out of the registry by a client, which alone releases,
/// cancels or concludes it.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) gate: RunningGate,
    /// How many launches of its id had returned `Ok` when it was taken (this one
    /// included: no other launch of the id succeeds while it runs).
    pub(crate) launches: u64,
}

/// The open gates of a history, shared by its clients.
#[derive(Debug, Default)]
pub(crate) struct Gates {
    pub(crate) running: Vec<RunningGate>,
    /// How many launches of each id returned `Ok` so far.
    pub(crate) launched: HashMap<u64, u64>,
    /// Per id: launches in flight, plus attempts whose end has not been seen yet.
    pub(crate) busy: HashMap<u64, usize>,
    /// Per id: cancels in flight that no new attempt of the id may meet. A launch of
    /// the id is not made (a query is made instead) while this is not 0.
    pub(crate) blocking: HashMap<u64, usize>,
    /// Gated revokes not ended yet: (ticket, release).
    pub(crate) revokes: Vec<(u64, oneshot::Sender<End>)>,
    pub(crate) next_ticket: u64,
    /// The number of the last kept launch.
    pub(crate) kept: u32,
}

/// A launch's answer: whether it launched, and its handle then.
pub(crate) fn split<R, E>(
    result: Result<async_tasks_recorder::TaskHandle<R, E>, TaskState>,
) -> (Result<(), TaskState>, Option<Ended>)
where
    R: Send + 'static,
    E: fmt::Debug + Send + 'static,
{
    match result {
        Ok(handle) => (Ok(()), Some(Ended::of(handle))),
        Err(state) => (Err(state), None),
    }
}

/// How a task ended, as its handle tells; `None` for a cancelled one.
fn end_of<R, E: fmt::Debug>(output: &Result<R, TaskError<E>>) -> Option<End> {
    match output {
        Ok(_) => Some(End::Ok),
        Err(TaskError::Failed(_)) => Some(End::Err),
        Err(TaskError::Panicked(_)) => Some(End::Panic),
        Err(TaskError::TimedOut) => Some(End::TimedOut),
        Err(TaskError::Cancelled) => None,
        Err(error) => panic!("nothing drops the tasks of a history, yet: {error:?}"),
    }
}

/// One less launch in flight or attempt running for `id`.
pub(crate) fn unreserve(gates: &mut Gates, id: u64) {
    let busy = gates.busy.get_mut(&id).expect("a reserved id");
    *busy -= 1;
}
