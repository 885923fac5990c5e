//! A real HTTP upload service on one [`AsyncTasksRecorder`], served with axum.
//!
//! Every file is named by the md5 of its contents, and that md5 is the task id: an
//! upload is a task (check the body's md5, write the file), a delete is a revoke of that
//! task whose compensating action removes the file. The recorder is what refuses a
//! second upload of a file that is stored or being stored, answers "where is my
//! upload?", lets a request wait for an upload to end without polling, lists the
//! uploads in one state, and drains the running uploads on shutdown.
//!
//! Run it with `cargo run -p http-service`; it listens on `--addr` (or
//! `ATR_HTTP_ADDR`, default `127.0.0.1:3000`), prints a few `curl` lines to try, and
//! stores files in a fresh directory under the system temp dir, removed when the
//! server stops (or in `--storage DIR`, kept). Stop it gracefully with Ctrl-C (or `q`
//! and Enter).
//!
//! # Replicas
//!
//! With the `redis` feature and `--redis URL` (or `ATR_REDIS_URL`), the records are on
//! that server, in `--namespace` (default `http_service`), and every instance started
//! so is a replica of one service: any of them accepts an upload, answers its status,
//! long-polls it, lists it and deletes it, whichever replica runs it. Give them one
//! `--storage` directory (a shared volume). A replica that dies mid-upload holds its
//! upload's lease no longer: after `--lease-ms` (default 10000) every replica reads
//! the upload `failed`, `last_failure: worker_lost`, and a new POST of it, on any
//! replica, runs it again. A replica's shutdown drains its own uploads only.
//!
//! ```text
//! $ cargo run -p http-service --features redis -- --redis redis://127.0.0.1:6379/ \
//!       --addr 127.0.0.1:3000 --storage /tmp/files
//! $ cargo run -p http-service --features redis -- --redis redis://127.0.0.1:6379/ \
//!       --addr 127.0.0.1:3001 --storage /tmp/files
//! ```
//!
//! On Redis a request that needs the server when it cannot be reached is answered 503
//! with the recorder's error; no state is guessed.
//!
//! # Endpoints
//!
//! `{md5}` is 32 hex digits. Upper-case digits are accepted and normalised to
//! lower-case, which is the form every response uses (an md5 names the same bytes in
//! either case, and one spelling per file keeps one record per file). Anything else is
//! refused with 400 before the recorder is touched.
//!
//! | request | status codes | body |
//! |---------|--------------|------|
//! | `POST /uploads/{md5}[?delay_ms=N]`, body = the file | 202 launched; 409 refused (the id is `working` or `success`); 503 shutting down; 400 bad md5 or `delay_ms`; 413 body too big | 202: status (below), with `Location: /uploads/{md5}`; errors: error body (below) |
//! | `GET /uploads/{md5}` | 200; 404 when the id is `not_found`; 400 bad md5 | status, in both 200 and 404 |
//! | `GET /uploads/{md5}/wait[?timeout_ms=N]` | 200 settled; 404 settled as `not_found`; 202 still running at the timeout; 400 bad md5 or `timeout_ms` | 200/404: outcome; 202: status |
//! | `DELETE /uploads/{md5}` | 200 deleted (the id is `not_found` again); 409 not `success` (also for unknown ids), or a delete of it is running; 500 the file could not be removed (the id stays `success`); 400 bad md5 | 200: status; errors: error body |
//! | `GET /uploads?state=S` | 200; 400 for a missing, empty or unknown `S`, and for `not_found` | `{"state", "count", "ids"}`, ids sorted |
//! | `GET /uploads?state=S&limit=N[&after=C]` | 200; 400 as above, for `N` outside 1..=1000, or a `C` that is not a page's `next` | one page: `{"state", "ids", "next"}`; pass `next` as `after` for the page after it, `null` after the last |
//! | any other path | 404 (a wrong method on a known path: 405, no body) | error body |
//!
//! - **Status**: `{"id", "state", "phase", "attempts", "last_failure"}`. `state` is the
//!   2.x four-state view (`working`, `success`, `failed`, `not_found`); `phase` adds
//!   `revoking` (a delete is running); `attempts` counts the launches since the id was
//!   last `not_found` (left out for `not_found`); `last_failure` is why the last attempt
//!   failed (`error`: the body did not match the md5 or the disk write failed;
//!   `cancelled`: stopped by the shutdown; `panicked`), otherwise `null`.
//! - **Outcome** (`/wait`): `{"id", "state", "phase", "last_failure"}` of the phase it
//!   waited for. An id that is not running is settled already, so `/wait` answers at
//!   once for it (including `not_found`, with 404 like `GET`).
//! - **Error body**: `{"error": "...", "id"?, "state"?, "phase"?}`; a 409 says in `state`
//!   why it was refused.
//!
//! # Uploads
//!
//! An accepted upload runs as a task of the recorder, not inside the request: the
//! request returns 202 at once, and a client that disconnects does not stop it. The
//! task first sleeps `delay_ms` (default 0, at most [`Config::max_delay`], 10 s by
//! default; more is a 400), so that a user can watch it `working`; then, on a blocking
//! thread, it hashes the body and fails if the md5 differs from the id (the id is then
//! `failed`, and a new POST of it may retry with the right body), or writes the file
//! (to a temporary name, renamed into place, so a file named by an md5 is always
//! complete). A body larger than [`Config::max_body`] (16 MiB by default) is a 413.
//!
//! # Deletes
//!
//! `DELETE` revokes the upload with `revoke_task_block`, whose compensating future
//! removes the file. It runs in a task of its own, so a client that disconnects half way
//! cannot leave the file removed while the id still reads `success`. A file that is
//! already missing counts as removed.
//!
//! # Shutdown
//!
//! When the shutdown signal comes, [`serve`] closes the recorder (so uploads still
//! reaching a handler get 503), stops accepting connections, and, at the same time,
//! drains the recorder: it waits up to [`Config::grace`] (10 s) for the running uploads
//! and then cancels the rest (they end `failed` with `last_failure: cancelled`). The
//! long-polls in flight are answered as their uploads end, so the server's own graceful
//! shutdown, which waits for every request in flight, ends too. [`serve`] returns once
//! both are done, with what the drain did.
//!
//! The binary (`src/main.rs`, which calls [`run`]) stops on Ctrl-C (SIGINT, through
//! `tokio::signal::ctrl_c`), or on a line `q` on its standard input.
//!
//! # Try it
//!
//! ```text
//! $ cargo run -p http-service
//! $ printf hello > hello.txt   # md5 5d41402abc4b2a76b9719d911017c592
//! $ curl -i -X POST --data-binary @hello.txt \
//!       'http://127.0.0.1:3000/uploads/5d41402abc4b2a76b9719d911017c592?delay_ms=5000'
//! $ curl -i http://127.0.0.1:3000/uploads/5d41402abc4b2a76b9719d911017c592
//! $ curl -i http://127.0.0.1:3000/uploads/5d41402abc4b2a76b9719d911017c592/wait
//! $ curl -i 'http://127.0.0.1:3000/uploads?state=success'
//! $ curl -i -X DELETE http://127.0.0.1:3000/uploads/5d41402abc4b2a76b9719d911017c592
//! ```
//!
//! The end-to-end test `tests/http_service.rs` runs [`serve`] on an ephemeral port and
//! drives it with an HTTP client; `tests/http_replicas.rs` runs two replicas of it as
//! processes on one Redis server and kills one mid-upload.

use std::borrow::Borrow;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(feature = "redis")]
use async_tasks_recorder::redis::{RedisRecorder, RevokeError};
use async_tasks_recorder::{
    AsyncTasksRecorder, LaunchError, LaunchOptions, ListCursor, Page, RevokeFailReason, Settled,
    StateCounts, TaskPhase, TaskState, TaskStatus,
};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

/// How long `/wait` waits when the request does not say.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// The longest `/wait` a request may ask for; longer requests are shortened to it.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Settings of one server instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The largest `delay_ms` an upload may ask for.
    pub max_delay: Duration,
    /// How long the shutdown waits for running uploads before it cancels them.
    pub grace: Duration,
    /// The largest upload body, in bytes.
    pub max_body: usize,
    /// How many uploads are stored at once; more are accepted and wait (`working`).
    pub max_running: usize,
    /// How long a failed upload stays listed before its record is forgotten.
    pub failed_ttl: Duration,
    /// How many finished uploads keep their details (attempts); beyond it the oldest
    /// successes shrink to tombstones (still `success`, never stored twice) and the
    /// oldest failures are forgotten.
    pub max_finished: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_delay: Duration::from_secs(10),
            grace: Duration::from_secs(10),
            max_body: 16 * 1024 * 1024,
            max_running: 64,
            failed_ttl: Duration::from_secs(3600),
            max_finished: 100_000,
        }
    }
}

/// A validated md5: exactly 32 lower-case hex digits. The recorder's task id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Md5Id(Arc<str>);

impl Md5Id {
    /// Parses 32 hex digits of either case; the id keeps them in lower-case.
    pub fn parse(input: &str) -> Result<Md5Id, String> {
        if input.len() != 32 {
            return Err(format!(
                "an md5 is 32 hex digits, not {} characters",
                input.chars().count()
            ));
        }
        if let Some((at, bad)) = input.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(format!(
                "an md5 is 32 hex digits; {bad:?} at byte {at} is not one"
            ));
        }
        Ok(Md5Id(input.to_ascii_lowercase().into()))
    }

    /// The 32 lower-case hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Md5Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lets the recorder be queried with a `&str` (the hash of `Arc<str>` is that of `str`).
impl Borrow<str> for Md5Id {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// On Redis an id is stored as its 32 digits.
#[cfg(feature = "redis")]
impl async_tasks_recorder::redis::StoredId for Md5Id {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0.as_bytes());
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        Md5Id::parse(std::str::from_utf8(bytes).ok()?).ok()
    }
}

/// The md5 of `bytes`, as 32 lower-case hex digits.
pub fn md5_hex(bytes: &[u8]) -> String {
    format!("{:x}", Md5::digest(bytes))
}

/// The directory the files are stored in: a fresh one per server instance, removed
/// (with what is in it) when the last reference to it goes away, or one that the
/// replicas of a service share and that outlives them.
#[derive(Debug)]
pub struct Storage {
    dir: PathBuf,
    /// Whether dropping it removes the directory.
    owned: bool,
}

/// Makes temporary names unique within the process.
static UNIQUE: AtomicU64 = AtomicU64::new(0);

impl Storage {
    /// Creates an empty directory under the system temp dir.
    pub fn create() -> io::Result<Storage> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        loop {
            let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
            let name = format!("atr-http-service-{}-{nanos:09}-{n}", std::process::id());
            let dir = std::env::temp_dir().join(name);
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(Storage { dir, owned: true }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Stores into `dir`, which is created if missing and kept when the server stops:
    /// replicas given the same directory (a shared volume) serve the same files.
    pub fn shared(dir: PathBuf) -> io::Result<Storage> {
        std::fs::create_dir_all(&dir)?;
        Ok(Storage { dir, owned: false })
    }

    /// The storage directory.
    pub fn dir(&self) -> &FsPath {
        &self.dir
    }

    /// Where the file of `id` is stored.
    pub fn path_of(&self, id: &Md5Id) -> PathBuf {
        self.dir.join(id.as_str())
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            log(format_args!("could not remove {}: {e}", self.dir.display()));
        }
    }
}

/// Where the records are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// In this process: one server instance, its records gone when it stops.
    Memory,
    /// On a Redis (or Valkey) server, shared by every replica given the same `url` and
    /// `namespace`; `lease` is how soon the others see that a replica died mid-upload.
    #[cfg(feature = "redis")]
    Redis {
        /// `redis://host:port/`.
        url: String,
        /// The recorder's namespace on that server.
        namespace: String,
        /// The running uploads' lease.
        lease: Duration,
    },
}

/// The recorder of one replica: its own in memory, or a [`RedisRecorder`] shared with
/// the other replicas. The handlers speak to it alone; each method maps what both
/// recorders answer to what the service needs, and the Redis recorder's store errors
/// (the server could not be asked) to `Err` with a message.
#[derive(Debug, Clone)]
pub enum Tasks {
    /// In this process.
    Memory(AsyncTasksRecorder<Md5Id>),
    /// On Redis.
    #[cfg(feature = "redis")]
    Redis(RedisRecorder<Md5Id>),
}

/// Why a launch did not start the upload.
#[derive(Debug)]
enum NotLaunched {
    /// The id is `working` or `success`.
    Refused(TaskState),
    /// This replica is shutting down.
    Closed,
    /// The store could not be asked.
    Unavailable(String),
}

/// How a delete ended, out of the task that ran it.
enum Deleted {
    Yes,
    NotSuccess,
    AlreadyDeleting,
    Failed(io::Error),
    /// The store could not be asked, or the delete's lease was lost: the record reads
    /// `success` (again), and the file may be gone; a DELETE may be tried again.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Unknown(String),
}

fn unavailable<E: fmt::Display>(e: E) -> String {
    format!("the task store could not be asked: {e}")
}

impl Tasks {
    /// Launches `task` under `id`; the handle is not needed (the task logs its own
    /// failure), and dropping it does not cancel the task.
    async fn launch<F>(&self, id: Md5Id, task: F) -> Result<(), NotLaunched>
    where
        F: Future<Output = Result<usize, UploadError>> + Send + 'static,
    {
        // `launch_with` rather than `launch`: its error tells a closed recorder from a
        // refusal.
        let launched = match self {
            Tasks::Memory(r) => r
                .launch_with(id, task, LaunchOptions::new())
                .await
                .map(drop),
            #[cfg(feature = "redis")]
            Tasks::Redis(r) => r
                .launch_with(id, task, LaunchOptions::new())
                .await
                .map(drop),
        };
        launched.map_err(|e| match e {
            LaunchError::Refused(state, _task) => NotLaunched::Refused(state),
            LaunchError::Closed(_task) => NotLaunched::Closed,
            other => NotLaunched::Unavailable(unavailable(other)),
        })
    }

    async fn status(&self, id: &Md5Id) -> Result<TaskStatus, String> {
        match self {
            Tasks::Memory(r) => Ok(r.status(id).await),
            #[cfg(feature = "redis")]
            Tasks::Redis(r) => r.status(id).await.map_err(unavailable),
        }
    }

    /// Cancel safe, as both recorders' `wait` is.
    async fn wait(&self, id: &Md5Id) -> Result<Settled, String> {
        match self {
            Tasks::Memory(r) => Ok(r.wait(id).await),
            #[cfg(feature = "redis")]
            Tasks::Redis(r) => r.wait(id).await.map_err(unavailable),
        }
    }

    async fn revoke<F>(&self, id: Md5Id, remove: F) -> Deleted
    where
        F: Future<Output = io::Result<()>> + Send + 'static,
    {
        match self {
            Tasks::Memory(r) => match r.revoke_task_block(id, remove).await {
                Ok(()) => Deleted::Yes,
                Err(RevokeFailReason::NotSuccess(_)) => Deleted::NotSuccess,
                Err(RevokeFailReason::Revoking(_)) => Deleted::AlreadyDeleting,
                Err(RevokeFailReason::RevokeTaskError(e)) => Deleted::Failed(e),
            },
            #[cfg(feature = "redis")]
            Tasks::Redis(r) => match r.revoke_task_block(id, remove).await {
                Ok(()) => Deleted::Yes,
                Err(RevokeError::NotSuccess(_)) => Deleted::NotSuccess,
                Err(RevokeError::Revoking(_)) => Deleted::AlreadyDeleting,
                Err(RevokeError::RevokeTaskError(e)) => Deleted::Failed(e),
                Err(other) => Deleted::Unknown(other.to_string()),
            },
        }
    }

    async fn counts(&self) -> Result<StateCounts, String> {
        match self {
            Tasks::Memory(r) => Ok(r.counts().await),
            #[cfg(feature = "redis")]
            Tasks::Redis(r) => r.counts().await.map_err(unavailable),
        }
    }

    async fn list_page(
        &self,
        state: TaskState,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Page<Md5Id>, String> {
        match self {
            Tasks::Memory(r) => Ok(r.list_page(state, after, limit).await),
            #[cfg(feature = "redis")]
            Tasks::Redis(r) => r.list_page(state, after, limit).await.map_err(unavailable),
        }
    }

    async fn ids_in_state(&self, state: TaskState) -> Result<Vec<Md5Id>, String> {
        match self {
            Tasks::Memory(r) => Ok(r.ids_in_state(state).await),
            #[cfg(feature = "redis")]
            Tasks::Redis(r) => r.ids_in_state(state).await.map_err(unavailable),
        }
    }

    /// Closes this replica to new uploads (the others keep accepting them).
    fn close(&self) {
        match self {
            Tasks::Memory(r) => r.close(),
            #[cfg(feature = "redis")]
            Tasks::Redis(r) => r.close(),
        }
    }

    /// Drains this replica's running uploads; returns how many it cancelled.
    async fn drain(&self, grace: Duration) -> usize {
        match self {
            Tasks::Memory(r) => r.drain(Some(grace)).await,
            #[cfg(feature = "redis")]
            Tasks::Redis(r) => r.drain(Some(grace)).await,
        }
    }
}

/// Everything a handler needs; cheap to clone (one per request).
#[derive(Debug, Clone)]
pub struct AppState {
    tasks: Tasks,
    storage: Arc<Storage>,
    config: Config,
    /// How many `/wait` requests are waiting right now.
    long_polls: watch::Sender<usize>,
}

impl AppState {
    /// A new in-memory recorder and a new, empty storage directory.
    pub fn new(config: Config) -> io::Result<AppState> {
        Ok(AppState::in_memory(config, Storage::create()?))
    }

    /// A replica on `backend`, storing into `storage`. For Redis, it connects to the
    /// server and fails (with the recorder's message) if that cannot be done.
    pub async fn on(
        config: Config,
        backend: &Backend,
        storage: Storage,
    ) -> Result<AppState, String> {
        match backend {
            Backend::Memory => Ok(AppState::in_memory(config, storage)),
            #[cfg(feature = "redis")]
            Backend::Redis {
                url,
                namespace,
                lease,
            } => {
                // The limits of the in-memory replica; attempts are always recorded.
                // `max_running` counts this replica's uploads only.
                let recorder = RedisRecorder::builder(url.clone())
                    .namespace(namespace.clone())
                    .lease(*lease)
                    .max_running(config.max_running)
                    .failed_ttl(config.failed_ttl)
                    .max_finished(config.max_finished)
                    .build()
                    .await
                    .map_err(|e| format!("cannot use the Redis server at {url}: {e}"))?;
                for warning in recorder.warnings() {
                    log(format_args!("Redis server: {warning}"));
                }
                Ok(AppState {
                    tasks: Tasks::Redis(recorder),
                    storage: Arc::new(storage),
                    config,
                    long_polls: watch::Sender::new(0),
                })
            }
        }
    }

    fn in_memory(config: Config, storage: Storage) -> AppState {
        AppState {
            // Details make `attempts` known for successful uploads too. The limits keep
            // a long-running service bounded: a cap on uploads stored at once, failed
            // uploads forgotten after a while, and a cap on detailed records. Successes
            // are never forgotten (a tombstone keeps refusing a second upload).
            tasks: Tasks::Memory(
                AsyncTasksRecorder::builder()
                    .track_details(true)
                    .max_running(config.max_running)
                    .failed_ttl(config.failed_ttl)
                    .max_finished(config.max_finished)
                    .build(),
            ),
            storage: Arc::new(storage),
            config,
            long_polls: watch::Sender::new(0),
        }
    }

    /// The recorder: one record per md5.
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// The in-memory recorder, for the tests of one instance.
    ///
    /// # Panics
    /// On a replica on Redis.
    pub fn recorder(&self) -> &AsyncTasksRecorder<Md5Id> {
        match &self.tasks {
            Tasks::Memory(r) => r,
            #[cfg(feature = "redis")]
            Tasks::Redis(_) => panic!("this replica's records are on Redis"),
        }
    }

    /// Where the files go.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The settings.
    pub fn config(&self) -> Config {
        self.config
    }

    /// The number of `/wait` requests waiting, as it changes.
    pub fn long_polls(&self) -> watch::Receiver<usize> {
        self.long_polls.subscribe()
    }
}

/// Counts one waiting `/wait` request for as long as it lives (also when the client
/// goes away and the handler is dropped).
struct LongPoll(watch::Sender<usize>);

impl LongPoll {
    fn start(counter: &watch::Sender<usize>) -> LongPoll {
        counter.send_modify(|n| *n += 1);
        LongPoll(counter.clone())
    }
}

impl Drop for LongPoll {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// The routes, on `state`.
pub fn app(state: AppState) -> Router {
    let max_body = state.config.max_body;
    Router::new()
        .route("/uploads", get(list))
        .route(
            "/uploads/{md5}",
            get(status).post(upload).delete(delete_upload),
        )
        .route("/uploads/{md5}/wait", get(wait))
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// What [`serve`] did once the server had stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Uploads still running after the grace period, cancelled by the drain.
    pub cancelled: usize,
    /// The records once everything had stopped (nothing is `working`: the recorder is
    /// closed and drained).
    pub counts: StateCounts,
}

/// Serves [`app`] on `listener` until `shutdown` resolves, then shuts down gracefully:
/// closes the recorder, stops accepting connections, answers the requests in flight,
/// and drains the recorder (waiting [`Config::grace`] for running uploads, then
/// cancelling them). Returns once all of that is done.
pub async fn serve<F>(listener: TcpListener, state: AppState, shutdown: F) -> io::Result<Drained>
where
    F: Future<Output = ()> + Send + 'static,
{
    let recorder = state.tasks.clone();
    let grace = state.config.grace;
    let long_polls = state.long_polls();
    let (begin, begun) = oneshot::channel::<()>();
    let signal = {
        let recorder = recorder.clone();
        async move {
            shutdown.await;
            // Before anything else: an upload that reaches a handler from now on is
            // refused with 503 instead of starting work the drain would cancel.
            recorder.close();
            let _ = begin.send(());
        }
    };
    let server = axum::serve(listener, app(state))
        .with_graceful_shutdown(signal)
        .into_future();
    // The drain runs alongside the server's own shutdown: long-polls in flight are
    // answered as the uploads they wait for end, and the server waits for them.
    let drain = async {
        // The server only ends after the signal; an error here means the same.
        let _ = begun.await;
        match recorder.counts().await {
            Ok(counts) => log(format_args!(
                "shutting down: {} upload(s) running, {} delete(s) running, {} long-poll(s) \
                 waiting; grace period {grace:?}",
                counts.working,
                counts.revoking,
                *long_polls.borrow(),
            )),
            Err(e) => log(format_args!("shutting down; {e}")),
        }
        let cancelled = recorder.drain(grace).await;
        log(format_args!(
            "recorder drained: {cancelled} upload(s) cancelled"
        ));
        cancelled
    };
    let (served, cancelled) = tokio::join!(server, drain);
    served?;
    let counts = recorder.counts().await.map_err(io::Error::other)?;
    log(format_args!(
        "server stopped; records: {} success, {} failed, {} working",
        counts.success, counts.failed, counts.working
    ));
    Ok(Drained { cancelled, counts })
}

/// Prints one line of the server's log on standard error.
fn log(message: fmt::Arguments<'_>) {
    eprintln!("[http_service] {message}");
}

// ---------------------------------------------------------------------------------
// Response bodies

/// What `GET /uploads/{md5}` answers, and `/wait` at its timeout.
#[derive(Debug, Serialize)]
struct StatusBody {
    id: String,
    state: &'static str,
    phase: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<u32>,
    last_failure: Option<&'static str>,
}

impl StatusBody {
    fn of(id: &Md5Id, status: TaskStatus) -> StatusBody {
        StatusBody {
            id: id.to_string(),
            state: status.phase.state().as_str(),
            phase: status.phase.as_str(),
            attempts: status.attempts,
            last_failure: status.last_failure.map(|r| r.as_str()),
        }
    }

    fn settled(id: &Md5Id, settled: Settled) -> StatusBody {
        StatusBody {
            id: id.to_string(),
            state: settled.state().as_str(),
            phase: settled.phase.as_str(),
            attempts: None,
            last_failure: settled.failure.map(|r| r.as_str()),
        }
    }

    /// 404 for `not_found`, `found` otherwise.
    fn respond(self, found: StatusCode) -> Response {
        let code = if self.phase == TaskPhase::NotFound.as_str() {
            StatusCode::NOT_FOUND
        } else {
            found
        };
        (code, Json(self)).into_response()
    }
}

/// Every error response.
#[derive(Debug, Serialize)]
struct ErrorBody {
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phase: Option<&'static str>,
}

/// An error response: a status code and an [`ErrorBody`].
#[derive(Debug)]
struct Refusal {
    code: StatusCode,
    body: ErrorBody,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.code, Json(self.body)).into_response()
    }
}

fn error(code: StatusCode, message: impl Into<String>) -> Refusal {
    let body = ErrorBody {
        error: message.into(),
        id: None,
        state: None,
        phase: None,
    };
    Refusal { code, body }
}

/// A 503: the task store could not be asked.
fn store_down(message: String) -> Refusal {
    error(StatusCode::SERVICE_UNAVAILABLE, message)
}

fn error_about(code: StatusCode, id: &Md5Id, phase: TaskPhase, message: String) -> Refusal {
    let body = ErrorBody {
        error: message,
        id: Some(id.to_string()),
        state: Some(phase.state().as_str()),
        phase: Some(phase.as_str()),
    };
    Refusal { code, body }
}

/// The id in the path, or the 400 that refuses it.
fn path_id(path: Result<Path<String>, PathRejection>) -> Result<Md5Id, Refusal> {
    let Path(raw) = path.map_err(|e| error(e.status(), e.body_text()))?;
    Md5Id::parse(&raw).map_err(|e| error(StatusCode::BAD_REQUEST, e))
}

/// The query string, or the 400 that refuses it.
fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, Refusal> {
    query
        .map(|Query(q)| q)
        .map_err(|e| error(e.status(), e.body_text()))
}

// ---------------------------------------------------------------------------------
// Handlers

#[derive(Debug, Deserialize)]
struct UploadParams {
    delay_ms: Option<u64>,
}

/// `POST /uploads/{md5}`.
async fn upload(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<UploadParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Refusal> {
    let id = path_id(path)?;
    let delay = Duration::from_millis(query(params)?.delay_ms.unwrap_or(0));
    if delay > app.config.max_delay {
        let max = app.config.max_delay.as_millis();
        let message = format!("delay_ms may be at most {max}");
        return Err(error(StatusCode::BAD_REQUEST, message));
    }
    let body = body.map_err(|e| error(e.status(), e.body_text()))?;

    let size = body.len();
    let task = store_upload(app.storage.clone(), id.clone(), body, delay);
    match app.tasks.launch(id.clone(), task).await {
        Ok(()) => {
            log(format_args!(
                "upload {id}: {size} bytes accepted, delay {delay:?}"
            ));
            let status = app.tasks.status(&id).await.map_err(store_down)?;
            let location = format!("/uploads/{id}");
            let body = Json(StatusBody::of(&id, status));
            Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], body).into_response())
        }
        Err(NotLaunched::Refused(state)) => {
            let why = match state {
                TaskState::Working => "it is being uploaded",
                _ => "it is stored already; DELETE it first to upload it again",
            };
            let phase = match state {
                TaskState::Working => TaskPhase::Working,
                _ => TaskPhase::Success,
            };
            let message = format!("upload of {id} refused: {why}");
            Err(error_about(StatusCode::CONFLICT, &id, phase, message))
        }
        Err(NotLaunched::Closed) => {
            let message = "the server is shutting down and accepts no uploads";
            let refusal = error(StatusCode::SERVICE_UNAVAILABLE, message);
            Ok(([(header::CONNECTION, "close")], refusal).into_response())
        }
        Err(NotLaunched::Unavailable(message)) => Err(store_down(message)),
    }
}

/// Why an upload task failed.
#[derive(Debug)]
enum UploadError {
    /// The body is not the file the id names.
    Mismatch { actual: String },
    /// Writing the file failed.
    Io(io::Error),
}

impl fmt::Display for UploadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UploadError::Mismatch { actual } => write!(f, "the body's md5 is {actual}"),
            UploadError::Io(e) => write!(f, "could not store the file: {e}"),
        }
    }
}

/// The upload task: wait `delay`, check the body against `id`, store it.
///
/// Returns the number of bytes written. A cancellation (by the shutdown) drops the
/// future where it waits; if the blocking write has started by then it still completes,
/// which is harmless: the file's name is its md5, so it can only ever hold these bytes.
async fn store_upload(
    storage: Arc<Storage>,
    id: Md5Id,
    body: Bytes,
    delay: Duration,
) -> Result<usize, UploadError> {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let target = storage.path_of(&id);
    // Unique across the replicas that share the directory, too.
    let partial = storage.dir().join(format!(
        "{id}.part{}-{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    ));
    let expected = id.clone();
    // Hashing and file I/O block: they go to tokio's blocking pool.
    let work = tokio::task::spawn_blocking(move || {
        let actual = md5_hex(&body);
        if actual != expected.as_str() {
            return Err(UploadError::Mismatch { actual });
        }
        std::fs::write(&partial, &body)
            .and_then(|()| std::fs::rename(&partial, &target))
            .map_err(|e| {
                let _ = std::fs::remove_file(&partial);
                UploadError::Io(e)
            })?;
        Ok(body.len())
    });
    let result = match work.await {
        Ok(result) => result,
        Err(join) => Err(UploadError::Io(io::Error::other(join.to_string()))),
    };
    match &result {
        Ok(written) => log(format_args!("upload {id}: stored, {written} bytes")),
        Err(e) => log(format_args!("upload {id}: failed: {e}")),
    }
    result
}

/// `GET /uploads/{md5}`.
async fn status(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Refusal> {
    let id = path_id(path)?;
    let status = app.tasks.status(&id).await.map_err(store_down)?;
    Ok(StatusBody::of(&id, status).respond(StatusCode::OK))
}

#[derive(Debug, Deserialize)]
struct WaitParams {
    timeout_ms: Option<u64>,
}

/// `GET /uploads/{md5}/wait`.
async fn wait(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<WaitParams>, QueryRejection>,
) -> Result<Response, Refusal> {
    let id = path_id(path)?;
    let limit = query(params)?
        .timeout_ms
        .map_or(DEFAULT_WAIT, Duration::from_millis)
        .min(MAX_WAIT);
    let _counted = LongPoll::start(&app.long_polls);
    // `wait` sleeps until the recorder wakes it; the timeout drops it, which is safe.
    let response = match tokio::time::timeout(limit, app.tasks.wait(&id)).await {
        Ok(settled) => {
            let settled = settled.map_err(store_down)?;
            StatusBody::settled(&id, settled).respond(StatusCode::OK)
        }
        Err(_elapsed) => {
            let status = app.tasks.status(&id).await.map_err(store_down)?;
            if status.phase.is_final() {
                // It settled just as the time ran out.
                StatusBody::of(&id, status).respond(StatusCode::OK)
            } else {
                (StatusCode::ACCEPTED, Json(StatusBody::of(&id, status))).into_response()
            }
        }
    };
    Ok(response)
}

/// `DELETE /uploads/{md5}`.
async fn delete_upload(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Refusal> {
    let id = path_id(path)?;
    let file = app.storage.path_of(&id);
    let remove = async move {
        let removed = tokio::task::spawn_blocking(move || match std::fs::remove_file(&file) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        });
        removed
            .await
            .unwrap_or_else(|join| Err(io::Error::other(join.to_string())))
    };
    // In a task of its own: if the client goes away, the revoke still ends as the
    // removal did, instead of being dropped after the file is gone.
    let revoke = tokio::spawn({
        let tasks = app.tasks.clone();
        let id = id.clone();
        async move { tasks.revoke(id, remove).await }
    });
    let deleted = revoke
        .await
        .unwrap_or_else(|join| Deleted::Failed(io::Error::other(join.to_string())));
    match deleted {
        Deleted::Yes => {
            log(format_args!("delete {id}: file removed, record revoked"));
            // What the revoke left, whatever came after it.
            let body = StatusBody {
                id: id.to_string(),
                state: TaskState::NotFound.as_str(),
                phase: TaskPhase::NotFound.as_str(),
                attempts: None,
                last_failure: None,
            };
            Ok((StatusCode::OK, Json(body)).into_response())
        }
        Deleted::NotSuccess => {
            let phase = app.tasks.status(&id).await.map_err(store_down)?.phase;
            let message = format!("{id} is {phase}: only a stored upload can be deleted");
            Err(error_about(StatusCode::CONFLICT, &id, phase, message))
        }
        Deleted::AlreadyDeleting => {
            let message = format!("a delete of {id} is already running");
            Err(error_about(
                StatusCode::CONFLICT,
                &id,
                TaskPhase::Revoking,
                message,
            ))
        }
        Deleted::Failed(e) => {
            log(format_args!("delete {id}: failed, upload kept: {e}"));
            let message = format!("could not remove the file of {id}, it is kept: {e}");
            let code = StatusCode::INTERNAL_SERVER_ERROR;
            Err(error_about(code, &id, TaskPhase::Success, message))
        }
        Deleted::Unknown(why) => {
            log(format_args!("delete {id}: outcome unknown: {why}"));
            let message = format!(
                "the delete of {id} did not complete ({why}); it reads success, and its \
                 file may be gone: DELETE it again"
            );
            Err(error(StatusCode::SERVICE_UNAVAILABLE, message))
        }
    }
}

#[derive(Debug, Deserialize)]
struct ListParams {
    state: Option<String>,
    /// With it, one page of at most this many ids (1 to 1000).
    limit: Option<usize>,
    /// The `next` of the page before.
    after: Option<String>,
}

/// One page of `GET /uploads?state=S&limit=N[&after=C]`.
#[derive(Debug, Serialize)]
struct PageBody {
    state: &'static str,
    ids: Vec<String>,
    /// The `after` of the next page; `null` after the last.
    next: Option<String>,
}

#[derive(Debug, Serialize)]
struct ListBody {
    state: &'static str,
    count: usize,
    ids: Vec<String>,
}

/// `GET /uploads?state=...`.
async fn list(
    State(app): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, Refusal> {
    const EXPECTED: &str = "expected ?state=working, success or failed";
    let params = query(params)?;
    let name = match params.state {
        Some(name) if !name.is_empty() => name,
        _ => {
            let message = format!("no state: {EXPECTED}");
            return Err(error(StatusCode::BAD_REQUEST, message));
        }
    };
    let state = match name.as_str() {
        "working" => TaskState::Working,
        "success" => TaskState::Success,
        "failed" => TaskState::Failed,
        "not_found" => {
            let message = format!("not_found ids have no record to list; {EXPECTED}");
            return Err(error(StatusCode::BAD_REQUEST, message));
        }
        _ => {
            let shown: String = name.chars().take(40).collect();
            let message = format!("unknown state {shown:?}; {EXPECTED}");
            return Err(error(StatusCode::BAD_REQUEST, message));
        }
    };
    if let Some(limit) = params.limit {
        if !(1..=1000).contains(&limit) {
            let message = format!("limit is 1 to 1000, not {limit}");
            return Err(error(StatusCode::BAD_REQUEST, message));
        }
        let after = match params.after.as_deref() {
            None => None,
            Some(text) => Some(
                text.parse::<ListCursor>()
                    .map_err(|e| error(StatusCode::BAD_REQUEST, format!("after: {e}")))?,
            ),
        };
        let page = app
            .tasks
            .list_page(state, after.as_ref(), limit)
            .await
            .map_err(store_down)?;
        let body = PageBody {
            state: state.as_str(),
            ids: page.ids.iter().map(Md5Id::to_string).collect(),
            next: page.next.map(|c| c.to_string()),
        };
        return Ok((StatusCode::OK, Json(body)).into_response());
    }
    let mut ids: Vec<String> = app
        .tasks
        .ids_in_state(state)
        .await
        .map_err(store_down)?
        .iter()
        .map(Md5Id::to_string)
        .collect();
    ids.sort_unstable();
    let body = ListBody {
        state: state.as_str(),
        count: ids.len(),
        ids,
    };
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// Any other path.
async fn no_route() -> Refusal {
    let message = "no such route; see /uploads/{md5} and /uploads?state=";
    error(StatusCode::NOT_FOUND, message)
}

// ---------------------------------------------------------------------------------
// The binary

/// Resolves when the operator asks the server to stop: Ctrl-C (SIGINT), or a line `q`
/// (or `quit`, `stop`) on standard input, which is ignored when it is closed or not a
/// console (`< /dev/null`).
pub fn stop_requested() -> impl Future<Output = ()> + Send + 'static {
    let (stop, stopped) = oneshot::channel::<()>();
    std::thread::spawn(move || {
        for line in io::stdin().lines() {
            match line {
                Ok(line) if matches!(line.trim(), "q" | "quit" | "stop") => {
                    let _ = stop.send(());
                    return;
                }
                Ok(_) => continue,
                Err(_) => return,
            }
        }
    });
    let from_console = async move {
        if stopped.await.is_err() {
            // No console to read a stop request from.
            std::future::pending::<()>().await;
        }
    };
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            log(format_args!(
                "cannot listen for Ctrl-C ({e}); type q to stop"
            ));
            std::future::pending::<()>().await;
        }
        log(format_args!("Ctrl-C"));
    };
    async move {
        tokio::select! {
            () = from_console => {}
            () = ctrl_c => {}
        }
    }
}

/// How the binary was asked to run: each flag, or else its environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `--addr` or `ATR_HTTP_ADDR`: where to listen (default `127.0.0.1:3000`).
    pub addr: String,
    /// `--redis URL` or `ATR_REDIS_URL` (with `--namespace`/`ATR_REDIS_NAMESPACE`,
    /// default `http_service`, and `--lease-ms`/`ATR_LEASE_MS`, default 10000): run as
    /// a replica on that server. Without it the records are in memory.
    pub backend: Backend,
    /// `--storage DIR` or `ATR_STORAGE_DIR`: a directory the replicas share, kept when
    /// the server stops. Without it, a fresh temporary one, removed at the end.
    pub storage: Option<PathBuf>,
}

/// The usage line of the binary.
pub const USAGE: &str = "usage: http-service [--addr HOST:PORT] [--redis URL \
    [--namespace NS] [--lease-ms N]] [--storage DIR]";

impl Options {
    /// Reads `args` (without the program name) and, for what they leave out, the
    /// environment through `env`.
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Options, String> {
        let mut flags = std::collections::HashMap::new();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let var = match flag.as_str() {
                "--addr" => "ATR_HTTP_ADDR",
                "--redis" => "ATR_REDIS_URL",
                "--namespace" => "ATR_REDIS_NAMESPACE",
                "--lease-ms" => "ATR_LEASE_MS",
                "--storage" => "ATR_STORAGE_DIR",
                _ => return Err(format!("unknown argument {flag:?}; {USAGE}")),
            };
            let value = args
                .next()
                .ok_or_else(|| format!("{flag} needs a value; {USAGE}"))?;
            flags.insert(var, value);
        }
        let get = |var: &str| flags.get(var).cloned().or_else(|| env(var));
        let backend = match get("ATR_REDIS_URL") {
            None => Backend::Memory,
            Some(url) => Options::redis(
                url,
                get("ATR_REDIS_NAMESPACE").unwrap_or_else(|| "http_service".to_string()),
                get("ATR_LEASE_MS").as_deref(),
            )?,
        };
        Ok(Options {
            addr: get("ATR_HTTP_ADDR").unwrap_or_else(|| "127.0.0.1:3000".to_string()),
            backend,
            storage: get("ATR_STORAGE_DIR").map(PathBuf::from),
        })
    }

    #[cfg(feature = "redis")]
    fn redis(url: String, namespace: String, lease_ms: Option<&str>) -> Result<Backend, String> {
        let lease = match lease_ms {
            None => Duration::from_secs(10),
            Some(ms) => Duration::from_millis(
                ms.parse()
                    .map_err(|_| format!("the lease is a number of milliseconds, not {ms:?}"))?,
            ),
        };
        Ok(Backend::Redis {
            url,
            namespace,
            lease,
        })
    }

    #[cfg(not(feature = "redis"))]
    fn redis(_url: String, _namespace: String, _lease_ms: Option<&str>) -> Result<Backend, String> {
        Err("this build has no Redis store: run it with `--features redis`".to_string())
    }
}

/// The binary: serves on `options` until Ctrl-C or `q`, then shuts down.
pub async fn run(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let storage = match &options.storage {
        Some(dir) => Storage::shared(dir.clone())?,
        None => Storage::create()?,
    };
    let state = AppState::on(Config::default(), &options.backend, storage).await?;
    let listener = TcpListener::bind(&options.addr).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let hello = md5_hex(b"hello");

    println!("listening on {base}");
    match &options.backend {
        Backend::Memory => println!("records in memory"),
        #[cfg(feature = "redis")]
        Backend::Redis { url, namespace, .. } => {
            println!("records on {url}, namespace {namespace}, shared with its other replicas")
        }
    }
    println!("storing files in {}", state.storage().dir().display());
    println!("try:");
    println!("  printf hello > hello.txt");
    println!("  curl -i -X POST --data-binary @hello.txt '{base}/uploads/{hello}?delay_ms=5000'");
    println!("  curl -i {base}/uploads/{hello}");
    println!("  curl -i {base}/uploads/{hello}/wait");
    println!("  curl -i '{base}/uploads?state=success'");
    println!("  curl -i -X DELETE {base}/uploads/{hello}");
    println!("Ctrl-C (or q and Enter) to stop");

    let drained = serve(listener, state, stop_requested()).await?;
    println!(
        "stopped: {} upload(s) cancelled by the shutdown; {} stored, {} failed",
        drained.cancelled, drained.counts.success, drained.counts.failed
    );
    Ok(())
}
