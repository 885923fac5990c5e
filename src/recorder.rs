//! [`AsyncTasksRecorder`]: launches futures under an id and records how they end.

use std::borrow::Borrow;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

use std::task::Context;

use crate::cell::{poll_unless_cancelled, Settling};
use crate::context::Progress;
use crate::core::Core;
use crate::error::RevokeFailReason;
use crate::events::TransitionStream;
use crate::fault::{failure_of, Fault, TaskResult};
use crate::guard::{catch_panic, Deliver, Guard, NoReply, Reply};
use crate::handle::TaskHandle;
use crate::kept::KeptOutput;
use crate::listing::{At, ListCursor, Page};
use crate::observe::Observer;
use crate::options::{Builder, LaunchOptions};
use crate::progress::MemoryProgress;
use crate::state::{Phase, TaskState};
use crate::status::{FailureReason, Settled, TaskStatus};
use crate::store::{self, sure, Launched, MemoryStore, Outcome, Refused, StateCounts, Store};
use crate::sync::Arc;
use crate::{LaunchError, TaskContext};
use tokio::sync::Semaphore;

use crate::retry::RetryPolicy;
use crate::runner::{
    ignore_context, keeping, run_retrying, run_spawned, run_spawned_in, wait_for_slot, Retry, Slot,
    Spawner, Timeouts,
};
#[cfg(not(atr_loom))]
use crate::sweeper::sweep;

/// Hosts futures keyed by a unique task id and records their state.
///
/// Cloning is cheap and every clone shares the same records, as in 2.x.
///
/// # Guarantees
/// - **At most one success per id**: once an id is `Success`, no future of that id runs
///   (launches are refused with the future handed back) until a revoke of it succeeds,
///   or until retention forgets it, which happens only if you chose
///   [`SuccessExpiry::Forget`](crate::SuccessExpiry::Forget) (the default keeps a
///   tombstone that still refuses launches).
/// - **Linearizable**: every operation on an id takes effect at one instant between its
///   call and its return, and all callers agree on the order. A query that starts after
///   `launch(..).await` returned `Ok` sees `Working` or a later state, never an earlier
///   one.
/// - **Nothing stuck**: a future that panics, or is dropped before it finishes (its
///   `launch_block` caller went away, the runtime shut down), leaves the id `Failed`; a
///   revoke that panics or is dropped leaves it `Success` and revocable. This assumes
///   the id type's own `Hash`, `Eq`, `Clone` and `Drop` do not panic: they run inside
///   the recorder's critical sections (see Locking), and a panic there stops the
///   transition where it was: the id may keep its earlier state (a finish whose `Eq`
///   panics leaves it `Working`) and its waiters may not be woken.
///
/// # Locking
/// Records live in 64 shards, each behind a read-write lock held only for a hash-table
/// lookup or move, never across an `.await` or while the user's futures run. Code that
/// is not ours runs under a shard lock only here: the id's `Hash` and `Eq`, its `Clone`
/// for subscribers and its `Drop` when a record is removed; the wakers of
/// [`subscribe`](Self::subscribe) streams, which Tokio's broadcast channel wakes
/// inside the send that publishes a transition; and, with the `metrics` feature, the
/// phase gauges' updates. A query takes one read lock; a transition takes one write
/// lock, and with [`Builder::max_finished`] a finish over the cap then takes the write
/// locks of the shards holding the oldest records, one at a time.
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
    core: Arc<Core<K, MemoryStore<K>>>,
    /// Slots for running futures, with [`Builder::max_running`].
    limit: Option<std::sync::Arc<Semaphore>>,
}

impl<K> Clone for AsyncTasksRecorder<K> {
    fn clone(&self) -> Self {
        AsyncTasksRecorder {
            core: self.core.clone(),
            limit: self.limit.clone(),
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
            .field("counts", &self.core.store.counts())
            .finish()
    }
}

/// The launch method a spawn is made for: its name (for the panic outside a runtime),
/// and whether its task sees its context (then it gets a progress reporter).
#[derive(Debug, Clone, Copy)]
struct Entry {
    method: &'static str,
    sees_context: bool,
}

impl Entry {
    const fn without_context(method: &'static str) -> Entry {
        Entry {
            method,
            sees_context: false,
        }
    }
}

/// A launch the store accepted, ready to spawn: where, its timeouts and running slot,
/// and the guard and context of its task.
struct Begun<K: Eq + Hash + Clone + Send + Sync + 'static, P: Reply> {
    spawner: Spawner,
    timeouts: Timeouts,
    slot: Slot,
    guard: Guard<K, MemoryStore<K>, P>,
    context: TaskContext,
}

/// An accepted revoke: the guard that ends it and the revoke future to run.
type RevokeStarted<K, C, Fut> = (Guard<K, MemoryStore<K>, NoReply, C>, Fut);

impl<K> Builder<K>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
{
    /// Builds the recorder.
    pub fn build(self) -> AsyncTasksRecorder<K> {
        AsyncTasksRecorder {
            core: {
                let observer = Observer::new(self.fmt_id);
                let store = MemoryStore::new(
                    self.track_details,
                    self.event_capacity,
                    self.retention,
                    observer.gauges(),
                    self.max_kept_len,
                    self.progress_interval,
                );
                Arc::new(Core { store, observer })
            },
            limit: self
                .max_running
                .map(|n| std::sync::Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS)))),
        }
    }
}

impl<K> AsyncTasksRecorder<K>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
{
    /// Creates an empty recorder backed by the in-memory store, with default settings.
    #[must_use]
    pub fn new() -> Self {
        Builder::default().build()
    }

    /// A [`Builder`] to configure a recorder.
    pub fn builder() -> Builder<K> {
        Builder::default()
    }

    /// Starts the retention sweeper on the current runtime, once, if retention has a
    /// TTL. Costs a branch on a recorder without retention.
    #[inline(always)]
    fn start_sweeper(&self) {
        // The runtime is looked for only when a sweeper is missing: `try_current`
        // clones the runtime's handle, an atomic increment and decrement on a cache
        // line the scheduler's workers share, which would slow every launch.
        #[cfg(not(atr_loom))]
        if self.core.store.sweeper_missing() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                if let Some(tick) = self.core.store.sweeper_to_start() {
                    runtime.spawn(sweep::<K, _>(Arc::downgrade(&self.core), tick));
                }
            }
        }
    }

    /// The start every spawned launch shares: finds the runtime, takes a running slot
    /// (or queues), records the launch, makes the task's guard and context, and hands
    /// them to `go` with `task`; a refusal hands `task` back. A continuation rather
    /// than a returned `Begun`, so that the parts stay in registers instead of being
    /// moved through memory.
    #[inline(always)]
    fn begin<P: Reply, T>(
        &self,
        entry: Entry,
        task_id: K,
        options: &LaunchOptions,
        reply: Option<P>,
        task: T,
        go: impl FnOnce(Begun<K, P>, T),
    ) -> Result<(), (Refused, T)> {
        let spawner = Spawner::find(entry.method);
        // The timeout counts from the launch, not from the task's first poll.
        let timeouts = Timeouts::of(options);
        // A free slot is taken now; without one the task is queued from its launch.
        let slot = Slot::take(self.limit.as_ref());
        let hash = self.core.store.hash(&task_id);
        let key = task_id;
        let launched = match self.core.store.launch(hash, &key, slot.queued()) {
            Ok(launched) => launched,
            Err(refused) => {
                self.core.observer.launch_refused(&key, refused);
                return Err((refused, task));
            }
        };
        self.start_sweeper();
        // A reporter only for the tasks that get to see their context.
        let reporter = entry.sees_context.then(|| {
            let reporter =
                MemoryProgress::new(self.core.clone(), key.clone(), hash, launched.token);
            std::sync::Arc::new(reporter) as std::sync::Arc<dyn Progress>
        });
        let context = TaskContext {
            token: launched.token,
            attempts: launched.attempts,
            progress: reporter,
        };
        // Spawned after the shard lock is released: `spawn` takes the scheduler's
        // locks, which must not lengthen the shard's critical section. If the runtime is
        // shutting down, tokio drops the future inside `spawn` and the guard records the
        // failure.
        let guard = Guard::task(self.core.clone(), key, hash, launched.token, reply);
        go(
            Begun {
                spawner,
                timeouts,
                slot,
                guard,
                context,
            },
            task,
        );
        Ok(())
    }

    /// Spawns the future `make` builds from `task` and the attempt's context, under
    /// `task_id`, if the id may launch. A refusal hands `task` back.
    ///
    /// Inlined into each entry point, so that the entry's constants (`launch`'s
    /// default options, no reporter) fold away.
    #[inline(always)]
    fn spawn_task<T, Fut, P>(
        &self,
        entry: Entry,
        task_id: K,
        task: T,
        make: impl FnOnce(T, TaskContext) -> Fut,
        options: &LaunchOptions,
        reply: Option<P>,
    ) -> Result<(), (Refused, T)>
    where
        Fut: Future + Send + 'static,
        Fut::Output: TaskResult + Send,
        P: Deliver<Fut::Output>,
    {
        self.begin(entry, task_id, options, reply, task, |begun, task| {
            let Begun {
                spawner,
                timeouts,
                slot,
                guard,
                context,
            } = begun;
            let task = guard.watch().instrument(make(task, context));
            match slot {
                Slot::Free if timeouts.none() => spawner.spawn(run_spawned(guard, task)),
                // A queued task waits for its slot inside the guarded future, so it is
                // `Working`, can be cancelled, and its timeout runs.
                slot => spawner.spawn(run_spawned_in(guard, task, slot, timeouts)),
            };
        })
    }

    /// Launches `task` on the current Tokio runtime under `task_id`.
    ///
    /// Once the recorder is [closed](Self::close), every launch is refused, and this
    /// 2.x error then carries the id's state: `Err((NotFound, task))` or
    /// `Err((Failed, task))` mean **closed**, not "unknown id" (those states launch
    /// otherwise). [`launch_with`](Self::launch_with) says it with
    /// [`LaunchError::Closed`].
    ///
    /// - `Ok(())`: the id reads `Working` from now until the future ends; then it reads
    ///   `Success` if the future returned `Ok`, `Failed` if it returned `Err`, panicked, or
    ///   was dropped unfinished (for example by a runtime shutdown).
    /// - `Err((Working, task))`: a future of this id is running; `task` was not started.
    /// - `Err((Success, task))`: the id already succeeded (or its revoke is running);
    ///   `task` was not started and the record is unchanged.
    /// - `Err((NotFound, task))` or `Err((Failed, task))`: the recorder is closed (see
    ///   above).
    ///
    /// With [`Builder::max_running`], a launched future may wait for a slot before it
    /// first runs; it reads `Working` meanwhile ("running or pending", as in 2.x).
    ///
    /// `NotFound` and `Failed` ids launch. The future's output is dropped; use
    /// [`launch_with`](Self::launch_with) to receive it.
    ///
    /// # Cancel safety
    /// The returned future does all its work in its first poll, without awaiting. Dropped
    /// before it is polled, nothing happened; once polled, the task is fully launched.
    ///
    /// # Panics
    /// Panics if called outside a Tokio runtime, before the record is touched. A panic in
    /// `task` does not reach the caller: the id becomes `Failed` (reason `Panicked`) and
    /// the panic message is printed by the panic hook.
    pub async fn launch<Fut, R, E>(&self, task_id: K, task: Fut) -> Result<(), (TaskState, Fut)>
    where
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Send,
        E: Send,
    {
        let options = LaunchOptions::new();
        self.spawn_task::<_, _, NoReply>(
            Entry::without_context("launch"),
            task_id,
            task,
            ignore_context,
            &options,
            None,
        )
        .map_err(|(refused, task)| (refused.phase.state(), task))
    }

    /// Launches `task` like [`launch`](Self::launch), with `options`, and returns a
    /// [`TaskHandle`] that resolves to the task's own output.
    ///
    /// The handle resolves to `Ok(r)`, or `Err(`[`TaskError`](crate::TaskError)`)`: `Failed(e)` for the
    /// future's error, `Panicked(payload)`, `Cancelled`, `TimedOut`, or `Dropped`. The
    /// record is final before the handle resolves. Dropping the handle does not cancel
    /// the task.
    ///
    /// ```
    /// use std::time::Duration;
    /// use async_tasks_recorder::{AsyncTasksRecorder, LaunchOptions, TaskError, TaskState};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let recorder = AsyncTasksRecorder::new();
    /// let handle = match recorder
    ///     .launch_with(1u64, async { Ok::<_, String>(42) }, LaunchOptions::new())
    ///     .await
    /// {
    ///     Ok(handle) => handle,
    ///     Err(refused) => panic!("{refused}"),
    /// };
    /// assert_eq!(handle.await.unwrap(), 42);
    /// assert_eq!(recorder.query_task_state(&1).await, TaskState::Success);
    ///
    /// // A timeout drops the future and records the id as Failed.
    /// let never = std::future::pending::<Result<(), String>>();
    /// let options = LaunchOptions::new().timeout(Duration::from_millis(5));
    /// let Ok(handle) = recorder.launch_with(2u64, never, options).await else { panic!() };
    /// assert!(matches!(handle.await, Err(TaskError::TimedOut)));
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Like `launch`: all the work happens in the first poll.
    ///
    /// # Panics
    /// Panics if called outside a Tokio runtime, before the record is touched.
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
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.spawn_task(
            Entry::without_context("launch_with"),
            task_id,
            task,
            ignore_context,
            &options,
            Some(tx),
        )
        .map_err(|(refused, task)| launch_error(refused, task))?;
        Ok(TaskHandle::new(rx))
    }

    /// Launches `task` like [`launch_with`](Self::launch_with), and keeps what it ended
    /// with for every reader: its output on success (what
    /// [`KeptOutput`](crate::KeptOutput) shows of it; `()` keeps nothing), the
    /// `Display` of its error on failure, or its panic's message, as a [`Kept`](crate::Kept) in
    /// [`status`](Self::status) and [`wait`](Self::wait) (from any clone), for as
    /// long as the record keeps its phase (see [`Kept`](crate::Kept) for what removes
    /// it and for the size limit). The handle still resolves to the output itself.
    ///
    /// A timeout, a cancellation or a drop keeps nothing: the failure's reason says
    /// what happened. Launches made by the other methods keep nothing and cost
    /// nothing for this.
    ///
    /// ```
    /// use async_tasks_recorder::{AsyncTasksRecorder, Kept, LaunchOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let recorder = AsyncTasksRecorder::new();
    /// let upload = async { Ok::<_, String>("s3://bucket/md5-1".to_string()) };
    /// let Ok(handle) = recorder.launch_kept(1u32, upload, LaunchOptions::new()).await else {
    ///     panic!("refused")
    /// };
    /// handle.await.ok();
    /// // Any clone, any request, later:
    /// let status = recorder.status(&1).await;
    /// assert_eq!(status.kept, Some(Kept::Output("s3://bucket/md5-1".into())));
    ///
    /// let full = async { Err::<String, _>("disk full on /var") };
    /// let Ok(handle) = recorder.launch_kept(2u32, full, LaunchOptions::new()).await else {
    ///     panic!("refused")
    /// };
    /// assert!(handle.await.is_err());
    /// let settled = recorder.wait(&2).await;
    /// assert_eq!(settled.kept.as_ref().and_then(Kept::message), Some("disk full on /var"));
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Like `launch`: all the work happens in the first poll.
    ///
    /// # Panics
    /// Panics if called outside a Tokio runtime, before the record is touched.
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
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.spawn_task(
            Entry::without_context("launch_kept"),
            task_id,
            task,
            keeping,
            &options,
            Some(tx),
        )
        .map_err(|(refused, task)| launch_error(refused, task))?;
        Ok(TaskHandle::new(rx))
    }

    /// Like [`launch_with`](Self::launch_with), but the future is made by `make` once
    /// the launch is accepted, from a [`TaskContext`] that carries the attempt's
    /// fencing token and number. A refusal hands `make` back, uncalled.
    ///
    /// In one process the recorder's guards already make sure that no two attempts of
    /// an id run at once; the token matters when side effects outlive the process or
    /// are shared with the Redis recorder, which hands out tokens the same way.
    ///
    /// ```
    /// use async_tasks_recorder::{AsyncTasksRecorder, LaunchOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let recorder = AsyncTasksRecorder::new();
    /// let make = |ctx: async_tasks_recorder::TaskContext| async move {
    ///     Ok::<_, ()>((ctx.token(), ctx.attempt()))
    /// };
    /// let Ok(first) = recorder.launch_fenced(1u64, make, LaunchOptions::new()).await else {
    ///     panic!("refused")
    /// };
    /// let (token, attempt) = first.await.unwrap();
    /// assert_eq!(attempt, 1);
    ///
    /// recorder.revoke_task_block(1, async { Ok::<_, ()>(()) }).await.ok();
    /// let Ok(again) = recorder.launch_fenced(1u64, make, LaunchOptions::new()).await else {
    ///     panic!("refused")
    /// };
    /// assert!(again.await.unwrap().0 > token, "tokens increase across revokes");
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Like `launch`: all the work happens in the first poll.
    ///
    /// # Panics
    /// Panics if called outside a Tokio runtime, before the record is touched. `make`
    /// runs in the caller once the launch is accepted: a panic in it reaches the
    /// caller, after the id was recorded `Failed` with reason `Panicked`.
    pub async fn launch_fenced<F, Fut, R, E>(
        &self,
        task_id: K,
        make: F,
        options: LaunchOptions,
    ) -> Result<TaskHandle<R, E>, LaunchError<F>>
    where
        F: FnOnce(TaskContext) -> Fut,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let entry = Entry {
            method: "launch_fenced",
            sees_context: true,
        };
        self.spawn_task(
            entry,
            task_id,
            make,
            |make, context| make(context),
            &options,
            Some(tx),
        )
        .map_err(|(refused, make)| launch_error(refused, make))?;
        Ok(TaskHandle::new(rx))
    }

    /// Like [`launch_fenced`](Self::launch_fenced), but a failed attempt is retried as
    /// `policy` says: `make` makes each attempt's future from that attempt's
    /// [`TaskContext`] (the same token, the attempt's number), one attempt at a time.
    /// The handle resolves to the last attempt's output.
    ///
    /// Between attempts the id reads `Working` (the 2.x queries too), and
    /// [`status`](Self::status) shows the next attempt's number in `attempts`, the
    /// failed one's reason in `last_failure` and the next attempt's time in
    /// `retry_at`. [`cancel`](Self::cancel) stops the retries (during an attempt or a
    /// backoff: the id ends `Failed`, reason `Cancelled`). Of `options`, the
    /// [`timeout`](LaunchOptions::timeout) bounds the whole launch, retries and
    /// backoffs included (no attempt starts that could not begin before it), and the
    /// [`run_timeout`](LaunchOptions::run_timeout) each attempt's run. With
    /// [`Builder::max_running`], each attempt takes a running slot and gives it back
    /// before its backoff; a later attempt waiting for one reads `Working` (only the
    /// first attempt reads `queued`).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use async_tasks_recorder::{AsyncTasksRecorder, LaunchOptions, RetryPolicy, TaskPhase};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let recorder = AsyncTasksRecorder::new();
    /// let calls = Arc::new(AtomicU32::new(0));
    /// let flaky = {
    ///     let calls = calls.clone();
    ///     move |ctx: async_tasks_recorder::TaskContext| {
    ///         calls.fetch_add(1, Ordering::SeqCst);
    ///         // The first two attempts fail.
    ///         async move { if ctx.attempt() < 3 { Err("timeout") } else { Ok(ctx.attempt()) } }
    ///     }
    /// };
    /// let policy = RetryPolicy::new(5).backoff(Duration::from_millis(1), Duration::from_millis(10));
    /// let Ok(handle) = recorder.launch_retrying(1u64, flaky, policy, LaunchOptions::new()).await
    /// else {
    ///     panic!("refused")
    /// };
    /// assert_eq!(handle.await.unwrap(), 3);
    /// assert_eq!(calls.load(Ordering::SeqCst), 3);
    /// let status = recorder.status(&1).await;
    /// assert_eq!((status.phase, status.attempts), (TaskPhase::Success, None));
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Like `launch`: all the work happens in the first poll.
    ///
    /// # Panics
    /// Panics if called outside a Tokio runtime, before the record is touched. A panic
    /// in `make` fails that attempt (reason `Panicked`, retried if the policy says so).
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
        let entry = Entry {
            method: "launch_retrying",
            sees_context: true,
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let begun = self.begin(entry, task_id, &options, Some(tx), make, |begun, make| {
            let retry = Retry {
                policy,
                limit: self.limit.clone(),
                slot: begun.slot,
            };
            let task = run_retrying(begun.guard, make, begun.context, retry, begun.timeouts);
            begun.spawner.spawn(task);
        });
        match begun {
            Ok(()) => Ok(TaskHandle::new(rx)),
            Err((refused, make)) => Err(launch_error(refused, make)),
        }
    }

    /// Runs `task` under `task_id` inside the caller's future and returns when it ends.
    ///
    /// Same rules and return values as [`launch`](Self::launch) (after
    /// [`close`](Self::close), `Err((NotFound, task))` or `Err((Failed, task))` means
    /// closed), but nothing is spawned (no runtime is needed) and the record is final
    /// when this returns `Ok(())`. With
    /// [`Builder::max_running`] it first waits for a slot, like a spawned task.
    /// [`cancel`](Self::cancel) works on it too: the future is dropped at its next
    /// await point and this returns `Ok(())` with the id `Failed` (reason `Cancelled`).
    ///
    /// # Cancel safety
    /// Dropping the returned future while `task` runs drops `task` with it, and the id
    /// becomes `Failed` (reason `Dropped`, launchable again). It is never left `Working`.
    ///
    /// # Panics
    /// A panic in `task` propagates to the caller, after the id was recorded `Failed`
    /// (reason `Panicked`).
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
        let hash = self.core.store.hash(&task_id);
        let key = task_id;
        let slot = Slot::take(self.limit.as_ref());
        let queued = slot.queued();
        // The caller listens on the record's cell for a cancellation, fetched (as a
        // spawned task does) only once the future or the slot wait returns `Pending`.
        let (mut cell, token) = match self.core.store.launch(hash, &key, queued) {
            Ok(Launched { cell, token, .. }) => (cell, token),
            Err(refused) => {
                self.core.observer.launch_refused(&key, refused);
                return Err((refused.phase.state(), task));
            }
        };
        self.start_sweeper();
        // The guard lives in this future, so it borrows the core.
        let mut guard =
            Guard::<K, MemoryStore<K>, NoReply, _>::task(&*self.core, key, hash, token, None);
        let task = guard.watch().instrument(task);
        // With a limit and none free, the caller first waits for a slot (still
        // cancellable).
        let permit = match slot.at_once() {
            Ok(permit) => Some(permit),
            Err(limit) => {
                let mut wait = std::pin::pin!(wait_for_slot(limit));
                std::future::poll_fn(|cx| {
                    let poll = |cx: &mut Context<'_>| wait.as_mut().poll(cx);
                    poll_unless_cancelled(&mut cell, cx, poll, || guard.first_pending())
                })
                .await
            }
        };
        // The block scope drops the future before the record says it ended, so two
        // futures of one id never exist at once. A panic unwinds through the poll and
        // the guard's drop records it.
        let ended = match permit {
            None => None,
            Some(permit) => {
                if queued {
                    guard.start();
                }
                let mut task = std::pin::pin!(task);
                let ended = std::future::poll_fn(|cx| {
                    // The output is dropped here, with the future's scope.
                    let poll = |cx: &mut Context<'_>| {
                        task.as_mut()
                            .poll(cx)
                            .map(|out| out.map(drop).map_err(drop))
                    };
                    poll_unless_cancelled(&mut cell, cx, poll, || guard.first_pending())
                })
                .await;
                drop(permit);
                ended
            }
        };
        let outcome = Outcome::of(failure_of(&ended.ok_or(Fault::Cancelled)));
        let _ = guard.settle(outcome, None);
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
        let store = &self.core.store;
        sure(store::Records::phase(store, &store::Records::at(store, task_id)).into_inner()).state()
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
        let hash = self.core.store.hash(task_id);
        self.core.store.phase_quick(hash, task_id)
    }

    /// The detailed status of `task_id`: its phase including `Revoking`, the number of
    /// attempts, why the last attempt failed, and (with
    /// [`Builder::track_details`]) when the phase began. Linearizable like
    /// [`query_task_state`](Self::query_task_state), and as cheap.
    ///
    /// # Cancel safety
    /// Completes in its first poll; dropping it has no effect.
    pub async fn status<Q>(&self, task_id: &Q) -> TaskStatus
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let store = &self.core.store;
        sure(store::Records::status(store, &store::Records::at(store, task_id)).into_inner())
    }

    /// Waits until nothing runs for `task_id`, and returns how the running phase ended:
    /// `Success`, `Failed` (with the reason), or `NotFound` after a successful revoke.
    /// Resolves at once when the id is not `Working` or `Revoking` (a `NotFound` id
    /// resolves at once too: there is nothing to wait for).
    ///
    /// Works from any clone of the recorder, for tasks started by any launch method.
    /// No polling: the waiter sleeps until the final transition wakes it, and a waiter
    /// registered before or during that transition is always woken. It returns the
    /// outcome of the phase it waited for, even if the id has moved on since (a failed
    /// id relaunched at once, say).
    ///
    /// ```
    /// use async_tasks_recorder::{AsyncTasksRecorder, TaskPhase};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let recorder = AsyncTasksRecorder::new();
    /// let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    /// let _ = recorder.launch("md5".to_string(), async move { rx.await.map_err(|_| ()) }).await;
    /// let waiter = tokio::spawn({
    ///     let recorder = recorder.clone();
    ///     async move { recorder.wait("md5").await }
    /// });
    /// tx.send(()).unwrap();
    /// assert_eq!(waiter.await.unwrap().phase, TaskPhase::Success);
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future unregisters the waiter and changes nothing else.
    pub async fn wait<Q>(&self, task_id: &Q) -> Settled
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.core.store.hash(task_id);
        match self.core.store.wait_on(hash, task_id) {
            Ok(cell) => Settling::new(cell).await,
            Err(now) => now,
        }
    }

    /// Cancels the running attempt of a `Working` id: its future is dropped at its next
    /// await point (even if it never checks for cancellation), and the id becomes
    /// `Failed` with reason [`Cancelled`](FailureReason::Cancelled), launchable again.
    ///
    /// Returns once the attempt has ended: `true` if it ended by this cancellation,
    /// `false` if the id was not `Working` or the attempt finished on its own first.
    /// A spawned task that has not been polled yet runs up to its first await point
    /// before it is dropped, so one that finishes without suspending finishes on its
    /// own (`false`).
    /// A handle of the task resolves to [`TaskError::Cancelled`](crate::TaskError::Cancelled); a `launch_block`
    /// caller returns `Ok(())`.
    ///
    /// # Cancel safety
    /// The cancellation is requested in the first poll; dropping the future afterwards
    /// only stops waiting for it to take effect.
    pub async fn cancel<Q>(&self, task_id: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.core.store.hash(task_id);
        match self.core.store.cancel(hash, task_id) {
            Some(cell) => {
                let settled = Settling::new(cell).await;
                settled.failure == Some(FailureReason::Cancelled)
            }
            None => false,
        }
    }

    /// Closes the recorder to new launches, for a graceful shutdown: from now on every
    /// launch, through any clone, is refused and hands its future back. An id that
    /// could otherwise launch (`NotFound`, `Failed`) gets [`LaunchError::Closed`] from
    /// `launch_with`, and from the 2.x methods an `Err((state, fut))` whose state is
    /// `NotFound` or `Failed`, which only a closed recorder returns; an id that is
    /// `Working` or `Success` is refused with its state, as always. Everything else
    /// keeps working: queries, `wait`, `cancel` and revokes (a compensating action is
    /// never refused by a shutdown).
    ///
    /// Every launch accepted before `close` returns is visible to
    /// [`wait_idle`](Self::wait_idle) and [`counts`](Self::counts), so
    /// `close(); wait_idle().await` leaves nothing running that was launched through
    /// this recorder. Closing is permanent and idempotent.
    pub fn close(&self) {
        self.core.store.close();
    }

    /// Whether [`close`](Self::close) was called on any clone.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.core.store.is_closed()
    }

    /// Expires every record whose time to live has passed
    /// ([`Builder::failed_ttl`], [`Builder::success_ttl`]), now, in every shard, one
    /// shard lock and at most 64 records at a time; does nothing without a TTL.
    ///
    /// Expiry needs no call to this: launches and finishes expire what is due in their
    /// shard, and a background task sweeps the rest unless
    /// [`Builder::background_sweep`] turned it off. Call it with the background task
    /// off (on a runtime without a time driver, say), or before reading counts that
    /// must not include expired records. It needs no runtime.
    pub fn sweep(&self) {
        let store = &self.core.store;
        for part in 0..store.parts() {
            while store.maintain(part) {}
        }
    }

    /// Waits until no id is `Working` (running or waiting for a slot) or `Revoking`,
    /// checked at one instant with [`counts`](Self::counts).
    ///
    /// It sleeps on the running ids' wake-ups, without polling. On an open recorder
    /// that keeps launching it may never resolve; call [`close`](Self::close) first, or
    /// use [`drain`](Self::drain). Called from inside a task this recorder runs (or a
    /// revoke future), it waits for that task itself and never resolves; the same
    /// holds for `drain`.
    ///
    /// # Cancel safety
    /// Cancel safe: it only waits.
    pub async fn wait_idle(&self) {
        let mut running = Vec::new();
        loop {
            let now = self.core.store.counts();
            if now.working == 0 && now.revoking == 0 {
                return;
            }
            running.clear();
            self.core
                .store
                .visit(&[Phase::Working, Phase::Revoking], &mut |batch| {
                    running.extend_from_slice(batch)
                });
            for id in &running {
                self.wait(id).await;
            }
        }
    }

    /// Graceful shutdown: [`close`](Self::close)s the recorder, waits until nothing
    /// runs, and returns how many tasks it had to cancel.
    ///
    /// With `grace = Some(d)`, the tasks still `Working` after `d` are
    /// [cancelled](Self::cancel) (they become `Failed`, reason `Cancelled`, at their next
    /// await point) and waited for. Revokes are never cancelled: they are waited for,
    /// since they undo work. With `None` it waits as long as it takes. A grace period
    /// needs the runtime's time driver (`enable_time`).
    ///
    /// A future that blocks its thread without ever reaching an await point cannot be
    /// stopped by anything in async Rust; `drain` waits for it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use async_tasks_recorder::{AsyncTasksRecorder, LaunchError, LaunchOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let recorder = AsyncTasksRecorder::new();
    /// let quick = async { tokio::time::sleep(Duration::from_secs(1)).await; Ok::<_, ()>(()) };
    /// let stuck = std::future::pending::<Result<(), ()>>();
    /// recorder.launch(1u32, quick).await.ok();
    /// recorder.launch(2u32, stuck).await.ok();
    ///
    /// let cancelled = recorder.drain(Some(Duration::from_secs(5))).await;
    /// assert_eq!(cancelled, 1); // id 2; id 1 finished in time
    /// let late = recorder.launch_with(3, async { Ok::<_, ()>(()) }, LaunchOptions::new()).await;
    /// assert!(matches!(late, Err(LaunchError::Closed(_))));
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// The recorder is closed in the first poll. Dropping the future later stops the
    /// waiting; cancellations already requested still take effect.
    ///
    /// # Panics
    /// With a grace period, when polled outside a Tokio runtime (the grace period is a
    /// Tokio timer), before anything is closed. Inside a runtime built without its
    /// time driver, Tokio's timer panics once the recorder is closed.
    pub async fn drain(&self, grace: Option<Duration>) -> usize {
        if grace.is_some() && tokio::runtime::Handle::try_current().is_err() {
            panic!(
                "AsyncTasksRecorder::drain with a grace period must run inside a Tokio runtime \
                 (with its time driver, `enable_time`); drain(None) needs no runtime"
            );
        }
        self.close();
        let Some(grace) = grace else {
            self.wait_idle().await;
            return 0;
        };
        if tokio::time::timeout(grace, self.wait_idle()).await.is_ok() {
            return 0;
        }
        // Closed, so no new id becomes Working: these are all that is left.
        let mut working = Vec::new();
        self.core.store.visit(&[Phase::Working], &mut |batch| {
            working.extend_from_slice(batch)
        });
        let requested: Vec<_> = working
            .iter()
            .filter_map(|id| self.core.store.cancel(self.core.store.hash(id), id))
            .collect();
        let mut cancelled = 0;
        for cell in requested {
            if Settling::new(cell).await.failure == Some(FailureReason::Cancelled) {
                cancelled += 1;
            }
        }
        // Revokes, and tasks that ended on their own meanwhile.
        self.wait_idle().await;
        cancelled
    }

    /// A stream of every transition of every id from now on: `(id, from, to)` with the
    /// failure reason. See [`TransitionStream`] for ordering and for what a slow
    /// subscriber sees. Costs one relaxed atomic load per transition while nobody
    /// subscribes.
    pub fn subscribe(&self) -> TransitionStream<K> {
        self.core.store.subscribe()
    }

    /// Accepts `RevokeBegin` for `task_id` and returns the guard that will end it
    /// (reaching the core through `core`: a borrow of `self.core` for a revoke run in
    /// the caller's future, a clone for a spawned one), with the revoke future to run.
    fn begin_revoke<'a, Fut, E, C>(
        &'a self,
        core: impl FnOnce(&'a Arc<Core<K, MemoryStore<K>>>) -> C,
        task_id: K,
        revoke_task: Fut,
    ) -> Result<RevokeStarted<K, C, Fut>, RevokeFailReason<Fut, E>>
    where
        C: std::ops::Deref<Target = Core<K, MemoryStore<K>>>,
    {
        let store = &self.core.store;
        let at = store::Records::at(store, &task_id);
        let (hash, begun) = (at.hash, store::Records::revoke_begin(store, &at));
        match sure(begun.into_inner()) {
            Ok(token) => Ok((
                Guard::revoke(core(&self.core), task_id, hash, token),
                revoke_task,
            )),
            Err(phase) => {
                self.core.observer.revoke_refused(&task_id, phase);
                match phase {
                    Phase::Revoking => Err(RevokeFailReason::Revoking(revoke_task)),
                    _ => Err(RevokeFailReason::NotSuccess(revoke_task)),
                }
            }
        }
    }

    /// Revokes the success of `target_task_id` by running `revoke_task` (for example,
    /// deleting the uploaded file) inside the caller's future.
    ///
    /// While `revoke_task` runs the id still reads `Success` (its detailed phase is
    /// `Revoking`); a launch of it is refused with `Success`, and a second revoke gets
    /// [`RevokeFailReason::Revoking`].
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
        let (guard, revoke_task) =
            self.begin_revoke(|core| &**core, target_task_id, revoke_task)?;
        match guard.watch().instrument(revoke_task).await {
            Ok(r) => {
                guard.settle_revoke(true);
                Ok(r)
            }
            Err(e) => {
                guard.settle_revoke(false);
                Err(RevokeFailReason::RevokeTaskError(e))
            }
        }
    }

    /// Like [`revoke_task_block`](Self::revoke_task_block), but spawns `revoke_task` on
    /// the current Tokio runtime and returns once the revoke has started.
    ///
    /// `Ok(())` means the revoke is running (the id reads `Success` until it ends, then
    /// `NotFound` if it returned `Ok`, `Success` otherwise); [`wait`](Self::wait) for it
    /// to end. The refusals are the same as for `revoke_task_block` and hand the future
    /// back; the error type says that `RevokeTaskError` cannot occur here (its payload
    /// is [`Infallible`]), so a `match` needs only the two refusal arms.
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
        let spawner = Spawner::find("revoke_task");
        let (guard, revoke_task) = self.begin_revoke(Arc::clone, target_task_id, revoke_task)?;
        spawner.spawn(async move {
            let revoke_task = guard.watch().instrument(revoke_task);
            let ok = matches!(catch_panic(revoke_task).await, Ok(Ok(_)));
            guard.settle_revoke(ok);
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
        self.counts().await.get(state)
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
        sure(store::Records::<K>::counts(&self.core.store).into_inner())
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
        self.core
            .store
            .visit(state.phases(), &mut |batch| out.append(batch));
        out
    }

    /// Calls `f` with every id in `state`, with the same guarantees as
    /// [`ids_in_state`](Self::ids_in_state) but without collecting them all: ids are
    /// copied out one shard at a time, and `f` runs with no lock held. `f` is a plain
    /// closure, so it cannot await the recorder's methods; collect what it needs and
    /// act on it after the call. To stop early, or to list in pages, use
    /// [`list_page`](Self::list_page).
    ///
    /// # Cancel safety
    /// Completes in its first poll; dropping it has no effect.
    pub async fn for_each_in_state<F>(&self, state: TaskState, mut f: F)
    where
        F: FnMut(&K),
    {
        self.core
            .store
            .visit(state.phases(), &mut |batch| batch.iter().for_each(&mut f));
    }

    /// One page of the ids in `state`: up to `limit` ids (a few more when ids share a
    /// hash, 1 at least) after `after` (`None` for the first page), and the cursor of
    /// the next page in [`Page::next`], `None` after the last (a full page may be
    /// followed by an empty last one). Ids come in an order of their own (by shard,
    /// then by hash), the same from page to page.
    ///
    /// The cost follows the page, not the state: finding a page reads the state's
    /// tables of one shard (a 64th of the ids in `state`), and more shards only when
    /// that one has fewer ids left than the page needs; only the page's ids are cloned.
    ///
    /// ```
    /// use async_tasks_recorder::{AsyncTasksRecorder, TaskState};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let recorder = AsyncTasksRecorder::new();
    /// for id in 0..50u32 {
    ///     recorder.launch_block(id, async { Err::<(), _>("disk full") }).await.ok();
    /// }
    /// let mut after = None;
    /// let mut seen = 0;
    /// loop {
    ///     let page = recorder.list_page(TaskState::Failed, after.as_ref(), 20).await;
    ///     seen += page.ids.len();
    ///     match page.next {
    ///         Some(next) => after = Some(next), // or `next.to_string()` into a URL
    ///         None => break,
    ///     }
    /// }
    /// assert_eq!(seen, 50);
    /// # }
    /// ```
    ///
    /// # Guarantees under concurrent change
    /// Across all the pages of one listing: an id that is in `state` from the first
    /// page to the last is listed exactly once; an id never in `state` meanwhile is not
    /// listed; one that enters or leaves may or may not be (at most once). A cursor
    /// stays valid whatever happens to the records, for this recorder (and its
    /// clones) only: the order comes from the recorder's own hasher, randomly seeded,
    /// so a cursor of another recorder, or of this program before a restart, lists an
    /// arbitrary part of the ids. One from a Redis recorder gives an empty last page.
    ///
    /// # Cancel safety
    /// Completes in its first poll; dropping it has no effect.
    pub async fn list_page(
        &self,
        state: TaskState,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Page<K> {
        let after = match after.map(|c| c.0) {
            None => None,
            Some(At::Memory { shard, hash }) => Some((usize::from(shard), hash)),
            Some(_) => {
                return Page {
                    ids: Vec::new(),
                    next: None,
                }
            }
        };
        let (ids, next) = self.core.store.page(state.phases(), after, limit);
        Page {
            ids,
            next: next.map(|(shard, hash)| {
                ListCursor(At::Memory {
                    // Shards are few (64): the index fits.
                    shard: shard as u16,
                    hash,
                })
            }),
        }
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
        self.core.store.shard_of(id)
    }
}

/// The public error of a refused `launch_with`.
fn launch_error<Fut>(refused: Refused, task: Fut) -> LaunchError<Fut> {
    if refused.closed {
        LaunchError::Closed(task)
    } else {
        LaunchError::Refused(refused.phase.state(), task)
    }
}
