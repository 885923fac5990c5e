//! Retention on the Redis recorder, against a real server: TTLs of failures and
//! successes (tombstones and forgetting) and the cap on finished records.
//!
//! Expiry follows the server's clock, so these tests let real time pass: they sleep
//! past a time to live and then check that the record reads as expired, which holds
//! however slow the machine is. They never check that something has not expired yet
//! by time alone, except through a lower bound (a record never expires early), which
//! a slow machine can only make easier to meet.
#![cfg(feature = "redis")]

mod common;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use async_tasks_recorder::redis::{RedisBuilder, RedisRecorder};
use async_tasks_recorder::{FailureReason, StoreError, SuccessExpiry, TaskPhase, TaskState};
use common::{bounded, err, ok};
use redis_server::RedisServer;

const TTL: Duration = Duration::from_millis(300);
/// Past a TTL by the server's clock: its milliseconds are rounded, and the two clocks
/// of one machine may differ by a little.
const PAST: Duration = Duration::from_millis(20);

fn builder(server: &RedisServer, namespace: &str) -> RedisBuilder<u64> {
    RedisRecorder::builder(server.url()).namespace(namespace)
}

async fn build(builder: RedisBuilder<u64>) -> RedisRecorder<u64> {
    bounded("build", builder.build()).await.expect("builds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_forgotten_after_their_ttl_and_never_before() {
    let server = RedisServer::start();
    let rec = build(builder(&server, "fttl").failed_ttl(TTL)).await;
    let mut events = rec.subscribe();
    rec.launch_block(1, err()).await.unwrap();
    let failed_by = Instant::now();
    // Read until it is gone: it must not be gone before the TTL.
    let gone_at = bounded("the failure to expire", async {
        loop {
            let status = rec.status(&1).await.unwrap();
            if status.phase == TaskPhase::NotFound {
                return Instant::now();
            }
            assert_eq!(status.phase, TaskPhase::Failed);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        gone_at - failed_by + PAST >= TTL,
        "expired after {:?}, before its TTL",
        gone_at - failed_by
    );
    assert_eq!(rec.counts().await.unwrap().failed, 0);
    // Forgetting is a transition; the id launches afresh.
    let forgotten = bounded("the forget event", async {
        loop {
            let event = events.next().await.unwrap().unwrap();
            if event.to == TaskPhase::NotFound {
                return event;
            }
        }
    })
    .await;
    assert_eq!((forgotten.id, forgotten.from), (1, TaskPhase::Failed));
    rec.launch_block(1, ok()).await.unwrap();
    let status = rec.status(&1).await.unwrap();
    assert_eq!(
        (status.phase, status.attempts),
        (TaskPhase::Success, Some(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_successes_leave_tombstones_that_still_refuse_launches() {
    let server = RedisServer::start();
    let rec = build(builder(&server, "tomb").success_ttl(TTL)).await;
    rec.launch_block(1, ok()).await.unwrap();
    assert_eq!(rec.status(&1).await.unwrap().attempts, Some(1));
    tokio::time::sleep(TTL + PAST).await;
    // Read as a tombstone before any script made the move, and after.
    for _ in 0..2 {
        let status = rec.status(&1).await.unwrap();
        assert_eq!(status.phase, TaskPhase::Success);
        assert_eq!((status.attempts, status.since), (None, None), "no details");
        assert!(matches!(
            rec.launch(1, ok()).await,
            Err(async_tasks_recorder::LaunchError::Refused(
                TaskState::Success,
                _
            ))
        ));
    }
    assert_eq!(rec.counts().await.unwrap().success, 1);
    // A tombstone can be revoked.
    rec.revoke_task_block(1, ok()).await.unwrap();
    assert_eq!(rec.query_task_state(&1).await.unwrap(), TaskState::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_successes_may_run_again() {
    let server = RedisServer::start();
    let rec = build(
        builder(&server, "forget")
            .success_ttl(TTL)
            .success_expiry(SuccessExpiry::Forget),
    )
    .await;
    rec.launch_block(1, ok()).await.unwrap();
    tokio::time::sleep(TTL + PAST).await;
    assert_eq!(rec.query_task_state(&1).await.unwrap(), TaskState::NotFound);
    assert_eq!(rec.counts().await.unwrap().total(), 0);
    rec.launch_block(1, ok()).await.unwrap();
    assert_eq!(rec.status(&1).await.unwrap().attempts, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_worker_s_failure_expires_too() {
    let server = RedisServer::start();
    let lease = async_tasks_recorder::redis::MIN_LEASE;
    let rec = build(builder(&server, "lost").failed_ttl(TTL).lease(lease)).await;
    // A task whose process stops renewing: its runtime is gone.
    let url = server.url();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let other = RedisRecorder::<u64>::builder(url)
                .namespace("lost")
                .failed_ttl(TTL)
                .lease(lease)
                .build()
                .await
                .unwrap();
            other
                .launch(1, std::future::pending::<Result<(), ()>>())
                .await
                .unwrap();
        });
        rt.shutdown_background();
    })
    .join()
    .unwrap();
    let settled = bounded("the lease's end", rec.wait(&1)).await.unwrap();
    assert_eq!(settled.failure, Some(FailureReason::WorkerLost));
    tokio::time::sleep(TTL + PAST).await;
    assert_eq!(rec.query_task_state(&1).await.unwrap(), TaskState::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_keeps_the_newest_finished_records() {
    let server = RedisServer::start();
    // One slot group, so that the cap is exactly 3.
    let rec = build(builder(&server, "cap").groups(1).max_finished(3)).await;
    for id in 0..10 {
        let task = async move {
            if id % 3 == 0 {
                Err(())
            } else {
                Ok(())
            }
        };
        rec.launch_block(id, task).await.unwrap();
    }
    let mut detailed = Vec::new();
    let mut tombstones = 0;
    for id in 0..10 {
        let status = rec.status(&id).await.unwrap();
        match (status.phase, status.attempts) {
            (TaskPhase::Success | TaskPhase::Failed, Some(_)) => detailed.push(id),
            (TaskPhase::Success, None) => tombstones += 1,
            (TaskPhase::NotFound, _) => assert_eq!(id % 3, 0, "only failures are forgotten"),
            other => panic!("{id}: {other:?}"),
        }
    }
    assert_eq!(detailed.len(), 3, "the cap: {detailed:?}");
    // The queues keep finishing order exactly (whatever the clock's resolution): the
    // newest three are the last three.
    assert_eq!(detailed, [7, 8, 9]);
    assert_eq!(
        tombstones, 4,
        "the older successes (1, 2, 4, 5) are tombstones"
    );
    let counts = rec.counts().await.unwrap();
    assert_eq!((counts.success, counts.failed), (6, 1), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recorder_of_a_namespace_keeps_records_alike() {
    let server = RedisServer::start();
    let _first = build(builder(&server, "same").failed_ttl(TTL)).await;
    let other = builder(&server, "same").failed_ttl(TTL * 2).build().await;
    assert!(
        matches!(other, Err(StoreError::Misconfigured(_))),
        "{other:?}"
    );
    let none = builder(&server, "same").build().await;
    assert!(
        matches!(none, Err(StoreError::Misconfigured(_))),
        "{none:?}"
    );
    let same = builder(&server, "same").failed_ttl(TTL).build().await;
    assert!(same.is_ok());
}
