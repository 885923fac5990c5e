//! The HTTP service example as two replicas on one Redis server: separate processes
//! (this test binary started again, running the library's `run` exactly as the binary
//! does), sharing the records and a storage directory. An
//! upload on one replica is read and awaited on the other; one killed with SIGKILL
//! mid-upload leaves the upload `failed` (`worker_lost`) on the other once its lease
//! ends, and a retry there succeeds.
#![cfg(feature = "redis")]

#[path = "support/http.rs"]
mod http;
// The library's own test harness for Redis servers, shared rather than copied.
#[path = "../../../tests/support/redis_server.rs"]
mod redis_server;

use http_service as service;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use http::Reply;
use redis_server::RedisServer;

/// The name of the test function that runs a replica.
const ENTRY: &str = "replica_entry";

/// The replicas' lease: how long after a replica died the others see its uploads fail.
const LEASE: Duration = Duration::from_millis(1000);

/// What the test allows past the lease for the waiter on the other replica to be told
/// (its wake-up, a read, the HTTP reply), on a slow machine.
const MARGIN: Duration = Duration::from_secs(4);

/// Only a guard against a hang; no step comes near it on a healthy machine.
const HANG_GUARD: Duration = Duration::from_secs(60);

#[test]
#[ignore = "the entry point of the replica processes that the other test starts"]
fn replica_entry() {
    if std::env::var_os("ATR_HTTP_REPLICA").is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let options = service::Options::parse(Vec::new(), |var| std::env::var(var).ok())
        .expect("the replica's options");
    runtime
        .block_on(service::run(options))
        .expect("the replica runs and stops cleanly");
}

/// One replica process: killed (SIGKILL) and reaped when dropped, also when the test
/// fails.
struct Replica {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    base: String,
}

impl Replica {
    /// Starts a replica on `server`'s namespace `ns`, storing into `files`; returns once
    /// it listens.
    fn start(name: &'static str, server: &RedisServer, ns: &str, files: &Path) -> Replica {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut child = Command::new(exe)
            .args([ENTRY, "--exact", "--ignored", "--nocapture"])
            .env("ATR_HTTP_REPLICA", name)
            .env("ATR_HTTP_ADDR", "127.0.0.1:0")
            .env("ATR_REDIS_URL", server.url())
            .env("ATR_REDIS_NAMESPACE", ns)
            .env("ATR_LEASE_MS", LEASE.as_millis().to_string())
            .env("ATR_STORAGE_DIR", files)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the replica process starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Read to the end, so that the replica never blocks on a full pipe.
                let _ = tx.send(line);
            }
        });
        let stdin = child.stdin.take();
        let mut replica = Replica {
            name,
            child,
            stdin,
            base: String::new(),
        };
        let deadline = Instant::now() + HANG_GUARD;
        replica.base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(base) = line.strip_prefix("listening on ") {
                        break base.trim().to_string();
                    }
                }
                Err(e) => panic!("replica {name} did not start listening: {e}"),
            }
        };
        replica
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Kills the process with SIGKILL and reaps it.
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks for a graceful stop (`q` on its stdin) and waits for the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        let mut stdin = self.stdin.take().expect("stdin");
        stdin
            .write_all(b"q\n")
            .expect("the replica reads its stdin");
        drop(stdin);
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            if let Some(status) = self.child.try_wait().expect("the replica's status") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "replica {} did not stop",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill9();
    }
}

struct Client(reqwest::Client);

impl Client {
    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        tokio::time::timeout(HANG_GUARD, http::send(request))
            .await
            .expect("the replica answered in time")
    }

    async fn post(&self, at: &Replica, md5: &str, delay_ms: u64, body: &'static [u8]) -> Reply {
        let url = at.url(&format!("/uploads/{md5}?delay_ms={delay_ms}"));
        self.send(self.0.post(url).body(body)).await
    }

    async fn get(&self, at: &Replica, path: &str) -> Reply {
        self.send(self.0.get(at.url(path))).await
    }
}

fn file(files: &Path, md5: &str) -> PathBuf {
    files.join(md5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_uploads_and_survive_a_kill() {
    let server = RedisServer::start();
    let files = server.dir().join("files");
    let mut a = Replica::start("a", &server, "uploads", &files);
    let b = Replica::start("b", &server, "uploads", &files);
    let http = Client(
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("an HTTP client"),
    );

    // An upload on A is read, awaited and refused again on B.
    let hello = service::md5_hex(b"hello");
    let launched = http.post(&a, &hello, 200, b"hello").await;
    assert_eq!(launched.code, 202, "{}", launched.body);
    let settled = http
        .get(&b, &format!("/uploads/{hello}/wait?timeout_ms=60000"))
        .await;
    assert_eq!(settled.code, 200, "{}", settled.body);
    assert_eq!(settled.str("state"), "success");
    let status = http.get(&b, &format!("/uploads/{hello}")).await;
    assert_eq!((status.code, status.str("state")), (200, "success"));
    assert_eq!(status.body["attempts"], 1);
    assert_eq!(std::fs::read(file(&files, &hello)).unwrap(), b"hello");
    let again = http.post(&b, &hello, 0, b"hello").await;
    assert_eq!(again.code, 409, "{}", again.body);
    let listed = http.get(&b, "/uploads?state=success").await;
    assert_eq!(listed.body["ids"], serde_json::json!([hello]));

    // A is killed mid-upload (its upload would sleep 10 s): B sees it running, waits
    // for it, and is told it failed with the worker lost once A's lease ends.
    let body: &'static [u8] = b"killed mid-upload";
    let md5 = service::md5_hex(body);
    let launched = http.post(&a, &md5, 10_000, body).await;
    assert_eq!(launched.code, 202, "{}", launched.body);
    let running = http.get(&b, &format!("/uploads/{md5}")).await;
    assert_eq!(running.str("state"), "working", "{}", running.body);
    let short = http
        .get(&b, &format!("/uploads/{md5}/wait?timeout_ms=100"))
        .await;
    assert_eq!(
        short.code, 202,
        "still running at the timeout: {}",
        short.body
    );
    let waiter = {
        let http = Client(http.0.clone());
        let url = b.url(&format!("/uploads/{md5}/wait?timeout_ms=60000"));
        tokio::spawn(async move { http.send(http.0.get(url)).await })
    };
    a.kill9();
    let killed = Instant::now();
    let woken = waiter.await.expect("the waiting request");
    let after = killed.elapsed();
    assert_eq!(woken.code, 200, "{}", woken.body);
    assert_eq!(woken.str("state"), "failed");
    assert_eq!(woken.str("last_failure"), "worker_lost");
    assert!(
        after < LEASE + MARGIN,
        "B was told {after:?} after the kill; the lease is {LEASE:?}"
    );
    let failed = http.get(&b, &format!("/uploads/{md5}")).await;
    assert_eq!(failed.str("state"), "failed");
    assert_eq!(failed.str("last_failure"), "worker_lost");
    assert!(!file(&files, &md5).exists(), "A never got to write it");

    // The retry on B succeeds: the second attempt.
    let retried = http.post(&b, &md5, 0, body).await;
    assert_eq!(retried.code, 202, "{}", retried.body);
    let settled = http
        .get(&b, &format!("/uploads/{md5}/wait?timeout_ms=60000"))
        .await;
    assert_eq!(settled.str("state"), "success", "{}", settled.body);
    let status = http.get(&b, &format!("/uploads/{md5}")).await;
    assert_eq!(status.body["attempts"], 2, "{}", status.body);
    assert_eq!(std::fs::read(file(&files, &md5)).unwrap(), body);

    // B deletes what A stored, and stops gracefully.
    let deleted = http
        .send(http.0.delete(b.url(&format!("/uploads/{hello}"))))
        .await;
    assert_eq!(deleted.code, 200, "{}", deleted.body);
    assert!(!file(&files, &hello).exists());
    let exit = b.stop();
    assert!(exit.success(), "replica b exited with {exit}");
}

#[test]
fn options_read_flags_before_the_environment() {
    let env = |var: &str| match var {
        "ATR_REDIS_URL" => Some("redis://127.0.0.1:1/".to_string()),
        "ATR_HTTP_ADDR" => Some("127.0.0.1:9".to_string()),
        _ => None,
    };
    let args = [
        "--addr",
        "127.0.0.1:0",
        "--lease-ms",
        "2500",
        "--storage",
        "/tmp/x",
    ];
    let options = service::Options::parse(args.map(String::from), env).unwrap();
    assert_eq!(options.addr, "127.0.0.1:0");
    assert_eq!(options.storage, Some(PathBuf::from("/tmp/x")));
    assert_eq!(
        options.backend,
        service::Backend::Redis {
            url: "redis://127.0.0.1:1/".to_string(),
            namespace: "http_service".to_string(),
            lease: Duration::from_millis(2500),
        }
    );
    let memory = service::Options::parse(Vec::new(), |_| None).unwrap();
    assert_eq!(memory.backend, service::Backend::Memory);
    assert_eq!(memory.addr, "127.0.0.1:3000");
    for bad in [&["--lease-ms", "soon"][..], &["--redis"], &["--what", "x"]] {
        let args = bad.iter().map(|s| s.to_string());
        assert!(service::Options::parse(args, env).is_err(), "{bad:?}");
    }
}
