//! An upload service built on one [`AsyncTasksRecorder`], printed as a transcript.
//!
//! Every file is identified by the md5 of its contents, and that md5 is the task id:
//! an upload is a task, a delete is a revoke of that task. The recorder is what stops
//! the same file from being stored twice, answers "is my file there yet?" for any
//! client, and lists every upload by state for an operator.
//!
//! The clients are simulated inside `main`, one "request" after another. Each upload
//! waits for its body on a oneshot channel that `main` fills in when the script says
//! so, and `main` waits for the recorder to report the end of an upload before it goes
//! on. So the transcript is the same on every run, even on a multi-thread runtime.
//!
//! Run it with `cargo run --example upload_service`. Every step is checked with
//! `assert!`, so the example fails loudly if the recorder misbehaves.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_tasks_recorder::{AsyncTasksRecorder, RevokeFailReason, TaskState};
use tokio::sync::oneshot;

/// The task id: the md5 of the file, cheap to clone.
type Md5 = Arc<str>;

/// What a client sends as the request body: the bytes, or the reason the connection
/// broke before they all arrived.
type Body = Result<&'static [u8], &'static str>;

/// How long the script waits for an upload to end before calling it stuck.
const HOLD: Duration = Duration::from_secs(10);

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
#[derive(Clone, Default)]
struct UploadService {
    recorder: AsyncTasksRecorder<Md5>,
    storage: Storage,
}

impl UploadService {
    /// `GET /files/{md5}`: any client may ask, at any time.
    async fn status(&self, md5: &str) -> TaskState {
        // `Arc<str>` ids are looked up with a plain `&str`.
        self.recorder.query_task_state(md5).await
    }

    /// `PUT /files/{md5}`: starts storing the body in the background.
    async fn upload(&self, md5: &str, body: oneshot::Receiver<Body>) -> UploadReply {
        let id: Md5 = md5.into();
        let storage = self.storage.clone();
        let key = id.clone();
        let job = async move {
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
        };
        match self.recorder.launch(id, job).await {
            Ok(()) => UploadReply::Accepted,
            // The unused upload future comes back; dropping it drops the body
            // receiver, so that client learns its bytes were not wanted.
            Err((TaskState::Working, _job)) => UploadReply::AlreadyUploading,
            Err((TaskState::Success, _job)) => UploadReply::AlreadyStored,
            Err((state, _)) => {
                unreachable!("launch is refused only in Working or Success, not {state}")
            }
        }
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

    /// Waits (for the script's sake) until an upload is no longer `Working`.
    ///
    /// Short sleeps between linearizable queries; bounded, so a stuck upload fails the
    /// example instead of hanging it.
    async fn until_settled(&self, md5: &str) -> TaskState {
        let wait = async {
            loop {
                let state = self.status(md5).await;
                if state != TaskState::Working {
                    return state;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(HOLD, wait)
            .await
            .unwrap_or_else(|_| panic!("upload of {md5} is still Working after {HOLD:?}"))
    }
}

// The files the clients upload, with the md5 of their contents.
const HELLO: (&str, &[u8]) = ("e4d7f1b4ed2e42d15898f4b27b019da4", b"hello, world");
const REPORT: (&str, &[u8]) = (
    "3f2a81f74cbe2af2432b01926b7f0210",
    b"%PDF-1.7 quarterly report",
);
const PHOTO: (&str, &[u8]) = ("a86e39a299af2a296fe769e78f63ed8c", b"JFIF holiday photo");
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
    let service = UploadService::default();
    println!("upload service: task id = md5 of the file, one recorder for all uploads");

    // ---------------------------------------------------------------------------------
    let (md5, bytes) = HELLO;
    step("a client asks for a file nobody has uploaded");
    request(&format!("GET    /files/{md5}"));
    let state = service.status(md5).await;
    assert_eq!(state, TaskState::NotFound);
    reply(state);

    step("client A uploads it; the body is still on its way");
    let (client_a, body) = oneshot::channel::<Body>();
    request(&format!("PUT    /files/{md5}   ({} bytes)", bytes.len()));
    let answer = service.upload(md5, body).await;
    assert_eq!(answer, UploadReply::Accepted);
    reply("202 accepted");

    step("three other requests ask for its status at the same time");
    let askers: Vec<_> = (1..=3)
        .map(|n| {
            let service = service.clone();
            tokio::spawn(async move { (n, service.status(md5).await) })
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

    step("A's body arrives");
    request("(client A sends the last byte)");
    client_a.send(Ok(bytes)).unwrap();
    let state = service.until_settled(md5).await;
    assert_eq!(state, TaskState::Success);
    assert!(service.storage.contains(md5));
    request(&format!("GET    /files/{md5}"));
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
    let state = service.status(md5).await;
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
    request("(the connection breaks)");
    client.send(Err("connection reset by peer")).unwrap();
    let state = service.until_settled(md5).await;
    assert_eq!(state, TaskState::Failed);
    request(&format!("GET    /files/{md5}"));
    reply(state);

    let (client, body) = oneshot::channel::<Body>();
    request(&format!(
        "PUT    /files/{md5}   ({} bytes, retry)",
        bytes.len()
    ));
    // A failed id may be launched again.
    assert_eq!(service.upload(md5, body).await, UploadReply::Accepted);
    reply("202 accepted");
    request("(the client sends the last byte)");
    client.send(Ok(bytes)).unwrap();
    let state = service.until_settled(md5).await;
    assert_eq!(state, TaskState::Success);
    request(&format!("GET    /files/{md5}"));
    reply(state);

    // ---------------------------------------------------------------------------------
    let (md5, bytes) = PHOTO;
    step("a failed upload cannot be deleted: there is nothing stored");
    let (client, body) = oneshot::channel::<Body>();
    request(&format!("PUT    /files/{md5}   ({} bytes)", bytes.len()));
    assert_eq!(service.upload(md5, body).await, UploadReply::Accepted);
    reply("202 accepted");
    request("(the client disconnects)");
    drop(client);
    assert_eq!(service.until_settled(md5).await, TaskState::Failed);
    request(&format!("DELETE /files/{md5}"));
    let answer = service.delete(md5).await;
    assert_eq!(answer, DeleteReply::NotStored);
    reply("404 not stored");
    request(&format!("GET    /files/{md5}"));
    let state = service.status(md5).await;
    assert_eq!(
        state,
        TaskState::Failed,
        "the refused delete changed nothing"
    );
    reply(state);

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
        (1, 1, 1, 0)
    );
    for state in [TaskState::Working, TaskState::Success, TaskState::Failed] {
        let mut ids = service.recorder.ids_in_state(state).await;
        // Ids come in hash order, which changes from run to run.
        ids.sort();
        assert_eq!(ids.len(), counts.get(state));
        println!("  {:<9} {}", state.as_str(), ids.join(", "));
    }
    assert_eq!(
        service.recorder.ids_in_state(TaskState::Failed).await,
        [Md5::from(PHOTO.0)]
    );

    step("the large upload finishes");
    request("(the client sends the last byte)");
    client_video.send(Ok(bytes)).unwrap();
    assert_eq!(service.until_settled(md5).await, TaskState::Success);
    let counts = service.recorder.counts().await;
    assert_eq!((counts.working, counts.success, counts.failed), (0, 2, 1));
    println!(
        "  counts: working {}, success {}, failed {}",
        counts.working, counts.success, counts.failed
    );
    assert_eq!(service.storage.writes(), 3);
}
