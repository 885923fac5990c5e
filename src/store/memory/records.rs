//! The record types of the in-memory store, one per kind of table entry, and the
//! [`Keyed`] trait that lets the shard's generic table helpers find their keys.
//!
//! Every type is named `<what it records>Rec`. The finished ones are as small as the
//! phase allows: a `Success` record is its key alone, which is what keeps a million
//! succeeded `u64` ids near 20 bytes each.

use std::borrow::Borrow;
use std::time::Instant;

use crate::cell::TaskCell;
use crate::kept::Kept;
use crate::status::FailureReason;
use crate::sync::Arc;

/// Gives every record type's key to the generic table helpers.
pub(super) trait Keyed<K> {
    fn key(&self) -> &K;
}

/// Implements [`Keyed`] for record types whose key is the field `key`.
macro_rules! keyed_by_field {
    ($($record:ident),*) => {
        $(
            impl<K> Keyed<K> for $record<K> {
                fn key(&self) -> &K {
                    &self.key
                }
            }
        )*
    };
}

keyed_by_field!(
    DetailsRec,
    KeptRec,
    WorkingRec,
    FailedRec,
    RevokingRec,
    TimedRec
);

/// A `Success` record kept with no expiry, or a tombstone: the key alone.
#[derive(Debug)]
pub(super) struct SuccessRec<K>(pub(super) K);

impl<K> Keyed<K> for SuccessRec<K> {
    fn key(&self) -> &K {
        &self.0
    }
}

/// A `Success` record that will expire (retention is on): the key and its sequence
/// number, which the shard's expiry queue refers to.
#[derive(Debug)]
pub(super) struct TimedRec<K> {
    pub(super) key: K,
    pub(super) seq: u64,
}

/// Attempt count and start of the current phase of a finished record, kept only when
/// the recorder tracks details.
#[derive(Debug, Clone, Copy)]
pub(super) struct Details {
    pub(super) attempts: u32,
    pub(super) since: Instant,
}

/// The details of a `Success` record, in their own table.
#[derive(Debug)]
pub(super) struct DetailsRec<K> {
    pub(super) key: K,
    pub(super) details: Details,
}

/// The value a `Success` or `Failed` record keeps (launches that keep one only; a
/// `Revoking` record's success keeps its entry here until the revoke succeeds).
#[derive(Debug)]
pub(super) struct KeptRec<K> {
    pub(super) key: K,
    pub(super) kept: Kept,
}

/// A `Working` record, running or queued for a `max_running` slot. Kept small (24
/// bytes for `u64` ids): a burst of launches can fill the working tables faster than
/// tasks finish, and every byte here is memory traffic on the launch path.
#[derive(Debug)]
pub(super) struct WorkingRec<K> {
    pub(super) key: K,
    pub(super) attempts: u32,
    /// The low 32 bits of the attempt's fencing token, which a finish must present.
    /// Only the attempt's guard holds its token, so this is a check of that invariant,
    /// not a lease: a stale token could only pass after exactly 2^32 further launches
    /// and revokes in the shard while its guard still lived. The full token, handed to
    /// the task by `launch_fenced`, is the shard's 64-bit counter.
    pub(super) token: u32,
    /// Waiters, cancellers and the task's own waker, a cancel request, and the start
    /// time when details are tracked. Created on first need: at launch when details
    /// are tracked, when the task's future (spawned or run by `launch_block`) first
    /// returns `Pending`, or by `wait`/`cancel`. A task that never returns `Pending`
    /// and that nobody waits for or cancels never gets one.
    pub(super) cell: Option<Arc<TaskCell>>,
}

impl<K> WorkingRec<K> {
    /// The record's cell, created if it has none yet.
    pub(super) fn cell(&mut self) -> Arc<TaskCell> {
        self.cell.get_or_insert_with(TaskCell::new).clone()
    }
}

/// A `Failed` record.
#[derive(Debug)]
pub(super) struct FailedRec<K> {
    pub(super) key: K,
    /// Its expiry-queue sequence number, 0 when failures are not queued.
    pub(super) seq: u64,
    pub(super) attempts: u32,
    pub(super) reason: FailureReason,
    pub(super) since: Option<Instant>,
}

/// A `Revoking` record.
#[derive(Debug)]
pub(super) struct RevokingRec<K> {
    pub(super) key: K,
    /// The low 32 bits of the revoke's fencing token (as for [`WorkingRec::token`]).
    pub(super) token: u32,
    /// The success's details, to put back if the revoke fails.
    pub(super) details: Option<Details>,
    /// Whether the success had no expiry (a tombstone, or kept with no expiry), to put
    /// it back so if the revoke fails.
    pub(super) untimed: bool,
    pub(super) since: Option<Instant>,
    pub(super) cell: Option<Arc<TaskCell>>,
}

/// The part of a token a running record keeps.
pub(super) fn token_bits(token: u64) -> u32 {
    // Truncation is the point: see `WorkingRec::token`.
    token as u32
}

/// Picks the running record of `id` whose attempt or revoke holds `token`.
pub(super) fn held_by<'a, K, Q, R>(id: &'a Q, token: u64) -> impl Fn(&R) -> bool + Copy + 'a
where
    R: Keyed<K> + Tokened,
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    move |r| r.token() == token_bits(token) && r.key().borrow() == id
}

/// The records that carry a fencing token.
pub(super) trait Tokened {
    fn token(&self) -> u32;
}

impl<K> Tokened for WorkingRec<K> {
    fn token(&self) -> u32 {
        self.token
    }
}

impl<K> Tokened for RevokingRec<K> {
    fn token(&self) -> u32 {
        self.token
    }
}
