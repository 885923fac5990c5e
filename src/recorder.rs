//! [`AsyncTasksRecorder`]: launches futures under an id and records how they end.

use std::borrow::Borrow;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::hash::Hash;

use crate::error::RevokeFailReason;
use crate::guard::{catch_panic, Guard};
use crate::state::{Op, Phase, TaskState};
use crate::store::{MemoryStore, StateCounts, Store};
use crate::sync::Arc;

/// Hosts futures keyed by a unique task id and records their state.
///
/// Cloning is cheap and every clone shares the same records, as in 2.x.
///
/// # Guarantees
/// - **At most one success per id**: once an id is `Success`, no future of that id runs
///   (launches are refused with the future handed back) until a revoke of it succeeds.
/// - **Linearizable**: every operation on an id takes effect at one instant between its
///   call and its return, and all callers agree on the order. A query that starts after
///   `launch(..).await` returned `Ok` sees `Working` or a later state, never an earlier
///   one.
/// - **Nothing stuck**: a future that panics, or is dropped before it finishes (its
///   `launch_block` caller went away, the runtime shut down), leaves the id `Failed`; a
///   revoke that panics or is dropped leaves it `Success` and revocable.
///
/// # Locking
/// Records live in 64 shards, each behind a read-write lock held only for a hash-table
/// lookup or move, never across an `.await` or while user code runs (except the id's
/// `Hash` and `Eq`). A query takes one read lock; a transition takes one write lock.
///
/// # Examples
///
/// ```
/// use async_tasks_recorder::{AsyncTasksRecorder, TaskState};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let recorder = AsyncTasksRecorder::new();
/// let launched = recorder.launch("upload-1".to_string(), async { Ok::<_, ()>(()) }).await;
/// assert!(launched.is_ok());
/// assert_ne!(recorder.query_task_state("upload-1").await, TaskState::NotFound);
///
/// // A failed task may run again; a succeeded one never does.
/// let failing = async { Err::<(), _>("disk full") };
/// assert!(recorder.launch_block("upload-2".to_string(), failing).await.is_ok());
/// assert_eq!(recorder.query_task_state("upload-2").await, TaskState::Failed);
/// let retry = async { Ok::<(), &str>(()) };
/// assert!(recorder.launch_block("upload-2".to_string(), retry).await.is_ok());
///
/// // The error of a refused launch hands the unused future back. Futures are rarely
/// // `Debug`, so look at the state instead of calling `unwrap_err`.
/// let third = async { Ok::<(), &str>(()) };
/// match recorder.launch_block("upload-2".to_string(), third).await {
///     Err((state, _unused_future)) => assert_eq!(state, TaskState::Success),
///     Ok(()) => unreachable!("a succeeded id never runs again"),
/// }
/// # }
/// ```
pub struct AsyncTasksRecorder<K> {
    store: Arc<MemoryStore<K>>,
}

impl<K> Clone for AsyncTasksRecorder<K> {
    fn clone(&self) -> Self {
        AsyncTasksRecorder {
            store: self.store.clone(),
        }
    }
}

impl<K> Default for AsyncTasksRecorder<K>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K> fmt::Debug for AsyncTasksRecorder<K>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncTasksRecorder")
            .field("counts", &self.store.counts())
            .finish()
    }
}

/// An accepted revoke: the guard that ends it and the revoke future to run.
type RevokeStarted<K, Fut> = (Guard<K, MemoryStore<K>>, Fut);

/// The runtime that spawned futures go to. Checked before the record is touched, so a
/// call outside a runtime leaves nothing behind.
fn runtime(method: &str) -> tokio::runtime::Handle {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle,
        Err(_) => panic!(
            "AsyncTasksRecorder::{method} spawns the task on Tokio and must be called from \
             within a Tokio runtime (inside a task, or after `Runtime::enter`); the record \
             was left unchanged"
        ),
    }
}

impl<K> AsyncTasksRecorder<K>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
{
    /// Creates an empty recorder backed by the in-memory store.
    #[must_use]
    pub fn new() -> Self {
        AsyncTasksRecorder {
            store: Arc::new(MemoryStore::new()),
        }
    }

    /// Accepts `Launch` for `task_id` and returns the guard that will end it.
    fn begin(&self, task_id: K) -> Result<Guard<K, MemoryStore<K>>, TaskState> {
        let hash = self.store.hash(&task_id);
        self.store
            .launch(hash, task_id.clone())
            .map_err(Phase::public)?;
        Ok(Guard::new(
            self.store.clone(),
            task_id,
            hash,
            Op::Finish { ok: false },
        ))
    }

    /// Accepts `RevokeBegin` for `task_id` and returns the guard that will end it, with
    /// the revoke future to run.
    fn begin_revoke<Fut, E>(
        &self,
        task_id: K,
        revoke_task: Fut,
    ) -> Result<RevokeStarted<K, Fut>, RevokeFailReason<Fut, E>> {
        let hash = self.store.hash(&task_id);
        match self.store.apply(hash, &task_id, Op::RevokeBegin) {
            Ok(_) => Ok((
                Guard::new(
                    self.store.clone(),
                    task_id,
                    hash,
                    Op::RevokeEnd { ok: false },
                ),
                revoke_task,
            )),
            Err(Phase::Revoking) => Err(RevokeFailReason::Revoking(revoke_task)),
            Err(_) => Err(RevokeFailReason::NotSuccess(revoke_task)),
        }
    }

    /// Launches `task` on the current Tokio runtime under `task_id`.
    ///
    /// - `Ok(())`: the id reads `Working` from now until the future ends; then it reads
    ///   `Success` if the future returned `Ok`, `Failed` if it returned `Err`, panicked, or
    ///   was dropped unfinished (for example by a runtime shutdown).
    /// - `Err((Working, task))`: a future of this id is running; `task` was not started.
    /// - `Err((Success, task))`: the id already succeeded (or its revoke is running);
    ///   `task` was not started and the record is unchanged.
    ///
    /// `NotFound` and `Failed` ids launch. The future's output is dropped; use a channel
    /// inside the future if you need it.
    ///
    /// # Cancel safety
    /// The returned future does all its work in its first poll, without awaiting. Dropped
    /// before it is polled, nothing happened; once polled, the task is fully launched.
    ///
    /// # Panics
    /// Panics if called outside a Tokio runtime, before the record is touched. A panic in
    /// `task` does not reach the caller: the id becomes `Failed` and the panic message is
    /// printed by the panic hook.
    pub async fn launch<Fut, R, E>(&self, task_id: K, task: Fut) -> Result<(), (TaskState, Fut)>
    where
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Send,
        E: Send,
    {
        let handle = runtime("launch");
        let guard = match self.begin(task_id) {
            Ok(guard) => guard,
            Err(state) => return Err((state, task)),
        };
        handle.spawn(async move {
            let ok = matches!(catch_panic(task).await, Ok(Ok(_)));
            guard.settle(Op::Finish { ok });
        });
        Ok(())
    }

    /// Runs `task` under `task_id` inside the caller's future and returns when it ends.
    ///
    /// Same rules and return values as [`launch`](Self::launch), but nothing is spawned
    /// (no runtime is needed) and the record is final when this returns `Ok(())`.
    ///
    /// # Cancel safety
    /// Dropping the returned future while `task` runs drops `task` with it, and the id
    /// becomes `Failed` (launchable again). It is never left `Working`.
    ///
    /// # Panics
    /// A panic in `task` propagates to the caller, after the id was recorded `Failed`.
    pub async fn launch_block<Fut, R, E>(
        &self,
        task_id: K,
        task: Fut,
    ) -> Result<(), (TaskState, Fut)>
    where
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Send,
        E: Send,
    {
        let guard = match self.begin(task_id) {
            Ok(guard) => guard,
            Err(state) => return Err((state, task)),
        };
        // A panic unwinds through here and the guard's drop records Failed.
        let ok = task.await.is_ok();
        guard.settle(Op::Finish { ok });
        Ok(())
    }

    /// The state of `task_id`. Linearizable: see the [type docs](Self#guarantees).
    ///
    /// The id may be given in any borrowed form (`&str` for `String` ids), as with
    /// `HashMap::get`.
    ///
    /// # Cancel safety
    /// Completes in its first poll; dropping it has no effect.
    pub async fn query_task_state<Q>(&self, task_id: &Q) -> TaskState
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.store.hash(task_id);
        self.store.phase(hash, task_id).public()
    }

    /// `Success` or `Failed` when the id is recorded so, otherwise `Working`: also for an
    /// id that was never launched, or was revoked (as in 2.x).
    ///
    /// Use it when you know the id was or will be launched and only ask "done yet, and
    /// how?", for example when polling a task you launched yourself. It looks at fewer
    /// tables than [`query_task_state`](Self::query_task_state) and is never slower.
    /// `Success` and `Failed` answers are exact (linearizable); a `Working` answer only
    /// means "not finished, or not known".
    ///
    /// # Cancel safety
    /// Completes in its first poll; dropping it has no effect.
    pub async fn query_task_state_quick<Q>(&self, task_id: &Q) -> TaskState
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.store.hash(task_id);
        self.store.phase_quick(hash, task_id)
    }

    /// Revokes the success of `target_task_id` by running `revoke_task` (for example,
    /// deleting the uploaded file) inside the caller's future.
    ///
    /// While `revoke_task` runs the id still reads `Success`; a launch of it is refused
    /// with `Success`, and a second revoke gets [`RevokeFailReason::Revoking`].
    ///
    /// - `Ok(r)`: `revoke_task` returned `Ok(r)`; the id is now `NotFound` and may be
    ///   launched again.
    /// - `Err(RevokeTaskError(e))`: it returned `Err(e)`; the id stays `Success` and
    ///   revocable.
    /// - `Err(NotSuccess(fut))` / `Err(Revoking(fut))`: refused, `revoke_task` handed
    ///   back unstarted, the record unchanged.
    ///
    /// # Cancel safety
    /// Dropping the returned future while `revoke_task` runs drops `revoke_task`, and the
    /// id is `Success` again (revocable). Whatever `revoke_task` had already done is not
    /// undone.
    ///
    /// # Panics
    /// A panic in `revoke_task` propagates to the caller, after the id was set back to
    /// `Success`.
    pub async fn revoke_task_block<Fut, R, E>(
        &self,
        target_task_id: K,
        revoke_task: Fut,
    ) -> Result<R, RevokeFailReason<Fut, E>>
    where
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Send,
        E: Send,
    {
        let (guard, revoke_task) = self.begin_revoke(target_task_id, revoke_task)?;
        match revoke_task.await {
            Ok(r) => {
                guard.settle(Op::RevokeEnd { ok: true });
                Ok(r)
            }
            Err(e) => {
                guard.settle(Op::RevokeEnd { ok: false });
                Err(RevokeFailReason::RevokeTaskError(e))
            }
        }
    }

    /// Like [`revoke_task_block`](Self::revoke_task_block), but spawns `revoke_task` on
    /// the current Tokio runtime and returns once the revoke has started.
    ///
    /// `Ok(())` means the revoke is running (the id reads `Success` until it ends, then
    /// `NotFound` if it returned `Ok`, `Success` otherwise). The refusals are the same as
    /// for `revoke_task_block` and hand the future back; the error type says that
    /// `RevokeTaskError` cannot occur here (its payload is [`Infallible`]), so a `match`
    /// needs only the two refusal arms.
    ///
    /// # Cancel safety
    /// Completes in its first poll: dropped before that, nothing happened.
    ///
    /// # Panics
    /// Panics if called outside a Tokio runtime, before the record is touched. A panic in
    /// `revoke_task` does not reach the caller; the id is set back to `Success`.
    pub async fn revoke_task<Fut, R, E>(
        &self,
        target_task_id: K,
        revoke_task: Fut,
    ) -> Result<(), RevokeFailReason<Fut, Infallible>>
    where
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Send,
        E: Send,
    {
        let handle = runtime("revoke_task");
        let (guard, revoke_task) = self.begin_revoke(target_task_id, revoke_task)?;
        handle.spawn(async move {
            let ok = matches!(catch_panic(revoke_task).await, Ok(Ok(_)));
            guard.settle(Op::RevokeEnd { ok });
        });
        Ok(())
    }

    /// How many ids are in `state` right now (`NotFound` is always 0).
    ///
    /// Exact and linearizable; see [`counts`](Self::counts) for the cost.
    ///
    /// # Cancel safety
    /// Completes in its first poll; dropping it has no effect.
    pub async fn count(&self, state: TaskState) -> usize {
        self.store.counts().get(state)
    }

    /// The number of ids in every state, all read at the same instant.
    ///
    /// Costs one short read lock per shard (64), all held together while the table
    /// sizes are added up: microseconds, independent of the number of records. Writers
    /// to the recorder wait for that long.
    ///
    /// # Cancel safety
    /// Completes in its first poll; dropping it has no effect.
    pub async fn counts(&self) -> StateCounts {
        self.store.counts()
    }

    /// Collects the ids that are in `state` (Success includes ids being revoked).
    ///
    /// The cost follows the number of ids in `state`, not the number of records: 10,000
    /// failed ids among a million successes are found without looking at the
    /// successes.
    ///
    /// # Guarantees under concurrent change
    /// Shards are read one after another, not all at one instant, so:
    /// - an id that is in `state` during the whole call is returned, exactly once;
    /// - an id that is never in `state` during the call is not returned;
    /// - an id that enters or leaves `state` during the call may or may not be returned
    ///   (at most once).
    ///
    /// Use [`counts`](Self::counts) for numbers that describe one instant.
    ///
    /// # Cancel safety
    /// Completes in its first poll; dropping it has no effect.
    pub async fn ids_in_state(&self, state: TaskState) -> Vec<K> {
        let mut out = Vec::new();
        self.store
            .visit(phases_of(state), &mut |batch| out.extend_from_slice(batch));
        out
    }

    /// Calls `f` with every id in `state`, with the same guarantees as
    /// [`ids_in_state`](Self::ids_in_state) but without collecting them all: ids are
    /// copied out one shard at a time, and `f` runs with no lock held, so it may call
    /// the recorder (launch, revoke, query) itself.
    ///
    /// # Cancel safety
    /// Completes in its first poll; dropping it has no effect.
    pub async fn for_each_in_state<F>(&self, state: TaskState, mut f: F)
    where
        F: FnMut(&K),
    {
        self.store
            .visit(phases_of(state), &mut |batch| batch.iter().for_each(&mut f));
    }
}

#[cfg(atr_loom)]
impl<K> AsyncTasksRecorder<K>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
{
    /// Loom builds only: the shard an id lives in.
    #[doc(hidden)]
    pub fn loom_shard_of<Q: Hash + ?Sized>(&self, id: &Q) -> usize {
        self.store.shard_of(id)
    }
}

/// The store phases that make up a public state.
fn phases_of(state: TaskState) -> &'static [Phase] {
    match state {
        TaskState::Working => &[Phase::Working],
        TaskState::Success => &[Phase::Success, Phase::Revoking],
        TaskState::Failed => &[Phase::Failed],
        TaskState::NotFound => &[],
    }
}
