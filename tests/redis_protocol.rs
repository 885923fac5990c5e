//! How the Redis recorder talks to its server, one the test starts: one round trip per
//! launch, finish and query; a functions library flushed from the server loaded again;
//! and the subscription, which stays up across its pings and whose loss wakes the
//! waiters and tells the subscribers.
#![cfg(feature = "redis")]

mod common;
#[path = "support/redis_recorder.rs"]
mod redis_recorder;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::future::Future;
use std::time::Duration;

use async_tasks_recorder::redis::RedisRecorder;
use async_tasks_recorder::{TaskPhase, TaskState};
use common::{bounded, ok};
use redis_recorder::recorder;
use redis_server::RedisServer;

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
