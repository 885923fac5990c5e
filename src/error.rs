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
}
