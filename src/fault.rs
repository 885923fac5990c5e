//! The faults the recorder catches while it runs a task, and the one mapping from a
//! task's result (its output or a fault) to the failure reason recorded for its id.

use crate::kept::{Kept, KeptOutput};
use crate::status::FailureReason;

/// A fault the recorder caught while running a task.
pub(crate) enum Fault {
    Panicked(Box<dyn std::any::Any + Send>),
    TimedOut,
    Cancelled,
    /// A shared store no longer let this process hold the task's lease.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Lost,
}

impl Fault {
    /// The failure reason recorded for a task that ended so.
    pub(crate) fn reason(&self) -> FailureReason {
        match self {
            Fault::Panicked(_) => FailureReason::Panicked,
            Fault::TimedOut => FailureReason::TimedOut,
            Fault::Cancelled => FailureReason::Cancelled,
            Fault::Lost => FailureReason::WorkerLost,
        }
    }

    /// The fault a recorded failure reason stands for, for a reply told only the
    /// reason (a task dropped before it could deliver): `None` for reasons that are
    /// not faults (`Error`, `Dropped`). A panic's payload is gone by then; a
    /// placeholder says so.
    pub(crate) fn from_reason(reason: FailureReason) -> Option<Fault> {
        match reason {
            FailureReason::Panicked => Some(Fault::Panicked(Box::new(
                "the task panicked while it was being dropped",
            ))),
            FailureReason::TimedOut => Some(Fault::TimedOut),
            FailureReason::Cancelled => Some(Fault::Cancelled),
            FailureReason::WorkerLost => Some(Fault::Lost),
            FailureReason::Error | FailureReason::Dropped => None,
        }
    }
}

/// A task future's output as the recorder judges it: lets the task runner ask "did it
/// succeed?" of any `Result<R, E>` without naming `R` and `E` (which would require them
/// to be `'static`).
pub(crate) trait TaskResult {
    /// Whether the launch keeps a value with the record (then a panic's message is
    /// kept too).
    const KEEPS: bool = false;

    fn is_ok(&self) -> bool;

    /// What a keeping launch keeps of this output, within `limit` bytes.
    fn kept(&self, _limit: usize) -> Option<Kept> {
        None
    }
}

impl<R, E> TaskResult for Result<R, E> {
    fn is_ok(&self) -> bool {
        Result::is_ok(self)
    }
}

/// The output of a launch that keeps its output's or error's `Display` with the record.
pub(crate) struct Keeping<T>(pub(crate) T);

impl<R: KeptOutput, E: std::fmt::Display> TaskResult for Keeping<Result<R, E>> {
    const KEEPS: bool = true;

    fn is_ok(&self) -> bool {
        self.0.is_ok()
    }

    fn kept(&self, limit: usize) -> Option<Kept> {
        kept_of_output(&self.0, limit)
    }
}

/// What a keeping launch keeps of a task's own result, within `limit` bytes: its
/// output's `Display` (if the output has one) or its error's.
pub(crate) fn kept_of_output<R: KeptOutput, E: std::fmt::Display>(
    result: &Result<R, E>,
    limit: usize,
) -> Option<Kept> {
    match result {
        Ok(output) => Some(Kept::output_of(output.kept_display()?, limit)),
        Err(error) => Some(Kept::message_of(error, limit)),
    }
}

/// What a keeping launch keeps of a fault: a panic's message; nothing for the other
/// faults, whose failure reason says it all.
pub(crate) fn kept_of_fault(fault: &Fault, limit: usize) -> Option<Kept> {
    match fault {
        Fault::Panicked(payload) => Some(Kept::panic_message(&**payload, limit)),
        _ => None,
    }
}

/// The end a task's result asks to record: `None` for a success.
pub(crate) fn failure_of<O: TaskResult>(result: &Result<O, Fault>) -> Option<FailureReason> {
    match result {
        Ok(output) if output.is_ok() => None,
        Ok(_) => Some(FailureReason::Error),
        Err(fault) => Some(fault.reason()),
    }
}
