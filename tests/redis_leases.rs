//! Leases on the Redis store, against a server the test starts: a worker that dies
//! leaves its id `Failed` (`WorkerLost`) once its lease ends, and a relaunch gets a
//! larger fencing token; a paused worker is fenced off (its write and its finish are
//! refused); a worker that cannot renew stops its future. The other worker is a
//! recorder on a thread and runtime of its own, which the test freezes or kills.
#![cfg(feature = "redis")]

mod common;
#[path = "support/redis_recorder.rs"]
mod redis_recorder;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_tasks_recorder::redis::RedisRecorder;
use async_tasks_recorder::{FailureReason, LaunchOptions, TaskError, TaskPhase};
use common::bounded;
use redis_recorder::recorder;
use redis_server::RedisServer;

/// Runs `work` on a recorder of its own, in a current-thread runtime on its own
/// thread: a stand-in for another process, whose runtime the test can freeze (a task
/// that blocks the thread) or kill (`shutdown_background`, after which nothing of it
/// runs again).
struct Replica {
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Replica {
    fn start<F>(url: String, namespace: &'static str, lease: Duration, work: F) -> Replica
    where
        F: FnOnce(tokio::runtime::Runtime, RedisRecorder<String>) + Send + 'static,
    {
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let rec = rt
                .block_on(
                    RedisRecorder::builder(url)
                        .namespace(namespace)
                        .lease(lease)
                        .build(),
                )
                .expect("the replica's recorder builds");
            work(rt, rec);
        });
        Replica {
            thread: Some(thread),
        }
    }

    /// Waits for the replica's thread, passing on its panic.
    fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_worker_leaves_failed_worker_lost_and_a_relaunch_gets_a_larger_token() {
    let server = RedisServer::start();
    let lease = Duration::from_secs(1);
    let b: RedisRecorder<String> = recorder(&server, "dead", lease).await;
    let (token_tx, token_rx) = std::sync::mpsc::channel();
    let replica = Replica::start(server.url(), "dead", lease, move |rt, a| {
        rt.block_on(async {
            let (started, running) = tokio::sync::oneshot::channel();
            let make = move |ctx: async_tasks_recorder::redis::TaskContext| {
                let _ = token_tx.send(ctx.token());
                let _ = started.send(());
                std::future::pending::<Result<(), ()>>()
            };
            let _handle = a
                .launch_fenced("job".to_string(), make, LaunchOptions::new())
                .await
                .unwrap();
            running.await.unwrap();
        });
        // The process dies: none of its tasks runs again, nothing is recorded.
        rt.shutdown_background();
    });
    replica.join();
    let first_token = token_rx.recv().unwrap();
    let settled = bounded("the lease's end", b.wait("job")).await.unwrap();
    assert_eq!(settled.phase, TaskPhase::Failed);
    assert_eq!(settled.failure, Some(FailureReason::WorkerLost));
    assert_eq!(
        b.status("job").await.unwrap().last_failure,
        Some(FailureReason::WorkerLost)
    );

    let handle = b
        .launch_fenced(
            "job".to_string(),
            |ctx| async move { Ok::<_, ()>((ctx.token(), ctx.attempt())) },
            LaunchOptions::new(),
        )
        .await
        .unwrap();
    let (second_token, attempt) = bounded("relaunch", handle).await.unwrap();
    assert!(second_token > first_token, "{second_token} > {first_token}");
    assert_eq!(attempt, 2);
}

/// A store of side effects that accepts a write only with a token larger than the
/// last one it accepted, as the docs of `launch_fenced` suggest.
#[derive(Default)]
struct Fenced {
    last: Mutex<u64>,
    accepted: Mutex<Vec<(&'static str, u64)>>,
}

impl Fenced {
    fn write(&self, who: &'static str, token: u64) -> bool {
        let mut last = self.last.lock().unwrap();
        if token <= *last {
            return false;
        }
        *last = token;
        self.accepted.lock().unwrap().push((who, token));
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_is_fenced_off() {
    let server = RedisServer::start();
    let lease = Duration::from_secs(1);
    let b: RedisRecorder<String> = recorder(&server, "pause", lease).await;
    let effects = Arc::new(Fenced::default());
    let (paused_tx, paused_rx) = tokio::sync::oneshot::channel();
    let (resume_tx, resume_rx) = std::sync::mpsc::channel::<()>();
    let (outcome_tx, outcome_rx) = tokio::sync::oneshot::channel();
    let replica = Replica::start(server.url(), "pause", lease, {
        let effects = effects.clone();
        move |rt, a| {
            rt.block_on(async {
                let make = move |ctx: async_tasks_recorder::redis::TaskContext| async move {
                    // Freezes this replica's whole runtime, as SIGSTOP would: no
                    // renewal runs until the test lets it go on.
                    let _ = paused_tx.send(());
                    resume_rx.recv().unwrap();
                    let written = effects.write("paused", ctx.token());
                    Ok::<_, ()>(written)
                };
                let handle = a
                    .launch_fenced("file".to_string(), make, LaunchOptions::new())
                    .await
                    .unwrap();
                let _ = outcome_tx.send(handle.await);
            });
        }
    });
    bounded("the worker pauses", paused_rx).await.unwrap();
    // B sees the lease end, relaunches and writes with a larger token.
    let settled = bounded("the lease's end", b.wait("file")).await.unwrap();
    assert_eq!(settled.failure, Some(FailureReason::WorkerLost));
    let handle = b
        .launch_fenced(
            "file".to_string(),
            {
                let effects = effects.clone();
                move |ctx| async move { Ok::<_, ()>(effects.write("successor", ctx.token())) }
            },
            LaunchOptions::new(),
        )
        .await
        .unwrap();
    assert!(
        bounded("successor", handle).await.unwrap(),
        "the successor's write lands"
    );
    resume_tx.send(()).unwrap();
    let outcome = bounded("the paused worker", outcome_rx).await.unwrap();
    assert!(
        matches!(outcome, Err(TaskError::Lost)),
        "its finish is refused"
    );
    replica.join();
    assert_eq!(
        effects
            .accepted
            .lock()
            .unwrap()
            .iter()
            .map(|(w, _)| *w)
            .collect::<Vec<_>>(),
        ["successor"],
        "exactly one write per success: the paused worker's stale write was refused"
    );
    let status = b.status("file").await.unwrap();
    assert_eq!(
        (status.phase, status.attempts),
        (TaskPhase::Success, Some(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_renew_stops_its_future() {
    let mut server = RedisServer::start();
    let lease = Duration::from_secs(1);
    let a: RedisRecorder<String> = recorder(&server, "cut", lease).await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let dropped = Arc::new(AtomicUsize::new(0));
    struct OnDrop(Arc<AtomicUsize>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let guard = OnDrop(dropped.clone());
    let handle = a
        .launch_with(
            "long".to_string(),
            async move {
                let _guard = guard;
                let _ = started_tx.send(());
                std::future::pending::<Result<(), ()>>().await
            },
            LaunchOptions::new(),
        )
        .await
        .unwrap();
    bounded("started", started_rx).await.unwrap();
    // The server goes away: renewals fail, and the future must stop on its own.
    server.kill9();
    let outcome = bounded("the future stops", handle).await;
    assert!(matches!(outcome, Err(TaskError::Lost)));
    assert_eq!(dropped.load(Ordering::SeqCst), 1, "the future was dropped");
    server.restart();
    // Back on the same data: the lease has ended, so the id reads WorkerLost.
    let status = bounded("status after restart", async {
        loop {
            match a.status("long").await {
                Ok(status) => break status,
                Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
    assert_eq!(status.last_failure, Some(FailureReason::WorkerLost));
    // The restarted server kept the functions library with its data; counts (one
    // transaction of function calls) work at once.
    assert_eq!(a.counts().await.unwrap().failed, 1);
}
