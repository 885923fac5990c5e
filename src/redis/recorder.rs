//! [`RedisRecorder`] and its builder: the recorder's operations on a namespace that
//! several processes share.

use std::borrow::Borrow;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

use super::hub::{listen, Hub, Registration};
use super::id::{group_of, StoredId};
use super::keys::Layout;
use super::runner::{outbox, Holder, Kind, Pending};
use super::store::{phases_of, store_error, Keep, Loc, RedisStore};
use crate::guard::{catch_panic, observing};
use crate::handle::{TaskError, TaskHandle};
use crate::observe::{FmtId, Observer};
use crate::options::Retention;
use crate::state::{Phase, TaskState};
use crate::status::{FailureReason, Settled, TaskStatus};
use crate::store::Refused;
use crate::SuccessExpiry;
use crate::{LaunchError, LaunchOptions, StateCounts, StoreError, TaskContext, TransitionStream};

/// What [`RedisBuilder::build`] does with server settings that weaken the
/// guarantees (see the [module docs](super#durability-said-plainly)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServerCheck {
    /// Build anyway, and report each finding through
    /// [`RedisRecorder::warnings`] (and a `tracing` warning with that feature). The
    /// default.
    #[default]
    Warn,
    /// Refuse to build with [`StoreError::Misconfigured`], also when the settings
    /// cannot be read (`CONFIG GET` not allowed, as on some managed services).
    Refuse,
    /// Do not read the server's settings.
    Skip,
}

/// A fault the tests inject to show that their checkers catch it. Not for use.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InjectedFault {
    /// The finish script accepts any token while the id is `Working`: a stale holder
    /// can end its successor's attempt.
    FinishIgnoresToken,
}

/// Configures a [`RedisRecorder`]; from [`RedisRecorder::builder`].
///
/// ```no_run
/// use std::time::Duration;
/// use async_tasks_recorder::redis::{RedisRecorder, ServerCheck};
///
/// # async fn run() -> Result<(), async_tasks_recorder::StoreError> {
/// let recorder: RedisRecorder<String> = RedisRecorder::builder("redis://127.0.0.1:6379/")
///     .namespace("uploads")
///     .lease(Duration::from_secs(30))
///     .server_check(ServerCheck::Refuse)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct RedisBuilder<K> {
    url: String,
    namespace: String,
    lease: Duration,
    groups: u16,
    response_timeout: Duration,
    connect_timeout: Duration,
    check: ServerCheck,
    event_capacity: usize,
    retention: Retention,
    max_running: Option<usize>,
    fmt_id: Option<FmtId<K>>,
    fault: Option<InjectedFault>,
    _ids: PhantomData<fn() -> K>,
}

impl<K> fmt::Debug for RedisBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password.
        f.debug_struct("RedisBuilder")
            .field("namespace", &self.namespace)
            .field("lease", &self.lease)
            .field("groups", &self.groups)
            .field("response_timeout", &self.response_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("check", &self.check)
            .finish_non_exhaustive()
    }
}

/// The shortest lease [`RedisBuilder::lease`] accepts.
pub const MIN_LEASE: Duration = Duration::from_millis(100);

impl<K> RedisBuilder<K> {
    /// The namespace: recorders with the same namespace on the same server share their
    /// records; others never see them. 1 to 64 ASCII letters, digits, `_` or `-`.
    /// Default: `default`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How long a running task's lease lasts without a renewal (default 30 s, at least
    /// [`MIN_LEASE`]). The process running the task renews it every third of that; a
    /// process that could not renew stops the task's future after four fifths of it;
    /// when the lease ends, the id reads `Failed` with
    /// [`WorkerLost`](FailureReason::WorkerLost) and may be launched again. A shorter
    /// lease finds dead workers sooner and costs more renewals (one round trip per
    /// running task per third of a lease).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The number of slot groups ids are spread over (default 16, 1 to 1024). Every
    /// recorder of a namespace must use the same number: the first one writes it to
    /// the server, and `build` refuses a different one with
    /// [`StoreError::Misconfigured`]. Every script on one id touches the keys of one
    /// group, which share a hash tag (one Redis Cluster slot); counting and listing
    /// read every group. Redis Cluster itself is not supported yet (the recorder
    /// connects to one server, and counting reads all groups in one script).
    pub fn groups(mut self, groups: u16) -> Self {
        self.groups = groups;
        self
    }

    /// How long to wait for the server's reply to one command before the operation
    /// fails with [`StoreError::TimedOut`] (default 5 s: `appendfsync always` makes
    /// every write wait for a disk sync, which can take long under load).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long to wait for a connection (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// What to do about server settings that weaken the guarantees (default
    /// [`ServerCheck::Warn`]).
    pub fn server_check(mut self, check: ServerCheck) -> Self {
        self.check = check;
        self
    }

    /// How many transitions a [`subscribe`](RedisRecorder::subscribe)r may fall behind
    /// before it is told it missed some (default 1024), as on the in-memory recorder.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    /// Forget `Failed` records `ttl` after they failed, as on the in-memory recorder
    /// ([`Builder::failed_ttl`](crate::Builder::failed_ttl)).
    ///
    /// On Redis no background task sweeps: a record past its time to live reads as
    /// expired from that instant in every read, the next script that touches it makes
    /// the move, every operation makes a few of its slot group's due moves on the way,
    /// and counts and listings make all of them first. Every recorder of a namespace
    /// must use the same retention settings (`build` refuses others with
    /// [`StoreError::Misconfigured`]). Milliseconds are the unit.
    pub fn failed_ttl(mut self, ttl: Duration) -> Self {
        self.retention.failed_ttl = Some(ttl);
        self
    }

    /// Expire `Success` records `ttl` after they became `Success`, to a tombstone or
    /// forgotten as [`success_expiry`](Self::success_expiry) says
    /// ([`Builder::success_ttl`](crate::Builder::success_ttl)); see
    /// [`failed_ttl`](Self::failed_ttl) for how expiry runs on Redis.
    pub fn success_ttl(mut self, ttl: Duration) -> Self {
        self.retention.success_ttl = Some(ttl);
        self
    }

    /// What an expiring `Success` record becomes: a tombstone (the default: at most one
    /// success per id still holds) or nothing ([`SuccessExpiry::Forget`]: **the id may
    /// run again**).
    pub fn success_expiry(mut self, expiry: SuccessExpiry) -> Self {
        self.retention.success_expiry = expiry;
        self
    }

    /// Keep at most about `n` finished records with their details (`Failed` records,
    /// and `Success` records that are not tombstones), as
    /// [`Builder::max_finished`](crate::Builder::max_finished) does, but counted per
    /// slot group so that every script stays in one slot: each group keeps at most
    /// `n / groups` (rounded up), evicting its oldest. With ids spread evenly that is
    /// `n` in all, give or take one group's share.
    pub fn max_finished(mut self, n: usize) -> Self {
        self.retention.max_finished = Some(n);
        self
    }

    /// Run at most `n` of **this process's** launched futures at once (at least 1), as
    /// [`Builder::max_running`](crate::Builder::max_running) does in one process:
    /// launches beyond it are accepted, read `Working` (with their lease renewed)
    /// until a slot frees, can be cancelled, and their timeout counts from the launch.
    /// Other processes of the namespace have limits of their own. Revokes are not
    /// limited. Default: no limit.
    pub fn max_running(mut self, n: usize) -> Self {
        self.max_running = Some(n);
        self
    }

    /// Breaks the recorder on purpose, for the tests of the crate's checkers.
    #[doc(hidden)]
    pub fn inject_fault(mut self, fault: InjectedFault) -> Self {
        self.fault = Some(fault);
        self
    }
}

impl<K: fmt::Debug> RedisBuilder<K> {
    /// Put each task's id, formatted with `Debug`, in its `tracing` spans and events,
    /// as [`Builder::record_ids`](crate::Builder::record_ids) does (off by default).
    pub fn record_ids(mut self, on: bool) -> Self {
        self.fmt_id = on.then_some(<K as fmt::Debug>::fmt as FmtId<K>);
        self
    }
}

impl<K> RedisBuilder<K>
where
    K: StoredId + Clone + Send + Sync + 'static,
{
    /// Connects, checks the namespace's layout and (by [`server_check`](Self::server_check))
    /// the server's settings, subscribes to the namespace's channel, and returns the
    /// recorder. Must be called within a Tokio runtime (with its time driver): the
    /// recorder's background tasks (the subscription, the outbox of ends) run on it.
    ///
    /// # Errors
    /// [`InvalidConfig`](StoreError::InvalidConfig) for a URL that does not parse or
    /// a bad setting; [`Unreachable`](StoreError::Unreachable) or
    /// [`TimedOut`](StoreError::TimedOut) when the server cannot be reached in time;
    /// [`AuthFailed`](StoreError::AuthFailed) for wrong credentials;
    /// [`Misconfigured`](StoreError::Misconfigured) for a layout mismatch, or with
    /// [`ServerCheck::Refuse`] for weak settings.
    ///
    /// # Cancel safety
    /// Dropping the future midway leaves nothing behind but, possibly, the
    /// namespace's layout record on the server.
    pub async fn build(self) -> Result<RedisRecorder<K>, StoreError> {
        let layout = Arc::new(Layout::new(&self.namespace, self.groups)?);
        if self.lease < MIN_LEASE {
            return Err(StoreError::InvalidConfig(format!(
                "a lease of {:?} is shorter than the minimum {MIN_LEASE:?}",
                self.lease
            )));
        }
        let client = ::redis::Client::open(self.url.as_str())
            .map_err(|e| StoreError::InvalidConfig(format!("the URL does not parse: {e}")))?;
        let config = ::redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
            .set_number_of_retries(1);
        let connecting = ::redis::aio::ConnectionManager::new_with_config(client.clone(), config);
        let mut conn =
            match tokio::time::timeout(self.connect_timeout.saturating_mul(3), connecting).await {
                Ok(conn) => conn.map_err(store_error)?,
                Err(_) => return Err(StoreError::TimedOut("connecting to the server".into())),
            };
        let keep = keep_of(self.retention, layout.groups());
        check_layout(&mut conn, &layout, &keep).await?;
        let warnings = match self.check {
            ServerCheck::Skip => Vec::new(),
            ServerCheck::Warn | ServerCheck::Refuse => server_warnings(&mut conn).await?,
        };
        if self.check == ServerCheck::Refuse && !warnings.is_empty() {
            return Err(StoreError::Misconfigured(warnings.join("; ")));
        }
        #[cfg(feature = "tracing")]
        for warning in &warnings {
            tracing::warn!(target: "async_tasks_recorder", namespace = layout.namespace(), "{warning}");
        }
        let mut store = RedisStore::new(conn, layout.clone(), self.lease, keep);
        if self.fault == Some(InjectedFault::FinishIgnoresToken) {
            store.ignore_finish_tokens();
        }
        let hub = Arc::new(Hub::new(self.event_capacity));
        let (stop, stopped) = watch::channel(());
        let (ready, subscribed) = oneshot::channel();
        tokio::spawn(listen(
            client,
            layout.channel().to_owned(),
            Arc::downgrade(&hub),
            stopped,
            self.connect_timeout,
            ready,
        ));
        match subscribed.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(StoreError::Unreachable(
                    "the subscription task ended".into(),
                ))
            }
        }
        let (outbox_tx, outbox_rx) = mpsc::unbounded_channel();
        tokio::spawn(outbox(store.clone(), outbox_rx));
        Ok(RedisRecorder {
            shared: Arc::new(Shared {
                store,
                hub,
                outbox: outbox_tx,
                closed: AtomicBool::new(false),
                local: Arc::default(),
                draining: AtomicBool::new(false),
                drain_cancelled: AtomicUsize::new(0),
                _stop: stop,
                warnings,
                observer: Observer::new(self.fmt_id),
                limit: self.max_running.map(|n| {
                    Arc::new(tokio::sync::Semaphore::new(
                        n.clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
                    ))
                }),
            }),
        })
    }
}

/// The retention settings as the scripts take them.
fn keep_of(r: Retention, groups: u16) -> Keep {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Keep {
        failed_ttl_ms: r.failed_ttl.map(ms),
        success_ttl_ms: r.success_ttl.map(ms),
        forget_success: r.success_expiry == SuccessExpiry::Forget,
        cap_per_group: r
            .max_finished
            .map(|n| (n as u64).div_ceil(u64::from(groups))),
    }
}

/// Writes the group count and the retention settings on first use, and refuses a
/// namespace laid out or kept otherwise.
async fn check_layout(
    conn: &mut ::redis::aio::ConnectionManager,
    layout: &Layout,
    keep: &Keep,
) -> Result<(), StoreError> {
    let groups = layout.groups().to_string();
    let retention = keep.encode();
    let (stored_groups, stored_retention): (String, String) = ::redis::pipe()
        .cmd("HSETNX")
        .arg(layout.meta())
        .arg("groups")
        .arg(&groups)
        .ignore()
        .cmd("HSETNX")
        .arg(layout.meta())
        .arg("retention")
        .arg(&retention)
        .ignore()
        .cmd("HGET")
        .arg(layout.meta())
        .arg("groups")
        .cmd("HGET")
        .arg(layout.meta())
        .arg("retention")
        .query_async(conn)
        .await
        .map_err(store_error)?;
    if stored_groups != groups {
        return Err(StoreError::Misconfigured(format!(
            "namespace {:?} has {stored_groups} slot groups on this server, and this \
             recorder was built with {groups}: use the same `groups` in every recorder \
             of a namespace",
            layout.namespace()
        )));
    }
    if stored_retention != retention {
        return Err(StoreError::Misconfigured(format!(
            "namespace {:?} keeps records as {stored_retention:?} (failed ttl ms | success \
             ttl ms | forget | cap per group, -1 for off), and this recorder was built \
             with {retention:?}: use the same retention settings in every recorder of a \
             namespace",
            layout.namespace()
        )));
    }
    Ok(())
}

/// What the server's settings do to the guarantees, one sentence each.
async fn server_warnings(
    conn: &mut ::redis::aio::ConnectionManager,
) -> Result<Vec<String>, StoreError> {
    let mut warnings = Vec::new();
    let setting = |name: &'static str| {
        let mut conn = conn.clone();
        async move {
            ::redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query_async::<Vec<String>>(&mut conn)
                .await
                .map(|pair| pair.get(1).cloned().unwrap_or_default())
        }
    };
    let read = async {
        let aof = setting("appendonly").await?;
        let fsync = setting("appendfsync").await?;
        let policy = setting("maxmemory-policy").await?;
        Ok::<_, ::redis::RedisError>((aof, fsync, policy))
    };
    match read.await {
        Ok((aof, fsync, policy)) => {
            if aof != "yes" {
                warnings.push(format!(
                    "appendonly is {aof:?}: a restart of the server loses records, and with \
                     them successes, so an id may run again"
                ));
            } else if fsync != "always" {
                warnings.push(format!(
                    "appendfsync is {fsync:?}: a crash of the server may lose the last \
                     second or so of acknowledged transitions"
                ));
            }
            if policy != "noeviction" {
                warnings.push(format!(
                    "maxmemory-policy is {policy:?}: the server may evict records, so an id \
                     may run again or a running one be lost"
                ));
            }
        }
        Err(e) if e.is_io_error() || e.is_timeout() => return Err(store_error(e)),
        Err(e) => warnings.push(format!(
            "the server's settings could not be read ({e}): check appendonly, appendfsync \
             and maxmemory-policy yourself"
        )),
    }
    Ok(warnings)
}

/// What the clones of one recorder share.
pub(crate) struct Shared<K> {
    pub(crate) store: RedisStore,
    pub(crate) hub: Arc<Hub<K>>,
    /// Ends of running phases dropped before they could record them.
    pub(crate) outbox: mpsc::UnboundedSender<Pending>,
    closed: AtomicBool,
    /// Launches and revokes of this process whose end is not recorded yet.
    pub(crate) local: Arc<Local>,
    /// Set by `drain` once it cancels: a launch granted afterwards is cancelled at once.
    pub(crate) draining: AtomicBool,
    drain_cancelled: AtomicUsize,
    /// Dropped with the last clone: stops the subscription task.
    _stop: watch::Sender<()>,
    warnings: Vec<String>,
    /// Slots for this process's running futures, with `max_running`.
    limit: Option<Arc<tokio::sync::Semaphore>>,
    /// Reports this process's launches, refusals and ends (tracing, metrics).
    pub(crate) observer: Observer<K>,
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

/// Records and runs tasks keyed by id on a Redis (or Valkey) namespace that every
/// process of a service shares. See the [module docs](super) for what holds where.
///
/// Cloning is cheap; clones share one connection, one subscription and the local
/// tasks.
pub struct RedisRecorder<K> {
    shared: Arc<Shared<K>>,
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

/// How a task's future ended, before its end is recorded.
enum Fault {
    Panicked(Box<dyn std::any::Any + Send>),
    TimedOut,
    Cancelled,
    Lost,
}

fn failure_of<R, E>(result: &Result<Result<R, E>, Fault>) -> Option<FailureReason> {
    match result {
        Ok(Ok(_)) => None,
        Ok(Err(_)) => Some(FailureReason::Error),
        Err(Fault::Panicked(_)) => Some(FailureReason::Panicked),
        Err(Fault::TimedOut) => Some(FailureReason::TimedOut),
        Err(Fault::Cancelled) => Some(FailureReason::Cancelled),
        Err(Fault::Lost) => Some(FailureReason::WorkerLost),
    }
}

/// Runs a task's future under its holder: until it ends, is cancelled, times out or
/// loses its lease; then records the end.
async fn run_task<K, Fut, R, E>(
    holder: Holder<K>,
    task: Fut,
    deadline: Option<Instant>,
) -> Result<Result<R, E>, Fault>
where
    Fut: Future<Output = Result<R, E>>,
{
    let timer = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    // With a limit, the future first waits for a slot, as Working: renewed,
    // cancellable, and timed from the launch.
    let task = holder.watch.instrument(task);
    let task = crate::recorder::in_slot(holder.shared.limit.as_ref(), task);
    let result = tokio::select! {
        biased;
        () = holder.running.cancelled() => Err(Fault::Cancelled),
        () = holder.keep_lease() => Err(Fault::Lost),
        () = timer => Err(Fault::TimedOut),
        out = catch_panic(task) => out.map_err(Fault::Panicked),
    };
    // The future is dropped by now, before its end is recorded: two futures of one id
    // never run in one process, and none runs past its lease.
    let asked = failure_of(&result);
    let drained = holder.running.drained.load(Ordering::SeqCst);
    let shared = holder.shared.clone();
    let recorded = holder.finish(asked).await;
    if drained && recorded.is_some_and(|s| s.failure == Some(FailureReason::Cancelled)) {
        shared.drain_cancelled.fetch_add(1, Ordering::SeqCst);
    }
    match recorded {
        Some(s) if s.failure == asked => result,
        _ => Err(Fault::Lost),
    }
}

impl<K> RedisRecorder<K>
where
    K: StoredId + Clone + Send + Sync + 'static,
{
    /// A builder for a recorder on the server at `url`: `redis://[user:password@]host:port/[db]`
    /// (or `redis+unix:///path`).
    pub fn builder(url: impl Into<String>) -> RedisBuilder<K> {
        RedisBuilder {
            url: url.into(),
            namespace: "default".to_owned(),
            lease: Duration::from_secs(30),
            groups: 16,
            response_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            check: ServerCheck::Warn,
            event_capacity: 1024,
            retention: Retention::default(),
            max_running: None,
            fmt_id: None,
            fault: None,
            _ids: PhantomData,
        }
    }

    /// What [`ServerCheck::Warn`] found wrong with the server's settings when the
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
        let mut bytes = Vec::new();
        id.encode(&mut bytes);
        Loc {
            group: group_of(&bytes, self.shared.store.layout().groups()),
            bytes,
        }
    }

    /// Asks the server for the `Launch` move; on a grant returns the holder.
    async fn grant<T>(&self, task_id: &K, task: T) -> Result<(Holder<K>, u32, T), LaunchError<T>> {
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
        match self.shared.store.launch(&loc).await {
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
                Ok((holder, granted.attempts, task))
            }
            Ok(Err(phase)) => {
                let refused = Refused {
                    phase,
                    closed: false,
                };
                observing(|| self.shared.observer.launch_refused(task_id, refused));
                Err(LaunchError::Refused(phase.state(), task))
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
    /// [`TaskError::Lost`] if this process lost the lease first.
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
        let deadline = options
            .get_timeout()
            .and_then(|t| Instant::now().checked_add(t));
        let (holder, _, task) = self.grant(&task_id, task).await?;
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let output = run_task(holder, task, deadline).await;
            let _ = tx.send(handle_output_of(output));
        });
        Ok(TaskHandle::new(rx))
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
        let deadline = options
            .get_timeout()
            .and_then(|t| Instant::now().checked_add(t));
        let (holder, attempts, make) = self.grant(&task_id, make).await?;
        let context = TaskContext {
            token: holder.token(),
            attempts,
        };
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            // Made inside the task, so that a panic in `make` fails the task as one
            // in its future would.
            let task = async move { make(context).await };
            let output = run_task(holder, task, deadline).await;
            let _ = tx.send(handle_output_of(output));
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
        let (holder, _, task) = self.grant(&task_id, task).await?;
        if let Err(Fault::Panicked(payload)) = run_task(holder, task, None).await {
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
        Ok(self.status(task_id).await?.phase.state())
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
        Ok(self.shared.store.status(&self.loc(task_id)).await?.status)
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
            if let Some(outcome) = token.and_then(|t| waiters.outcome_of(t)) {
                return Ok(outcome);
            }
            let read = self.shared.store.status(loc).await?;
            let phase = read.status.phase;
            match token {
                None if phase.is_final() => return Ok(read.settled()),
                None => token = read.token,
                Some(t) if read.token == Some(t) && !phase.is_final() => {}
                Some(t) => {
                    // The phase ended without this process hearing of it.
                    if let Some(outcome) = waiters.outcome_of(t) {
                        return Ok(outcome);
                    }
                    if phase.is_final() {
                        return Ok(read.settled());
                    }
                    return Ok(match (phase, read.previous_failure) {
                        // A revoke runs: the phase waited for ended in Success.
                        (Phase::Revoking, _) => Settled {
                            phase: Phase::Success,
                            failure: None,
                        },
                        // Running again: the phase before this attempt failed so.
                        (_, Some(failure)) => Settled {
                            phase: Phase::Failed,
                            failure: Some(failure),
                        },
                        // Running again after a NotFound: it was revoked, or expired.
                        (_, None) => Settled {
                            phase: Phase::NotFound,
                            failure: None,
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
        let Some((token, _)) = self.shared.store.cancel(&loc).await? else {
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
        match self.shared.store.revoke_begin(&loc).await {
            Ok(Ok(granted)) => {
                let holder = Holder::new(
                    self.shared.clone(),
                    loc,
                    Kind::Revoke,
                    granted.token,
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
                let _ = holder.finish(Some(FailureReason::WorkerLost)).await;
                Err(RevokeError::Lost)
            }
            Some(Ok(Ok(r))) => match holder.finish(None).await {
                Some(s) if s.phase == Phase::NotFound => Ok(r),
                _ => Err(RevokeError::Lost),
            },
            Some(Ok(Err(e))) => {
                let _ = holder.finish(Some(FailureReason::Error)).await;
                Err(RevokeError::RevokeTaskError(e))
            }
            Some(Err(panic)) => {
                // The id is Success again before the panic reaches the caller.
                let _ = holder.finish(Some(FailureReason::Panicked)).await;
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
            let _ = holder.finish(failure).await;
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
        self.shared.store.counts().await
    }

    /// Calls `f` with every id of the namespace in `state`, reading the state's hashes
    /// group by group in pages (one round trip per page of up to 512 ids), so that the
    /// cost follows the number of ids in `state` and memory the size of one group's
    /// share of it.
    ///
    /// # Guarantees under concurrent change
    /// As for the in-memory recorder: an id in `state` during the whole call is passed
    /// exactly once; one never in `state` during the call is not passed; one that
    /// enters or leaves may or may not be (at most once).
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
            _ => phases_of(state),
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
                        let id = K::decode(&bytes).ok_or_else(|| {
                            StoreError::BadId(format!(
                                "a stored id ({} bytes) does not decode into this recorder's id type",
                                bytes.len()
                            ))
                        })?;
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

fn handle_output_of<R, E>(output: Result<Result<R, E>, Fault>) -> Result<R, TaskError<E>> {
    match output {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(TaskError::Failed(e)),
        Err(Fault::Panicked(p)) => Err(TaskError::Panicked(p)),
        Err(Fault::TimedOut) => Err(TaskError::TimedOut),
        Err(Fault::Cancelled) => Err(TaskError::Cancelled),
        Err(Fault::Lost) => Err(TaskError::Lost),
    }
}
