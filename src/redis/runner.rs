//! Running a task or a revoke under a lease: renewing it, stopping the future before
//! the lease can end, and recording the end with the phase's fencing token.
//!
//! The holder of a running phase is a [`Holder`]. Whatever ends the future (a return,
//! a panic, a cancel, a lost lease, an abort or a runtime shutdown), the holder's end
//! is recorded at most once: by [`Holder::finish`] on the normal path, or from `Drop`
//! by handing the end to the recorder's outbox task, which retries it. If neither
//! lands before the lease ends (the process died, the server is out of reach), the
//! lease's expiry makes the move instead, so no id stays running.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::hub::Running;
use super::recorder::{Counted, Shared};
use super::store::{Loc, RedisStore, Renewed};
use crate::guard::observing;
use crate::kept::Kept;
use crate::observe::Watch;
use crate::state::{next, Op, Phase};
use crate::status::{FailureReason, Settled};
use crate::store::{Finished, Outcome, Records};
use std::sync::atomic::Ordering;

/// Which running phase a holder ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Task,
    Revoke,
}

impl Kind {
    /// How a phase of this kind settles when its end asks for `failure` (`None`: the
    /// future succeeded): the state machine's finish or revoke-end move.
    fn settled(self, failure: Option<FailureReason>) -> Settled {
        let (from, op) = match self {
            Kind::Task => (
                Phase::Working,
                Op::Finish {
                    ok: failure.is_none(),
                },
            ),
            Kind::Revoke => (
                Phase::Revoking,
                Op::RevokeEnd {
                    ok: failure.is_none(),
                },
            ),
        };
        Settled {
            phase: next(from, op).expect("a running phase may end"),
            failure: failure.filter(|_| self == Kind::Task),
            kept: None,
        }
    }
}

/// An end handed to the outbox from `Drop`: the end asked for (`None`: success), and
/// the count of local work, which ends once the outbox is done with it.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) loc: Loc,
    pub(crate) token: u64,
    pub(crate) kind: Kind,
    pub(crate) running: Arc<Running>,
    pub(crate) failure: Option<FailureReason>,
    /// What a task's end keeps with the record.
    pub(crate) kept: Option<Kept>,
    pub(crate) _counted: Option<Counted>,
}

/// The fraction of a lease after which this process stops acting as its holder, when
/// no renewal has extended it: the rest is the margin for a renewal's round trip and
/// for the two clocks' rates.
pub(crate) fn validity(lease: Duration) -> Duration {
    lease.mul_f64(0.8)
}

/// A running phase's progress, reported by its task's attempts and written to the
/// server by its holder ([`Holder::send_progress`]).
#[derive(Debug, Default)]
pub(crate) struct RedisProgress {
    /// The last report not yet written: the attempt's number and the value.
    latest: std::sync::Mutex<Option<(u32, u64)>>,
    reported: tokio::sync::Notify,
}

/// The reporter of one attempt (a retry's next attempt gets another).
#[derive(Debug)]
pub(crate) struct AttemptProgress {
    shared: Arc<RedisProgress>,
    attempt: u32,
    ended: std::sync::atomic::AtomicBool,
}

impl AttemptProgress {
    pub(crate) fn new(shared: Arc<RedisProgress>, attempt: u32) -> Arc<AttemptProgress> {
        Arc::new(AttemptProgress {
            shared,
            attempt,
            ended: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

impl crate::context::Progress for AttemptProgress {
    fn report(&self, value: u64) {
        if self.ended.load(Ordering::Acquire) {
            return;
        }
        let report = (self.attempt, value.min(u64::MAX - 1));
        *self
            .shared
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(report);
        self.shared.reported.notify_one();
    }

    fn next(&self) -> Arc<dyn crate::context::Progress> {
        self.ended.store(true, Ordering::Release);
        // A report of this attempt not yet written is dropped (the server would
        // refuse it anyway: it checks the attempt's number).
        let mut latest = self
            .shared
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if latest.is_some_and(|(attempt, _)| attempt == self.attempt) {
            *latest = None;
        }
        AttemptProgress::new(self.shared.clone(), self.attempt.saturating_add(1))
    }
}

/// Owns the right to end one running phase of one id, identified by its token.
pub(crate) struct Holder<K> {
    pub(crate) shared: Arc<Shared<K>>,
    pub(crate) loc: Loc,
    pub(crate) kind: Kind,
    pub(crate) running: Arc<Running>,
    /// The id, for the observer's reports.
    key: K,
    /// The phase's span and clock (zero-sized without `tracing` and `metrics`).
    pub(crate) watch: Watch,
    /// The end being recorded by [`finish`](Self::finish), if it started: a drop
    /// during it hands that end to the outbox instead of the `Dropped` one.
    asked: Option<Option<FailureReason>>,
    /// What that end keeps with the record.
    kept: Option<Kept>,
    /// Where the task reports its progress.
    pub(crate) progress: Arc<RedisProgress>,
    /// Whether the future has its running slot (it is not queued); renewals say so,
    /// which clears a queued mark that a lost `start` left.
    started: std::sync::atomic::AtomicBool,
    /// This phase in the count of local work; `None` once the end is recorded.
    counted: Option<Counted>,
}

impl<K> std::fmt::Debug for Holder<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holder")
            .field("kind", &self.kind)
            .field("token", &self.running.token)
            .finish_non_exhaustive()
    }
}

impl<K> Holder<K> {
    /// The holder of a phase the server has just granted, with the instant the grant
    /// was asked for (its lease counts from no earlier than that).
    /// It reports the start to the observer.
    pub(crate) fn new(
        shared: Arc<Shared<K>>,
        loc: Loc,
        kind: Kind,
        token: u64,
        asked: Instant,
        key: K,
        counted: Counted,
    ) -> Self {
        let until = asked + validity(shared.store.lease());
        let running = Arc::new(Running::new(token, until.into_std()));
        shared.hub.add_running(&loc.bytes, &running);
        if kind == Kind::Task && shared.draining.load(Ordering::SeqCst) {
            // Granted while `drain` cancels: its request passed the closed flag first.
            running.drained.store(true, Ordering::SeqCst);
            running.request_cancel();
        }
        let watch = observing(|| match kind {
            Kind::Task => shared.observer.task_started(&key),
            Kind::Revoke => shared.observer.revoke_started(&key),
        });
        Holder {
            shared,
            loc,
            kind,
            running,
            key,
            watch: watch.unwrap_or_else(Watch::empty),
            asked: None,
            kept: None,
            progress: Arc::default(),
            started: std::sync::atomic::AtomicBool::new(true),
            counted: Some(counted),
        }
    }

    /// Reports how the phase ended (as recorded, or as it will be).
    fn report(&self, settled: &Settled) {
        observing(|| match self.kind {
            Kind::Task => self
                .shared
                .observer
                .task_ended(&self.watch, &self.key, settled.failure),
            Kind::Revoke => {
                let ok = settled.phase == Phase::NotFound;
                self.shared
                    .observer
                    .revoke_ended(&self.watch, &self.key, ok)
            }
        });
    }

    pub(crate) fn token(&self) -> u64 {
        self.running.token
    }

    /// The context of the task's attempt numbered `attempts`, reporting through this
    /// holder.
    pub(crate) fn context(&self, attempts: u32) -> crate::TaskContext {
        crate::TaskContext {
            token: self.token(),
            attempts,
            progress: Some(AttemptProgress::new(self.progress.clone(), attempts)),
        }
    }

    /// Writes the task's progress to the server as it reports it: the latest value,
    /// at most once per interval. Never ends; the task's end drops it.
    pub(crate) async fn send_progress(&self) -> std::convert::Infallible {
        loop {
            self.progress.reported.notified().await;
            let latest = self
                .progress
                .latest
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            let Some((attempt, value)) = latest else {
                continue;
            };
            // A lost write is made good by the next report.
            let _ = self
                .shared
                .store
                .progress(&self.loc, self.token(), attempt, value)
                .await;
            tokio::time::sleep(self.shared.progress_interval).await;
        }
    }

    /// The future waits for a running slot: it was launched queued.
    pub(crate) fn queued(self) -> Self {
        self.started.store(false, Ordering::SeqCst);
        self
    }

    /// The queued future got its running slot: the record stops saying queued (if
    /// this call is lost, the next renewal says it).
    pub(crate) async fn start(&self) {
        self.started.store(true, Ordering::SeqCst);
        // The Redis store's operations on an address do not depend on the id type.
        let _ = Records::<Vec<u8>, [u8]>::start(&self.shared.store, &self.loc, self.token()).await;
    }

    /// Renews the lease every third of its length until it is lost: the token no
    /// longer holds the id, or no renewal succeeded before the validity ran out.
    /// Returns then; the caller drops the future. A renewal that reports a cancel
    /// request passes it on.
    pub(crate) async fn keep_lease(&self) {
        let store = &self.shared.store;
        let lease = store.lease();
        let period = lease / 3;
        let mut next = Instant::now() + period;
        loop {
            let until = Instant::from_std(self.running.valid_until());
            tokio::time::sleep_until(next.min(until)).await;
            let asked = Instant::now();
            if asked >= until {
                return;
            }
            let started = self.started.load(Ordering::SeqCst);
            let renewed =
                tokio::time::timeout_at(until, store.renew(&self.loc, self.token(), started)).await;
            match renewed {
                Ok(Ok(Renewed::Held { cancel })) => {
                    self.running.extend((asked + validity(lease)).into_std());
                    if cancel {
                        self.running.request_cancel();
                    }
                    next = asked + period;
                }
                Ok(Ok(Renewed::Lost)) => return,
                // Out of reach: try again soon, until the validity runs out.
                Ok(Err(_)) | Err(_) => {
                    next = Instant::now() + (period / 4).max(Duration::from_millis(5))
                }
            }
        }
    }

    /// Records the end of the phase, retrying while the lease may still hold. Returns
    /// how the record settled (which may differ from what was asked: a lease that ran
    /// out first records `WorkerLost`), or `None` if the end could not be recorded, in
    /// which case the lease's expiry makes the move.
    ///
    /// Dropped midway (its caller went away), the same end goes to the outbox.
    /// `kept` is kept with a task's record.
    pub(crate) async fn finish(
        mut self,
        failure: Option<FailureReason>,
        kept: Option<Kept>,
    ) -> Option<Settled> {
        self.asked = Some(failure);
        self.kept = kept;
        let pending = self.pending(failure, None);
        let settled = end(&self.shared.store, &pending, failure).await;
        // Recorded, or left to the lease: either way this holder is done.
        self.asked = None;
        if self.running.drained.load(Ordering::SeqCst)
            && settled
                .as_ref()
                .is_some_and(|s| s.failure == Some(FailureReason::Cancelled))
        {
            self.shared.drain_cancelled.fetch_add(1, Ordering::SeqCst);
        }
        // Not recorded: the lease's expiry makes the move.
        match &settled {
            Some(settled) => self.report(settled),
            None => self.report(&self.expiry()),
        }
        // Last: `wait_idle` and `drain` wake once the end is recorded, counted and
        // reported.
        self.counted = None;
        settled
    }

    fn pending(&self, failure: Option<FailureReason>, counted: Option<Counted>) -> Pending {
        Pending {
            loc: self.loc.clone(),
            token: self.token(),
            kind: self.kind,
            running: self.running.clone(),
            failure,
            kept: self.kept.clone(),
            _counted: counted,
        }
    }

    /// What the lease's expiry makes of this phase.
    fn expiry(&self) -> Settled {
        self.kind.settled(Some(FailureReason::WorkerLost))
    }
}

/// Records an end, retrying while it may still land: until it lands, or until the
/// lease has surely ended (a full lease after this process's last grant or renewal),
/// after which a retry could only be refused.
pub(crate) async fn end(
    store: &RedisStore,
    pending: &Pending,
    failure: Option<FailureReason>,
) -> Option<Settled> {
    let give_up =
        Instant::from_std(pending.running.valid_until()) + store.lease() - validity(store.lease());
    let mut pause = Duration::from_millis(10);
    let mut retried = false;
    loop {
        // The Redis store's operations on an address do not depend on the id type.
        let attempt = async {
            let (at, token) = (&pending.loc, pending.token);
            match pending.kind {
                Kind::Task => {
                    let outcome = Outcome::of(failure);
                    let kept = pending.kept.clone();
                    Records::<Vec<u8>, [u8]>::finish(store, at, token, outcome, kept)
                        .await
                        .map(Finished::settled)
                }
                Kind::Revoke => {
                    Records::<Vec<u8>, [u8]>::revoke_end(store, at, token, failure.is_none()).await
                }
            }
        };
        // Every attempt is bounded by the connection's response timeout. The first is
        // made even after the lease has surely ended: a correct store then refuses it,
        // and the holder learns so; retries stop at that point.
        match attempt.await {
            // A revoke end leaves no record that says which token made it: when a
            // retry finds the revoke gone, the record tells whether the end the first
            // attempt asked for took effect (or an equal one: a success put back).
            Ok(None) if retried && pending.kind == Kind::Revoke => {
                return revoke_outcome(store, pending, failure).await;
            }
            Ok(settled) => return settled,
            Err(_) if Instant::now() + pause < give_up => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
                retried = true;
            }
            _ => return None,
        }
    }
}

/// After a retried revoke end found its revoke gone: what the id reads says whether
/// the end asked for took effect. `NotFound`, or a newer attempt, follows a revoke that
/// succeeded; `Success` is what a failed revoke (or the lease's end) leaves.
async fn revoke_outcome(
    store: &RedisStore,
    pending: &Pending,
    failure: Option<FailureReason>,
) -> Option<Settled> {
    let read = store.read(&pending.loc).await.ok()?;
    let newer = read.token.is_some_and(|t| t > pending.token);
    let landed = match (failure, read.status.phase) {
        (None, Phase::NotFound) => true,
        (None, Phase::Working) => newer,
        (Some(_), Phase::Success) => true,
        _ => false,
    };
    landed.then(|| Kind::Revoke.settled(failure))
}

impl<K> Drop for Holder<K> {
    fn drop(&mut self) {
        self.shared
            .hub
            .remove_running(&self.loc.bytes, self.token());
        let Some(counted) = self.counted.take() else {
            return;
        };
        // Cannot await here: the outbox records the end (the one `finish` was recording,
        // if it was dropped midway; else the failure move of a drop), or the lease's
        // expiry does if the outbox's runtime is gone. Reported as the end asked for.
        // A dropped task failed; a dropped revoke did not succeed.
        let failure = self.asked.unwrap_or(Some(FailureReason::Dropped));
        self.report(&self.kind.settled(failure));
        let _ = self
            .shared
            .outbox
            .send(self.pending(failure, Some(counted)));
    }
}

/// The outbox: records the ends that holders handed over from `Drop` (a future
/// dropped by an abort or a runtime shutdown), one after another.
/// It ends when the recorder is gone and every end handed to it was tried.
pub(crate) async fn outbox(
    store: RedisStore,
    mut ends: tokio::sync::mpsc::UnboundedReceiver<Pending>,
) {
    while let Some(pending) = ends.recv().await {
        let _ = end(&store, &pending, pending.failure).await;
        // `pending` drops here: the local count ends once the end was tried.
    }
}
