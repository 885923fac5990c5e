//! One process's life cycle on the Redis store, against a server the test starts:
//! launches and at most one success, failures that run again, counts, listings and
//! revokes; waits, timeouts and panics; and what acts on this process's futures alone:
//! `max_running`, `close` and `drain` (also of a launch granted while it runs).
#![cfg(feature = "redis")]

mod common;
#[path = "support/redis_recorder.rs"]
mod redis_recorder;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_tasks_recorder::redis::{RedisRecorder, RevokeError};
use async_tasks_recorder::{
    FailureReason, LaunchError, LaunchOptions, TaskError, TaskPhase, TaskState,
};
use common::{bounded, ok};
use redis_recorder::recorder;
use redis_server::RedisServer;

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
