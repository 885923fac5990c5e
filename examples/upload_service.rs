//! An upload service built on one recorder, printed as a transcript.
//!
//! Every file is identified by the md5 of its contents, and that md5 is the task id:
//! an upload is a task, a delete is a revoke of that task. The recorder is what stops
//! the same file from being stored twice, answers "is my file there yet?" for any
//! client, wakes the requests that wait for an upload to end, stops stuck uploads, and
//! lists every upload by state for an operator.
//!
//! The clients are simulated inside `main`, one "request" after another. Each upload
//! waits for its body on a oneshot channel that `main` fills in when the script says
//! so, and `main` waits (with `wait`, or on a `TaskHandle`) for the end of an upload
//! before it goes on. Nothing in the transcript depends on timing, so it is the same
//! on every run, even on a multi-thread runtime.
//!
//! Run it with `cargo run --example upload_service`. Every step is checked with
//! `assert!`, so the example fails loudly if the recorder misbehaves.
//!
//! The records live in this process's memory, in an [`AsyncTasksRecorder`], unless the
//! environment variable `ATR_REDIS_URL` names a Redis server:
//!
//! ```sh
//! ATR_REDIS_URL=redis://127.0.0.1:6379/ cargo run --features redis --example upload_service
//! ```
//!
//! Then they live on that server, in a `RedisRecorder` on the namespace
//! `upload-service-<process id>` (a fresh one per run), where every replica of a real
//! service would share them. The transcript is the same, but for one line under its
//! header that names the namespace. Only `Recorder` knows which store it talks to;
//! where the two stores differ, a comment says how.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[cfg(feature = "redis")]
use async_tasks_recorder::redis::{RedisRecorder, RevokeError};
use async_tasks_recorder::{
    AsyncTasksRecorder, FailureReason, LaunchError, LaunchOptions, Missed, RevokeFailReason,
    Settled, StateCounts, TaskError, TaskHandle, TaskPhase, TaskState, TaskStatus,
    TransitionStream,
};
use tokio::sync::oneshot;

/// The task id: the md5 of the file, cheap to clone.
type Md5 = Arc<str>;

/// What a client sends as the request body: the bytes, or the reason the connection
/// broke before they all arrived.
type Body = Result<&'static [u8], &'static str>;

/// What an upload task ends with: the number of bytes written, or why it failed.
type Written = Result<usize, &'static str>;

/// How long the script waits for an upload to end before calling it stuck. A guard
/// against a hang, not a timing: nothing here comes close to it.
const HOLD: Duration = Duration::from_secs(10);

/// The deadline a hurried client puts on its upload.
const CLIENT_DEADLINE: Duration = Duration::from_millis(50);

/// The environment variable that puts the records on a Redis server: its URL.
const REDIS_URL_VAR: &str = "ATR_REDIS_URL";

/// How long a running upload holds its id on Redis without a renewal: if this process
/// died, its uploads would read `failed (worker_lost)` this long after. Renewed every
/// third of it while an upload runs.
#[cfg(feature = "redis")]
const LEASE: Duration = Duration::from_secs(5);

/// Simulated disk: md5 -> stored size, plus a count of every write ever made.
#[derive(Clone, Default)]
struct Storage {
    files: Arc<Mutex<BTreeMap<Md5, usize>>>,
    writes: Arc<AtomicUsize>,
}

impl Storage {
    fn write(&self, md5: Md5, len: usize) {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.files.lock().unwrap().insert(md5, len);
    }

    fn remove(&self, md5: &str) -> Option<usize> {
        self.files.lock().unwrap().remove(md5)
    }

    fn contains(&self, md5: &str) -> bool {
        self.files.lock().unwrap().contains_key(md5)
    }

    fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
}

/// Where the records live: the one place that knows which store the service runs on.
/// Its methods are those of the in-memory recorder, with the same names and results;
/// on Redis every call is a round trip to the server, and a store error (server gone,
/// timed out) stops the example with a message, where a real service would answer 503.
#[derive(Clone)]
enum Recorder {
    /// This process's memory: the default.
    Memory(AsyncTasksRecorder<Md5>),
    /// A namespace on a Redis server, shared by every process that uses it.
    #[cfg(feature = "redis")]
    Redis(RedisRecorder<Md5>),
}

/// What a store error on Redis stops the example with.
#[cfg(feature = "redis")]
const STORE_FAILED: &str = "the Redis store failed";

impl Recorder {
    /// On Redis if `ATR_REDIS_URL` is set, in memory otherwise.
    async fn from_env() -> Self {
        match std::env::var(REDIS_URL_VAR) {
            Ok(url) => Recorder::redis(&url).await,
            Err(std::env::VarError::NotPresent) => Recorder::memory(),
            Err(std::env::VarError::NotUnicode(_)) => {
                eprintln!("{REDIS_URL_VAR} is not valid UTF-8");
                std::process::exit(2);
            }
        }
    }

    fn memory() -> Self {
        let recorder = AsyncTasksRecorder::builder()
            // Keep the attempt count of stored files too, for `GET .../status`.
            .track_details(true)
            // The audit log reads every transition at the end; this script makes 18.
            .event_capacity(64)
            .build();
        Recorder::Memory(recorder)
    }

    #[cfg(feature = "redis")]
    async fn redis(url: &str) -> Self {
        let recorder = RedisRecorder::builder(url)
            // A namespace of its own per run: a run never sees another's records.
            .namespace(format!("upload-service-{}", std::process::id()))
            .lease(LEASE)
            // The Redis store always keeps attempts and `since`, so it has no
            // `track_details`. The audit log's buffer is as in memory.
            .event_capacity(64)
            .build()
            .await
            .expect("cannot build a Redis recorder on the server named by ATR_REDIS_URL");
        // Settings of the server that weaken the guarantees (no `appendfsync always`,
        // an evicting `maxmemory-policy`): said on stderr, off the transcript.
        for warning in recorder.warnings() {
            eprintln!("warning: {warning}");
        }
        let records = recorder.counts().await.expect(STORE_FAILED).total();
        assert_eq!(
            records,
            0,
            "namespace {} already holds records, left by an earlier run with the same \
             process id: flush that database or use another one",
            recorder.namespace()
        );
        Recorder::Redis(recorder)
    }

    #[cfg(not(feature = "redis"))]
    async fn redis(_url: &str) -> Self {
        eprintln!(
            "{REDIS_URL_VAR} is set, but this example was built without the `redis` feature: \
             add `--features redis` (cargo run --features redis --example upload_service), \
             or unset {REDIS_URL_VAR} to run it in memory"
        );
        std::process::exit(2);
    }

    /// A line for the transcript's header, on Redis only.
    fn note(&self) -> Option<String> {
        match self {
            Recorder::Memory(_) => None,
            #[cfg(feature = "redis")]
            Recorder::Redis(r) => Some(format!(
                "records on Redis: namespace {}, lease {LEASE:?}",
                r.namespace()
            )),
        }
    }

    async fn query_task_state(&self, md5: &str) -> TaskState {
        match self {
            Recorder::Memory(r) => r.query_task_state(md5).await,
            #[cfg(feature = "redis")]
            Recorder::Redis(r) => r.query_task_state(md5).await.expect(STORE_FAILED),
        }
    }

    async fn status(&self, md5: &str) -> TaskStatus {
        match self {
            Recorder::Memory(r) => r.status(md5).await,
            #[cfg(feature = "redis")]
            Recorder::Redis(r) => r.status(md5).await.expect(STORE_FAILED),
        }
    }

    async fn wait(&self, md5: &str) -> Settled {
        match self {
            Recorder::Memory(r) => r.wait(md5).await,
            #[cfg(feature = "redis")]
            Recorder::Redis(r) => r.wait(md5).await.expect(STORE_FAILED),
        }
    }

    /// Refused: the id's state, and the future, unstarted.
    async fn launch<Fut, R, E>(&self, md5: Md5, task: Fut) -> Result<(), (TaskState, Fut)>
    where
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        match self {
            Recorder::Memory(r) => r.launch(md5, task).await,
            #[cfg(feature = "redis")]
            Recorder::Redis(r) => r.launch(md5, task).await.map_err(|e| match e {
                LaunchError::Refused(state, task) => (state, task),
                LaunchError::Store(e, _task) => panic!("{STORE_FAILED}: {e}"),
                e => unreachable!("this demo never closes its recorder: {e}"),
            }),
        }
    }

    /// Refused: `Refused` or `Closed`, as in memory; a store error on Redis stops the
    /// example.
    async fn launch_with<Fut, R, E>(
        &self,
        md5: Md5,
        task: Fut,
        options: LaunchOptions,
    ) -> Result<TaskHandle<R, E>, LaunchError<Fut>>
    where
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        match self {
            Recorder::Memory(r) => r.launch_with(md5, task, options).await,
            #[cfg(feature = "redis")]
            Recorder::Redis(r) => match r.launch_with(md5, task, options).await {
                Err(LaunchError::Store(e, _task)) => panic!("{STORE_FAILED}: {e}"),
                result => result,
            },
        }
    }

    async fn cancel(&self, md5: &str) -> bool {
        match self {
            Recorder::Memory(r) => r.cancel(md5).await,
            #[cfg(feature = "redis")]
            Recorder::Redis(r) => r.cancel(md5).await.expect(STORE_FAILED),
        }
    }

    /// Refused or failed: as in memory. Redis adds `Store` (the server could not be
    /// asked) and `Lost` (the revoke's lease ran out), which stop the example.
    async fn revoke_task_block<Fut, R, E>(
        &self,
        md5: Md5,
        revoke_task: Fut,
    ) -> Result<R, RevokeFailReason<Fut, E>>
    where
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Send,
        E: Send,
    {
        match self {
            Recorder::Memory(r) => r.revoke_task_block(md5, revoke_task).await,
            #[cfg(feature = "redis")]
            Recorder::Redis(r) => r
                .revoke_task_block(md5, revoke_task)
                .await
                .map_err(as_in_memory),
        }
    }

    /// On Redis: the whole namespace, which only this run uses.
    async fn counts(&self) -> StateCounts {
        match self {
            Recorder::Memory(r) => r.counts().await,
            #[cfg(feature = "redis")]
            Recorder::Redis(r) => r.counts().await.expect(STORE_FAILED),
        }
    }

    async fn ids_in_state(&self, state: TaskState) -> Vec<Md5> {
        match self {
            Recorder::Memory(r) => r.ids_in_state(state).await,
            #[cfg(feature = "redis")]
            Recorder::Redis(r) => r.ids_in_state(state).await.expect(STORE_FAILED),
        }
    }

    /// On Redis the transitions come through the server's channel for the namespace,
    /// so they reach the stream a moment after the operation that made them returned.
    fn subscribe(&self) -> TransitionStream<Md5> {
        match self {
            Recorder::Memory(r) => r.subscribe(),
            #[cfg(feature = "redis")]
            Recorder::Redis(r) => r.subscribe(),
        }
    }
}

/// A revoke's refusal or failure on Redis, as the in-memory recorder reports it.
#[cfg(feature = "redis")]
fn as_in_memory<Fut, E>(error: RevokeError<Fut, E>) -> RevokeFailReason<Fut, E> {
    match error {
        RevokeError::NotSuccess(unused) => RevokeFailReason::NotSuccess(unused),
        RevokeError::Revoking(unused) => RevokeFailReason::Revoking(unused),
        RevokeError::RevokeTaskError(e) => RevokeFailReason::RevokeTaskError(e),
        RevokeError::Store(e, _unused) => panic!("{STORE_FAILED}: {e}"),
        RevokeError::Lost => panic!("a delete lost its lease: the Redis server was out of reach"),
        _ => panic!("a revoke error this example does not know"),
    }
}

/// The reply to `PUT /files/{md5}`.
#[derive(Debug, PartialEq, Eq)]
enum UploadReply {
    /// The upload runs in the background; ask for its status later.
    Accepted,
    /// Another request is uploading the same file right now.
    AlreadyUploading,
    /// The file is already stored; nothing was written.
    AlreadyStored,
}

/// The reply to `DELETE /files/{md5}`.
#[derive(Debug, PartialEq, Eq)]
enum DeleteReply {
    Deleted,
    /// The file is not stored (never uploaded, still uploading, or failed).
    NotStored,
    /// Another request is deleting the same file right now.
    DeleteInProgress,
    StorageError(&'static str),
}

/// The service: its handlers are what an HTTP framework would call.
#[derive(Clone)]
struct UploadService {
    recorder: Recorder,
    storage: Storage,
}

impl UploadService {
    async fn new() -> Self {
        UploadService {
            recorder: Recorder::from_env().await,
            storage: Storage::default(),
        }
    }

    /// `GET /files/{md5}`: any client may ask, at any time.
    async fn state(&self, md5: &str) -> TaskState {
        // `Arc<str>` ids are looked up with a plain `&str`.
        self.recorder.query_task_state(md5).await
    }

    /// `GET /files/{md5}/status`: phase, attempts and why the last attempt failed.
    async fn status(&self, md5: &str) -> TaskStatus {
        self.recorder.status(md5).await
    }

    /// `GET /files/{md5}?wait`: a long poll. Answers at once when no upload or delete
    /// of the file is running, otherwise as soon as it ends: the recorder wakes the
    /// request, nothing polls. Bounded, so that a stuck upload fails the example
    /// instead of hanging it.
    async fn wait_for(&self, md5: &str) -> Settled {
        tokio::time::timeout(HOLD, self.recorder.wait(md5))
            .await
            .unwrap_or_else(|_| panic!("upload of {md5} is still running after {HOLD:?}"))
    }

    /// The upload itself: waits for the body, then writes it to the disk.
    fn store_body(
        &self,
        key: Md5,
        body: oneshot::Receiver<Body>,
    ) -> impl Future<Output = Written> + Send + 'static {
        let storage = self.storage.clone();
        async move {
            let bytes = match body.await {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(reason)) => {
                    println!("        storage: upload of {key} aborted: {reason}");
                    return Err(reason);
                }
                Err(_) => {
                    println!("        storage: client of {key} went away");
                    return Err("client went away");
                }
            };
            // Writing to disk takes a while.
            tokio::time::sleep(Duration::from_millis(20)).await;
            storage.write(key.clone(), bytes.len());
            println!("        storage: wrote {} bytes for {key}", bytes.len());
            Ok(bytes.len())
        }
    }

    /// `PUT /files/{md5}`: starts storing the body in the background.
    async fn upload(&self, md5: &str, body: oneshot::Receiver<Body>) -> UploadReply {
        let id: Md5 = md5.into();
        let job = self.store_body(id.clone(), body);
        match self.recorder.launch(id, job).await {
            Ok(()) => UploadReply::Accepted,
            // The unused upload future comes back; dropping it drops the body
            // receiver, so that client learns its bytes were not wanted.
            Err((state, _job)) => refused(state),
        }
    }

    /// `PUT /files/{md5}?hold`: starts storing the body and hands back the upload's
    /// own result, for a client that keeps its connection open until the file is
    /// stored. `options` carries the client's deadline, if it gave one.
    async fn upload_and_hold(
        &self,
        md5: &str,
        body: oneshot::Receiver<Body>,
        options: LaunchOptions,
    ) -> Result<TaskHandle<usize, &'static str>, UploadReply> {
        let id: Md5 = md5.into();
        let job = self.store_body(id.clone(), body);
        self.recorder
            .launch_with(id, job, options)
            .await
            .map_err(|refused_launch| match refused_launch.state() {
                Some(state) => refused(state),
                None => unreachable!("this demo never closes its recorder"),
            })
    }

    /// `POST /admin/uploads/{md5}/cancel`: stops a running upload. Its future is
    /// dropped where it waits (here, for a body that never comes).
    async fn cancel_upload(&self, md5: &str) -> bool {
        self.recorder.cancel(md5).await
    }

    /// `DELETE /files/{md5}`: removes a stored file, then forgets the upload.
    async fn delete(&self, md5: &str) -> DeleteReply {
        let storage = self.storage.clone();
        let key: Md5 = md5.into();
        let removal = async move {
            let len = storage.remove(&key).ok_or("file missing on disk")?;
            println!("        storage: removed {len} bytes of {key}");
            Ok::<_, &'static str>(len)
        };
        match self.recorder.revoke_task_block(md5.into(), removal).await {
            Ok(_len) => DeleteReply::Deleted,
            Err(RevokeFailReason::NotSuccess(unused)) => {
                // The removal future was handed back without being started.
                drop(unused);
                DeleteReply::NotStored
            }
            Err(RevokeFailReason::Revoking(_)) => DeleteReply::DeleteInProgress,
            Err(RevokeFailReason::RevokeTaskError(e)) => DeleteReply::StorageError(e),
        }
    }
}

/// A refused launch: the id is either running or stored.
fn refused(state: TaskState) -> UploadReply {
    match state {
        TaskState::Working => UploadReply::AlreadyUploading,
        TaskState::Success => UploadReply::AlreadyStored,
        state => unreachable!("launch is refused only in Working or Success, not {state}"),
    }
}

/// The reply to a held `PUT`, from the upload's own result.
fn held_reply(result: &Result<usize, TaskError<&'static str>>) -> String {
    match result {
        Ok(written) => format!("201 created ({written} bytes written)"),
        Err(TaskError::Failed(reason)) => format!("400 upload failed: {reason}"),
        Err(TaskError::TimedOut) => "408 timed out: the body did not arrive in time".into(),
        Err(TaskError::Cancelled) => "409 cancelled by an operator".into(),
        // Panicked, Dropped, and whatever later versions add.
        Err(_) => "500 internal error".into(),
    }
}

/// `success`, or `failed (reason)`.
fn describe(settled: &Settled) -> String {
    match settled.failure {
        Some(reason) => format!("{} ({reason})", settled.phase),
        None => settled.phase.to_string(),
    }
}

/// `failed, attempt 1, last failure: timed_out` and the like.
fn describe_status(status: TaskStatus) -> String {
    let mut line = status.phase.to_string();
    if let Some(attempts) = status.attempts {
        let _ = write!(line, ", attempt {attempts}");
    }
    if let Some(reason) = status.last_failure {
        let _ = write!(line, ", last failure: {reason}");
    }
    line
}

// The files the clients upload, with the md5 of their contents.
const HELLO: (&str, &[u8]) = ("e4d7f1b4ed2e42d15898f4b27b019da4", b"hello, world");
const REPORT: (&str, &[u8]) = (
    "3f2a81f74cbe2af2432b01926b7f0210",
    b"%PDF-1.7 quarterly report",
);
const PHOTO: (&str, &[u8]) = ("a86e39a299af2a296fe769e78f63ed8c", b"JFIF holiday photo");
const INVOICES: (&str, &[u8]) = ("f46d0f50df9acb19ce40b2fc042f100e", b"PK invoices 2025.zip");
const BACKUP: (&str, &[u8]) = (
    "9ef34109129a7beea01638cbac6713e4",
    b"database backup, 3 tables",
);
const SCAN: (&str, &[u8]) = (
    "6887669dffe2e9a436fedc8c713f14d5",
    b"scanned contract, page 1",
);
const VIDEO: (&str, &[u8]) = (
    "38980d5fae98bdb0fa461efba5585a33",
    b"ftyp isom holiday video",
);

fn step(title: &str) {
    println!();
    println!("== {title}");
}

fn request(line: &str) {
    println!("  -> {line}");
}

fn reply(line: impl std::fmt::Display) {
    println!("  <- {line}");
}

#[tokio::main]
async fn main() {
    let service = UploadService::new().await;
    // Subscribed before anything happens, read at the end: the audit log.
    let mut audit = service.recorder.subscribe();
    println!("upload service: task id = md5 of the file, one recorder for all uploads");
    if let Some(note) = service.recorder.note() {
        println!("{note}");
    }

    // ---------------------------------------------------------------------------------
    let (md5, bytes) = HELLO;
    step("a client asks for a file nobody has uploaded");
    request(&format!("GET    /files/{md5}"));
    let state = service.state(md5).await;
    assert_eq!(state, TaskState::NotFound);
    reply(state);

    step("client A uploads it; the body is still on its way");
    let (client_a, body) = oneshot::channel::<Body>();
    request(&format!("PUT    /files/{md5}   ({} bytes)", bytes.len()));
    let answer = service.upload(md5, body).await;
    assert_eq!(answer, UploadReply::Accepted);
    reply("202 accepted");

    step("three other requests ask for its state at the same time");
    let askers: Vec<_> = (1..=3)
        .map(|n| {
            let service = service.clone();
            tokio::spawn(async move { (n, service.state(md5).await) })
        })
        .collect();
    for asker in askers {
        let (n, state) = asker.await.unwrap();
        // `launch(..).await` returned Ok before they asked, so none of them can see an
        // earlier state, and the body has not arrived, so none can see a later one.
        assert_eq!(state, TaskState::Working);
        request(&format!("GET    /files/{md5}   (request #{n})"));
        reply(state);
    }

    step("client B uploads the same file while A's upload runs");
    let (client_b, body) = oneshot::channel::<Body>();
    request(&format!("PUT    /files/{md5}   ({} bytes)", bytes.len()));
    let answer = service.upload(md5, body).await;
    assert_eq!(answer, UploadReply::AlreadyUploading);
    assert!(
        client_b.is_closed(),
        "B's upload future was dropped unstarted"
    );
    reply("409 already uploading");

    step("client B asks to be told when A's upload ends");
    request(&format!("GET    /files/{md5}?wait   (long poll)"));
    // The long poll runs in its own task, like a request on a server. It sleeps in
    // `wait` until the upload ends; the recorder wakes it.
    let notifier = tokio::spawn({
        let service = service.clone();
        async move {
            let settled = service.wait_for(md5).await;
            reply(format!("{}   (client B's long poll)", describe(&settled)));
            settled
        }
    });

    step("A's body arrives");
    request("(client A sends the last byte)");
    client_a.send(Ok(bytes)).unwrap();
    // The notifier prints its reply once the upload has ended, so after the storage
    // line; nothing else prints until it is done.
    let settled = notifier.await.unwrap();
    assert_eq!(settled.phase, TaskPhase::Success);
    assert!(service.storage.contains(md5));
    request(&format!("GET    /files/{md5}"));
    let state = service.state(md5).await;
    assert_eq!(state, TaskState::Success);
    reply(state);

    step("client B tries again now that the file is stored");
    let (client_b, body) = oneshot::channel::<Body>();
    request(&format!("PUT    /files/{md5}   ({} bytes)", bytes.len()));
    let answer = service.upload(md5, body).await;
    assert_eq!(answer, UploadReply::AlreadyStored);
    // The upload future was handed back and dropped unstarted: B's body is unwanted.
    assert!(client_b.is_closed());
    assert_eq!(service.storage.writes(), 1, "the file was written once");
    reply("200 already stored (nothing written)");

    step("the owner deletes the file");
    request(&format!("DELETE /files/{md5}"));
    let answer = service.delete(md5).await;
    assert_eq!(answer, DeleteReply::Deleted);
    reply("204 deleted");
    request(&format!("GET    /files/{md5}"));
    let state = service.state(md5).await;
    assert_eq!(state, TaskState::NotFound);
    assert!(!service.storage.contains(md5));
    reply(state);

    // ---------------------------------------------------------------------------------
    let (md5, bytes) = REPORT;
    step("an upload whose connection breaks, then a retry");
    let (client, body) = oneshot::channel::<Body>();
    request(&format!("PUT    /files/{md5}   ({} bytes)", bytes.len()));
    assert_eq!(service.upload(md5, body).await, UploadReply::Accepted);
    reply("202 accepted");
    // The client's app asks to hear how the upload ends. The long poll is sent now and
    // awaited below, after the break: `wait` gives the same answer whether it started
    // waiting before the upload ended or after.
    request(&format!("GET    /files/{md5}?wait"));
    let long_poll = service.wait_for(md5);
    request("(the connection breaks)");
    client.send(Err("connection reset by peer")).unwrap();
    let settled = long_poll.await;
    assert_eq!(
        (settled.phase, settled.failure),
        (TaskPhase::Failed, Some(FailureReason::Error))
    );
    reply(describe(&settled));
    request(&format!("GET    /files/{md5}/status"));
    let status = service.status(md5).await;
    assert_eq!(status.attempts, Some(1));
    assert_eq!(status.last_failure, Some(FailureReason::Error));
    reply(describe_status(status));

    let (client, body) = oneshot::channel::<Body>();
    request(&format!(
        "PUT    /files/{md5}   ({} bytes, retry)",
        bytes.len()
    ));
    // A failed id may be launched again.
    assert_eq!(service.upload(md5, body).await, UploadReply::Accepted);
    reply("202 accepted");
    request(&format!("GET    /files/{md5}?wait"));
    let long_poll = service.wait_for(md5);
    request("(the client sends the last byte)");
    client.send(Ok(bytes)).unwrap();
    let settled = long_poll.await;
    assert_eq!(settled.phase, TaskPhase::Success);
    reply(describe(&settled));
    request(&format!("GET    /files/{md5}/status"));
    let status = service.status(md5).await;
    // Known for a stored file because the recorder keeps details (on Redis, always).
    assert_eq!(
        (status.phase, status.attempts),
        (TaskPhase::Success, Some(2))
    );
    assert!(status.since.is_some());
    reply(describe_status(status));

    // ---------------------------------------------------------------------------------
    let (md5, bytes) = PHOTO;
    step("a failed upload cannot be deleted: there is nothing stored");
    let (client, body) = oneshot::channel::<Body>();
    request(&format!("PUT    /files/{md5}   ({} bytes)", bytes.len()));
    assert_eq!(service.upload(md5, body).await, UploadReply::Accepted);
    reply("202 accepted");
    request("(the client disconnects)");
    drop(client);
    assert_eq!(service.wait_for(md5).await.phase, TaskPhase::Failed);
    request(&format!("DELETE /files/{md5}"));
    let answer = service.delete(md5).await;
    assert_eq!(answer, DeleteReply::NotStored);
    reply("404 not stored");
    request(&format!("GET    /files/{md5}"));
    let state = service.state(md5).await;
    assert_eq!(
        state,
        TaskState::Failed,
        "the refused delete changed nothing"
    );
    reply(state);

    // ---------------------------------------------------------------------------------
    let (md5, bytes) = INVOICES;
    step("client C keeps its connection open until the file is stored");
    let (client, body) = oneshot::channel::<Body>();
    request(&format!(
        "PUT    /files/{md5}?hold   ({} bytes)",
        bytes.len()
    ));
    let Ok(handle) = service
        .upload_and_hold(md5, body, LaunchOptions::new())
        .await
    else {
        panic!("a new file is always accepted");
    };
    // The body has not been sent, so the upload cannot have ended.
    assert!(!handle.is_finished());
    request("(client C sends the last byte)");
    client.send(Ok(bytes)).unwrap();
    // The handle resolves to the upload's own output: the number of bytes written.
    let result = tokio::time::timeout(HOLD, handle).await.expect("stuck");
    assert!(matches!(result, Ok(written) if written == bytes.len()));
    reply(held_reply(&result));
    // The record was final before the handle resolved.
    assert_eq!(service.state(md5).await, TaskState::Success);

    // ---------------------------------------------------------------------------------
    let (md5, bytes) = BACKUP;
    step("client D starts an upload and never sends its body");
    let (client_d, body) = oneshot::channel::<Body>();
    request(&format!("PUT    /files/{md5}   ({} bytes)", bytes.len()));
    assert_eq!(service.upload(md5, body).await, UploadReply::Accepted);
    reply("202 accepted");
    request(&format!("GET    /files/{md5}/status"));
    let status = service.status(md5).await;
    assert_eq!(
        (status.phase, status.attempts),
        (TaskPhase::Working, Some(1))
    );
    reply(describe_status(status));

    step("the operator cancels the stuck upload");
    request(&format!("POST   /admin/uploads/{md5}/cancel"));
    // The upload future never checks for cancellation: it is dropped where it waits
    // for the body, and `cancel` returns once the record says so.
    assert!(service.cancel_upload(md5).await);
    assert!(
        client_d.is_closed(),
        "the upload future, with its body receiver, was dropped"
    );
    reply("200 cancelled");
    request(&format!("GET    /files/{md5}/status"));
    let status = service.status(md5).await;
    assert_eq!(status.last_failure, Some(FailureReason::Cancelled));
    reply(describe_status(status));
    request(&format!("POST   /admin/uploads/{md5}/cancel   (again)"));
    assert!(!service.cancel_upload(md5).await, "nothing runs any more");
    reply("409 no upload running");

    // ---------------------------------------------------------------------------------
    let (md5, bytes) = SCAN;
    step("client E gives its upload a deadline, then stalls");
    let (client_e, body) = oneshot::channel::<Body>();
    request(&format!(
        "PUT    /files/{md5}?hold   ({} bytes, deadline {CLIENT_DEADLINE:?})",
        bytes.len()
    ));
    let options = LaunchOptions::new().timeout(CLIENT_DEADLINE);
    let Ok(handle) = service.upload_and_hold(md5, body, options).await else {
        panic!("a new file is always accepted");
    };
    request("(client E keeps the connection open but sends nothing)");
    let result = tokio::time::timeout(HOLD, handle).await.expect("stuck");
    assert!(matches!(result, Err(TaskError::TimedOut)));
    assert!(client_e.is_closed(), "the upload future was dropped");
    reply(held_reply(&result));
    request(&format!("GET    /files/{md5}/status"));
    let status = service.status(md5).await;
    assert_eq!(status.last_failure, Some(FailureReason::TimedOut));
    reply(describe_status(status));

    // ---------------------------------------------------------------------------------
    let (md5, bytes) = VIDEO;
    step("a large upload is still running when the operator looks");
    let (client_video, body) = oneshot::channel::<Body>();
    request(&format!("PUT    /files/{md5}   ({} bytes)", bytes.len()));
    assert_eq!(service.upload(md5, body).await, UploadReply::Accepted);
    reply("202 accepted");

    step("operator: uploads by state");
    let counts = service.recorder.counts().await;
    println!(
        "  counts: working {}, success {}, failed {}, revoking {} ({} records)",
        counts.working,
        counts.success,
        counts.failed,
        counts.revoking,
        counts.total()
    );
    assert_eq!(
        (
            counts.working,
            counts.success,
            counts.failed,
            counts.revoking
        ),
        (1, 2, 3, 0)
    );
    for state in [TaskState::Working, TaskState::Success, TaskState::Failed] {
        let mut ids = service.recorder.ids_in_state(state).await;
        // Ids come in hash order, which changes from run to run.
        ids.sort();
        assert_eq!(ids.len(), counts.get(state));
        println!("  {}:", state.as_str());
        for id in ids {
            println!("    {id}   {}", describe_status(service.status(&id).await));
        }
    }

    step("the large upload finishes");
    request("(the client sends the last byte)");
    client_video.send(Ok(bytes)).unwrap();
    assert_eq!(service.wait_for(md5).await.phase, TaskPhase::Success);
    let counts = service.recorder.counts().await;
    assert_eq!((counts.working, counts.success, counts.failed), (0, 3, 3));
    println!(
        "  counts: working {}, success {}, failed {}",
        counts.working, counts.success, counts.failed
    );
    assert_eq!(service.storage.writes(), 4);

    // ---------------------------------------------------------------------------------
    step("audit log: every transition of every file, from subscribe()");
    // Every upload has ended by now, after the 18 transitions of this script. In memory
    // they are all in the stream already; on Redis some may still be on their way from
    // the server. So the log is read until all 18 are in, then the service is dropped:
    // the stream ends once the recorder is gone, and brings nothing more.
    const TRANSITIONS: usize = 18;
    let mut service = Some(service);
    let mut history: BTreeMap<Md5, String> = BTreeMap::new();
    let mut transitions = 0;
    let read_all = async {
        while let Some(event) = audit.next().await {
            transitions += 1;
            if transitions == TRANSITIONS {
                drop(service.take());
            }
            let transition = match event {
                Ok(transition) => transition,
                Err(Missed(n)) => panic!("the audit log fell behind and lost {n} events"),
            };
            // Each file's transitions arrive in the order they happened.
            let line = history
                .entry(transition.id)
                .or_insert_with(|| transition.from.to_string());
            let _ = write!(line, " -> {}", transition.to);
            if let Some(reason) = transition.failure {
                let _ = write!(line, " ({reason})");
            }
        }
    };
    tokio::time::timeout(HOLD, read_all)
        .await
        .expect("all 18 transitions arrive, and the stream ends when the recorder is dropped");
    for (id, line) in &history {
        println!("  {}  {line}", &id[..8]);
    }
    assert_eq!(
        history[HELLO.0],
        "not_found -> working -> success -> revoking -> not_found"
    );
    assert_eq!(
        history[REPORT.0],
        "not_found -> working -> failed (error) -> working -> success"
    );
    assert_eq!(history.len(), 7);
    assert_eq!(transitions, TRANSITIONS);
}
