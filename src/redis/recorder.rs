//! [`RedisRecorder`]: the recorder's operations on a namespace that
//! several processes share.

use std::borrow::Borrow;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

use super::attempt::{kept_of, run_retrying, run_task, spawn_task};
use super::builder::RedisBuilder;
use super::error::RevokeError;
use super::hub::{Hub, Registration};
use super::id::StoredId;
use super::runner::{Holder, Kind, Pending};
use super::store::{Loc, RedisStore};
use crate::fault::Fault;
use crate::guard::{catch_panic, observing};
use crate::handle::{task_output, TaskHandle};
use crate::kept::KeptOutput;
use crate::observe::Observer;
use crate::retry::RetryPolicy;
use crate::runner::{Retry, Slot, Timeouts};
use crate::state::Refused;
use crate::state::{Phase, TaskState};
use crate::status::{FailureReason, Settled, TaskStatus};
use crate::store::Records;
use crate::{LaunchError, LaunchOptions, StateCounts, StoreError, TaskContext, TransitionStream};

/// What the clones of one recorder share.
pub(crate) struct Shared<K> {
    pub(crate) store: RedisStore,
    pub(crate) hub: Arc<Hub<K>>,
    /// Ends of running phases dropped before they could record them.
    pub(crate) outbox: mpsc::UnboundedSender<Pending>,
    pub(super) closed: AtomicBool,
    /// Launches and revokes of this process whose end is not recorded yet.
    pub(crate) local: Arc<Local>,
    /// Set by `drain` once it cancels: a launch granted afterwards is cancelled at once.
    pub(crate) draining: AtomicBool,
    pub(super) drain_cancelled: AtomicUsize,
    /// Dropped with the last clone: stops the subscription task.
    pub(super) _stop: watch::Sender<()>,
    pub(super) warnings: Vec<String>,
    /// Slots for this process's running futures, with `max_running`.
    pub(super) limit: Option<Arc<tokio::sync::Semaphore>>,
    /// Reports this process's launches, refusals and ends (tracing, metrics).
    pub(crate) observer: Observer<K>,
    /// How often a running attempt's progress is written to the server.
    pub(crate) progress_interval: Duration,
}

/// The count of this process's launches and revokes whose end is not recorded yet,
/// and the wake-up of `wait_idle` when it reaches zero.
#[derive(Debug, Default)]
pub(crate) struct Local {
    count: AtomicUsize,
    idle: Notify,
}

/// One launch or revoke counted by [`Local`]: from before the closed flag is read (so
/// that `close` then `wait_idle` sees every accepted one) until it is refused, or its
/// end is recorded (by its holder, or by the outbox it was handed to), or given up to
/// the lease.
#[derive(Debug)]
pub(crate) struct Counted(Arc<Local>);

impl Counted {
    pub(crate) fn new(local: &Arc<Local>) -> Self {
        local.count.fetch_add(1, Ordering::SeqCst);
        Counted(local.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Records and runs tasks keyed by id on a Redis (or Valkey) namespace that every
/// process of a service shares. See the [module docs](super) for what holds where.
///
/// Cloning is cheap; clones share one connection, one subscription and the local
/// tasks.
pub struct RedisRecorder<K> {
    pub(crate) shared: Arc<Shared<K>>,
}

impl<K> Clone for RedisRecorder<K> {
    fn clone(&self) -> Self {
        RedisRecorder {
            shared: self.shared.clone(),
        }
    }
}

impl<K> fmt::Debug for RedisRecorder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRecorder")
            .field("namespace", &self.shared.store.layout().namespace())
            .field("lease", &self.shared.store.lease())
            .finish_non_exhaustive()
    }
}

impl<K> RedisRecorder<K>
where
    K: StoredId + Clone + Send + Sync + 'static,
{
    /// A builder for a recorder on the server at `url`: `redis://[user:password@]host:port/[db]`
    /// (or `redis+unix:///path`).
    pub fn builder(url: impl Into<String>) -> RedisBuilder<K> {
        RedisBuilder::new(vec![url.into()], false)
    }

    /// A builder for a recorder on a Redis Cluster, found through the nodes at `urls`
    /// (any of its nodes; more than one, so that the recorder can start while one is
    /// down). The same settings and guarantees as on one server, with what a cluster
    /// changes said in the [module docs](super#redis-cluster).
    ///
    /// ```no_run
    /// use async_tasks_recorder::redis::RedisRecorder;
    ///
    /// # async fn run() -> Result<(), async_tasks_recorder::StoreError> {
    /// let recorder: RedisRecorder<String> = RedisRecorder::cluster_builder([
    ///     "redis://10.0.0.1:6379/",
    ///     "redis://10.0.0.2:6379/",
    ///     "redis://10.0.0.3:6379/",
    /// ])
    /// .namespace("uploads")
    /// .build()
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub fn cluster_builder<I, U>(urls: I) -> RedisBuilder<K>
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        RedisBuilder::new(urls.into_iter().map(Into::into).collect(), true)
    }

    /// What [`ServerCheck::Warn`](super::ServerCheck::Warn) found wrong with the server's settings when the
    /// recorder was built (empty when all is well, or with another check).
    #[must_use]
    pub fn warnings(&self) -> &[String] {
        &self.shared.warnings
    }

    /// The namespace's name.
    #[must_use]
    pub fn namespace(&self) -> &str {
        self.shared.store.layout().namespace()
    }

    fn loc<Q: StoredId + ?Sized>(&self, id: &Q) -> Loc {
        self.shared.store.loc(id)
    }

    /// Asks the server for the `Launch` move; on a grant returns the holder.
    async fn grant<T>(
        &self,
        task_id: &K,
        task: T,
    ) -> Result<(Holder<K>, u32, Slot, T), LaunchError<T>> {
        let counted = Counted::new(&self.shared.local);
        if self.shared.closed.load(Ordering::SeqCst) {
            // Closed locally: the id's phase on the server is not read.
            let refused = Refused {
                phase: Phase::NotFound,
                closed: true,
            };
            observing(|| self.shared.observer.launch_refused(task_id, refused));
            return Err(LaunchError::Closed(task));
        }
        let loc = self.loc(task_id);
        let asked = Instant::now();
        // A free slot is taken now; without one the attempt is recorded queued.
        let slot = Slot::take(self.shared.limit.as_ref());
        match Records::<K>::launch(&self.shared.store, &loc, task_id, slot.queued()).await {
            Ok(Ok(granted)) => {
                let holder = Holder::new(
                    self.shared.clone(),
                    loc,
                    Kind::Task,
                    granted.token,
                    asked,
                    task_id.clone(),
                    counted,
                );
                let holder = if slot.queued() {
                    holder.queued()
                } else {
                    holder
                };
                Ok((holder, granted.attempts, slot, task))
            }
            Ok(Err(refused)) => {
                observing(|| self.shared.observer.launch_refused(task_id, refused));
                Err(LaunchError::Refused(refused.phase.state(), task))
            }
            Err(e) => Err(LaunchError::Store(e, task)),
        }
    }

    /// Launches `task` under `task_id`, in this process, on the current Tokio runtime.
    ///
    /// Returns once the server has recorded the id `Working` (one round trip); from then
    /// on every process of the namespace reads it `Working` until the future ends, and
    /// then `Success` or `Failed`. The refusals are those of the in-memory recorder:
    /// `Refused(Working, task)` while the id runs in any process, `Refused(Success,
    /// task)` once it succeeded (or while it is being revoked), `Closed(task)` after
    /// [`close`](Self::close), and [`LaunchError::Store`] when the server could not be
    /// asked. Every refusal hands `task` back unstarted.
    ///
    /// While the future runs this process renews its lease; if it cannot (it lost the
    /// server, or was paused), it drops the future before the lease can end, and the id
    /// becomes `Failed` with [`WorkerLost`](FailureReason::WorkerLost).
    ///
    /// # Cancel safety
    /// Dropped before the server answered, the launch may or may not have been
    /// recorded; if it was, nobody runs the future and the id reads `Failed`
    /// (`WorkerLost`) once its lease ends. Once it returned, the task is launched.
    pub async fn launch<Fut, R, E>(&self, task_id: K, task: Fut) -> Result<(), LaunchError<Fut>>
    where
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        self.launch_with(task_id, task, LaunchOptions::new())
            .await
            .map(|_handle| ())
    }

    /// Like [`launch`](Self::launch), with `options`, and returns a [`TaskHandle`] that
    /// resolves to the future's output once its end is recorded, or to
    /// [`TaskError::Lost`](crate::TaskError::Lost) if this process lost the lease first.
    ///
    /// # Cancel safety
    /// As for [`launch`](Self::launch).
    pub async fn launch_with<Fut, R, E>(
        &self,
        task_id: K,
        task: Fut,
        options: LaunchOptions,
    ) -> Result<TaskHandle<R, E>, LaunchError<Fut>>
    where
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        let timeouts = Timeouts::of(&options);
        let (holder, _, slot, task) = self.grant(&task_id, task).await?;
        Ok(spawn_task(holder, slot, task, timeouts, None))
    }

    /// Like [`launch_with`](Self::launch_with), and keeps what the task ended with on
    /// the server, for every process's [`status`](Self::status) and
    /// [`wait`](Self::wait): as
    /// [`AsyncTasksRecorder::launch_kept`](crate::AsyncTasksRecorder::launch_kept)
    /// does, with the limit of [`RedisBuilder::max_kept_len`]. The value goes to the
    /// server with the end, in the same function call.
    ///
    /// # Cancel safety
    /// As for [`launch`](Self::launch).
    pub async fn launch_kept<Fut, R, E>(
        &self,
        task_id: K,
        task: Fut,
        options: LaunchOptions,
    ) -> Result<TaskHandle<R, E>, LaunchError<Fut>>
    where
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: KeptOutput + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let timeouts = Timeouts::of(&options);
        let (holder, _, slot, task) = self.grant(&task_id, task).await?;
        Ok(spawn_task(
            holder,
            slot,
            task,
            timeouts,
            Some(kept_of::<R, E>),
        ))
    }

    /// Like [`launch_with`](Self::launch_with), but the future is made by `make` once
    /// the launch is granted, from a [`TaskContext`] that carries the attempt's
    /// fencing token. A refusal hands `make` back, uncalled.
    ///
    /// ```no_run
    /// # use async_tasks_recorder::redis::RedisRecorder;
    /// # use async_tasks_recorder::LaunchOptions;
    /// # async fn store_file(md5: &str, token: u64) -> Result<(), std::io::Error> { Ok(()) }
    /// # async fn run(recorder: RedisRecorder<String>) {
    /// let md5 = "9e107d9d372bb6826bd81d3542a419d6".to_string();
    /// let id = md5.clone();
    /// let launched = recorder
    ///     .launch_fenced(id, move |ctx| async move {
    ///         // The storage accepts the write only if `ctx.token()` is larger than the
    ///         // token of the last write it accepted for this md5 (for example
    ///         // `UPDATE files SET .., token = $t WHERE md5 = $m AND token < $t`), so
    ///         // a worker that paused past its lease cannot overwrite its successor.
    ///         store_file(&md5, ctx.token()).await
    ///     }, LaunchOptions::new())
    ///     .await;
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// As for [`launch`](Self::launch).
    pub async fn launch_fenced<F, Fut, R, E>(
        &self,
        task_id: K,
        make: F,
        options: LaunchOptions,
    ) -> Result<TaskHandle<R, E>, LaunchError<F>>
    where
        F: FnOnce(TaskContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        let timeouts = Timeouts::of(&options);
        let (holder, attempts, slot, make) = self.grant(&task_id, make).await?;
        let context = holder.context(attempts);
        // Made inside the task, so that a panic in `make` fails the task as one in its
        // future would.
        let task = async move { make(context).await };
        Ok(spawn_task(holder, slot, task, timeouts, None))
    }

    /// Like [`launch_fenced`](Self::launch_fenced), but a failed attempt is retried as
    /// `policy` says, as
    /// [`AsyncTasksRecorder::launch_retrying`](crate::AsyncTasksRecorder::launch_retrying)
    /// describes: one attempt at a time under this process's lease (same token), the
    /// id `Working` between attempts on every replica, with the next attempt's number,
    /// the failed one's reason and the next attempt's time (the server's clock) in
    /// [`status`](Self::status). The retries continue in this process, which holds
    /// the lease through the backoffs; if it dies, the lease ends and the id reads
    /// `Failed` (`WorkerLost`), launchable again from any replica. A retry the server
    /// cannot record ends the launch with that attempt's failure.
    ///
    /// # Cancel safety
    /// As for [`launch`](Self::launch).
    pub async fn launch_retrying<F, Fut, R, E>(
        &self,
        task_id: K,
        make: F,
        policy: RetryPolicy,
        options: LaunchOptions,
    ) -> Result<TaskHandle<R, E>, LaunchError<F>>
    where
        F: FnMut(TaskContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        let timeouts = Timeouts::of(&options);
        let (holder, attempts, slot, make) = self.grant(&task_id, make).await?;
        let context = holder.context(attempts);
        let retry = Retry {
            policy,
            limit: self.shared.limit.clone(),
            slot,
        };
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let output = run_retrying(holder, make, context, retry, timeouts).await;
            let _ = tx.send(task_output(output));
        });
        Ok(TaskHandle::new(rx))
    }

    /// Runs `task` under `task_id` inside the caller's future and returns when its end
    /// is recorded; the same refusals as [`launch`](Self::launch). `Ok(())` also when
    /// the task failed, was cancelled or lost its lease: read the outcome with
    /// [`status`](Self::status).
    ///
    /// # Cancel safety
    /// Dropping the returned future while `task` runs drops `task`; its end (`Failed`,
    /// reason `Dropped`) is recorded by the recorder's background task, or by the
    /// lease's expiry (`WorkerLost`) if that cannot reach the server in time.
    ///
    /// # Panics
    /// A panic in `task` propagates to the caller once the failure (reason
    /// `Panicked`) is recorded, or could not be.
    pub async fn launch_block<Fut, R, E>(
        &self,
        task_id: K,
        task: Fut,
    ) -> Result<(), LaunchError<Fut>>
    where
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Send,
        E: Send,
    {
        let (holder, _, slot, task) = self.grant(&task_id, task).await?;
        let timeouts = Timeouts::of(&LaunchOptions::new());
        if let Err(Fault::Panicked(payload)) = run_task(holder, slot, task, timeouts, None).await {
            std::panic::resume_unwind(payload);
        }
        Ok(())
    }

    /// The state of `task_id`, as every process of the namespace reads it at this
    /// instant (one round trip; linearizable on one primary).
    ///
    /// # Errors
    /// A [`StoreError`] if the server could not answer; no state is guessed.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn query_task_state<Q>(&self, task_id: &Q) -> Result<TaskState, StoreError>
    where
        K: Borrow<Q>,
        Q: StoredId + ?Sized,
    {
        let store = &self.shared.store;
        let at = Records::<K, Q>::at(store, task_id);
        Ok(Records::<K, Q>::phase(store, &at).await?.state())
    }

    /// `Success` or `Failed` when the id is recorded so, otherwise `Working` (also for
    /// an unknown id), as on the in-memory recorder. Costs what
    /// [`query_task_state`](Self::query_task_state) costs.
    ///
    /// # Errors
    /// A [`StoreError`] if the server could not answer.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn query_task_state_quick<Q>(&self, task_id: &Q) -> Result<TaskState, StoreError>
    where
        K: Borrow<Q>,
        Q: StoredId + ?Sized,
    {
        Ok(match self.query_task_state(task_id).await? {
            TaskState::NotFound => TaskState::Working,
            state => state,
        })
    }

    /// The detailed status of `task_id` (one round trip): its phase with `Revoking`,
    /// the attempts, why the last attempt failed, and when the phase began (by the
    /// server's clock). A running phase whose lease has ended reads as what its expiry
    /// makes it, even before any script has made the move.
    ///
    /// # Errors
    /// A [`StoreError`] if the server could not answer.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn status<Q>(&self, task_id: &Q) -> Result<TaskStatus, StoreError>
    where
        K: Borrow<Q>,
        Q: StoredId + ?Sized,
    {
        let store = &self.shared.store;
        Records::<K, Q>::status(store, &Records::<K, Q>::at(store, task_id)).await
    }

    /// Waits until nothing runs for `task_id`, in any process, and returns how the
    /// running phase ended, as on the in-memory recorder.
    ///
    /// No polling: it registers for the namespace's messages about the id, reads the
    /// record, and sleeps until a message, a re-established subscription or the end of
    /// the phase's lease makes it read again. Correctness never depends on a message
    /// arriving. If the id moved on before this waiter could learn how its phase ended
    /// (the message was lost or not yet dispatched), the answer is read off what came
    /// next: `Success` when a revoke runs, the failure that a new attempt replaced, or
    /// `NotFound` when a new attempt started from no record (the id was revoked or
    /// expired in between).
    ///
    /// # Errors
    /// A [`StoreError`] if a read failed; waiting again is safe.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future unregisters the waiter.
    pub async fn wait<Q>(&self, task_id: &Q) -> Result<Settled, StoreError>
    where
        K: Borrow<Q>,
        Q: StoredId + ?Sized,
    {
        let loc = self.loc(task_id);
        let registration = self.shared.hub.register(&loc.bytes);
        self.wait_at(&loc, &registration, None).await
    }

    async fn wait_at(
        &self,
        loc: &Loc,
        registration: &Registration<'_, K>,
        mut token: Option<u64>,
    ) -> Result<Settled, StoreError> {
        let waiters = &registration.waiters;
        loop {
            let mut message = std::pin::pin!(waiters.notify.notified());
            message.as_mut().enable();
            let mut resubscribed = std::pin::pin!(self.shared.hub.resubscribed.notified());
            resubscribed.as_mut().enable();
            if let Some(t) = token {
                if let Some(outcome) = waiters.outcome_of(t) {
                    return self.with_kept(loc, t, outcome).await;
                }
            }
            let read = self.shared.store.read(loc).await?;
            let phase = read.status.phase;
            match token {
                None if phase.is_final() => return Ok(read.settled()),
                None => token = read.token,
                Some(t) if read.token == Some(t) && !phase.is_final() => {}
                Some(t) => {
                    // The phase ended without this process hearing of it.
                    if let Some(outcome) = waiters.outcome_of(t) {
                        return self.with_kept(loc, t, outcome).await;
                    }
                    if phase.is_final() {
                        return Ok(read.settled());
                    }
                    return Ok(match (phase, read.previous_failure) {
                        // A revoke runs: the phase waited for ended in Success.
                        // The revoking record still keeps what the success kept.
                        (Phase::Revoking, _) => Settled {
                            phase: Phase::Success,
                            failure: None,
                            kept: read.status.kept.clone(),
                        },
                        // Running again: the phase before this attempt failed so.
                        (_, Some(failure)) => Settled {
                            phase: Phase::Failed,
                            failure: Some(failure),
                            kept: None,
                        },
                        // Running again after a NotFound: it was revoked, or expired.
                        (_, None) => Settled {
                            phase: Phase::NotFound,
                            failure: None,
                            kept: None,
                        },
                    });
                }
            }
            // Past the lease's end the record reads as its expiry makes it.
            let lease_left = read.lease_left.unwrap_or(self.shared.store.lease());
            tokio::select! {
                () = message => {}
                () = resubscribed => {}
                () = tokio::time::sleep(lease_left + Duration::from_millis(5)) => {}
            }
        }
    }

    /// An outcome the channel told, with the value its phase kept when it kept one (read
    /// from the record, if the id has not moved on since).
    async fn with_kept(
        &self,
        loc: &Loc,
        token: u64,
        (mut settled, kept): (Settled, bool),
    ) -> Result<Settled, StoreError> {
        if kept {
            settled.kept = self.shared.store.kept(loc, token).await?;
        }
        Ok(settled)
    }

    /// Cancels the running attempt of a `Working` id, in whichever process runs it: its
    /// future is dropped at its next await point, and the id becomes `Failed` with
    /// reason [`Cancelled`](FailureReason::Cancelled). Returns once the attempt has
    /// ended: `true` if by this cancellation, `false` if the id was not `Working` or
    /// the attempt ended otherwise first.
    ///
    /// The request is one round trip, which marks the record and tells the running
    /// process at once through the namespace's channel; if that message is lost, the
    /// process learns of it at its next lease renewal.
    ///
    /// # Errors
    /// A [`StoreError`] if the server could not be asked, or a read while waiting
    /// failed (the request may then have been made).
    ///
    /// # Cancel safety
    /// Once the request is made, dropping the future only stops the waiting.
    pub async fn cancel<Q>(&self, task_id: &Q) -> Result<bool, StoreError>
    where
        K: Borrow<Q>,
        Q: StoredId + ?Sized,
    {
        let loc = self.loc(task_id);
        let registration = self.shared.hub.register(&loc.bytes);
        let Some((token, _)) = self.shared.store.request_cancel(&loc).await? else {
            return Ok(false);
        };
        self.shared.hub.cancel_local(&loc.bytes, token);
        let settled = self.wait_at(&loc, &registration, Some(token)).await?;
        Ok(settled.failure == Some(FailureReason::Cancelled))
    }

    /// Asks the server for the `RevokeBegin` move; on a grant returns the holder.
    async fn begin_revoke<Fut, E>(
        &self,
        task_id: &K,
        revoke_task: Fut,
    ) -> Result<(Holder<K>, Fut), RevokeError<Fut, E>> {
        let counted = Counted::new(&self.shared.local);
        let loc = self.loc(task_id);
        let asked = Instant::now();
        match Records::<K>::revoke_begin(&self.shared.store, &loc).await {
            Ok(Ok(token)) => {
                let holder = Holder::new(
                    self.shared.clone(),
                    loc,
                    Kind::Revoke,
                    token,
                    asked,
                    task_id.clone(),
                    counted,
                );
                Ok((holder, revoke_task))
            }
            Ok(Err(phase)) => {
                observing(|| self.shared.observer.revoke_refused(task_id, phase));
                match phase {
                    Phase::Revoking => Err(RevokeError::Revoking(revoke_task)),
                    _ => Err(RevokeError::NotSuccess(revoke_task)),
                }
            }
            Err(e) => Err(RevokeError::Store(e, revoke_task)),
        }
    }

    /// Revokes the success of `target_task_id` by running `revoke_task` inside the
    /// caller's future, as on the in-memory recorder: while it runs the id reads
    /// `Success` (phase `Revoking`) in every process; `Ok(r)` leaves it `NotFound`,
    /// `Err(RevokeTaskError(e))` leaves it `Success`. The revoke holds a lease like a
    /// task; [`RevokeError::Lost`] says it lost it.
    ///
    /// # Cancel safety
    /// Dropping the returned future while `revoke_task` runs drops `revoke_task`; the
    /// id is `Success` again once that end is recorded, or once the lease ends.
    ///
    /// # Panics
    /// A panic in `revoke_task` propagates to the caller once the id is `Success` again
    /// (or, if that end could not be recorded, once its lease will make it so).
    pub async fn revoke_task_block<Fut, R, E>(
        &self,
        target_task_id: K,
        revoke_task: Fut,
    ) -> Result<R, RevokeError<Fut, E>>
    where
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Send,
        E: Send,
    {
        let (holder, revoke_task) = self.begin_revoke(&target_task_id, revoke_task).await?;
        let revoke_task = holder.watch.instrument(revoke_task);
        let result = tokio::select! {
            biased;
            () = holder.keep_lease() => None,
            out = catch_panic(revoke_task) => Some(out),
        };
        match result {
            None => {
                let _ = holder.finish(Some(FailureReason::WorkerLost), None).await;
                Err(RevokeError::Lost)
            }
            Some(Ok(Ok(r))) => match holder.finish(None, None).await {
                Some(s) if s.phase == Phase::NotFound => Ok(r),
                _ => Err(RevokeError::Lost),
            },
            Some(Ok(Err(e))) => {
                let _ = holder.finish(Some(FailureReason::Error), None).await;
                Err(RevokeError::RevokeTaskError(e))
            }
            Some(Err(panic)) => {
                // The id is Success again before the panic reaches the caller.
                let _ = holder.finish(Some(FailureReason::Panicked), None).await;
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// Like [`revoke_task_block`](Self::revoke_task_block), but spawns `revoke_task` on
    /// the current Tokio runtime and returns once the revoke has started; a panic in it
    /// leaves the id `Success`. [`wait`](Self::wait) for it to end.
    ///
    /// # Cancel safety
    /// Dropped before the server answered, the revoke may or may not have started; if
    /// it did, nobody runs it and the id reads `Success` again once its lease ends.
    pub async fn revoke_task<Fut, R, E>(
        &self,
        target_task_id: K,
        revoke_task: Fut,
    ) -> Result<(), RevokeError<Fut, Infallible>>
    where
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Send,
        E: Send,
    {
        let (holder, revoke_task) = self.begin_revoke(&target_task_id, revoke_task).await?;
        tokio::spawn(async move {
            let revoke_task = holder.watch.instrument(revoke_task);
            let ok = tokio::select! {
                biased;
                () = holder.keep_lease() => false,
                out = catch_panic(revoke_task) => matches!(out, Ok(Ok(_))),
            };
            let failure = (!ok).then_some(FailureReason::Error);
            let _ = holder.finish(failure, None).await;
        });
        Ok(())
    }

    /// How many ids of the namespace are in `state` (`NotFound` is always 0).
    ///
    /// # Errors
    /// A [`StoreError`] if the server could not answer.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn count(&self, state: TaskState) -> Result<usize, StoreError> {
        Ok(self.counts().await?.get(state))
    }

    /// The number of ids of the namespace in every state, read at one instant by one
    /// script over every slot group (on one primary). Running phases whose lease has
    /// ended are moved first, so they count as what their expiry makes them.
    ///
    /// # Errors
    /// A [`StoreError`] if the server could not answer.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn counts(&self) -> Result<StateCounts, StoreError> {
        Records::<K>::counts(&self.shared.store).await
    }

    /// Calls `f` with every id of the namespace in `state`, reading the state's hashes
    /// group by group in pages (one round trip per page of up to 512 ids), so that the
    /// cost follows the number of ids in `state` and memory the size of one group's
    /// share of it.
    ///
    /// # Guarantees under concurrent change
    /// An id in `state` during the whole call is passed exactly once, except that an
    /// id of `Success` that goes to `Revoking` and back (a failed revoke) more than
    /// once during the call may be missed (the two are read one after the other, not
    /// at one instant as in memory); one never in `state` during the call is not
    /// passed; one that enters or leaves may or may not be (at most once).
    ///
    /// # Errors
    /// A [`StoreError`] if a page could not be read (the ids passed so far were in
    /// `state`), or [`StoreError::BadId`] for a stored id that does not decode into `K`.
    ///
    /// # Cancel safety
    /// Cancel safe; the ids passed so far were passed.
    pub async fn for_each_in_state<F>(&self, state: TaskState, mut f: F) -> Result<(), StoreError>
    where
        F: FnMut(&K),
    {
        const PAGE: usize = 512;
        // Success is read from two hashes (`Success` and `Revoking`), and an id can move
        // between them while they are read: reading `Revoking` again after `Success`,
        // with one set of ids seen across the three reads, passes every id that stays
        // in the state exactly once. (A hash scan may also return an id twice, when
        // the hash is resized midway.)
        let passes: &[Phase] = match state {
            TaskState::Success => &[Phase::Revoking, Phase::Success, Phase::Revoking],
            _ => state.phases(),
        };
        for group in 0..self.shared.store.layout().groups() {
            let mut seen = std::collections::HashSet::new();
            for &phase in passes {
                let mut cursor = 0;
                loop {
                    let (next, ids) = self.shared.store.scan(group, phase, cursor, PAGE).await?;
                    for bytes in ids {
                        if seen.contains(&bytes) {
                            continue;
                        }
                        let id = decode_stored::<K>(&bytes)?;
                        seen.insert(bytes);
                        f(&id);
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
        }
        Ok(())
    }

    /// One page of the ids of the namespace in `state`: about `limit` ids after
    /// `after` (`None` for the first page), and the cursor of the next page in
    /// [`Page::next`](crate::Page::next), `None` after the last; as on the in-memory
    /// recorder. The pages walk the slot groups one after another with the server's
    /// hash scan (`HSCAN`), so a page costs about its size in reads, one round trip per
    /// scan step.
    ///
    /// A page may hold more than `limit` ids: the server answers a scan step of a
    /// small hash (up to 128 fields) with the whole hash, which is kept whole so that
    /// the cursor stays exact.
    ///
    /// # Guarantees under concurrent change
    /// Weaker than in memory, as the server's scan gives them: an id in `state` from
    /// the first page to the last is listed at least once (it may be listed more than
    /// once: when its group's hash grows or shrinks meanwhile, or, for `Success`, when
    /// its revoke starts meanwhile), except that an id of `Success` whose revoke
    /// starts and fails meanwhile may be missed (`Success` is two hashes, read one
    /// after the other). An id never in `state` meanwhile is not listed. A cursor from
    /// an in-memory recorder, or from a listing of another state, gives an empty last
    /// page.
    ///
    /// # Errors
    /// A [`StoreError`] if a scan step could not be read (the page is lost; the same
    /// cursor may be asked again), or [`StoreError::BadId`] for an id that does not
    /// decode.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn list_page(
        &self,
        state: TaskState,
        after: Option<&crate::ListCursor>,
        limit: usize,
    ) -> Result<crate::Page<K>, StoreError> {
        use crate::listing::At;
        let passes = state.phases();
        let groups = self.shared.store.layout().groups();
        let (mut group, mut pass, mut scan) = match after.map(|c| c.0) {
            None => (0, 0, 0),
            // A pass this state does not have (a cursor of another state's listing,
            // or made up) ends the listing, as a cursor of the other kind does.
            Some(At::Redis { group, pass, scan }) if usize::from(pass) < passes.len() => {
                (group, usize::from(pass), scan)
            }
            Some(_) => (groups, 0, 0),
        };
        let limit = limit.max(1);
        let mut ids = Vec::new();
        while group < groups && pass < passes.len() {
            let want = limit.saturating_sub(ids.len()).max(1);
            let (next, found) = self
                .shared
                .store
                .scan(group, passes[pass], scan, want)
                .await?;
            for bytes in found {
                ids.push(decode_stored(&bytes)?);
            }
            scan = next;
            if scan == 0 {
                pass += 1;
                if pass == passes.len() {
                    pass = 0;
                    group += 1;
                }
            }
            if ids.len() >= limit {
                break;
            }
        }
        let next = (group < groups && !passes.is_empty()).then_some(crate::ListCursor(At::Redis {
            group,
            // A state has at most two hashes.
            pass: pass as u8,
            scan,
        }));
        Ok(crate::Page { ids, next })
    }

    /// Collects the ids of the namespace in `state`; see
    /// [`for_each_in_state`](Self::for_each_in_state).
    ///
    /// # Errors
    /// As for `for_each_in_state`.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn ids_in_state(&self, state: TaskState) -> Result<Vec<K>, StoreError> {
        let mut out = Vec::new();
        self.for_each_in_state(state, |id| out.push(id.clone()))
            .await?;
        Ok(out)
    }

    /// A stream of every transition of the namespace, made by any process, from now
    /// on. It yields `Err(Missed(n))` when this subscriber fell behind, and
    /// `Err(Missed(0))` when the subscription to the server dropped and came back
    /// (transitions in between are not delivered). A lease's expiry is delivered when a
    /// script makes the move (the next operation on the id, or a count or listing).
    pub fn subscribe(&self) -> TransitionStream<K> {
        self.shared.hub.events.subscribe()
    }

    /// Closes **this process's** recorder (every clone of it) to new launches: they
    /// get [`LaunchError::Closed`]. Other processes of the namespace keep launching;
    /// queries, waits, cancels and revokes keep working here.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
    }

    /// Whether [`close`](Self::close) was called on this process's recorder.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Waits until no task or revoke launched by **this process** is running: each
    /// one's end is recorded, or could not be and is left to its lease. Launches by
    /// other processes are not waited for.
    ///
    /// # Cancel safety
    /// Cancel safe: it only waits.
    pub async fn wait_idle(&self) {
        loop {
            let mut idle = std::pin::pin!(self.shared.local.idle.notified());
            idle.as_mut().enable();
            if self.shared.local.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Graceful shutdown of **this process**: [`close`](Self::close)s, waits for its
    /// running tasks, cancels those still running after `grace` (if given), waits for
    /// them to end, and returns how many it cancelled. Revokes are waited for, never
    /// cancelled.
    ///
    /// # Cancel safety
    /// The recorder is closed in the first poll; dropping the future later stops the
    /// waiting; cancellations already requested still take effect.
    pub async fn drain(&self, grace: Option<Duration>) -> usize {
        self.close();
        let Some(grace) = grace else {
            self.wait_idle().await;
            return 0;
        };
        if tokio::time::timeout(grace, self.wait_idle()).await.is_ok() {
            return 0;
        }
        let before = self.shared.drain_cancelled.load(Ordering::SeqCst);
        // From now on a launch granted while this runs is cancelled as it starts (its
        // request may have passed the closed flag before `close`).
        self.shared.draining.store(true, Ordering::SeqCst);
        for running in self.shared.hub.all_running() {
            running.drained.store(true, Ordering::SeqCst);
            running.request_cancel();
        }
        self.wait_idle().await;
        self.shared.drain_cancelled.load(Ordering::SeqCst) - before
    }
}

/// A stored id as the recorder's id type.
fn decode_stored<K: StoredId>(bytes: &[u8]) -> Result<K, StoreError> {
    K::decode(bytes).ok_or_else(|| {
        StoreError::BadId(format!(
            "a stored id ({} bytes) does not decode into this recorder's id type",
            bytes.len()
        ))
    })
}
