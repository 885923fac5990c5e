//! [`RedisBuilder`]: the settings of a Redis recorder, and `build`, which connects,
//! checks the namespace and the server, and starts the recorder's background tasks.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::conn::Conn;
use super::error::store_error;
use super::hub::{listen, Hub};
use super::id::StoredId;
use super::keys::Layout;
use super::recorder::{RedisRecorder, Shared};
use super::reply::Keep;
use super::runner::outbox;
use super::store::RedisStore;
use crate::observe::{FmtId, Observer};
use crate::options::Retention;
use crate::{StoreError, SuccessExpiry};

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
    /// The server's URL, or a cluster's seed nodes' URLs.
    urls: Vec<String>,
    cluster: bool,
    namespace: String,
    lease: Duration,
    groups: u16,
    response_timeout: Duration,
    connect_timeout: Duration,
    check: ServerCheck,
    event_capacity: usize,
    retention: Retention,
    max_running: Option<usize>,
    max_kept_len: usize,
    progress_interval: Duration,
    fmt_id: Option<FmtId<K>>,
    fault: Option<InjectedFault>,
    #[cfg(feature = "redis-tls")]
    tls: Tls,
    _ids: PhantomData<fn() -> K>,
}

/// Certificates for TLS beyond the system's trust store.
#[cfg(feature = "redis-tls")]
#[derive(Default)]
struct Tls {
    /// PEM: the certificate authorities the server's certificate must chain to,
    /// instead of the system's.
    roots: Option<Vec<u8>>,
    /// PEM: this client's certificate and key, for servers that ask for one.
    client: Option<(Vec<u8>, Vec<u8>)>,
}

#[cfg(feature = "redis-tls")]
impl Tls {
    /// The certificates for the client, `None` to use the system's trust store alone.
    fn certificates(&self) -> Option<::redis::TlsCertificates> {
        if self.roots.is_none() && self.client.is_none() {
            return None;
        }
        Some(::redis::TlsCertificates {
            client_tls: self.client.clone().map(|(client_cert, client_key)| {
                ::redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                }
            }),
            root_cert: self.roots.clone(),
        })
    }

    /// rustls takes its cryptography from a process-wide provider: install ring's
    /// unless the application chose one (another crate may enable a second provider,
    /// and then rustls cannot pick by itself).
    fn use_provider() {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing a race with another installer is fine: some provider is set.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    }
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
    /// The defaults, for the server at `url`, or (`cluster`) for the Redis Cluster
    /// that the nodes at `urls` belong to.
    pub(super) fn new(urls: Vec<String>, cluster: bool) -> Self {
        RedisBuilder {
            urls,
            cluster,
            namespace: "default".to_owned(),
            lease: Duration::from_secs(30),
            groups: 16,
            response_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            check: ServerCheck::Warn,
            event_capacity: 1024,
            retention: Retention::default(),
            max_running: None,
            max_kept_len: crate::kept::DEFAULT_MAX_KEPT_LEN,
            progress_interval: crate::progress::DEFAULT_INTERVAL,
            fmt_id: None,
            fault: None,
            #[cfg(feature = "redis-tls")]
            tls: Tls::default(),
            _ids: PhantomData,
        }
    }

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
    /// [`WorkerLost`](crate::FailureReason::WorkerLost) and may be launched again. A shorter
    /// lease finds dead workers sooner and costs more renewals (one round trip per
    /// running task per third of a lease).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The number of slot groups ids are spread over (default 16, 1 to 1024). Every
    /// recorder of a namespace must use the same number: the first one writes it to
    /// the server, and `build` refuses a different one with
    /// [`StoreError::Misconfigured`]. Every script touches the keys of one group, which
    /// share a hash tag (one Redis Cluster slot); counting and listing visit every
    /// group, which is what lets a namespace spread over a Redis Cluster
    /// ([`RedisRecorder::cluster_builder`](super::RedisRecorder::cluster_builder)).
    pub fn groups(mut self, groups: u16) -> Self {
        self.groups = groups;
        self
    }

    /// How long to wait for the server's reply to one command before the operation
    /// fails with [`StoreError::TimedOut`] (default 5 s: `appendfsync always` makes
    /// every write wait for a disk sync, which can take long under load).
    ///
    /// This bounds every operation on a dead or black-holed connection: it fails after
    /// about one response timeout, never hangs. A connection that dropped is
    /// re-established by the first command that fails on it ([`StoreError::Unreachable`]),
    /// taking up to [`connect_timeout`](Self::connect_timeout) more; reads (`status`,
    /// the queries, counts, listings and the reads of `wait`) are sent once more in
    /// that case, so that a read just after an outage does not fail needlessly.
    /// Writes are not: a launch whose reply was lost may have been recorded, and is
    /// then refused as `Working` until its lease ends (nobody runs it).
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
    /// before it is told it missed some (default 1024), as on the in-memory recorder:
    /// the value is kept within 1 ..= 2^20 and rounded up to a power of two.
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

    /// Run at most `n` of **this process's** launched futures at once, as
    /// [`Builder::max_running`](crate::Builder::max_running) does in one process:
    /// launches beyond it are accepted, read `Working` (with their lease renewed) and
    /// [`queued`](crate::TaskStatus::queued), in every process, until a slot frees
    /// (one more function call then), can be cancelled, and their timeout counts from
    /// the launch (their run timeout from the slot).
    /// Other processes of the namespace have limits of their own. Revokes are not
    /// limited. Default: no limit.
    ///
    /// # Panics
    /// If `n` is 0: a limit of no futures would never run a task.
    pub fn max_running(mut self, n: usize) -> Self {
        assert!(n > 0, "max_running must be at least 1");
        self.max_running = Some(n);
        self
    }

    /// The most bytes a value kept by
    /// [`launch_kept`](super::RedisRecorder::launch_kept) may have (default 8 KiB), as
    /// [`Builder::max_kept_len`](crate::Builder::max_kept_len) says. Kept values are
    /// stored on the server, in the namespace's `kept` hashes, and every status read
    /// of the id carries its value: keep them small.
    pub fn max_kept_len(mut self, bytes: usize) -> Self {
        self.max_kept_len = bytes;
        self
    }

    /// How often one running attempt's [progress](crate::TaskContext::progress) is
    /// written to the server (and published to every process's subscribers): at most
    /// once per interval, the latest value (default 250 ms). A `status` read may be
    /// one interval behind the task.
    pub fn progress_interval(mut self, interval: Duration) -> Self {
        self.progress_interval = interval;
        self
    }

    /// Trust the certificate authorities in `pem` (one or more PEM certificates) for
    /// the server's certificate, instead of the system's trust store: for a server
    /// whose certificate a private CA signed. Needs a `rediss://` URL.
    #[cfg(feature = "redis-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis-tls")))]
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.roots = Some(pem.into());
        self
    }

    /// Present the certificate `cert_pem` with its private key `key_pem` (PEM) to a
    /// server that asks for one (`tls-auth-clients yes`, Redis's default with TLS).
    /// Needs a `rediss://` URL.
    #[cfg(feature = "redis-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis-tls")))]
    pub fn tls_client_certificate(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls.client = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// A client for the server at `url`, with TLS when it says `rediss://` (the
    /// client takes that from the URL; the certificates, when given, go with it).
    fn node_client(&self, url: &str) -> Result<::redis::Client, StoreError> {
        let _tls = self.tls_url(url)?;
        #[cfg(feature = "redis-tls")]
        if let (true, Some(certificates)) = (_tls, self.tls.certificates()) {
            return ::redis::Client::build_with_tls(url, certificates).map_err(|e| {
                StoreError::InvalidConfig(format!("the TLS settings are not usable: {e}"))
            });
        }
        ::redis::Client::open(url)
            .map_err(|e| StoreError::InvalidConfig(format!("the URL does not parse: {e}")))
    }

    /// Whether `url` asks for TLS: an error when this build has none, or when
    /// certificates were given for a URL without it.
    fn tls_url(&self, url: &str) -> Result<bool, StoreError> {
        let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
        let tls = scheme.eq_ignore_ascii_case("rediss") || scheme.eq_ignore_ascii_case("valkeys");
        #[cfg(not(feature = "redis-tls"))]
        if tls {
            return Err(StoreError::InvalidConfig(
                "a rediss:// URL needs TLS: enable the crate's `redis-tls` feature".into(),
            ));
        }
        #[cfg(feature = "redis-tls")]
        if tls {
            Tls::use_provider();
        } else if self.tls.roots.is_some() || self.tls.client.is_some() {
            return Err(StoreError::InvalidConfig(
                "TLS certificates were given for a URL without TLS: use rediss://".into(),
            ));
        }
        Ok(tls)
    }

    /// Why the seeds refuse this client, when one does so for a reason that no retry
    /// changes (a wrong password, a certificate): `None` if each was only unreachable.
    async fn seed_refusal(&self, clients: &[::redis::Client]) -> Option<StoreError> {
        for client in clients {
            let connecting = client.get_multiplexed_async_connection();
            if let Ok(Err(e)) = tokio::time::timeout(self.connect_timeout, connecting).await {
                let error = store_error(e);
                if !error.is_transient() {
                    return Some(error);
                }
            }
        }
        None
    }

    /// The command connection, and the clients that the subscription may use (one per
    /// node given; it moves to the next when one fails).
    async fn connect(&self) -> Result<(Conn, Vec<::redis::Client>), StoreError> {
        if self.urls.is_empty() {
            return Err(StoreError::InvalidConfig(
                "a cluster needs the URL of at least one of its nodes".into(),
            ));
        }
        let clients = self
            .urls
            .iter()
            .map(|url| self.node_client(url))
            .collect::<Result<Vec<_>, _>>()?;
        let timed_out = || StoreError::TimedOut("connecting to the server".into());
        let limit = self.connect_timeout.saturating_mul(3);
        let conn = if self.cluster {
            let builder =
                ::redis::cluster::ClusterClient::builder(self.urls.iter().map(String::as_str))
                    .connection_timeout(self.connect_timeout)
                    .response_timeout(self.response_timeout)
                    .retries(1);
            #[cfg(feature = "redis-tls")]
            let builder = match self.tls.certificates() {
                Some(certificates) => builder.certs(certificates),
                None => builder,
            };
            let client = builder.build().map_err(store_error)?;
            match tokio::time::timeout(limit, client.get_async_connection()).await {
                Ok(Ok(conn)) => Conn::Cluster(conn),
                Ok(Err(e)) => {
                    let error = store_error(e);
                    // The cluster client reports every failed first connection as an
                    // I/O error with the cause in its text; a seed asked alone says
                    // whether it was the credentials or a certificate.
                    if !error.is_transient() {
                        return Err(error);
                    }
                    return Err(self.seed_refusal(&clients).await.unwrap_or(error));
                }
                Err(_) => return Err(timed_out()),
            }
        } else {
            let config = ::redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.connect_timeout))
                .set_response_timeout(Some(self.response_timeout))
                .set_number_of_retries(1);
            let connecting =
                ::redis::aio::ConnectionManager::new_with_config(clients[0].clone(), config);
            match tokio::time::timeout(limit, connecting).await {
                Ok(conn) => Conn::Single(conn.map_err(store_error)?),
                Err(_) => return Err(timed_out()),
            }
        };
        Ok((conn, clients))
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
        let (mut conn, clients) = self.connect().await?;
        let keep = keep_of(self.retention, layout.groups());
        check_layout(&mut conn, &layout, &keep).await?;
        // The record operations' library (Redis >= 7.0 Functions): loaded here so that
        // no operation finds it missing; the server keeps it with its data.
        super::store::load_library(&mut conn).await?;
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
        let mut store = RedisStore::new(conn, layout.clone(), self.lease, keep, self.max_kept_len);
        if self.fault == Some(InjectedFault::FinishIgnoresToken) {
            store.ignore_finish_tokens();
        }
        let hub = Arc::new(Hub::new(self.event_capacity));
        let (stop, stopped) = watch::channel(());
        let (ready, subscribed) = oneshot::channel();
        tokio::spawn(listen(
            clients,
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
                progress_interval: self.progress_interval,
                limit: self.max_running.map(|n| {
                    Arc::new(tokio::sync::Semaphore::new(
                        n.min(tokio::sync::Semaphore::MAX_PERMITS),
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
async fn check_layout(conn: &mut Conn, layout: &Layout, keep: &Keep) -> Result<(), StoreError> {
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
async fn server_warnings(conn: &mut Conn) -> Result<Vec<String>, StoreError> {
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
