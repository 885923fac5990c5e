//! Progress: a running task reports a number through its context; `status` shows the
//! last one (from any clone or replica) while it runs, subscribers receive it as a
//! `Working` to `Working` transition, and a chatty task is rate-limited. Each rule runs
//! on both stores.

#[path = "support/backend.rs"]
mod backend;
mod common;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::time::Duration;

use async_tasks_recorder::{TaskContext, TaskPhase, TaskState, Transition, TransitionStream};
use backend::{Kind, Rec, Tune};
use common::*;
use tokio::sync::oneshot;

each_store!(
    the_last_report_is_read_by_a_replica,
    subscribers_receive_progress_events,
    a_chatty_task_is_rate_limited,
);

/// The progress events that arrive within `quiet` of each other, until none does.
async fn progress_events(events: &mut TransitionStream<u64>, quiet: Duration) -> Vec<u64> {
    let mut seen = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(quiet, events.next()).await {
        if let Ok(Transition {
            from: TaskPhase::Working,
            to: TaskPhase::Working,
            progress: Some(value),
            ..
        }) = event
        {
            seen.push(value);
        }
    }
    seen
}

async fn the_last_report_is_read_by_a_replica(kind: Kind) {
    let tune = Tune {
        progress_interval: Some(Duration::from_millis(10)),
        ..Tune::default()
    };
    let rec = Rec::tuned(kind, &tune).await;
    let replica = rec.replica().await;
    let (release, released) = oneshot::channel::<()>();
    let (reported, said) = oneshot::channel::<()>();
    let ended = rec
        .launch_fenced_with(1, move |ctx: TaskContext| async move {
            for done in [10, 20, 30] {
                ctx.progress(done);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = reported.send(());
            released.await.map_err(|_| ())
        })
        .await
        .expect("launched");
    bounded("the reports", said).await.unwrap();
    // In memory at once; on Redis within an interval.
    bounded("the last report to show", async {
        while replica.status(1).await.progress != Some(30) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(replica.status(1).await.phase, TaskPhase::Working);
    release.send(()).unwrap();
    bounded("the task", ended).await.expect("it succeeded");
    let done = replica.status(1).await;
    assert_eq!((done.phase, done.progress), (TaskPhase::Success, None));
    // A new attempt starts without the old one's progress.
    assert_eq!(rec.status(2).await.progress, None);
}

async fn subscribers_receive_progress_events(kind: Kind) {
    let rec = Rec::new(kind).await;
    let mut events = rec.subscribe();
    let (release, released) = oneshot::channel::<()>();
    let ended = rec
        .launch_fenced_with(3, move |ctx: TaskContext| async move {
            ctx.progress(64);
            released.await.map_err(|_| ())
        })
        .await
        .expect("launched");
    let seen = progress_events(&mut events, Duration::from_millis(500)).await;
    assert_eq!(seen, [64], "one report, one event");
    release.send(()).unwrap();
    bounded("the task", ended).await.expect("it succeeded");
    rec.until_state(3, TaskState::Success).await;
}

async fn a_chatty_task_is_rate_limited(kind: Kind) {
    // An interval longer than the test: only the first report may pass.
    let tune = Tune {
        progress_interval: Some(Duration::from_secs(3600)),
        ..Tune::default()
    };
    let rec = Rec::tuned(kind, &tune).await;
    let mut events = rec.subscribe();
    let (release, released) = oneshot::channel::<()>();
    let (reported, said) = oneshot::channel::<()>();
    let ended = rec
        .launch_fenced_with(4, move |ctx: TaskContext| async move {
            for done in 1..=10_000 {
                ctx.progress(done);
                if done % 1000 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            let _ = reported.send(());
            released.await.map_err(|_| ())
        })
        .await
        .expect("launched");
    bounded("the reports", said).await.unwrap();
    let seen = progress_events(&mut events, Duration::from_millis(500)).await;
    assert_eq!(seen.len(), 1, "one event per interval: {seen:?}");
    let shown = rec.status(4).await.progress.expect("a progress");
    match kind {
        // In memory, status reads the last report whatever the interval.
        Kind::Memory => assert_eq!(shown, 10_000),
        // On Redis, the one value written.
        #[cfg(feature = "redis")]
        Kind::Redis => assert_eq!(shown, seen[0]),
    }
    release.send(()).unwrap();
    bounded("the task", ended).await.expect("it succeeded");
}
