//! Faults with real processes: replicas (this test binary started again as workers,
//! `tests/support/worker.rs`) on one Redis server that the test starts, killed with
//! SIGKILL, paused with SIGSTOP past their lease, or racing; and the server itself
//! killed and restarted on its data. Side effects go to a fenced store in the test
//! process, which accepts a write only with a token larger than the last it accepted.
#![cfg(feature = "redis")]

mod common;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/worker.rs"]
mod worker;

use std::time::{Duration, Instant};

use async_tasks_recorder::redis::RedisRecorder;
use async_tasks_recorder::{FailureReason, LaunchOptions, TaskPhase, TaskState};
use common::{bounded, until_answered};
use redis_server::RedisServer;
use worker::{Fence, Worker};

#[test]
#[ignore = "the entry point of the worker processes that the other tests start"]
fn worker_entry() {
    worker::entry();
}

/// The lease of the tests where a worker dies or pauses.
const LEASE: Duration = Duration::from_millis(1000);

/// How long after a holder stopped renewing its lease has surely ended: the lease, and
/// a little for the server's and the test's clocks to be read apart.
const EXPIRED: Duration = Duration::from_millis(1300);

async fn recorder(server: &RedisServer, namespace: &str, lease: Duration) -> RedisRecorder<u64> {
    bounded(
        "build",
        RedisRecorder::builder(server.url())
            .namespace(namespace)
            .lease(lease)
            .build(),
    )
    .await
    .expect("the recorder builds on the test server")
}

/// The token in a `started <id> <token>` message.
fn token_of(message: &str) -> u64 {
    message
        .rsplit(' ')
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no token in {message:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_task_reads_worker_lost_and_the_id_relaunches_elsewhere() {
    let server = RedisServer::start();
    let fence = Fence::start();
    let mut a = Worker::start("a", &server.url(), "kill", LEASE, Some(fence.addr()));
    let b = recorder(&server, "kill", LEASE).await;

    a.send("launch 1 60000 ok");
    let first = token_of(&a.expect_prefix("started 1 "));
    a.expect_prefix("launched 1");
    assert_eq!(b.query_task_state(&1).await.unwrap(), TaskState::Working);
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { b.wait(&1).await }
    });

    a.kill9();
    let killed = Instant::now();
    // A waiter in another process wakes with the worker-lost failure.
    let settled = bounded("the waiter", waiter).await.unwrap().unwrap();
    assert_eq!(settled.phase, TaskPhase::Failed);
    assert_eq!(settled.failure, Some(FailureReason::WorkerLost));
    // Every read after the lease's end says so, whether or not anything swept.
    let left = EXPIRED.saturating_sub(killed.elapsed());
    tokio::time::sleep(left).await;
    let status = b.status(&1).await.unwrap();
    assert_eq!(status.phase, TaskPhase::Failed);
    assert_eq!(status.last_failure, Some(FailureReason::WorkerLost));

    // Another process relaunches it, with a larger token, and succeeds.
    let mut c = Worker::start("c", &server.url(), "kill", LEASE, Some(fence.addr()));
    c.send("launch 1 10 ok");
    let second = token_of(&c.expect_prefix("started 1 "));
    assert!(second > first, "token {second} after {first}");
    assert_eq!(c.expect_prefix("ended 1 "), "ended 1 ok");
    assert_eq!(b.query_task_state(&1).await.unwrap(), TaskState::Success);
    let writes = fence.accepted(1);
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].token, second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_attempts_reads_worker_lost_and_the_id_relaunches() {
    let server = RedisServer::start();
    let mut a = Worker::start("a", &server.url(), "backoff", LEASE, None);
    let b = recorder(&server, "backoff", LEASE).await;

    // The first attempt fails at once; the launch waits an hour for the second, and
    // another process reads the wait.
    a.send("retry 4");
    a.expect_prefix("attempt 4 1");
    a.expect_prefix("launched 4");
    let waiting = bounded("the retry's wait", async {
        loop {
            let status = b.status(&4).await.unwrap();
            if status.retry_at.is_some() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(waiting.phase, TaskPhase::Working);
    assert_eq!(waiting.attempts, Some(2));
    assert_eq!(waiting.last_failure, Some(FailureReason::Error));
    // The holder renews its lease through the wait.
    tokio::time::sleep(EXPIRED).await;
    let still = b.status(&4).await.unwrap();
    assert_eq!(still.phase, TaskPhase::Working, "{still:?}");
    assert!(still.retry_at.is_some(), "{still:?}");

    // Killed in the wait, the holder's lease ends: the id is WorkerLost, not stuck.
    a.kill9();
    let killed = Instant::now();
    let settled = bounded("a wait", b.wait(&4)).await.unwrap();
    assert_eq!(settled.phase, TaskPhase::Failed);
    assert_eq!(settled.failure, Some(FailureReason::WorkerLost));
    tokio::time::sleep(EXPIRED.saturating_sub(killed.elapsed())).await;
    let lost = b.status(&4).await.unwrap();
    assert_eq!(lost.phase, TaskPhase::Failed);
    assert_eq!(lost.last_failure, Some(FailureReason::WorkerLost));
    assert_eq!(lost.retry_at, None);

    // Another process launches it again and succeeds.
    bounded("a relaunch", b.launch_block(4, async { Ok::<(), ()>(()) }))
        .await
        .unwrap();
    assert_eq!(b.query_task_state(&4).await.unwrap(), TaskState::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_loses_its_lease_its_finish_and_its_write() {
    let server = RedisServer::start();
    let fence = Fence::start();
    let mut a = Worker::start("a", &server.url(), "pause", LEASE, Some(fence.addr()));
    let b = recorder(&server, "pause", LEASE).await;

    // The future sleeps past the lease, then writes with its token.
    a.send("launch 2 1500 ok");
    let stale = token_of(&a.expect_prefix("started 2 "));
    a.expect_prefix("launched 2");
    a.pause();
    let paused = Instant::now();
    tokio::time::sleep(EXPIRED).await;
    assert!(paused.elapsed() >= EXPIRED);
    let status = b.status(&2).await.unwrap();
    assert_eq!(status.phase, TaskPhase::Failed, "{status:?}");
    assert_eq!(status.last_failure, Some(FailureReason::WorkerLost));

    // This process relaunches it and succeeds, writing with its larger token.
    let fence_addr = fence.addr();
    let handle = b
        .launch_fenced(
            2,
            move |ctx| async move {
                let token = ctx.token();
                let wrote = tokio::task::spawn_blocking(move || {
                    worker::fence_write(fence_addr, 'W', 2, token)
                })
                .await
                .unwrap();
                if wrote {
                    Ok(token)
                } else {
                    Err(())
                }
            },
            LaunchOptions::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("relaunch refused: {e:?}"));
    let fresh = bounded("the relaunch", handle)
        .await
        .expect("the relaunch succeeds");
    assert!(fresh > stale);
    assert_eq!(b.query_task_state(&2).await.unwrap(), TaskState::Success);

    // Resumed, the paused worker is told it lost the task; its write, if it still
    // makes one, is refused by the fence; the record stays the successor's.
    a.resume();
    assert_eq!(a.expect_prefix("ended 2 "), "ended 2 lost");
    let writes = fence.accepted(2);
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].token, fresh);
    assert!(fence
        .writes()
        .iter()
        .all(|w| w.token != stale || !w.accepted));
    let status = b.status(&2).await.unwrap();
    assert_eq!(status.phase, TaskPhase::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_and_restarted_keeps_what_it_acknowledged() {
    let mut server = RedisServer::start();
    let lease = Duration::from_secs(2);
    let mut a = Worker::start("a", &server.url(), "restart", lease, None);
    let b = recorder(&server, "restart", lease).await;

    for id in 0..20u64 {
        bounded(
            "launch_block",
            b.launch_block(id, async { Ok::<_, ()>(()) }),
        )
        .await
        .unwrap();
    }
    bounded(
        "launch_block",
        b.launch_block(20, async { Err::<(), _>(()) }),
    )
    .await
    .unwrap();
    // A task that runs across the restart, in another process.
    a.send("launch 100 1500 ok");
    a.expect_prefix("launched 100");

    server.kill9();
    server.restart();

    // Every transition acknowledged before the kill is there; the clients reconnect
    // by themselves, and the server kept the functions library with its data.
    for id in 0..20u64 {
        let state = until_answered("query", || b.query_task_state(&id)).await;
        assert_eq!(state, TaskState::Success, "id {id}");
    }
    let failed = until_answered("status", || b.status(&20)).await;
    assert_eq!(failed.phase, TaskPhase::Failed);
    assert_eq!(failed.last_failure, Some(FailureReason::Error));
    let counts = until_answered("counts", || b.counts()).await;
    assert_eq!((counts.success, counts.failed), (20, 1), "{counts:?}");

    // The task that ran meanwhile finished recorded, or expired: nothing is stuck.
    let settled = until_answered("wait", || b.wait(&100)).await;
    match (settled.phase, settled.failure) {
        (TaskPhase::Success, None) => assert_eq!(a.expect_prefix("ended 100 "), "ended 100 ok"),
        (TaskPhase::Failed, Some(FailureReason::WorkerLost)) => {}
        other => panic!("id 100 settled as {other:?}"),
    }
    // New launches work, in both processes.
    bounded(
        "launch_block",
        b.launch_block(21, async { Ok::<_, ()>(()) }),
    )
    .await
    .unwrap();
    assert_eq!(b.query_task_state(&21).await.unwrap(), TaskState::Success);
    a.send("launch 22 0 ok");
    assert_eq!(a.expect_prefix("ended 22 "), "ended 22 ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_racing_over_shared_ids_succeed_at_most_once_between_revokes() {
    const PROCESSES: usize = 4;
    const LAUNCHES: u64 = 10_000;
    const IDS: u64 = 1_000;
    let server = RedisServer::start();
    let fence = Fence::start();
    let lease = Duration::from_secs(5);
    let mut workers: Vec<Worker> = (0..PROCESSES)
        .map(|i| {
            let name = format!("r{i}");
            Worker::start(&name, &server.url(), "race", lease, Some(fence.addr()))
        })
        .collect();
    for (i, w) in workers.iter_mut().enumerate() {
        w.send(&format!("race {LAUNCHES} {IDS} {}", 17 + i));
    }
    let (mut launched, mut succeeded, mut revoked) = (0, 0, 0);
    for w in &mut workers {
        let report = w.expect_within(Duration::from_secs(120), |m| m.starts_with("raced "));
        let report = report.unwrap_or_else(|| panic!("worker {} did not finish", w.name()));
        let n: Vec<u64> = report
            .split(' ')
            .skip(1)
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(n[3], 0, "worker {}: store errors: {report}", w.name());
        launched += n[0];
        succeeded += n[1];
        revoked += n[2];
    }
    assert!(
        launched > 0 && succeeded > 0 && revoked > 0,
        "{launched} {succeeded} {revoked}"
    );

    // Per id, in the order the fence decided: never two accepted success writes
    // without a revoke between them.
    let writes = fence.writes();
    let mut last: std::collections::HashMap<u64, char> = Default::default();
    for w in writes.iter().filter(|w| w.accepted) {
        let before = last.insert(w.id, w.kind);
        assert!(
            !(w.kind == 'W' && before == Some('W')),
            "id {} succeeded twice without a revoke: {:?}",
            w.id,
            writes.iter().filter(|x| x.id == w.id).collect::<Vec<_>>()
        );
    }
    // Every success was the fence's accepted write, and no write was refused (no
    // lease was lost in this run).
    let accepted_w = writes
        .iter()
        .filter(|w| w.kind == 'W' && w.accepted)
        .count() as u64;
    assert_eq!(accepted_w, succeeded);
    assert!(
        writes.iter().all(|w| w.accepted),
        "a refused write without a pause"
    );

    // The counts at the end equal the records.
    let b = recorder(&server, "race", lease).await;
    let counts = b.counts().await.unwrap();
    let mut by_state = std::collections::HashMap::new();
    for id in 0..IDS {
        *by_state
            .entry(b.query_task_state(&id).await.unwrap())
            .or_insert(0) += 1;
    }
    let get = |s| by_state.get(&s).copied().unwrap_or(0);
    assert_eq!(counts.working, 0);
    assert_eq!(counts.success, get(TaskState::Success));
    assert_eq!(counts.failed, get(TaskState::Failed));
    // Successes net of revokes are the ids that read Success.
    assert_eq!(succeeded - revoked, get(TaskState::Success) as u64);
}
