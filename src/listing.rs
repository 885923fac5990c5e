//! What the recorders answer about all ids in a state: how many there are
//! ([`StateCounts`]) and paged listings of them ([`Page`] and its [`ListCursor`]).

use std::fmt;
use std::str::FromStr;

use crate::TaskState;

/// How many ids are in each state, read at one instant.
///
/// `success` includes the ids whose revoke is running, and `revoking` counts those ids
/// again, on their own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct StateCounts {
    /// Ids in [`TaskState::Working`], queued ones included.
    pub working: usize,
    /// Ids in [`TaskState::Success`], including those being revoked.
    pub success: usize,
    /// Ids in [`TaskState::Failed`].
    pub failed: usize,
    /// Ids whose revoke future is running (a subset of `success`).
    pub revoking: usize,
    /// `Working` ids whose future waits for a
    /// [`max_running`](crate::Builder::max_running) slot (a subset of `working`; on
    /// Redis, of every process of the namespace).
    pub queued: usize,
}

impl StateCounts {
    /// The count for one state; `NotFound` is always 0, since no record is kept for it.
    #[must_use]
    pub const fn get(&self, state: TaskState) -> usize {
        match state {
            TaskState::Working => self.working,
            TaskState::Success => self.success,
            TaskState::Failed => self.failed,
            TaskState::NotFound => 0,
        }
    }

    /// The number of records kept: `working + success + failed`.
    #[must_use]
    pub const fn total(&self) -> usize {
        self.working + self.success + self.failed
    }
}

/// Where a paged listing stopped, to pass to the next call for the page after it.
///
/// Opaque, but it prints and parses (`Display`, `FromStr`) so that it can travel in a
/// URL (`?after=...`). A cursor made by one kind of recorder means nothing to the
/// other kind: given one, a listing returns an empty last page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListCursor(pub(crate) At);

/// A position in a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum At {
    /// In memory: after the ids of `shard` whose hash is at most `hash`.
    Memory { shard: u16, hash: u64 },
    /// On Redis: in slot group `group`, at its `pass`-th hash of the state, at the
    /// hash scan's cursor `scan`.
    Redis { group: u16, pass: u8, scan: u64 },
}

impl fmt::Display for ListCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            At::Memory { shard, hash } => write!(f, "m{shard}.{hash:x}"),
            At::Redis { group, pass, scan } => write!(f, "r{group}.{pass}.{scan}"),
        }
    }
}

/// A text that is not a [`ListCursor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseCursorError(());

impl fmt::Display for ParseCursorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a listing cursor (use the `next` of a page as it was printed)")
    }
}

impl std::error::Error for ParseCursorError {}

impl FromStr for ListCursor {
    type Err = ParseCursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseCursorError(());
        if let Some(rest) = s.strip_prefix('m') {
            let (shard, hash) = rest.split_once('.').ok_or_else(bad)?;
            return Ok(ListCursor(At::Memory {
                shard: shard.parse().map_err(|_| bad())?,
                hash: u64::from_str_radix(hash, 16).map_err(|_| bad())?,
            }));
        }
        if let Some(rest) = s.strip_prefix('r') {
            let mut parts = rest.splitn(3, '.');
            let mut next = || parts.next().ok_or_else(bad);
            let (group, pass, scan) = (next()?, next()?, next()?);
            return Ok(ListCursor(At::Redis {
                group: group.parse().map_err(|_| bad())?,
                pass: pass.parse().map_err(|_| bad())?,
                scan: scan.parse().map_err(|_| bad())?,
            }));
        }
        Err(bad())
    }
}

/// One page of a listing: some ids in the state, and where the next page starts
/// (`None` after the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page<K> {
    /// The ids of this page.
    pub ids: Vec<K>,
    /// The cursor of the next page, or `None` if this page is the last.
    pub next: Option<ListCursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_prints_and_parses_back() {
        for at in [
            At::Memory {
                shard: 63,
                hash: u64::MAX,
            },
            At::Memory { shard: 0, hash: 0 },
            At::Redis {
                group: 15,
                pass: 1,
                scan: 1 << 40,
            },
        ] {
            let cursor = ListCursor(at);
            assert_eq!(cursor.to_string().parse::<ListCursor>(), Ok(cursor));
        }
        for bad in ["", "m", "m1", "m1.zz", "r1.2", "x1.2.3", "r1.2.-3"] {
            assert!(bad.parse::<ListCursor>().is_err(), "{bad:?}");
        }
    }
}
