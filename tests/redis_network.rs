//! Cut, black-holed and half-delivered connections between a recorder and its server
//! (a TCP proxy on loopback, `tests/support/proxy.rs`), with a second recorder on a
//! direct connection standing for a healthy replica.
#![cfg(feature = "redis")]

mod common;
#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_tasks_recorder::redis::{RedisRecorder, RevokeError};
use async_tasks_recorder::{
    FailureReason, LaunchError, LaunchOptions, TaskError, TaskPhase, TaskState,
};
use common::timing::{Deadline, Mark, LOCAL};
use common::{bounded, until_answered, HANG};
use proxy::Proxy;
use redis_server::RedisServer;

/// The recorders' response and connect timeouts in these tests.
const TIMEOUT: Duration = Duration::from_millis(500);

/// The longest an operation may take to fail on a dead connection: a few timeouts
/// (a reconnection and a retry each cost one), with room for a slow machine. It is a
/// bound against hanging, not a measurement.
const FAILS_WITHIN: Duration = Duration::from_secs(10);

async fn build(url: String, namespace: &str, lease: Duration) -> RedisRecorder<u64> {
    bounded(
        "build",
        RedisRecorder::builder(url)
            .namespace(namespace)
            .lease(lease)
            .response_timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .build(),
    )
    .await
    .expect("the recorder builds")
}

/// Runs `op`, which must fail within [`FAILS_WITHIN`]; returns its error.
async fn fails<T: std::fmt::Debug, E>(
    what: &str,
    op: impl std::future::Future<Output = Result<T, E>>,
) -> E {
    let started = Instant::now();
    let out = tokio::time::timeout(FAILS_WITHIN, op)
        .await
        .unwrap_or_else(|_| panic!("{what} hung on a dead connection"));
    let took = started.elapsed();
    match out {
        Ok(v) => panic!("{what} answered {v:?} through a black hole"),
        Err(e) => {
            println!("{what} failed after {took:?}");
            e
        }
    }
}

/// A task that counts its runs in `ran`.
fn counted(ran: &Arc<AtomicUsize>) -> impl Future<Output = Result<(), ()>> + Send + 'static {
    let ran = ran.clone();
    async move {
        ran.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Runs `task` under `id` with `launch_block` once the store answers, retrying for at
/// most [`HANG`] while it cannot, and, with `while_working`, while an earlier attempt
/// of the id still holds its lease. Any other refusal fails the test.
async fn launch_until_accepted<F>(r: &RedisRecorder<u64>, id: u64, task: F, while_working: bool)
where
    F: Future<Output = Result<(), ()>> + Send + 'static,
{
    let deadline = Deadline::after(HANG);
    let mut task = Some(task);
    while let Some(t) = task.take() {
        match r.launch_block(id, t).await {
            Ok(()) => {}
            Err(LaunchError::Refused(TaskState::Working, t)) if while_working => task = Some(t),
            Err(LaunchError::Store(_, t)) => task = Some(t),
            Err(other) => panic!("launch of {id}: {other:?}"),
        }
        if task.is_some() {
            assert!(
                !deadline.passed(),
                "launch of {id}: not accepted in {HANG:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A server, a proxy to it, a recorder of `namespace` through the proxy (`r`) and
/// one straight to the server (`d`). Bind `_server` by name, so that the server lives
/// as long as the test.
struct Setup {
    r: RedisRecorder<u64>,
    d: RedisRecorder<u64>,
    proxy: Proxy,
    _server: RedisServer,
}

async fn behind_proxy(namespace: &str, lease: Duration) -> Setup {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    Setup {
        r: build(proxy.url(), namespace, lease).await,
        d: build(server.url(), namespace, lease).await,
        proxy,
        _server: server,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_fails_in_bounded_time_through_a_black_hole_and_works_after() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    let lease = Duration::from_secs(1);
    let r = build(proxy.url(), "hole", lease).await;
    bounded("launch_block", r.launch_block(1, async { Ok::<_, ()>(()) }))
        .await
        .unwrap();

    proxy.black_hole();
    fails("status", r.status(&1)).await;
    fails("query_task_state", r.query_task_state(&1)).await;
    fails("counts", r.counts()).await;
    fails("wait", r.wait(&1)).await;
    fails("cancel", r.cancel(&3)).await;
    fails("ids_in_state", r.ids_in_state(TaskState::Success)).await;
    let ran = Arc::new(AtomicUsize::new(0));
    let task = counted(&ran);
    let task = match fails("launch", r.launch(2, task)).await {
        LaunchError::Store(_, task) => task,
        other => panic!("launch: {other:?}"),
    };
    match fails("revoke", r.revoke_task_block(1, async { Ok::<_, ()>(()) })).await {
        RevokeError::Store(..) => {}
        other => panic!("revoke: {other:?}"),
    }
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "a refused launch ran its future"
    );

    proxy.heal();
    let state = until_answered("query", || r.query_task_state(&1)).await;
    assert_eq!(state, TaskState::Success, "id 1 is as it was");
    // The launch that failed may or may not have reached the server; either way the
    // future runs once: now, or after the recorded attempt's lease ran out.
    launch_until_accepted(&r, 2, task, true).await;
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert_eq!(r.query_task_state(&2).await.unwrap(), TaskState::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_whose_reply_was_lost_does_not_run_twice() {
    let lease = Duration::from_secs(1);
    let Setup {
        r,
        d,
        proxy,
        _server,
    } = behind_proxy("lost-reply", lease).await;
    let ran = Arc::new(AtomicUsize::new(0));
    let task = counted(&ran);

    proxy.drop_replies();
    let task = match fails("launch", r.launch(5, task)).await {
        LaunchError::Store(_, task) => task,
        other => panic!("launch: {other:?}"),
    };
    // The server recorded the launch; nobody runs it.
    assert_eq!(d.query_task_state(&5).await.unwrap(), TaskState::Working);
    proxy.heal();

    // A retry is refused while the recorded attempt's lease runs, and that attempt
    // then ends as lost; the retry after it runs the future, once.
    let settled = bounded("wait", d.wait(&5)).await.unwrap();
    assert_eq!(
        (settled.phase, settled.failure),
        (TaskPhase::Failed, Some(FailureReason::WorkerLost))
    );
    launch_until_accepted(&r, 5, task, false).await;
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    let status = d.status(&5).await.unwrap();
    assert_eq!(status.phase, TaskPhase::Success);
    assert_eq!(status.attempts, Some(2));
}

/// Marks when it is dropped.
struct DropClock(Mark<Instant>);

impl Drop for DropClock {
    fn drop(&mut self) {
        self.0.set();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_renew_stops_its_future_before_its_lease_ends() {
    let lease = Duration::from_secs(3);
    let Setup {
        r,
        d,
        proxy,
        _server,
    } = behind_proxy("renew", lease).await;
    let dropped = LOCAL.mark();
    let clock = DropClock(dropped.clone());
    let handle = r
        .launch_with(
            7,
            async move {
                let _clock = clock;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, ()>(())
            },
            LaunchOptions::new(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.black_hole();

    // The healthy replica polls until the lease has ended; by then the cut-off worker
    // has stopped its future.
    let deadline = Deadline::after(HANG);
    let status = loop {
        let status = d.status(&7).await.unwrap();
        if status.phase != TaskPhase::Working {
            break status;
        }
        assert!(!deadline.passed(), "the lease never ended");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let seen_failed = LOCAL.now();
    assert_eq!(status.phase, TaskPhase::Failed);
    assert_eq!(status.last_failure, Some(FailureReason::WorkerLost));
    let stopped = dropped
        .get()
        .expect("the future was still running when its lease ended");
    assert!(stopped <= seen_failed);
    match bounded("the handle", handle).await {
        Err(TaskError::Lost) => {}
        other => panic!("the handle: {other:?}"),
    }
    proxy.heal();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_wakes_after_its_connection_comes_back() {
    let lease = Duration::from_secs(30);
    let Setup {
        r,
        d,
        proxy,
        _server,
    } = behind_proxy("wake", lease).await;
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    d.launch(9, async move { released.await.map_err(|_| ()) })
        .await
        .unwrap();
    let waiter = tokio::spawn({
        let r = r.clone();
        async move { r.wait(&9).await }
    });
    // Registered and read Working before the black hole.
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.black_hole();
    release.send(()).unwrap();
    let settled = bounded("the direct wait", d.wait(&9)).await.unwrap();
    assert_eq!(settled.phase, TaskPhase::Success);
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.heal();
    let woken = bounded("the waiter behind the proxy", waiter)
        .await
        .unwrap()
        .expect("the waiter reads once the connection is back");
    assert_eq!(woken.phase, TaskPhase::Success);
}
