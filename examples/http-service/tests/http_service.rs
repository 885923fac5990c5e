//! End-to-end test of the HTTP service example: its library is served on an ephemeral
//! port and driven over HTTP with reqwest.
//!
//! Nothing here sleeps to let something happen, and nothing assumes how long anything
//! takes: uploads are awaited with `/wait` or the recorder's `wait`, an upload watched
//! while it runs is given an hour's delay (so it never ends by itself during the test)
//! and is ended by the test, through `cancel` or the shutdown, and long-polls are
//! synchronised on the server's long-poll counter. Every test runs under a hang guard.

#[path = "support/http.rs"]
mod http;

use http_service as service;

use std::future::Future;
use std::time::Duration;

use async_tasks_recorder::{FailureReason, LaunchError, LaunchOptions, TaskPhase, TaskState};
use http::Reply;
use serde_json::Value;
use service::{AppState, Config, Drained, Md5Id};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Only a guard against a hang; no test comes near it on a healthy machine.
const HANG_GUARD: Duration = Duration::from_secs(90);

async fn guarded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(HANG_GUARD, test)
        .await
        .expect("the test hung")
}

/// One server instance on an ephemeral port, with a client for it.
struct Server {
    base: String,
    state: AppState,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<Drained>>,
}

impl Server {
    async fn start(config: Config) -> Server {
        Server::start_with(AppState::new(config).expect("a storage directory")).await
    }

    async fn start_with(state: AppState) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        // A dropped sender (a failed test) stops the server too.
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(service::serve(listener, state.clone(), shutdown));
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("an HTTP client");
        Server {
            base,
            state,
            http,
            stop: Some(stop),
            task,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        http::send(request).await
    }

    async fn post(&self, md5: &str, query: &str, body: &'static [u8]) -> Reply {
        let url = format!("{}/uploads/{md5}{query}", self.base);
        self.send(self.http.post(url).body(body)).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn delete(&self, md5: &str) -> Reply {
        let url = format!("{}/uploads/{md5}", self.base);
        self.send(self.http.delete(url)).await
    }

    /// `/wait` with the longest timeout: the upload must settle well before it.
    async fn settle(&self, md5: &str) -> Reply {
        let reply = self
            .get(&format!("/uploads/{md5}/wait?timeout_ms=60000"))
            .await;
        assert_ne!(reply.code, 202, "{md5} did not settle: {}", reply.body);
        reply
    }

    async fn list(&self, state: &str) -> Vec<String> {
        let reply = self.get(&format!("/uploads?state={state}")).await;
        assert_eq!(reply.code, 200, "{}", reply.body);
        let ids = reply.body["ids"].as_array().expect("an id list");
        assert_eq!(reply.body["count"], ids.len());
        ids.iter()
            .map(|id| id.as_str().unwrap().to_string())
            .collect()
    }

    fn file_of(&self, md5: &str) -> std::path::PathBuf {
        self.state.storage().path_of(&Md5Id::parse(md5).unwrap())
    }

    /// Triggers the shutdown and returns what the server reported once it stopped.
    async fn shut_down(mut self) -> (Drained, AppState) {
        self.stop.take().unwrap().send(()).unwrap();
        let drained = self.task.await.expect("the server task").expect("serve");
        (drained, self.state)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_lifecycle() {
    guarded(async {
        // Uploads may sleep for an hour, so the watched one never ends by itself.
        let server = Server::start(Config {
            max_delay: Duration::from_secs(3600),
            ..Config::default()
        })
        .await;
        let md5 = service::md5_hex(b"hello");
        assert_eq!(md5, "5d41402abc4b2a76b9719d911017c592");

        // Launched with an hour's delay, so that it is Working for as long as the test
        // looks at it; the test ends it itself below.
        let launched = server.post(&md5, "?delay_ms=3600000", b"hello").await;
        assert_eq!(launched.code, 202, "{}", launched.body);
        assert_eq!(launched.str("id"), md5);
        assert_eq!(launched.str("state"), "working");
        let status = server.get(&format!("/uploads/{md5}")).await;
        assert_eq!(status.code, 200);
        assert_eq!(
            (status.str("state"), status.str("phase")),
            ("working", "working")
        );
        assert_eq!(status.body["attempts"], 1);
        assert_eq!(status.body["last_failure"], Value::Null);

        // While it runs: a second upload and a delete are refused, a short wait times out.
        let again = server.post(&md5, "", b"hello").await;
        assert_eq!((again.code, again.str("state")), (409, "working"));
        let early_delete = server.delete(&md5).await;
        assert_eq!(
            (early_delete.code, early_delete.str("state")),
            (409, "working")
        );
        let short = server
            .get(&format!("/uploads/{md5}/wait?timeout_ms=1"))
            .await;
        assert_eq!((short.code, short.str("state")), (202, "working"));
        assert_eq!(server.list("working").await, [md5.as_str()]);

        // A long-poll is answered when the upload ends: here, cancelled by the test
        // through the recorder (the service has no cancel endpoint).
        let mut long_polls = server.state.long_polls();
        let poll = tokio::spawn({
            let url = format!("{}/uploads/{md5}/wait?timeout_ms=60000", server.base);
            let http = server.http.clone();
            async move {
                let response = http.get(url).send().await.expect("the long-poll");
                let code = response.status().as_u16();
                (code, response.json::<Value>().await.expect("a JSON body"))
            }
        });
        long_polls.wait_for(|n| *n == 1).await.unwrap();
        assert!(server.state.recorder().cancel(md5.as_str()).await);
        let (code, body) = poll.await.unwrap();
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            (body["state"].as_str(), body["last_failure"].as_str()),
            (Some("failed"), Some("cancelled"))
        );
        assert!(!server.file_of(&md5).exists());

        // Retried: the long-poll returns when it is stored.
        let retried = server.post(&md5, "", b"hello").await;
        assert_eq!(retried.code, 202, "{}", retried.body);
        let settled = server.settle(&md5).await;
        assert_eq!(settled.code, 200, "{}", settled.body);
        assert_eq!(
            (settled.str("state"), settled.str("phase")),
            ("success", "success")
        );
        assert_eq!(settled.body["last_failure"], Value::Null);
        assert_eq!(std::fs::read(server.file_of(&md5)).unwrap(), b"hello");
        let status = server.get(&format!("/uploads/{md5}")).await;
        assert_eq!((status.code, status.str("state")), (200, "success"));
        assert_eq!(status.body["attempts"], 2);
        assert_eq!(status.body["last_failure"], Value::Null);
        assert_eq!(server.list("success").await, [md5.as_str()]);
        assert!(server.list("working").await.is_empty());

        // Stored: never uploaded twice.
        let twice = server.post(&md5, "", b"hello").await;
        assert_eq!((twice.code, twice.str("state")), (409, "success"));

        // Deleted: the file is gone and the id unknown.
        let deleted = server.delete(&md5).await;
        assert_eq!((deleted.code, deleted.str("state")), (200, "not_found"));
        assert!(!server.file_of(&md5).exists());
        let gone = server.get(&format!("/uploads/{md5}")).await;
        assert_eq!((gone.code, gone.str("state")), (404, "not_found"));
        assert_eq!(gone.str("id"), md5);
        assert!(gone.body.get("attempts").is_none());
        let nothing = server.delete(&md5).await;
        assert_eq!((nothing.code, nothing.str("state")), (409, "not_found"));
        let unknown = server.get(&format!("/uploads/{md5}/wait")).await;
        assert_eq!((unknown.code, unknown.str("state")), (404, "not_found"));

        // It may be uploaded again.
        let relaunched = server.post(&md5, "", b"hello").await;
        assert_eq!(relaunched.code, 202, "{}", relaunched.body);
        let settled = server.settle(&md5).await;
        assert_eq!((settled.code, settled.str("state")), (200, "success"));
        assert_eq!(std::fs::read(server.file_of(&md5)).unwrap(), b"hello");

        let (drained, _state) = server.shut_down().await;
        assert_eq!(drained.cancelled, 0);
        assert_eq!((drained.counts.success, drained.counts.working), (1, 0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_body_fails_and_can_be_retried() {
    guarded(async {
        let server = Server::start(Config::default()).await;
        let md5 = service::md5_hex(b"the right bytes");

        let launched = server.post(&md5, "", b"the wrong bytes").await;
        assert_eq!(launched.code, 202, "{}", launched.body);
        let settled = server.settle(&md5).await;
        assert_eq!(settled.code, 200);
        assert_eq!(
            (settled.str("state"), settled.str("last_failure")),
            ("failed", "error")
        );
        let status = server.get(&format!("/uploads/{md5}")).await;
        assert_eq!((status.code, status.str("state")), (200, "failed"));
        assert_eq!(status.str("last_failure"), "error");
        assert_eq!(status.body["attempts"], 1);
        assert!(!server.file_of(&md5).exists());
        assert_eq!(server.list("failed").await, [md5.as_str()]);
        // Nothing stored, nothing to delete.
        let delete = server.delete(&md5).await;
        assert_eq!((delete.code, delete.str("state")), (409, "failed"));

        // Retried with the right body.
        let retried = server.post(&md5, "", b"the right bytes").await;
        assert_eq!(retried.code, 202, "{}", retried.body);
        let settled = server.settle(&md5).await;
        assert_eq!((settled.code, settled.str("state")), (200, "success"));
        let status = server.get(&format!("/uploads/{md5}")).await;
        assert_eq!(status.body["attempts"], 2);
        assert_eq!(status.body["last_failure"], Value::Null);
        assert!(server.list("failed").await.is_empty());
        assert_eq!(server.list("success").await, [md5.as_str()]);
        assert_eq!(
            std::fs::read(server.file_of(&md5)).unwrap(),
            b"the right bytes"
        );
        // Only the stored file is in the directory (no partial files left).
        let entries = std::fs::read_dir(server.state.storage().dir()).unwrap();
        assert_eq!(entries.count(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_uploads_list_in_pages() {
    guarded(async {
        let server = Server::start(Config::default()).await;
        // 45 uploads whose body is not their md5: all fail.
        let mut failed = std::collections::BTreeSet::new();
        for n in 0..45u32 {
            let md5 = service::md5_hex(format!("file {n}").as_bytes());
            let reply = server.post(&md5, "", b"not the file").await;
            assert_eq!(reply.code, 202, "{}", reply.body);
            assert_eq!(server.settle(&md5).await.str("state"), "failed");
            failed.insert(md5);
        }
        let mut listed = std::collections::BTreeSet::new();
        let mut after = String::new();
        let mut pages = 0;
        loop {
            let reply = server
                .get(&format!("/uploads?state=failed&limit=20{after}"))
                .await;
            assert_eq!(reply.code, 200, "{}", reply.body);
            pages += 1;
            let ids = reply.body["ids"].as_array().expect("ids");
            assert!(ids.len() <= 20);
            for id in ids {
                assert!(
                    listed.insert(id.as_str().unwrap().to_string()),
                    "listed once"
                );
            }
            match reply.body["next"].as_str() {
                Some(next) => after = format!("&after={next}"),
                None => break,
            }
            assert!(pages < 10, "the listing ends");
        }
        assert_eq!(listed, failed);
        assert!(pages >= 3, "{pages} pages of 20 for 45 ids");
        for bad in ["&limit=0", "&limit=1001", "&limit=5&after=nonsense"] {
            let reply = server.get(&format!("/uploads?state=failed{bad}")).await;
            assert_eq!(reply.code, 400, "{bad}: {}", reply.body);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_400_and_changes_nothing() {
    guarded(async {
        let server = Server::start(Config::default()).await;
        let good = service::md5_hex(b"x");

        for bad in [
            "abc",
            "5d41402abc4b2a76b9719d911017c59",      // 31 digits
            "5d41402abc4b2a76b9719d911017c5922",    // 33 digits
            "5d41402abc4b2a76b9719d911017c59g",     // not hex
            "5d41402abc4b2a76b9719d911017c5%C3%A9", // non-ASCII, 32 bytes decoded
            "%20d41402abc4b2a76b9719d911017c592",   // a space
        ] {
            for reply in [
                server.post(bad, "", b"x").await,
                server.get(&format!("/uploads/{bad}")).await,
                server.get(&format!("/uploads/{bad}/wait")).await,
                server.delete(bad).await,
            ] {
                assert_eq!(reply.code, 400, "{bad}: {}", reply.body);
                assert!(reply.str("error").contains("md5"), "{}", reply.body);
            }
        }

        // Bad query values.
        for query in ["?delay_ms=abc", "?delay_ms=-1", "?delay_ms=10001"] {
            let reply = server.post(&good, query, b"x").await;
            assert_eq!(reply.code, 400, "{query}: {}", reply.body);
        }
        let reply = server
            .get(&format!("/uploads/{good}/wait?timeout_ms=soon"))
            .await;
        assert_eq!(reply.code, 400, "{}", reply.body);
        for query in [
            "",
            "?state=",
            "?state=revoking",
            "?state=FAILED",
            "?state=not_found",
        ] {
            let reply = server.get(&format!("/uploads{query}")).await;
            assert_eq!(reply.code, 400, "{query}: {}", reply.body);
            assert!(reply.str("error").contains("state"), "{}", reply.body);
        }
        let reply = server.get("/no/such/route").await;
        assert_eq!(reply.code, 404, "{}", reply.body);
        let put = server.http.put(format!("{}/uploads/{good}", server.base));
        let response = put.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 405);

        // A body over the limit.
        let small = Server::start(Config {
            max_body: 4,
            ..Config::default()
        })
        .await;
        let reply = small.post(&service::md5_hex(b"12345"), "", b"12345").await;
        assert_eq!(reply.code, 413, "{}", reply.body);
        assert_eq!(small.state.recorder().counts().await.total(), 0);

        // None of that made a record.
        assert_eq!(server.state.recorder().counts().await.total(), 0);

        // Upper-case digits are the same md5, answered in lower-case.
        let upper = good.to_ascii_uppercase();
        let launched = server.post(&upper, "", b"x").await;
        assert_eq!((launched.code, launched.str("id")), (202, good.as_str()));
        let settled = server.settle(&upper).await;
        assert_eq!(
            (settled.str("id"), settled.str("state")),
            (good.as_str(), "success")
        );
        let same = server.post(&good, "", b"x").await;
        assert_eq!((same.code, same.str("state")), (409, "success"));
        assert!(server.file_of(&good).exists());
        assert_eq!(server.list("success").await, [good.as_str()]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delete_keeps_the_upload() {
    guarded(async {
        let server = Server::start(Config::default()).await;
        let md5 = service::md5_hex(b"keep me");
        assert_eq!(server.post(&md5, "", b"keep me").await.code, 202);
        assert_eq!(server.settle(&md5).await.str("state"), "success");

        // Something that `remove_file` cannot remove where the file was.
        let file = server.file_of(&md5);
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
        std::fs::write(file.join("inside"), b"!").unwrap();
        let failed = server.delete(&md5).await;
        assert_eq!(failed.code, 500, "{}", failed.body);
        assert_eq!(failed.str("state"), "success");
        let status = server.get(&format!("/uploads/{md5}")).await;
        assert_eq!((status.code, status.str("phase")), (200, "success"));
        let twice = server.post(&md5, "", b"keep me").await;
        assert_eq!((twice.code, twice.str("state")), (409, "success"));

        // Once it is out of the way, the delete goes through (a missing file counts as
        // removed).
        std::fs::remove_dir_all(&file).unwrap();
        let deleted = server.delete(&md5).await;
        assert_eq!((deleted.code, deleted.str("state")), (200, "not_found"));
        assert_eq!(server.get(&format!("/uploads/{md5}")).await.code, 404);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_recorder_refuses_uploads_with_503() {
    guarded(async {
        let state = AppState::new(Config::default()).unwrap();
        let stored = Md5Id::parse(&service::md5_hex(b"before")).unwrap();
        let upload = async { Ok::<_, ()>(()) };
        let launched = state.recorder().launch_block(stored.clone(), upload).await;
        assert!(launched.is_ok());
        state.recorder().close();

        let server = Server::start_with(state).await;
        let md5 = service::md5_hex(b"after");
        let refused = server.post(&md5, "", b"after").await;
        assert_eq!(refused.code, 503, "{}", refused.body);
        assert!(refused.str("error").contains("shutting down"));
        assert_eq!(server.get(&format!("/uploads/{md5}")).await.code, 404);
        // Reads and deletes still work on a closed recorder.
        assert_eq!(server.list("success").await, [stored.to_string()]);
        let deleted = server.delete(stored.as_str()).await;
        assert_eq!(deleted.code, 200, "{}", deleted.body);
        assert_eq!(server.state.recorder().counts().await.total(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_running_uploads() {
    guarded(async {
        // Uploads may sleep for an hour here, so the slow one never ends by itself.
        let config = Config {
            max_delay: Duration::from_secs(3600),
            grace: Duration::from_millis(200),
            ..Config::default()
        };
        let server = Server::start(config).await;
        let slow = service::md5_hex(b"slow");
        let quick = service::md5_hex(b"quick");

        assert_eq!(server.post(&quick, "", b"quick").await.code, 202);
        assert_eq!(server.settle(&quick).await.str("state"), "success");
        let launched = server.post(&slow, "?delay_ms=3600000", b"slow").await;
        assert_eq!((launched.code, launched.str("state")), (202, "working"));
        let status = server.get(&format!("/uploads/{slow}")).await;
        assert_eq!((status.code, status.str("state")), (200, "working"));
        let busy = server.post(&slow, "", b"slow").await;
        assert_eq!((busy.code, busy.str("state")), (409, "working"));
        let not_stored = server.delete(&slow).await;
        assert_eq!((not_stored.code, not_stored.str("state")), (409, "working"));
        assert_eq!(server.list("working").await, [slow.as_str()]);

        // A client long-polls the slow upload; shut down once its request is waiting.
        let mut long_polls = server.state.long_polls();
        let poll = tokio::spawn({
            let url = format!("{}/uploads/{slow}/wait", server.base);
            let http = server.http.clone();
            async move {
                let response = http
                    .get(url)
                    .send()
                    .await
                    .expect("the long-poll is answered");
                let code = response.status().as_u16();
                (code, response.json::<Value>().await.expect("a JSON body"))
            }
        });
        long_polls.wait_for(|n| *n == 1).await.unwrap();

        let (drained, state) = server.shut_down().await;
        // The drain cancelled the slow upload after the grace period, which answered
        // the long-poll, which let the server finish.
        assert_eq!(drained.cancelled, 1);
        assert_eq!(drained.counts.working, 0);
        assert_eq!(drained.counts.revoking, 0);
        assert_eq!((drained.counts.success, drained.counts.failed), (1, 1));
        let (code, body) = poll.await.unwrap();
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            (body["state"].as_str(), body["last_failure"].as_str()),
            (Some("failed"), Some("cancelled"))
        );
        assert_eq!(*long_polls.borrow(), 0);

        let recorder = state.recorder();
        assert!(recorder.is_closed());
        assert_eq!(recorder.count(TaskState::Working).await, 0);
        let status = recorder.status(slow.as_str()).await;
        assert_eq!(status.phase, TaskPhase::Failed);
        assert_eq!(status.last_failure, Some(FailureReason::Cancelled));
        assert!(!state
            .storage()
            .path_of(&Md5Id::parse(&slow).unwrap())
            .exists());

        // An upload after the shutdown is refused: the recorder is closed.
        let late = Md5Id::parse(&slow).unwrap();
        let retry = async { Ok::<_, ()>(()) };
        let refused = recorder
            .launch_with(late, retry, LaunchOptions::new())
            .await;
        assert!(matches!(refused, Err(LaunchError::Closed(_))));
        // The stored upload is kept (until the storage directory goes away with the
        // last clone of the state).
        assert!(state
            .storage()
            .path_of(&Md5Id::parse(&quick).unwrap())
            .exists());
    })
    .await;
}
