//! Graceful shutdown: `close` refuses new launches and lets the rest run, `wait_idle`
//! waits for everything, and `drain` closes, waits, and cancels what is left after
//! its grace period (queued tasks too); launches racing `close` lose nothing, and a
//! `drain` dropped after its first poll has closed the recorder.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_tasks_recorder::{
    AsyncTasksRecorder, FailureReason, LaunchError, LaunchOptions, TaskPhase, TaskState,
};
use common::*;

on_both_runtimes!(
    close_refuses_launches_and_keeps_the_rest_working,
    close_then_wait_idle_leaves_nothing_running,
    drain_without_grace_waits_for_everything,
);

async fn close_refuses_launches_and_keeps_the_rest_working() {
    let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::new();
    rec.launch_block(1, async { Ok::<(), ()>(()) })
        .await
        .launched();
    rec.launch_block(2, async { Err::<(), ()>(()) })
        .await
        .launched();
    let (g, running) = gate();
    rec.launch(3, running).await.launched();

    let other = rec.clone();
    assert!(!other.is_closed());
    rec.close();
    assert!(other.is_closed() && rec.is_closed());
    rec.close(); // idempotent

    // The 2.x methods: NotFound / Failed only come back from a closed recorder.
    match other.launch(4, async { Ok::<(), ()>(()) }).await {
        Err((state, _fut)) => assert_eq!(state, TaskState::NotFound),
        Ok(()) => panic!("closed"),
    }
    match other.launch_block(2, async { Ok::<(), ()>(()) }).await {
        Err((state, _fut)) => assert_eq!(state, TaskState::Failed),
        Ok(()) => panic!("closed"),
    }
    // Ids that may not launch anyway report their state, as before.
    match other.launch(3, async { Ok::<(), ()>(()) }).await {
        Err((state, _fut)) => assert_eq!(state, TaskState::Working),
        Ok(()) => panic!("working"),
    }
    let refused = other
        .launch_with(4, async { Ok::<u8, ()>(1) }, LaunchOptions::new())
        .await;
    match refused {
        Err(e @ LaunchError::Closed(_)) => {
            assert!(e.is_closed());
            assert_eq!(e.state(), None);
        }
        _ => panic!("closed"),
    }
    let refused = other
        .launch_with(1, async { Ok::<u8, ()>(1) }, LaunchOptions::new())
        .await;
    assert!(matches!(
        refused,
        Err(LaunchError::Refused(TaskState::Success, _))
    ));

    // Nothing changed, and everything else still works: the running task finishes,
    // queries answer, revokes run.
    assert_eq!(rec.query_task_state(&4).await, TaskState::NotFound);
    assert_eq!(rec.query_task_state(&2).await, TaskState::Failed);
    g.release.send(Ok(0)).unwrap();
    assert_eq!(
        bounded("task 3", rec.wait(&3)).await.phase,
        TaskPhase::Success
    );
    assert!(rec
        .revoke_task_block(1, async { Ok::<(), ()>(()) })
        .await
        .is_ok());
    assert_eq!(rec.query_task_state(&1).await, TaskState::NotFound);
    assert_eq!(rec.counts().await.total(), 2);
}

async fn close_then_wait_idle_leaves_nothing_running() {
    let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::new();
    let mut gates = Vec::new();
    for id in 0..50 {
        let (g, fut) = gate();
        rec.launch(id, fut).await.launched();
        gates.push(g);
    }
    // A revoke is running too.
    rec.launch_block(100, async { Ok::<(), ()>(()) })
        .await
        .launched();
    let (revoke_gate, revoke) = gate();
    assert!(rec.revoke_task(100, revoke).await.is_ok());

    rec.close();
    let idle = tokio::spawn({
        let rec = rec.clone();
        async move { rec.wait_idle().await }
    });
    for (i, g) in gates.into_iter().enumerate() {
        tokio::task::yield_now().await;
        assert!(!idle.is_finished(), "idle with {} tasks left", 50 - i);
        let _ = g.release.send(if i % 2 == 0 { Ok(0) } else { Err("no") });
    }
    tokio::task::yield_now().await;
    assert!(!idle.is_finished(), "idle while a revoke runs");
    revoke_gate.release.send(Ok(0)).unwrap();
    bounded("wait_idle", idle).await.unwrap();

    let counts = rec.counts().await;
    assert_eq!((counts.working, counts.revoking), (0, 0));
    assert_eq!((counts.success, counts.failed), (25, 25));
    // Idle already: resolves at once.
    bounded("wait_idle again", rec.wait_idle()).await;
}

async fn drain_without_grace_waits_for_everything() {
    let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    rec.launch(1, fut).await.launched();
    let drained = tokio::spawn({
        let rec = rec.clone();
        async move { rec.drain(None).await }
    });
    // Closed by the drain's first poll.
    bounded("closed", async {
        while !rec.is_closed() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(!drained.is_finished());
    g.release.send(Ok(0)).unwrap();
    assert_eq!(bounded("drain", drained).await.unwrap(), 0);
    assert_eq!(rec.query_task_state(&1).await, TaskState::Success);
}

/// Launches and `close` race on several threads: every launch that was accepted ran
/// and ended before `wait_idle` returned, and every refused one handed its future back
/// unstarted. Each round closes after a different number of launches, while the
/// launchers keep going until they are refused, so every round has both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_racing_launches_loses_nothing() {
    for round in 0..20usize {
        let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::new();
        let ran = Arc::new(AtomicUsize::new(0));
        let attempts = Arc::new(AtomicUsize::new(0));
        let launchers: Vec<_> = (0..4u64)
            .map(|t| {
                let rec = rec.clone();
                let ran = ran.clone();
                let attempts = attempts.clone();
                tokio::spawn(async move {
                    let (mut accepted, mut refused) = (0usize, 0usize);
                    // Launch new ids until refused three times (the close is
                    // permanent, so the launcher ends once it saw it).
                    for i in 0..1_000_000u64 {
                        let ran = ran.clone();
                        let job = async move {
                            tokio::task::yield_now().await;
                            ran.fetch_add(1, Ordering::SeqCst);
                            Ok::<(), ()>(())
                        };
                        match rec.launch(t * 10_000_000 + i, job).await {
                            Ok(()) => accepted += 1,
                            Err((state, _job)) => {
                                assert_eq!(state, TaskState::NotFound);
                                refused += 1;
                                if refused == 3 {
                                    break;
                                }
                            }
                        }
                        attempts.fetch_add(1, Ordering::SeqCst);
                        if i % 16 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    (accepted, refused)
                })
            })
            .collect();
        // Close after about `20 * round + 1` launches, while the launchers run.
        let threshold = 20 * round + 1;
        bounded("launches before the close", async {
            while attempts.load(Ordering::SeqCst) < threshold {
                tokio::task::yield_now().await;
            }
        })
        .await;
        rec.close();
        bounded("wait_idle", rec.wait_idle()).await;
        let after_idle = ran.load(Ordering::SeqCst);
        let mut accepted = 0;
        for l in launchers {
            let (a, r) = bounded("launcher", l).await.unwrap();
            assert_eq!(r, 3, "round {round}: a launcher stopped before the close");
            accepted += a;
        }
        assert!(accepted >= 1, "round {round}: nothing was accepted");
        // Launches that returned after `close` were all refused, so nothing ran after
        // the recorder went idle.
        assert_eq!(after_idle, accepted, "round {round}");
        assert_eq!(ran.load(Ordering::SeqCst), accepted);
        let counts = rec.counts().await;
        assert_eq!((counts.working, counts.success), (0, accepted));
    }
}

/// A grace period: what finishes in time finishes, the rest is cancelled (also a task
/// that would ignore cancellation if it were only asked politely), and the record says
/// so.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn drain_with_grace_cancels_the_rest() {
    let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::new();
    let quick = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<(), ()>(())
    };
    rec.launch(1, quick).await.launched();
    rec.launch(2, std::future::pending::<Result<(), ()>>())
        .await
        .launched();
    // Wakes up every second forever and never looks at any cancellation signal.
    let stubborn = async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        #[allow(unreachable_code)]
        Ok::<(), ()>(())
    };
    rec.launch(3, stubborn).await.launched();
    // A revoke that takes longer than the grace period is waited for, not cancelled.
    rec.launch_block(4, async { Ok::<(), ()>(()) })
        .await
        .launched();
    let slow_revoke = async {
        tokio::time::sleep(Duration::from_secs(20)).await;
        Ok::<(), ()>(())
    };
    assert!(rec.revoke_task(4, slow_revoke).await.is_ok());

    let start = tokio::time::Instant::now();
    let cancelled = bounded("drain", rec.drain(Some(Duration::from_secs(5)))).await;
    assert_eq!(cancelled, 2);
    assert!(start.elapsed() >= Duration::from_secs(20));
    assert_eq!(rec.query_task_state(&1).await, TaskState::Success);
    for id in [2, 3] {
        let status = rec.status(&id).await;
        assert_eq!(status.phase, TaskPhase::Failed);
        assert_eq!(status.last_failure, Some(FailureReason::Cancelled));
    }
    assert_eq!(rec.query_task_state(&4).await, TaskState::NotFound);
    let counts = rec.counts().await;
    assert_eq!((counts.working, counts.revoking), (0, 0));
}

/// A drain cancels tasks still waiting for a slot too.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn drain_cancels_queued_tasks() {
    let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::builder().max_running(2).build();
    for id in 0..10 {
        rec.launch(id, std::future::pending::<Result<(), ()>>())
            .await
            .launched();
    }
    let cancelled = bounded("drain", rec.drain(Some(Duration::from_secs(1)))).await;
    assert_eq!(cancelled, 10);
    let counts = rec.counts().await;
    assert_eq!((counts.working, counts.failed), (0, 10));
}

/// "The recorder is closed in the first poll": a `drain` dropped after it refuses later
/// launches, and tasks it did not cancel run on.
#[tokio::test(flavor = "current_thread")]
async fn a_drain_dropped_after_its_first_poll_has_closed_the_recorder() {
    let rec = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    rec.launch(1u64, fut).await.launched();
    let drain = after_one_poll(Box::pin(rec.drain(Some(Duration::from_secs(3600))))).await;
    drop(drain);
    assert!(rec.is_closed());
    assert!(rec.launch(2u64, ok()).await.is_err());
    // Not cancelled: the grace period never ran out.
    assert_eq!(rec.query_task_state(&1).await, TaskState::Working);
    g.release.send(Ok(1)).unwrap();
    let settled = bounded("the task to finish", rec.wait(&1)).await;
    assert_eq!(settled.phase, TaskPhase::Success);
}
