//! The sequential specification, as the checker uses it: the model of `tests/model`,
//! with the reason of every `Failed` id and what `status` reads besides the phase.
//!
//! `status` is compared in what the model knows of it: the phase, the attempts of a
//! `Working` or `Failed` id, the failure reason, the kept value, the last progress (on
//! the in-memory store only: on Redis a report reaches the store later, by design),
//! whether a retry waits, and, on a recorder with `max_running(1)` (the `queued`
//! workload), whether the attempt is queued: the model cannot tell when an attempt
//! leaves the queue (see `Call::Status`), so it checks that nothing queues without a
//! limit, that an attempt queues only from its launch on, and that it no longer does
//! once its future has run (a `start` operation, logged from the launch until the
//! future's first poll). A retrying launch retries once, an hour later, so that a
//! failed first attempt leaves it waiting (`Working`, with the next attempt's number,
//! the failure and a `retry_at`) for the rest of the history, until a cancel ends it.
//!
//! In the sequential model:
//! - `wait(id)` answers the phase of the id (with the failure reason) and can only take
//!   effect while nothing runs for it: a wait that answers `P` takes effect at an
//!   instant inside its interval at which the id is final and in `P`. Its waiter is
//!   woken by the transition that ended the phase it waited for, which lies inside its
//!   interval, so the instant just after that transition is one (the id may have moved
//!   on by the time the wait returns).
//! - `cancel(id)` answering `true` is the running attempt's end itself (`Working` to
//!   `Failed`, reason `Cancelled`): the cancel asks before that end and returns after
//!   it. Answering `false`, it takes effect at an instant at which the id is not
//!   `Working` (the attempt ended on its own first, or nothing ran).

use std::collections::HashMap;

use async_tasks_recorder::{FailureReason, TaskPhase, TaskState};

use crate::history::{Answer, Call, End, KeptCode, Leaves, StatusView};
use crate::model::{Model, ModelState};

/// The model, with the reason of every `Failed` id (which `wait` answers too) and what
/// `status` reads besides the phase.
#[derive(Debug, Clone, Default)]
pub(crate) struct Spec {
    pub(crate) model: Model,
    pub(crate) reasons: HashMap<u64, FailureReason>,
    /// What the final record of an id keeps (a `Revoking` one: its success's).
    pub(crate) kept: HashMap<u64, KeptCode>,
    /// Attempts of an id since it was last `NotFound`, the running one included.
    pub(crate) attempts: HashMap<u64, u32>,
    /// `Working` ids whose retrying launch waits for its next attempt: why the last
    /// attempt failed.
    pub(crate) backoff: HashMap<u64, FailureReason>,
    /// The last progress the running attempt of an id reported.
    pub(crate) progress: HashMap<u64, u64>,
    /// Whether a history's recorder has a `max_running` limit: else nothing queues.
    pub(crate) may_queue: bool,
    /// The queued flag of running attempts as last read (or `false`: started).
    pub(crate) queued: HashMap<u64, bool>,
}

impl Spec {
    /// What `status(id)` reads, for a read that saw the queued flag `read`.
    fn status(&mut self, id: u64, read: bool) -> StatusView {
        let state = self.model.state(id);
        let phase = match state {
            None => TaskPhase::NotFound,
            Some(ModelState::Working) => TaskPhase::Working,
            Some(ModelState::Success) => TaskPhase::Success,
            Some(ModelState::Failed) => TaskPhase::Failed,
            Some(ModelState::Revoking) => TaskPhase::Revoking,
        };
        let working = phase == TaskPhase::Working;
        let counted = working || phase == TaskPhase::Failed;
        StatusView {
            phase,
            attempts: if counted {
                self.attempts.get(&id).copied()
            } else {
                None
            },
            last_failure: match phase {
                TaskPhase::Failed => self.reasons.get(&id).copied(),
                TaskPhase::Working => self.backoff.get(&id).copied(),
                _ => None,
            },
            kept: if working || state.is_none() {
                None
            } else {
                self.kept.get(&id).copied()
            },
            progress: if working {
                self.progress.get(&id).copied()
            } else {
                None
            },
            retry_pending: working && self.backoff.contains_key(&id),
            queued: working && !self.backoff.contains_key(&id) && self.queued_flag(id, read),
        }
    }

    /// The queued flag of the running attempt of `id`, for a read that saw `read`:
    /// `read` where it may be (then the flag as last read), else `false`.
    fn queued_flag(&mut self, id: u64, read: bool) -> bool {
        if self.queued.get(&id) == Some(&false) {
            // Out of the queue (or never in it): for good.
            return false;
        }
        let flag = read && self.may_queue;
        self.queued.insert(id, flag);
        flag
    }
}

/// Applies `call` to `spec` and returns what the model answers, or `None` when the
/// operation cannot happen in the model's state (a future ending for an id that is not
/// `Working`, a revoke ending for an id that is not `Revoking`, a wait for an id that
/// is not final).
pub(crate) fn apply(spec: &mut Spec, call: Call) -> Option<Answer> {
    let model = &mut spec.model;
    Some(match call {
        // A timeout changes nothing at the launch: the timed attempt's end is a
        // `finish` of its own.
        Call::Launch(id)
        | Call::LaunchWith(id, _)
        | Call::LaunchKept(id, _)
        | Call::LaunchFenced(id)
        | Call::LaunchRetrying(id) => {
            let relaunch = model.state(id) == Some(ModelState::Failed);
            let launched = model.launch(id);
            if launched.is_ok() {
                let before = if relaunch {
                    spec.attempts.get(&id).copied()
                } else {
                    None
                };
                spec.attempts.insert(id, before.unwrap_or(0) + 1);
                spec.kept.remove(&id);
                spec.progress.remove(&id);
                spec.queued.remove(&id);
            }
            Answer::Launch(launched)
        }
        Call::Finish(id, end, leaves) => {
            if model.state(id) != Some(ModelState::Working) || spec.backoff.contains_key(&id) {
                return None;
            }
            spec.progress.remove(&id);
            spec.queued.remove(&id);
            match (leaves, end.reason()) {
                (Leaves::Retry, Some(reason)) => {
                    // Still Working: the next attempt's number, the failure, its time.
                    spec.backoff.insert(id, reason);
                    *spec.attempts.entry(id).or_default() += 1;
                }
                (_, reason) => {
                    model.finish(id, end == End::Ok);
                    if let Some(reason) = reason {
                        spec.reasons.insert(id, reason);
                    }
                    match leaves {
                        Leaves::Kept(n) => match KeptCode::of(end, n) {
                            Some(code) => spec.kept.insert(id, code),
                            None => spec.kept.remove(&id),
                        },
                        _ => spec.kept.remove(&id),
                    };
                }
            }
            Answer::Finished
        }
        Call::Progress(id, value) => {
            if model.state(id) != Some(ModelState::Working) || spec.backoff.contains_key(&id) {
                return None;
            }
            spec.progress.insert(id, value);
            Answer::Finished
        }
        Call::Status(id, queued) => Answer::Status(spec.status(id, queued)),
        Call::Start(id) => {
            if model.state(id) != Some(ModelState::Working) {
                return None;
            }
            spec.queued.insert(id, false);
            Answer::Finished
        }
        Call::Query(id) => Answer::State(model.query(id)),
        Call::Quick(id) => Answer::State(model.quick(id)),
        Call::RevokeBegin(id) => Answer::RevokeBegin(model.revoke_begin(id)),
        Call::RevokeEnd(id, end) => {
            if model.state(id) != Some(ModelState::Revoking) {
                return None;
            }
            let outcome = model.revoke_end(id, end == End::Ok);
            if model.state(id).is_none() {
                spec.kept.remove(&id);
                spec.attempts.remove(&id);
            }
            Answer::RevokeEnd(outcome)
        }
        Call::Count(state) => Answer::Count(model.count(state)),
        Call::Counts => {
            let revoking = model
                .states
                .values()
                .filter(|&&s| s == ModelState::Revoking)
                .count();
            Answer::Counts([
                model.count(TaskState::Working),
                model.count(TaskState::Success),
                model.count(TaskState::Failed),
                revoking,
            ])
        }
        Call::Wait(id) => {
            let phase = model.wait(id)?;
            let reason = match phase {
                TaskPhase::Failed => spec.reasons.get(&id).copied(),
                _ => None,
            };
            Answer::Settled(phase, reason)
        }
        Call::Cancel(id) => {
            let cancelled = model.cancel(id);
            if cancelled {
                spec.reasons.insert(id, FailureReason::Cancelled);
                spec.backoff.remove(&id);
                spec.kept.remove(&id);
                spec.progress.remove(&id);
                spec.queued.remove(&id);
            }
            Answer::Cancelled(cancelled)
        }
    })
}

/// One record of a [`StateKey`]: the id, its state, the reason of a failed one, and
/// what `status` reads of it.
type RecordKey = (u64, ModelState, Option<FailureReason>, StatusKey);

/// What `status` reads besides the phase: attempts, kept, wait reason, progress, the
/// known queued flag.
type StatusKey = (
    Option<u32>,
    Option<KeptCode>,
    Option<FailureReason>,
    Option<u64>,
    Option<bool>,
);

/// The model's state in a hashable, canonical form: the records sorted by id.
pub(crate) type StateKey = Vec<RecordKey>;

/// The model's state as a [`StateKey`].
pub(crate) fn state_key(spec: &Spec) -> StateKey {
    let mut key: StateKey = spec
        .model
        .states
        .iter()
        .map(|(&id, &state)| {
            let reason = match state {
                ModelState::Failed => spec.reasons.get(&id).copied(),
                _ => None,
            };
            let status = (
                spec.attempts.get(&id).copied(),
                spec.kept.get(&id).copied(),
                spec.backoff.get(&id).copied(),
                spec.progress.get(&id).copied(),
                spec.queued.get(&id).copied(),
            );
            (id, state, reason, status)
        })
        .collect();
    key.sort_unstable_by_key(|&(id, ..)| id);
    key
}
