//! The Redis recorder against a real server started by the test: one process's
//! semantics, and two recorders with separate connections standing for two replicas.
#![cfg(feature = "redis")]

mod common;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_tasks_recorder::redis::{RedisRecorder, RevokeError, ServerCheck};
use async_tasks_recorder::{
    FailureReason, LaunchError, LaunchOptions, StoreError, TaskError, TaskPhase, TaskState,
};
use common::bounded;
use redis_server::RedisServer;

async fn recorder<K>(server: &RedisServer, namespace: &str, lease: Duration) -> RedisRecorder<K>
where
    K: async_tasks_recorder::redis::StoredId + Clone + Send + Sync + 'static,
{
    bounded(
        "build",
        RedisRecorder::builder(server.url())
            .namespace(namespace)
            .lease(lease)
            .server_check(ServerCheck::Refuse)
            .build(),
    )
    .await
    .expect("the recorder builds on the test server")
}

async fn ok() -> Result<(), String> {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_lifecycle() {
    let server = RedisServer::start();
    let rec: RedisRecorder<String> = recorder(&server, "life", Duration::from_secs(30)).await;
    assert!(rec.warnings().is_empty(), "{:?}", rec.warnings());
    assert_eq!(
        rec.query_task_state("a").await.unwrap(),
        TaskState::NotFound
    );
    assert_eq!(
        rec.query_task_state_quick("a").await.unwrap(),
        TaskState::Working
    );

    // Success, and never again.
    bounded("launch_block", rec.launch_block("a".to_string(), ok()))
        .await
        .unwrap();
    assert_eq!(rec.query_task_state("a").await.unwrap(), TaskState::Success);
    match rec.launch("a".to_string(), ok()).await {
        Err(LaunchError::Refused(TaskState::Success, _)) => {}
        other => panic!(
            "a succeeded id launched again: {:?}",
            other.map_err(|e| e.to_string())
        ),
    }

    // A failure may run again, with a second attempt.
    let failing = async { Err::<(), _>("disk full".to_string()) };
    bounded("failing", rec.launch_block("b".to_string(), failing))
        .await
        .unwrap();
    let status = rec.status("b").await.unwrap();
    assert_eq!(status.phase, TaskPhase::Failed);
    assert_eq!(status.last_failure, Some(FailureReason::Error));
    assert_eq!(status.attempts, Some(1));
    assert!(status.started_at.is_some() && status.since.is_some());
    let handle = rec
        .launch_with(
            "b".to_string(),
            async { Ok::<_, String>(7) },
            LaunchOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(bounded("handle", handle).await.unwrap(), 7);
    let status = rec.status("b").await.unwrap();
    assert_eq!(
        (status.phase, status.attempts),
        (TaskPhase::Success, Some(2))
    );

    // Counts and listings.
    let counts = rec.counts().await.unwrap();
    assert_eq!((counts.success, counts.failed, counts.working), (2, 0, 0));
    let mut ids = rec.ids_in_state(TaskState::Success).await.unwrap();
    ids.sort();
    assert_eq!(ids, ["a", "b"]);

    // Revoke: at most one, then NotFound and launchable again.
    let revoked = bounded(
        "revoke",
        rec.revoke_task_block("a".to_string(), async { Ok::<_, String>("deleted") }),
    )
    .await;
    assert!(matches!(revoked, Ok("deleted")));
    assert_eq!(
        rec.query_task_state("a").await.unwrap(),
        TaskState::NotFound
    );
    let again = rec.revoke_task_block("a".to_string(), ok()).await;
    assert!(matches!(again, Err(RevokeError::NotSuccess(_))));
    let failed_revoke = rec
        .revoke_task_block("b".to_string(), async { Err::<(), _>("busy".to_string()) })
        .await;
    assert!(matches!(
        failed_revoke,
        Err(RevokeError::RevokeTaskError(_))
    ));
    assert_eq!(rec.query_task_state("b").await.unwrap(), TaskState::Success);
    bounded("relaunch", rec.launch_block("a".to_string(), ok()))
        .await
        .unwrap();
    assert_eq!(rec.query_task_state("a").await.unwrap(), TaskState::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_and_timeouts_in_one_process() {
    let server = RedisServer::start();
    let rec: RedisRecorder<u64> = recorder(&server, "wait", Duration::from_secs(30)).await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    rec.launch(1, async move { rx.await.map_err(|_| ()) })
        .await
        .unwrap();
    assert_eq!(rec.query_task_state(&1).await.unwrap(), TaskState::Working);
    let waiter = tokio::spawn({
        let rec = rec.clone();
        async move { rec.wait(&1).await }
    });
    tx.send(()).unwrap();
    let settled = bounded("wait", waiter).await.unwrap().unwrap();
    assert_eq!(settled.phase, TaskPhase::Success);

    let never = std::future::pending::<Result<(), ()>>();
    let options = LaunchOptions::new().timeout(Duration::from_millis(50));
    let handle = rec.launch_with(2, never, options).await.unwrap();
    assert!(matches!(
        bounded("timeout", handle).await,
        Err(TaskError::TimedOut)
    ));
    let status = rec.status(&2).await.unwrap();
    assert_eq!(status.last_failure, Some(FailureReason::TimedOut));

    let panicking = async {
        if rec_never_true() {
            return Ok::<(), ()>(());
        }
        panic!("boom")
    };
    let handle = rec
        .launch_with(3, panicking, LaunchOptions::new())
        .await
        .unwrap();
    assert!(matches!(
        bounded("panic", handle).await,
        Err(TaskError::Panicked(_))
    ));
    let status = rec.status(&3).await.unwrap();
    assert_eq!(status.last_failure, Some(FailureReason::Panicked));
}

fn rec_never_true() -> bool {
    std::hint::black_box(false)
}

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
async fn racing_launches_of_one_id_run_once() {
    let server = RedisServer::start();
    let a: RedisRecorder<String> = recorder(&server, "race", Duration::from_secs(30)).await;
    let b: RedisRecorder<String> = recorder(&server, "race", Duration::from_secs(30)).await;
    let runs: Arc<Vec<AtomicUsize>> = Arc::new((0..40).map(|_| AtomicUsize::new(0)).collect());
    let mut racers = Vec::new();
    for (name, rec) in [
        ("a", a.clone()),
        ("b", b.clone()),
        ("a2", a.clone()),
        ("b2", b.clone()),
    ] {
        let runs = runs.clone();
        racers.push(tokio::spawn(async move {
            let mut accepted = 0;
            for i in 0..40 {
                let runs = runs.clone();
                let task = async move {
                    runs[i].fetch_add(1, Ordering::SeqCst);
                    Ok::<_, ()>(())
                };
                match rec.launch(format!("id-{i}"), task).await {
                    Ok(()) => accepted += 1,
                    Err(LaunchError::Refused(TaskState::Working | TaskState::Success, _)) => {}
                    Err(other) => panic!("{name}: {other}"),
                }
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for racer in racers {
        accepted += bounded("racer", racer).await.unwrap();
    }
    assert_eq!(accepted, 40, "exactly one launch of each id is accepted");
    for i in 0..40 {
        let settled = bounded("wait", b.wait(&format!("id-{i}"))).await.unwrap();
        assert_eq!(settled.phase, TaskPhase::Success);
        assert_eq!(runs[i].load(Ordering::SeqCst), 1, "id-{i} ran once");
    }
    assert_eq!(a.counts().await.unwrap().success, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_status_and_cancel_from_another_replica() {
    let server = RedisServer::start();
    let a: RedisRecorder<String> = recorder(&server, "xr", Duration::from_secs(30)).await;
    let b: RedisRecorder<String> = recorder(&server, "xr", Duration::from_secs(30)).await;

    // Launched on A, read and awaited on B.
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    a.launch(
        "up".to_string(),
        async move { released.await.map_err(|_| ()) },
    )
    .await
    .unwrap();
    assert_eq!(b.query_task_state("up").await.unwrap(), TaskState::Working);
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { b.wait("up").await }
    });
    release.send(()).unwrap();
    assert_eq!(
        bounded("wait on B", waiter).await.unwrap().unwrap().phase,
        TaskPhase::Success
    );
    assert_eq!(b.status("up").await.unwrap().phase, TaskPhase::Success);

    // Cancelled from B, stopped on A.
    let stuck = std::future::pending::<Result<(), ()>>();
    let handle = a
        .launch_with("stuck".to_string(), stuck, LaunchOptions::new())
        .await
        .unwrap();
    assert!(bounded("cancel from B", b.cancel("stuck")).await.unwrap());
    assert!(matches!(
        bounded("A's handle", handle).await,
        Err(TaskError::Cancelled)
    ));
    let status = a.status("stuck").await.unwrap();
    assert_eq!(status.last_failure, Some(FailureReason::Cancelled));
    assert!(!b.cancel("stuck").await.unwrap(), "nothing runs any more");

    // A transition made on A reaches a subscriber on B.
    let mut events = b.subscribe();
    a.launch_block("seen".to_string(), ok()).await.unwrap();
    let mut moves = Vec::new();
    while moves.len() < 2 {
        let event = bounded("event", events.next()).await.unwrap().unwrap();
        if event.id == "seen" {
            moves.push((event.from, event.to));
        }
    }
    assert_eq!(
        moves,
        [
            (TaskPhase::NotFound, TaskPhase::Working),
            (TaskPhase::Working, TaskPhase::Success)
        ]
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gives_clear_errors() {
    let build = |url: String| async move {
        bounded(
            "build",
            RedisRecorder::<String>::builder(url)
                .connect_timeout(Duration::from_secs(2))
                .build(),
        )
        .await
    };
    assert!(matches!(
        build("not a url".into()).await,
        Err(StoreError::InvalidConfig(_))
    ));
    // Nothing listens on a port we just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = build(format!("redis://127.0.0.1:{port}/")).await;
    assert!(
        matches!(
            down,
            Err(StoreError::Unreachable(_) | StoreError::TimedOut(_))
        ),
        "{down:?}"
    );

    let locked = RedisServer::start_with(&["--requirepass", "secret"]);
    let no_password = build(locked.url()).await;
    assert!(
        matches!(no_password, Err(StoreError::AuthFailed(_))),
        "{no_password:?}"
    );
    let wrong = build(format!("redis://:wrong@127.0.0.1:{}/", locked.port())).await;
    assert!(matches!(wrong, Err(StoreError::AuthFailed(_))), "{wrong:?}");
    let right = build(format!("redis://:secret@127.0.0.1:{}/", locked.port())).await;
    assert!(right.is_ok(), "{right:?}");

    let server = RedisServer::start();
    for ns in ["", "a.b", "{x}", "has space"] {
        let bad = RedisRecorder::<String>::builder(server.url())
            .namespace(ns)
            .build()
            .await;
        assert!(matches!(bad, Err(StoreError::InvalidConfig(_))), "{ns:?}");
    }
    let short = RedisRecorder::<String>::builder(server.url())
        .lease(Duration::from_millis(5))
        .build()
        .await;
    assert!(matches!(short, Err(StoreError::InvalidConfig(_))));
    let _first = RedisRecorder::<String>::builder(server.url())
        .namespace("g")
        .groups(8)
        .build()
        .await
        .unwrap();
    let other = RedisRecorder::<String>::builder(server.url())
        .namespace("g")
        .groups(16)
        .build()
        .await;
    assert!(
        matches!(other, Err(StoreError::Misconfigured(_))),
        "{other:?}"
    );

    // An id written by a recorder of another id type does not decode.
    let text: RedisRecorder<String> = recorder(&server, "mixed", Duration::from_secs(30)).await;
    text.launch_block("not-a-number".to_string(), ok())
        .await
        .unwrap();
    let numbers: RedisRecorder<u64> = recorder(&server, "mixed", Duration::from_secs(30)).await;
    let listed = numbers.ids_in_state(TaskState::Success).await;
    assert!(matches!(listed, Err(StoreError::BadId(_))), "{listed:?}");
    assert_eq!(
        numbers.counts().await.unwrap().success,
        1,
        "the record is still there"
    );

    // Weak settings are refused or reported.
    let weak =
        RedisServer::start_with(&["--appendonly", "no", "--maxmemory-policy", "allkeys-lru"]);
    let refused = RedisRecorder::<String>::builder(weak.url())
        .server_check(ServerCheck::Refuse)
        .build()
        .await;
    assert!(
        matches!(refused, Err(StoreError::Misconfigured(_))),
        "{refused:?}"
    );
    let warned = RedisRecorder::<String>::builder(weak.url())
        .build()
        .await
        .unwrap();
    assert_eq!(warned.warnings().len(), 2, "{:?}", warned.warnings());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_finish_and_query_cost_one_round_trip_each() {
    let server = RedisServer::start();
    let rec: RedisRecorder<u64> = recorder(&server, "trips", Duration::from_secs(30)).await;
    // Warms the connection, so that nothing but the operations is counted below.
    rec.launch_block(0, ok()).await.unwrap();
    rec.query_task_state(&0).await.unwrap();
    server.cli(&["CONFIG", "RESETSTAT"]);
    rec.launch_block(1, ok()).await.unwrap();
    assert_eq!(rec.query_task_state(&1).await.unwrap(), TaskState::Success);
    let stats = server.cli(&["INFO", "commandstats"]);
    let calls = |command: &str| -> u64 {
        stats
            .lines()
            .find(|l| l.starts_with(&format!("cmdstat_{command}:")))
            .and_then(|l| l.split("calls=").nth(1))
            .and_then(|v| v.split(',').next())
            .map_or(0, |v| v.parse().unwrap())
    };
    assert_eq!(calls("fcall"), 2, "launch, finish: {stats}");
    // The query: one transaction of plain reads, sent at once.
    assert_eq!((calls("multi"), calls("exec")), (1, 1), "query: {stats}");
    assert_eq!(calls("function|load"), 0, "{stats}");
    assert_eq!(calls("evalsha") + calls("eval"), 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_subscription_wakes_waiters_and_tells_subscribers() {
    let server = RedisServer::start();
    let a: RedisRecorder<String> = recorder(&server, "sub", Duration::from_secs(30)).await;
    let b: RedisRecorder<String> = recorder(&server, "sub", Duration::from_secs(30)).await;
    let mut events = b.subscribe();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    a.launch(
        "up".to_string(),
        async move { released.await.map_err(|_| ()) },
    )
    .await
    .unwrap();
    // The waiter registers in its first poll, before its first read: poll it once
    // here, then let it run as a task.
    let mut waiter = Box::pin({
        let b = b.clone();
        async move { b.wait("up").await }
    });
    std::future::poll_fn(|cx| {
        let _ = waiter.as_mut().poll(cx);
        std::task::Poll::Ready(())
    })
    .await;
    let waiter = tokio::spawn(waiter);
    // Every subscriber connection of the server is cut; the task ends while B's may be
    // down, so its message may be lost: B must learn of the end all the same.
    let killed = server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_ne!(killed, "0", "the test cut no subscription");
    release.send(()).unwrap();
    let settled = bounded("the waiter after a lost subscription", waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(settled.phase, TaskPhase::Success);
    // The subscriber hears that it may have missed events.
    let told = bounded("Missed(0) on the stream", async {
        loop {
            if let Some(Err(missed)) = events.next().await {
                return missed;
            }
        }
    })
    .await;
    assert_eq!(told.0, 0, "an unknown number was missed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_running_limits_this_process_s_futures() {
    let server = RedisServer::start();
    let rec: RedisRecorder<u64> = bounded(
        "build",
        RedisRecorder::builder(server.url())
            .namespace("limit")
            .max_running(2)
            .build(),
    )
    .await
    .unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(Mutex::new(Vec::new()));
    let (release, _) = tokio::sync::broadcast::channel::<()>(1);
    for id in 0..6u64 {
        let (running, peak, started) = (running.clone(), peak.clone(), started.clone());
        let mut released = release.subscribe();
        rec.launch(id, async move {
            started.lock().unwrap().push(id);
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let _ = released.recv().await;
            running.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
    }
    bounded("two futures to start", async {
        while started.lock().unwrap().len() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // No other starts until a release: the two hold both slots.
    assert_eq!(started.lock().unwrap().len(), 2);
    // Queued launches read Working everywhere, and a queued one can be cancelled.
    assert_eq!(rec.counts().await.unwrap().working, 6);
    let queued = (0..6u64)
        .find(|id| !started.lock().unwrap().contains(id))
        .unwrap();
    assert!(bounded("cancel a queued task", rec.cancel(&queued))
        .await
        .unwrap());
    release.send(()).unwrap();
    // The rest run two at a time; each waits for the release sent above or a later one.
    bounded("the rest to finish", async {
        loop {
            let counts = rec.counts().await.unwrap();
            if counts.working == 0 {
                return counts;
            }
            let _ = release.send(());
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "never more than two at once"
    );
    let counts = rec.counts().await.unwrap();
    assert_eq!((counts.success, counts.failed), (5, 1));
    assert_eq!(
        rec.status(&queued).await.unwrap().last_failure,
        Some(FailureReason::Cancelled)
    );
    assert!(
        !started.lock().unwrap().contains(&queued),
        "the cancelled one never ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_and_drain_act_on_this_process_only() {
    let server = RedisServer::start();
    let a: RedisRecorder<u64> = recorder(&server, "drain", Duration::from_secs(30)).await;
    let b: RedisRecorder<u64> = recorder(&server, "drain", Duration::from_secs(30)).await;
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    a.launch(1, async move { released.await.map_err(|_| ()) })
        .await
        .unwrap();
    a.launch(2, std::future::pending::<Result<(), ()>>())
        .await
        .unwrap();
    // A is drained: id 1 ends in time, id 2 is cancelled after the grace.
    let drained = tokio::spawn({
        let a = a.clone();
        async move { a.drain(Some(Duration::from_millis(200))).await }
    });
    release.send(()).unwrap();
    assert_eq!(bounded("drain", drained).await.unwrap(), 1);
    assert!(a.is_closed() && !b.is_closed());
    assert_eq!(
        b.status(&2).await.unwrap().last_failure,
        Some(FailureReason::Cancelled)
    );
    assert_eq!(b.query_task_state(&1).await.unwrap(), TaskState::Success);
    // A refuses launches; B, another process, does not.
    assert!(matches!(
        a.launch(3, async { Ok::<_, ()>(()) }).await,
        Err(LaunchError::Closed(_))
    ));
    b.launch_block(3, async { Ok::<_, ()>(()) }).await.unwrap();
    // Queries and revokes still work on A.
    assert_eq!(a.query_task_state(&3).await.unwrap(), TaskState::Success);
    a.revoke_task_block(3, async { Ok::<_, ()>(()) })
        .await
        .unwrap();
    bounded("wait_idle", a.wait_idle()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscription_stays_up_across_its_pings() {
    let server = RedisServer::start();
    let rec: RedisRecorder<u64> = recorder(&server, "ping", Duration::from_secs(30)).await;
    let mut events = rec.subscribe();
    // Longer than the listener's ping period (5 s): a ping must not cost the
    // subscription, or the first item below would be Missed(0).
    tokio::time::sleep(Duration::from_secs(6)).await;
    rec.launch_block(1, async { Ok::<_, ()>(()) })
        .await
        .unwrap();
    let first = bounded("the first event", events.next()).await.unwrap();
    let first = first.expect("no event was missed");
    assert_eq!((first.id, first.to), (1, TaskPhase::Working));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_cancels_a_launch_granted_while_it_runs() {
    let server = RedisServer::start();
    let rec: RedisRecorder<u64> = recorder(&server, "late", Duration::from_secs(30)).await;
    // The server holds every command for a moment: the launch below passes the closed
    // flag, then waits for its grant while drain closes and looks for tasks.
    server.cli(&["CLIENT", "PAUSE", "300"]);
    let mut launch = Box::pin({
        let rec = rec.clone();
        async move {
            rec.launch(2, std::future::pending::<Result<(), ()>>())
                .await
                .is_ok()
        }
    });
    // Its first poll counts the launch as this process's work and sends the request,
    // which the pause holds; then it goes on as a task of its own.
    std::future::poll_fn(|cx| {
        assert!(
            launch.as_mut().poll(cx).is_pending(),
            "the pause holds the launch"
        );
        std::task::Poll::Ready(())
    })
    .await;
    let launch = tokio::spawn(launch);
    let drained = bounded("drain", rec.drain(Some(Duration::ZERO))).await;
    assert!(
        bounded("the launch", launch).await.unwrap(),
        "granted after the pause"
    );
    assert_eq!(drained, 1, "the late task was cancelled");
    assert_eq!(
        rec.status(&2).await.unwrap().last_failure,
        Some(FailureReason::Cancelled)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_chosen_by_an_attacker_stay_inside_the_namespace() {
    let server = RedisServer::start();
    let rec: RedisRecorder<String> = recorder(&server, "tenant", Duration::from_secs(30)).await;
    let other: RedisRecorder<String> = recorder(&server, "other", Duration::from_secs(30)).await;
    let hostile = [
        "{tenant.0}:work",
        "}{",
        "a:b:c",
        "line\nbreak\r\n",
        "atr:{other.meta}",
        "",
        "*",
        "\u{0}nul",
        "../../etc/passwd",
    ];
    for id in hostile {
        bounded("launch_block", rec.launch_block(id.to_string(), ok()))
            .await
            .unwrap();
    }
    for id in hostile {
        assert_eq!(
            rec.query_task_state(id).await.unwrap(),
            TaskState::Success,
            "{id:?}"
        );
        // The other namespace knows none of them.
        assert_eq!(
            other.query_task_state(id).await.unwrap(),
            TaskState::NotFound,
            "{id:?}"
        );
    }
    let mut listed = rec.ids_in_state(TaskState::Success).await.unwrap();
    listed.sort();
    let mut want: Vec<String> = hostile.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(listed, want, "every id comes back byte for byte");
    // Ids are fields of the layout's keys, never part of a key's name: the only keys
    // are those of the two namespaces' layouts.
    let keys = server.cli(&["--raw", "KEYS", "*"]);
    let layout_key = |key: &str| {
        ["tenant", "other"].iter().any(|ns| {
            let Some(rest) = key.strip_prefix(&format!("atr:{{{ns}.")) else {
                return false;
            };
            rest == "meta}"
                || rest.split_once("}:").is_some_and(|(group, suffix)| {
                    group.bytes().all(|b| b.is_ascii_digit())
                        && [
                            "work", "lease", "succ", "fail", "rvk", "seq", "fexp", "sexp",
                        ]
                        .contains(&suffix)
                })
        })
    };
    let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
    assert!(!keys.is_empty());
    for key in keys {
        assert!(layout_key(key), "a key outside the layouts: {key:?}");
    }
    // The other namespace's counts are untouched.
    assert_eq!(other.counts().await.unwrap().total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_functions_were_flushed_gets_them_back() {
    let server = RedisServer::start();
    let rec: RedisRecorder<u64> = recorder(&server, "flush", Duration::from_secs(30)).await;
    rec.launch_block(1, ok()).await.unwrap();
    assert!(server.cli(&["FUNCTION", "LIST"]).contains("atr_"));
    server.cli(&["FUNCTION", "FLUSH"]);
    assert!(!server.cli(&["FUNCTION", "LIST"]).contains("atr_"));
    // The first call that misses the library loads it and is made again.
    assert_eq!(rec.query_task_state(&1).await.unwrap(), TaskState::Success);
    server.cli(&["FUNCTION", "FLUSH"]);
    assert_eq!(rec.counts().await.unwrap().success, 1);
    server.cli(&["FUNCTION", "FLUSH"]);
    rec.launch_block(2, ok()).await.unwrap();
    assert_eq!(rec.query_task_state(&2).await.unwrap(), TaskState::Success);
}
