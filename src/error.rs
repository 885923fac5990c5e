//! Error values handed back by the recorder.

use std::error::Error;
use std::fmt;

/// Why a revoke did not succeed. The two refusals hand the unused revoke future back.
///
/// Unlike 2.x, `Debug` does not require the future to be `Debug`, and the type
/// implements `Display` and [`std::error::Error`].
#[derive(Clone, PartialEq, Eq)]
pub enum RevokeFailReason<Fut, E> {
    /// The id is not `Success` (it is `NotFound`, `Working` or `Failed`), so there is
    /// nothing to revoke. The record is unchanged. Query the state, or wait for the task
    /// to finish, before revoking again.
    NotSuccess(Fut),
    /// Another revoke of this id is running. The record is unchanged; if that revoke
    /// fails, this one may be tried again.
    Revoking(Fut),
    /// The revoke future ran and returned `Err`. The id is still `Success` and can be
    /// revoked again.
    RevokeTaskError(E),
}

impl<Fut, E> RevokeFailReason<Fut, E> {
    /// The revoke future handed back by a refusal, or `None` if it ran.
    #[must_use]
    pub fn into_future(self) -> Option<Fut> {
        match self {
            RevokeFailReason::NotSuccess(f) | RevokeFailReason::Revoking(f) => Some(f),
            RevokeFailReason::RevokeTaskError(_) => None,
        }
    }
}

impl<Fut, E: fmt::Debug> fmt::Debug for RevokeFailReason<Fut, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevokeFailReason::NotSuccess(_) => f.write_str("NotSuccess(..)"),
            RevokeFailReason::Revoking(_) => f.write_str("Revoking(..)"),
            RevokeFailReason::RevokeTaskError(e) => {
                f.debug_tuple("RevokeTaskError").field(e).finish()
            }
        }
    }
}

impl<Fut, E: fmt::Display> fmt::Display for RevokeFailReason<Fut, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevokeFailReason::NotSuccess(_) => f.write_str("the task is not in Success state"),
            RevokeFailReason::Revoking(_) => f.write_str("another revoke of the task is running"),
            RevokeFailReason::RevokeTaskError(e) => write!(f, "the revoke future failed: {e}"),
        }
    }
}

impl<Fut, E: Error + 'static> Error for RevokeFailReason<Fut, E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            RevokeFailReason::RevokeTaskError(e) => Some(e),
            _ => None,
        }
    }
}

/// Why [`launch_with`](crate::AsyncTasksRecorder::launch_with) did not start a task.
/// Both cases hand the unused future back.
///
/// (`launch` and `launch_block` keep the 2.x error `(TaskState, Fut)`; see
/// [`close`](crate::AsyncTasksRecorder::close) for what they return once the recorder
/// is closed.)
#[derive(Clone, PartialEq, Eq)]
pub enum LaunchError<Fut> {
    /// The id may not launch in its current state, given here: `Working` (a future of it
    /// is running or waiting for a slot) or `Success` (it already succeeded, or its
    /// revoke is running). The record is unchanged.
    Refused(crate::TaskState, Fut),
    /// The recorder was [closed](crate::AsyncTasksRecorder::close): it starts nothing
    /// new. The record is unchanged.
    Closed(Fut),
}

impl<Fut> LaunchError<Fut> {
    /// The future that was not started.
    #[must_use]
    pub fn into_future(self) -> Fut {
        match self {
            LaunchError::Refused(_, f) | LaunchError::Closed(f) => f,
        }
    }

    /// The id's state for a refusal, `None` when the recorder is closed.
    #[must_use]
    pub fn state(&self) -> Option<crate::TaskState> {
        match self {
            LaunchError::Refused(state, _) => Some(*state),
            LaunchError::Closed(_) => None,
        }
    }

    /// Whether the launch was refused because the recorder is closed.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        matches!(self, LaunchError::Closed(_))
    }
}

impl<Fut> fmt::Debug for LaunchError<Fut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchError::Refused(state, _) => write!(f, "Refused({state:?}, ..)"),
            LaunchError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<Fut> fmt::Display for LaunchError<Fut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchError::Refused(state, _) => {
                write!(f, "the task may not launch: its id is {state}")
            }
            LaunchError::Closed(_) => f.write_str("the recorder is closed to new launches"),
        }
    }
}

impl<Fut> Error for LaunchError<Fut> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Boom;
    impl fmt::Display for Boom {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("boom")
        }
    }
    impl Error for Boom {}

    #[test]
    fn display_debug_source() {
        let e: RevokeFailReason<(), Boom> = RevokeFailReason::RevokeTaskError(Boom);
        assert_eq!(e.to_string(), "the revoke future failed: boom");
        assert_eq!(format!("{e:?}"), "RevokeTaskError(Boom)");
        assert!(e.source().is_some());
        assert!(e.into_future().is_none());

        // A future that is not Debug still gives a Debug error.
        let fut = async { Ok::<(), Boom>(()) };
        let e = RevokeFailReason::<_, Boom>::Revoking(fut);
        assert_eq!(format!("{e:?}"), "Revoking(..)");
        assert!(e.source().is_none());
        assert!(e.into_future().is_some());
        let e = RevokeFailReason::<u8, Boom>::NotSuccess(7);
        assert_eq!(e.to_string(), "the task is not in Success state");
        assert_eq!(e.into_future(), Some(7));
    }

    #[test]
    fn launch_error() {
        let e = LaunchError::Refused(crate::TaskState::Success, 3u8);
        assert_eq!(e.to_string(), "the task may not launch: its id is success");
        assert_eq!(format!("{e:?}"), "Refused(Success, ..)");
        assert_eq!(e.state(), Some(crate::TaskState::Success));
        assert!(!e.is_closed());
        assert_eq!(e.into_future(), 3);
        let e = LaunchError::Closed(async {});
        assert_eq!(format!("{e:?}"), "Closed(..)");
        assert_eq!(e.to_string(), "the recorder is closed to new launches");
        assert!(e.is_closed() && e.state().is_none());
    }
}
