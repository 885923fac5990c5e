//! Replicas on one Redis server that the test starts: two recorders of one namespace,
//! with connections of their own, standing for two processes. Racing launches of an id
//! run it once, and waits, status reads, cancels and transitions made on one are seen
//! on the other.
#![cfg(feature = "redis")]

mod common;
#[path = "support/redis_recorder.rs"]
mod redis_recorder;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_tasks_recorder::redis::RedisRecorder;
use async_tasks_recorder::{
    FailureReason, LaunchError, LaunchOptions, TaskError, TaskPhase, TaskState,
};
use common::{bounded, ok};
use redis_recorder::recorder;
use redis_server::RedisServer;

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
