//! [`RevokeError`]: why a revoke on the Redis recorder did not succeed; and how the
//! client's errors become a [`StoreError`].

use std::fmt;

use ::redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::StoreError;

/// Why a revoke on the Redis recorder did not succeed: the refusals of
/// [`RevokeFailReason`](crate::RevokeFailReason), and what a shared store adds. The
/// refusals hand the unused future back.
#[non_exhaustive]
pub enum RevokeError<Fut, E> {
    /// The id is not `Success`; nothing was started and the record is unchanged.
    NotSuccess(Fut),
    /// Another revoke of this id is running (in any process); the record is unchanged.
    Revoking(Fut),
    /// The revoke future returned `Err`; the id is `Success` again and revocable.
    RevokeTaskError(E),
    /// The store could not be asked to start the revoke; the future was not started.
    Store(StoreError, Fut),
    /// The revoke's lease was lost (it could not be renewed, or its end could not be
    /// recorded in time): the revoke future was stopped or its result discarded, and
    /// the id reads `Success` again once the lease ends. Whatever the future did is
    /// not undone; revoke again.
    Lost,
}

impl<Fut, E: fmt::Debug> fmt::Debug for RevokeError<Fut, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevokeError::NotSuccess(_) => f.write_str("NotSuccess(..)"),
            RevokeError::Revoking(_) => f.write_str("Revoking(..)"),
            RevokeError::RevokeTaskError(e) => f.debug_tuple("RevokeTaskError").field(e).finish(),
            RevokeError::Store(e, _) => write!(f, "Store({e:?}, ..)"),
            RevokeError::Lost => f.write_str("Lost"),
        }
    }
}

impl<Fut, E: fmt::Display> fmt::Display for RevokeError<Fut, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevokeError::NotSuccess(_) => f.write_str("the task is not in Success state"),
            RevokeError::Revoking(_) => f.write_str("another revoke of the task is running"),
            RevokeError::RevokeTaskError(e) => write!(f, "the revoke future failed: {e}"),
            RevokeError::Store(e, _) => write!(f, "the revoke could not be started: {e}"),
            RevokeError::Lost => f.write_str("the revoke's lease was lost"),
        }
    }
}

impl<Fut, E: std::error::Error + 'static> std::error::Error for RevokeError<Fut, E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RevokeError::RevokeTaskError(e) => Some(e),
            RevokeError::Store(e, _) => Some(e),
            _ => None,
        }
    }
}

impl<Fut, E> RevokeError<Fut, E> {
    /// The same error without the future: `Send + Sync + 'static` and an
    /// [`Error`](std::error::Error) whenever `E` is, whatever the future, so that `?`
    /// works into `anyhow::Error` or `Box<dyn Error + Send + Sync>`.
    #[must_use]
    pub fn drop_future(self) -> RevokeError<(), E> {
        match self {
            RevokeError::NotSuccess(_) => RevokeError::NotSuccess(()),
            RevokeError::Revoking(_) => RevokeError::Revoking(()),
            RevokeError::RevokeTaskError(e) => RevokeError::RevokeTaskError(e),
            RevokeError::Store(e, _) => RevokeError::Store(e, ()),
            RevokeError::Lost => RevokeError::Lost,
        }
    }

    /// The revoke future handed back by a refusal or a store error, if it never ran.
    #[must_use]
    pub fn into_future(self) -> Option<Fut> {
        match self {
            RevokeError::NotSuccess(f) | RevokeError::Revoking(f) | RevokeError::Store(_, f) => {
                Some(f)
            }
            RevokeError::RevokeTaskError(_) | RevokeError::Lost => None,
        }
    }
}

/// Turns the client's error into ours, without leaking its type.
pub(crate) fn store_error(e: RedisError) -> StoreError {
    let text = e.to_string();
    if e.is_timeout() {
        return StoreError::TimedOut(text);
    }
    #[cfg(feature = "redis-tls")]
    if let Some(tls) = tls_failure(&e) {
        // A certificate not trusted, or not accepted, or no common protocol: a
        // setting to fix, which no retry changes.
        return StoreError::AuthFailed(format!("TLS: {tls}"));
    }
    match e.kind() {
        ErrorKind::AuthenticationFailed => StoreError::AuthFailed(text),
        ErrorKind::Server(ServerErrorKind::NoPerm) => StoreError::AuthFailed(text),
        ErrorKind::Server(_) | ErrorKind::Extension => {
            // A function's command, key or channel that the user's ACL forbids fails
            // with the last message, not with a NOPERM code.
            if text.contains("NOAUTH")
                || text.contains("WRONGPASS")
                || text.contains("NOPERM")
                || text.contains("The user executing the script can't")
            {
                StoreError::AuthFailed(text)
            } else {
                StoreError::Refused(text)
            }
        }
        ErrorKind::InvalidClientConfig => StoreError::InvalidConfig(text),
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
            StoreError::Refused(format!("unexpected reply: {text}"))
        }
        _ if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
            StoreError::Unreachable(text)
        }
        _ => StoreError::Unreachable(text),
    }
}

/// The TLS error under a failed connection, if that is why it failed: the client
/// keeps it inside the I/O error that it gives as its source (behind an `Arc`).
#[cfg(feature = "redis-tls")]
pub(super) fn tls_failure(e: &RedisError) -> Option<String> {
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let cause = std::error::Error::source(e)?;
    let cause: &(dyn std::error::Error + 'static) = match cause.downcast_ref::<Shared>() {
        Some(shared) => &**shared,
        None => cause,
    };
    let inner = cause
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref)?;
    let tls = inner.downcast_ref::<rustls::Error>()?;
    Some(tls.to_string())
}

/// Whether the server answered that our library's function does not exist.
pub(super) fn missing_function(e: &RedisError) -> bool {
    e.to_string().contains("Function not found")
}
