//! A real HTTP upload service on one [`AsyncTasksRecorder`], served with axum.
//!
//! Every file is named by the md5 of its contents, and that md5 is the task id: an
//! upload is a task (check the body's md5, write the file), a delete is a revoke of that
//! task whose compensating action removes the file. The recorder is what refuses a
//! second upload of a file that is stored or being stored, answers "where is my
//! upload?", lets a request wait for an upload to end without polling, lists the
//! uploads in one state, and drains the running uploads on shutdown.
//!
//! Run it with `cargo run --example http_service`; it listens on `ATR_HTTP_ADDR`
//! (default `127.0.0.1:3000`), prints a few `curl` lines to try, and stores files in a
//! fresh directory under the system temp dir, removed when the server stops. Stop it
//! gracefully with Ctrl-C (or `q` and Enter).
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
//! `main` stops on Ctrl-C (SIGINT, through `tokio::signal::ctrl_c`), or on a line `q`
//! on its standard input.
//!
//! # Try it
//!
//! ```text
//! $ cargo run --example http_service
//! $ printf hello > hello.txt   # md5 5d41402abc4b2a76b9719d911017c592
//! $ curl -i -X POST --data-binary @hello.txt \
//!       'http://127.0.0.1:3000/uploads/5d41402abc4b2a76b9719d911017c592?delay_ms=5000'
//! $ curl -i http://127.0.0.1:3000/uploads/5d41402abc4b2a76b9719d911017c592
//! $ curl -i http://127.0.0.1:3000/uploads/5d41402abc4b2a76b9719d911017c592/wait
//! $ curl -i 'http://127.0.0.1:3000/uploads?state=success'
//! $ curl -i -X DELETE http://127.0.0.1:3000/uploads/5d41402abc4b2a76b9719d911017c592
//! ```
//!
//! The end-to-end test `tests/http_service.rs` includes this file as a module and
//! drives it with an HTTP client.

use std::borrow::Borrow;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_tasks_recorder::{
    AsyncTasksRecorder, LaunchError, LaunchOptions, RevokeFailReason, Settled, StateCounts,
    TaskPhase, TaskState, TaskStatus,
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

/// The md5 of `bytes`, as 32 lower-case hex digits.
pub fn md5_hex(bytes: &[u8]) -> String {
    format!("{:x}", Md5::digest(bytes))
}

/// The directory the files are stored in: a fresh one per server instance, removed
/// (with what is in it) when the last reference to it goes away.
#[derive(Debug)]
pub struct Storage {
    dir: PathBuf,
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
                Ok(()) => return Ok(Storage { dir }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
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
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            log(format_args!("could not remove {}: {e}", self.dir.display()));
        }
    }
}

/// Everything a handler needs; cheap to clone (one per request).
#[derive(Debug, Clone)]
pub struct AppState {
    recorder: AsyncTasksRecorder<Md5Id>,
    storage: Arc<Storage>,
    config: Config,
    /// How many `/wait` requests are waiting right now.
    long_polls: watch::Sender<usize>,
}

impl AppState {
    /// A new recorder and a new, empty storage directory.
    pub fn new(config: Config) -> io::Result<AppState> {
        Ok(AppState {
            // Details make `attempts` known for successful uploads too. The limits keep
            // a long-running service bounded: a cap on uploads stored at once, failed
            // uploads forgotten after a while, and a cap on detailed records. Successes
            // are never forgotten (a tombstone keeps refusing a second upload).
            recorder: AsyncTasksRecorder::builder()
                .track_details(true)
                .max_running(config.max_running)
                .failed_ttl(config.failed_ttl)
                .max_finished(config.max_finished)
                .build(),
            storage: Arc::new(Storage::create()?),
            config,
            long_polls: watch::Sender::new(0),
        })
    }

    /// The recorder: one record per md5.
    pub fn recorder(&self) -> &AsyncTasksRecorder<Md5Id> {
        &self.recorder
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
    let recorder = state.recorder.clone();
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
        let counts = recorder.counts().await;
        log(format_args!(
            "shutting down: {} upload(s) running, {} delete(s) running, {} long-poll(s) \
             waiting; grace period {grace:?}",
            counts.working,
            counts.revoking,
            *long_polls.borrow(),
        ));
        let cancelled = recorder.drain(Some(grace)).await;
        log(format_args!(
            "recorder drained: {cancelled} upload(s) cancelled"
        ));
        cancelled
    };
    let (served, cancelled) = tokio::join!(server, drain);
    served?;
    let counts = recorder.counts().await;
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
    // `launch_with` rather than `launch`: its error tells a closed recorder from a
    // refusal. The handle is not needed (the task logs its own failure), and dropping
    // it does not cancel the task.
    match app
        .recorder
        .launch_with(id.clone(), task, LaunchOptions::new())
        .await
    {
        Ok(handle) => {
            drop(handle);
            log(format_args!(
                "upload {id}: {size} bytes accepted, delay {delay:?}"
            ));
            let status = app.recorder.status(&id).await;
            let location = format!("/uploads/{id}");
            let body = Json(StatusBody::of(&id, status));
            Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], body).into_response())
        }
        Err(LaunchError::Refused(state, _task)) => {
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
        Err(LaunchError::Closed(_task)) => {
            let message = "the server is shutting down and accepts no uploads";
            let refusal = error(StatusCode::SERVICE_UNAVAILABLE, message);
            Ok(([(header::CONNECTION, "close")], refusal).into_response())
        }
        Err(other) => Err(error(StatusCode::SERVICE_UNAVAILABLE, other.to_string())),
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
    let partial = storage.dir().join(format!(
        "{id}.part{}",
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
    let status = app.recorder.status(&id).await;
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
    let response = match tokio::time::timeout(limit, app.recorder.wait(&id)).await {
        Ok(settled) => StatusBody::settled(&id, settled).respond(StatusCode::OK),
        Err(_elapsed) => {
            let status = app.recorder.status(&id).await;
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

/// How a delete ended, out of the task that ran it.
enum Deleted {
    Yes,
    NotSuccess,
    AlreadyDeleting,
    Failed(io::Error),
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
        let recorder = app.recorder.clone();
        let id = id.clone();
        async move {
            match recorder.revoke_task_block(id, remove).await {
                Ok(()) => Deleted::Yes,
                Err(RevokeFailReason::NotSuccess(_)) => Deleted::NotSuccess,
                Err(RevokeFailReason::Revoking(_)) => Deleted::AlreadyDeleting,
                Err(RevokeFailReason::RevokeTaskError(e)) => Deleted::Failed(e),
            }
        }
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
            let phase = app.recorder.status(&id).await.phase;
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
    }
}

#[derive(Debug, Deserialize)]
struct ListParams {
    state: Option<String>,
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
    let name = match query(params)?.state {
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
    let mut ids: Vec<String> = app
        .recorder
        .ids_in_state(state)
        .await
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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("ATR_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_string());
    let listener = TcpListener::bind(&addr).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let state = AppState::new(Config::default())?;
    let hello = md5_hex(b"hello");

    println!("listening on {base}");
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
