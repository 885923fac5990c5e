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
    /// The same reason without the future: `Send + Sync + 'static` and an [`Error`]
    /// whenever `E` is, whatever the future, so that `?` works into `anyhow::Error`
    /// or `Box<dyn Error + Send + Sync>`:
    /// `recorder.revoke_task_block(id, undo).await.map_err(RevokeFailReason::drop_future)?`.
    #[must_use]
    pub fn drop_future(self) -> RevokeFailReason<(), E> {
        match self {
            RevokeFailReason::NotSuccess(_) => RevokeFailReason::NotSuccess(()),
            RevokeFailReason::Revoking(_) => RevokeFailReason::Revoking(()),
            RevokeFailReason::RevokeTaskError(e) => RevokeFailReason::RevokeTaskError(e),
        }
    }

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
/// (`launch` and `launch_block` of the in-memory recorder keep the 2.x error
/// `(TaskState, Fut)`; see [`close`](crate::AsyncTasksRecorder::close) for what they
/// return once the recorder is closed.)
///
/// [`Store`](LaunchError::Store) comes only from a store that talks to a server (the
/// Redis recorder); the in-memory recorder never returns it.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LaunchError<Fut> {
    /// The id may not launch in its current state, given here: `Working` (a future of it
    /// is running or waiting for a slot) or `Success` (it already succeeded, or its
    /// revoke is running). The record is unchanged.
    Refused(crate::TaskState, Fut),
    /// The recorder was [closed](crate::AsyncTasksRecorder::close): it starts nothing
    /// new. The record is unchanged.
    Closed(Fut),
    /// The store could not be asked (see [`StoreError`] for what each kind means and
    /// what to do). The future was not started by this call. Whether the launch took
    /// effect on the server is unknown when the error is
    /// [`Unreachable`](StoreError::Unreachable) or [`TimedOut`](StoreError::TimedOut)
    /// after the request was sent: if it did, the id reads `Working` with nobody
    /// running it until its lease ends, and then `Failed` with
    /// [`WorkerLost`](crate::FailureReason::WorkerLost), never stuck.
    Store(StoreError, Fut),
}

impl<Fut> LaunchError<Fut> {
    /// The same error without the future: `Send + Sync + 'static` whatever the future,
    /// so that `?` works into `anyhow::Error` or `Box<dyn Error + Send + Sync>`:
    /// `recorder.launch_with(id, task, options).await.map_err(LaunchError::drop_future)?`.
    #[must_use]
    pub fn drop_future(self) -> LaunchError<()> {
        match self {
            LaunchError::Refused(state, _) => LaunchError::Refused(state, ()),
            LaunchError::Closed(_) => LaunchError::Closed(()),
            LaunchError::Store(e, _) => LaunchError::Store(e, ()),
        }
    }

    /// The future that was not started.
    #[must_use]
    pub fn into_future(self) -> Fut {
        match self {
            LaunchError::Refused(_, f) | LaunchError::Closed(f) | LaunchError::Store(_, f) => f,
        }
    }

    /// The id's state for a refusal, `None` when the recorder is closed or the store
    /// could not be asked.
    #[must_use]
    pub fn state(&self) -> Option<crate::TaskState> {
        match self {
            LaunchError::Refused(state, _) => Some(*state),
            LaunchError::Closed(_) | LaunchError::Store(..) => None,
        }
    }

    /// The store's error, for [`Store`](LaunchError::Store).
    #[must_use]
    pub fn store_error(&self) -> Option<&StoreError> {
        match self {
            LaunchError::Store(e, _) => Some(e),
            _ => None,
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
            LaunchError::Store(e, _) => write!(f, "Store({e:?}, ..)"),
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
            LaunchError::Store(e, _) => write!(f, "the launch could not be recorded: {e}"),
        }
    }
}

impl<Fut> Error for LaunchError<Fut> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            LaunchError::Store(e, _) => Some(e),
            _ => None,
        }
    }
}

/// Why a store that talks to a server (the Redis recorder) could not answer. Every
/// variant carries the server's or the client's message.
///
/// Whether an operation that changes a record took effect is unknown after
/// [`Unreachable`](Self::Unreachable) or [`TimedOut`](Self::TimedOut) (the request
/// may have been carried out and only the reply lost); each method's docs say what
/// the record can then be. A query that fails never returns a state, so an error is
/// never mistaken for an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The server could not be reached, or the connection dropped during the call.
    /// The client reconnects by itself: retry later, and query the id's status to
    /// learn whether a change took effect.
    Unreachable(String),
    /// The server did not answer within the response timeout
    /// (`RedisBuilder::response_timeout`).
    /// The server may be overloaded or the network stalled: retry later; a change may
    /// or may not have taken effect.
    TimedOut(String),
    /// The server refused the credentials, or the user's ACL does not allow a key or
    /// command the recorder needs, or TLS failed: the server's certificate is not
    /// trusted, or the server did not accept this client's. Fix the password, the user
    /// or its ACL rules (`redis::acl_rules` gives those a recorder
    /// needs), or the certificates.
    AuthFailed(String),
    /// The server refused the command for another reason: a read-only replica, out of
    /// memory under `noeviction`, a busy script. Point the recorder at the primary, or
    /// give the server memory; the record is unchanged.
    Refused(String),
    /// An id could not be encoded, or an id read back from the server could not be
    /// decoded into the recorder's id type (a namespace shared by recorders with
    /// different id types). Use one id type per namespace.
    BadId(String),
    /// The server's settings break the guarantees the recorder gives (see the `redis`
    /// module's docs), or a namespace is laid out differently from what this recorder
    /// expects. Change the server's configuration, or the builder's settings.
    Misconfigured(String),
    /// A setting given to the builder is not valid (a URL that does not parse, an
    /// empty namespace, a lease too short). Fix the setting.
    InvalidConfig(String),
}

impl StoreError {
    /// The message carried by the variant.
    #[must_use]
    pub fn message(&self) -> &str {
        match self {
            StoreError::Unreachable(m)
            | StoreError::TimedOut(m)
            | StoreError::AuthFailed(m)
            | StoreError::Refused(m)
            | StoreError::BadId(m)
            | StoreError::Misconfigured(m)
            | StoreError::InvalidConfig(m) => m,
        }
    }

    /// Whether the same call may succeed later without changing anything
    /// ([`Unreachable`](Self::Unreachable) and [`TimedOut`](Self::TimedOut)).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unreachable(_) | StoreError::TimedOut(_))
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            StoreError::Unreachable(_) => "the store could not be reached",
            StoreError::TimedOut(_) => "the store did not answer in time",
            StoreError::AuthFailed(_) => "the store refused the credentials",
            StoreError::Refused(_) => "the store refused the command",
            StoreError::BadId(_) => "an id could not be encoded or decoded",
            StoreError::Misconfigured(_) => {
                "the store is configured in a way that breaks the guarantees"
            }
            StoreError::InvalidConfig(_) => "invalid store setting",
        };
        write!(f, "{what}: {}", self.message())
    }
}

impl Error for StoreError {}

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
