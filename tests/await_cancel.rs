//! Waiting for ids, task outputs through handles, detailed status, cancellation,
//! timeouts and transition events.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_tasks_recorder::{
    AsyncTasksRecorder, FailureReason, LaunchError, LaunchOptions, Missed, TaskError, TaskPhase,
    TaskState,
};
use common::*;

on_both_runtimes!(
    wait_on_an_id_launched_by_another_clone,
    many_waiters_on_one_id_are_all_woken,
    a_dropped_waiter_changes_nothing,
    wait_resolves_at_once_for_final_ids,
    wait_for_a_revoke,
    wait_reports_failures_with_their_reason,
    handle_delivers_output_error_and_panic,
    dropping_the_handle_does_not_cancel,
    cancel_a_task_that_ignores_cancellation,
    cancel_a_launch_block_caller,
    cancel_of_a_non_working_id_is_false,
    cancel_after_completion_is_false,
    status_counts_attempts_and_reasons,
    events_follow_transitions_in_order,
    a_slow_subscriber_is_told_what_it_missed,
);

async fn wait_on_an_id_launched_by_another_clone() {
    let rec = AsyncTasksRecorder::new();
    let other = rec.clone();
    let (g, fut) = gate();
    other.launch("a".to_string(), fut).await.launched();
    let waiter = tokio::spawn({
        let rec = rec.clone();
        async move { rec.wait("a").await }
    });
    // The waiter is registered or not yet: either way it must see the end.
    tokio::task::yield_now().await;
    g.release.send(Ok(1)).unwrap();
    let settled = bounded("waiter", waiter).await.unwrap();
    assert_eq!(settled.phase, TaskPhase::Success);
    assert_eq!(settled.state(), TaskState::Success);
    assert_eq!(rec.query_task_state("a").await, TaskState::Success);
}

async fn many_waiters_on_one_id_are_all_woken() {
    let rec = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    rec.launch(1u64, fut).await.launched();
    let mut waiters = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let rec = rec.clone();
        waiters.spawn(async move { rec.wait(&1).await });
    }
    // Let some of them register before the end and the others race with it.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    g.release.send(Err("no")).unwrap();
    let mut woken = 0;
    bounded("all waiters", async {
        while let Some(r) = waiters.join_next().await {
            let s = r.unwrap();
            assert_eq!(s.phase, TaskPhase::Failed);
            assert_eq!(s.failure, Some(FailureReason::Error));
            woken += 1;
        }
    })
    .await;
    assert_eq!(woken, 200);
}

async fn a_dropped_waiter_changes_nothing() {
    let rec = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    rec.launch(1u64, fut).await.launched();
    // Registered, then dropped by the zero timeout.
    for _ in 0..5 {
        assert!(tokio::time::timeout(Duration::ZERO, rec.wait(&1))
            .await
            .is_err());
    }
    assert_eq!(rec.query_task_state(&1).await, TaskState::Working);
    let waiter = tokio::spawn({
        let rec = rec.clone();
        async move { rec.wait(&1).await }
    });
    tokio::task::yield_now().await;
    g.release.send(Ok(0)).unwrap();
    assert_eq!(
        bounded("waiter", waiter).await.unwrap().phase,
        TaskPhase::Success
    );
}

async fn wait_resolves_at_once_for_final_ids() {
    let rec = AsyncTasksRecorder::<u64>::new();
    assert_eq!(rec.wait(&1).await.phase, TaskPhase::NotFound);
    rec.launch_block(1, ok()).await.launched();
    assert_eq!(rec.wait(&1).await.phase, TaskPhase::Success);
    rec.launch_block(2, err()).await.launched();
    let s = rec.wait(&2).await;
    assert_eq!(
        (s.phase, s.failure),
        (TaskPhase::Failed, Some(FailureReason::Error))
    );
}

async fn wait_for_a_revoke() {
    let rec = AsyncTasksRecorder::new();
    rec.launch_block(1u64, ok()).await.launched();
    let (g, fut) = gate();
    rec.revoke_task(1u64, fut)
        .await
        .map_err(|e| e.to_string())
        .unwrap();
    assert_eq!(rec.status(&1).await.phase, TaskPhase::Revoking);
    let waiter = tokio::spawn({
        let rec = rec.clone();
        async move { rec.wait(&1).await }
    });
    tokio::task::yield_now().await;
    g.release.send(Ok(0)).unwrap();
    assert_eq!(
        bounded("waiter", waiter).await.unwrap().phase,
        TaskPhase::NotFound
    );
    // A failing revoke ends in Success.
    rec.launch_block(1u64, ok()).await.launched();
    let (g, fut) = gate();
    rec.revoke_task(1u64, fut)
        .await
        .map_err(|e| e.to_string())
        .unwrap();
    let waiter = tokio::spawn({
        let rec = rec.clone();
        async move { rec.wait(&1).await }
    });
    g.release.send(Err("disk")).unwrap();
    assert_eq!(
        bounded("waiter", waiter).await.unwrap().phase,
        TaskPhase::Success
    );
}

async fn wait_reports_failures_with_their_reason() {
    let rec = AsyncTasksRecorder::new();
    rec.launch(1u64, async {
        if true {
            panic!("task panics (expected by the test)");
        }
        Ok::<(), ()>(())
    })
    .await
    .launched();
    let s = bounded("wait", rec.wait(&1)).await;
    assert_eq!(
        (s.phase, s.failure),
        (TaskPhase::Failed, Some(FailureReason::Panicked))
    );
    assert_eq!(
        rec.status(&1).await.last_failure,
        Some(FailureReason::Panicked)
    );
}

async fn handle_delivers_output_error_and_panic() {
    let rec = AsyncTasksRecorder::new();
    let h = match rec
        .launch_with(1u64, async { Ok::<_, String>(7u8) }, LaunchOptions::new())
        .await
    {
        Ok(h) => h,
        Err(_) => panic!("refused"),
    };
    assert_eq!(bounded("handle", h).await.unwrap(), 7);
    // The record was final before the handle resolved.
    assert_eq!(rec.query_task_state(&1).await, TaskState::Success);

    let Ok(h) = rec
        .launch_with(
            2u64,
            async { Err::<u8, _>("bad".to_string()) },
            LaunchOptions::new(),
        )
        .await
    else {
        panic!("refused")
    };
    match bounded("handle", h).await {
        Err(e) => {
            assert_eq!(e.reason(), FailureReason::Error);
            assert_eq!(e.to_string(), "the task failed: bad");
            assert_eq!(e.into_failed().as_deref(), Some("bad"));
        }
        Ok(_) => panic!("expected the error"),
    }
    assert_eq!(rec.query_task_state(&2).await, TaskState::Failed);

    let Ok(h) = rec
        .launch_with(
            3u64,
            async {
                if true {
                    panic!("handle panic (expected by the test)");
                }
                Ok::<u8, String>(0)
            },
            LaunchOptions::new(),
        )
        .await
    else {
        panic!("refused")
    };
    match bounded("handle", h).await {
        Err(TaskError::Panicked(payload)) => {
            assert_eq!(
                payload.message().as_deref(),
                Some("handle panic (expected by the test)")
            );
            let inner = payload.into_inner();
            assert_eq!(
                inner.downcast_ref::<&str>(),
                Some(&"handle panic (expected by the test)")
            );
        }
        other => panic!("expected a panic, got {:?}", other.map_err(|e| e.reason())),
    }
    let status = rec.status(&3).await;
    assert_eq!(status.phase, TaskPhase::Failed);
    assert_eq!(status.last_failure, Some(FailureReason::Panicked));

    // A refused launch_with hands the future back.
    match rec
        .launch_with(1u64, async { Ok::<u8, String>(1) }, LaunchOptions::new())
        .await
    {
        Err(LaunchError::Refused(state, _fut)) => assert_eq!(state, TaskState::Success),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a succeeded id must not run again"),
    }
}

async fn dropping_the_handle_does_not_cancel() {
    let rec = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    let Ok(h) = rec.launch_with(1u64, fut, LaunchOptions::new()).await else {
        panic!("refused")
    };
    drop(h);
    tokio::task::yield_now().await;
    assert_eq!(rec.query_task_state(&1).await, TaskState::Working);
    g.release.send(Ok(5)).unwrap();
    assert_eq!(
        bounded("wait", rec.wait(&1)).await.phase,
        TaskPhase::Success
    );
    assert!(!g.dropped_unfinished.load(Ordering::SeqCst));
}

async fn cancel_a_task_that_ignores_cancellation() {
    let rec = AsyncTasksRecorder::new();
    // A future that never looks at any cancellation signal.
    let (g, fut) = gate();
    let Ok(h) = rec.launch_with(1u64, fut, LaunchOptions::new()).await else {
        panic!("refused")
    };
    g.until_started().await;
    assert!(bounded("cancel", rec.cancel(&1)).await);
    assert!(g.dropped_unfinished.load(Ordering::SeqCst));
    let status = rec.status(&1).await;
    assert_eq!(status.phase, TaskPhase::Failed);
    assert_eq!(status.last_failure, Some(FailureReason::Cancelled));
    assert!(matches!(
        bounded("handle", h).await,
        Err(TaskError::Cancelled)
    ));
    // Launchable again.
    rec.launch(1u64, ok()).await.launched();
    assert_eq!(
        bounded("wait", rec.wait(&1)).await.phase,
        TaskPhase::Success
    );

    // Also a plain `launch` whose task never started running.
    let (_g, fut) = gate();
    rec.launch(2u64, fut).await.launched();
    assert!(bounded("cancel", rec.cancel(&2)).await);
    assert_eq!(
        rec.status(&2).await.last_failure,
        Some(FailureReason::Cancelled)
    );
}

async fn cancel_a_launch_block_caller() {
    let rec = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    let caller = tokio::spawn({
        let rec = rec.clone();
        async move { rec.launch_block(1u64, fut).await.is_ok() }
    });
    g.until_started().await;
    assert!(bounded("cancel", rec.cancel(&1)).await);
    // The future was dropped before the record said Failed.
    assert!(g.dropped_unfinished.load(Ordering::SeqCst));
    assert!(
        bounded("caller", caller).await.unwrap(),
        "launch_block returns Ok"
    );
    assert!(g.dropped_unfinished.load(Ordering::SeqCst));
    assert_eq!(
        rec.status(&1).await.last_failure,
        Some(FailureReason::Cancelled)
    );
}

async fn cancel_of_a_non_working_id_is_false() {
    let rec = AsyncTasksRecorder::new();
    assert!(!rec.cancel(&1u64).await);
    rec.launch_block(1u64, ok()).await.launched();
    assert!(!rec.cancel(&1).await);
    assert_eq!(rec.query_task_state(&1).await, TaskState::Success);
    rec.launch_block(2u64, err()).await.launched();
    assert!(!rec.cancel(&2).await);
    assert_eq!(
        rec.status(&2).await.last_failure,
        Some(FailureReason::Error)
    );
}

async fn cancel_after_completion_is_false() {
    let rec = AsyncTasksRecorder::new();
    // An attempt that already ended: nothing to cancel, the outcome stays.
    let (g, fut) = gate();
    rec.launch(1u64, fut).await.launched();
    g.release.send(Ok(1)).unwrap();
    assert_eq!(
        bounded("wait", rec.wait(&1)).await.phase,
        TaskPhase::Success
    );
    assert!(!bounded("cancel", rec.cancel(&1)).await);
    let s = rec.status(&1).await;
    assert_eq!((s.phase, s.last_failure), (TaskPhase::Success, None));

    // A spawned task that completes without ever suspending, cancelled right after
    // the launch (on a current-thread runtime, before it was first polled): it runs
    // up to its first await point, which is its end, so it finishes on its own.
    let current_thread = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::CurrentThread;
    let runs = Arc::new(AtomicUsize::new(0));
    for id in 10..30u64 {
        let result = if id % 2 == 0 { Ok(()) } else { Err(()) };
        let before = runs.load(Ordering::SeqCst);
        rec.launch(id, counted(&runs, result)).await.launched();
        if current_thread {
            assert_eq!(runs.load(Ordering::SeqCst), before, "not polled yet");
        }
        assert!(!bounded("cancel", rec.cancel(&id)).await, "id {id}");
        assert_eq!(runs.load(Ordering::SeqCst), before + 1, "it ran once");
        let s = rec.status(&id).await;
        let want = if result.is_ok() {
            (TaskPhase::Success, None)
        } else {
            (TaskPhase::Failed, Some(FailureReason::Error))
        };
        assert_eq!((s.phase, s.last_failure), want, "id {id}");
    }
}

async fn status_counts_attempts_and_reasons() {
    let rec = AsyncTasksRecorder::new();
    assert_eq!(rec.status(&1u64).await.phase, TaskPhase::NotFound);
    assert_eq!(rec.status(&1u64).await.attempts, None);
    rec.launch_block(1u64, err()).await.launched();
    let s = rec.status(&1).await;
    assert_eq!(
        (s.attempts, s.last_failure),
        (Some(1), Some(FailureReason::Error))
    );
    let _ = tokio::time::timeout(
        Duration::ZERO,
        rec.launch_block(1u64, std::future::pending::<Result<(), ()>>()),
    )
    .await;
    let s = rec.status(&1).await;
    assert_eq!(
        (s.attempts, s.last_failure),
        (Some(2), Some(FailureReason::Dropped))
    );
    let (g, fut) = gate();
    rec.launch(1u64, fut).await.launched();
    let s = rec.status(&1).await;
    assert_eq!(
        (s.phase, s.attempts, s.last_failure),
        (TaskPhase::Working, Some(3), None)
    );
    assert_eq!(s.since, None, "no timestamps unless asked for");
    g.release.send(Ok(0)).unwrap();
    bounded("wait", rec.wait(&1)).await;
    let s = rec.status(&1).await;
    assert_eq!(s.phase, TaskPhase::Success);
    assert_eq!(s.attempts, None, "not tracked for successes by default");

    // With details, successes keep their attempts and every phase its start.
    let rec = AsyncTasksRecorder::builder().track_details(true).build();
    let before = std::time::Instant::now();
    rec.launch_block(9u64, err()).await.launched();
    rec.launch_block(9u64, ok()).await.launched();
    let s = rec.status(&9).await;
    assert_eq!((s.phase, s.attempts), (TaskPhase::Success, Some(2)));
    assert!(s.since.unwrap() >= before);
    let (g, fut) = gate();
    rec.revoke_task(9u64, fut)
        .await
        .map_err(|e| e.to_string())
        .unwrap();
    let s = rec.status(&9).await;
    assert_eq!((s.phase, s.attempts), (TaskPhase::Revoking, Some(2)));
    g.release.send(Err("keep")).unwrap();
    bounded("wait", rec.wait(&9)).await;
    assert_eq!(rec.status(&9).await.attempts, Some(2));
}

async fn events_follow_transitions_in_order() {
    let rec = AsyncTasksRecorder::new();
    let mut events = rec.subscribe();
    rec.launch_block(1u64, err()).await.launched();
    rec.launch_block(1u64, ok()).await.launched();
    rec.revoke_task_block(1u64, ok()).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..6 {
        let t = bounded("event", events.next()).await.unwrap().unwrap();
        assert_eq!(t.id, 1);
        seen.push((t.from, t.to, t.failure));
    }
    use TaskPhase::*;
    assert_eq!(
        seen,
        vec![
            (NotFound, Working, None),
            (Working, Failed, Some(FailureReason::Error)),
            (Failed, Working, None),
            (Working, Success, None),
            (Success, Revoking, None),
            (Revoking, NotFound, None),
        ]
    );
    // As a `Stream` too.
    fn assert_stream<S: futures_core::Stream>(_: &S) {}
    assert_stream(&events);
}

async fn a_slow_subscriber_is_told_what_it_missed() {
    let rec = AsyncTasksRecorder::builder().event_capacity(4).build();
    let mut events = rec.subscribe();
    for id in 0..10u64 {
        rec.launch_block(id, ok()).await.launched();
    }
    // 20 transitions into a buffer of 4: the first read reports the loss.
    match bounded("event", events.next()).await.unwrap() {
        Err(Missed(n)) => assert_eq!(n, 16),
        Ok(t) => panic!("expected a Missed report, got {t:?}"),
    }
    let mut rest = 0;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_millis(50), events.next()).await
    {
        rest += 1;
    }
    assert_eq!(rest, 4);
    drop(events);
    // Without subscribers nothing is buffered: a later subscriber sees only the
    // transitions made after it subscribed, and no loss.
    rec.launch_block(100u64, ok()).await.launched();
    let mut events = rec.subscribe();
    rec.launch_block(101u64, ok()).await.launched();
    for want in [
        (TaskPhase::NotFound, TaskPhase::Working),
        (TaskPhase::Working, TaskPhase::Success),
    ] {
        match bounded("event", events.next()).await.unwrap() {
            Ok(t) => assert_eq!((t.id, t.from, t.to), (101, want.0, want.1)),
            Err(missed) => panic!("a fresh subscriber missed {missed:?}"),
        }
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn timeout_fails_a_future_that_never_finishes() {
    let rec = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    // Shorter than the hang guard (`HANG`), whose timer the paused clock also reaches.
    let options = LaunchOptions::new().timeout(Duration::from_secs(10));
    let Ok(h) = rec.launch_with(1u64, fut, options).await else {
        panic!("refused")
    };
    let waiter = tokio::spawn({
        let rec = rec.clone();
        async move { rec.wait(&1).await }
    });
    // The paused clock jumps to the deadline when everything is idle.
    assert!(matches!(
        bounded("handle", h).await,
        Err(TaskError::TimedOut)
    ));
    assert!(
        g.dropped_unfinished.load(Ordering::SeqCst),
        "the future was dropped"
    );
    let s = bounded("waiter", waiter).await.unwrap();
    assert_eq!(
        (s.phase, s.failure),
        (TaskPhase::Failed, Some(FailureReason::TimedOut))
    );
    // Launchable again; a future that finishes in time is not affected.
    let Ok(h) = rec
        .launch_with(
            1u64,
            async { Ok::<_, ()>(3) },
            LaunchOptions::new().timeout(Duration::from_secs(1)),
        )
        .await
    else {
        panic!("refused")
    };
    assert_eq!(bounded("handle", h).await.unwrap(), 3);
}

/// A timeout past the end of the clock (here `Duration::MAX`) is no timeout: the launch
/// neither panics nor times the task out.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_timeout_too_large_for_the_clock_never_fires() {
    let rec = AsyncTasksRecorder::new();
    let (g, fut) = gate();
    let options = LaunchOptions::new().timeout(Duration::MAX);
    let Ok(h) = rec.launch_with(1u64, fut, options).await else {
        panic!("refused")
    };
    // The paused clock jumps far ahead; the task is still running.
    tokio::time::sleep(Duration::from_secs(1_000_000_000)).await;
    assert_eq!(rec.query_task_state(&1).await, TaskState::Working);
    g.release.send(Ok(5)).unwrap();
    assert_eq!(bounded("handle", h).await.unwrap(), 5);
    assert_eq!(rec.query_task_state(&1).await, TaskState::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_on_a_multi_thread_runtime() {
    let rec = AsyncTasksRecorder::new();
    let options = LaunchOptions::new().timeout(Duration::from_millis(20));
    let Ok(h) = rec
        .launch_with(1u64, std::future::pending::<Result<(), ()>>(), options)
        .await
    else {
        panic!("refused")
    };
    assert!(matches!(
        bounded("handle", h).await,
        Err(TaskError::TimedOut)
    ));
    assert_eq!(
        rec.status(&1).await.last_failure,
        Some(FailureReason::TimedOut)
    );
}

#[test]
// The handle is made on one runtime and awaited on another, on purpose.
#[allow(clippy::async_yields_async)]
fn runtime_shutdown_reports_dropped_to_handles() {
    let rec = AsyncTasksRecorder::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (g, fut) = gate();
    let h = rt.block_on(async {
        match rec.launch_with(1u64, fut, LaunchOptions::new()).await {
            Ok(h) => h,
            Err(_) => panic!("refused"),
        }
    });
    drop(rt);
    // Time only for the hang guard: the handle comes from the first runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    assert!(matches!(
        rt.block_on(bounded("handle", h)),
        Err(TaskError::Dropped)
    ));
    assert_eq!(
        rt.block_on(rec.status(&1)).last_failure,
        Some(FailureReason::Dropped)
    );
    drop(g);
}

/// No lost wake-up: waiters registered at every possible moment around the final
/// transition are all woken (bounded, many rounds, multi-thread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lost_wakeups_under_races() {
    let rec = AsyncTasksRecorder::new();
    let woken = Arc::new(AtomicUsize::new(0));
    for round in 0..300u64 {
        let (g, fut) = gate();
        rec.launch(round, fut).await.launched();
        let mut waiters = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let rec = rec.clone();
            let woken = woken.clone();
            waiters.spawn(async move {
                let s = rec.wait(&round).await;
                assert_eq!(s.phase, TaskPhase::Success);
                woken.fetch_add(1, Ordering::SeqCst);
            });
        }
        g.release.send(Ok(0)).unwrap();
        bounded("waiters", async {
            while let Some(r) = waiters.join_next().await {
                r.unwrap();
            }
        })
        .await;
    }
    assert_eq!(woken.load(Ordering::SeqCst), 1200);
}

/// A handle stays finished after its output was taken, and awaiting it a second time
/// panics with a message that says so (as Tokio's `JoinHandle` does).
#[tokio::test(flavor = "current_thread")]
async fn a_handle_after_its_output_was_taken() {
    let rec = AsyncTasksRecorder::new();
    let Ok(mut h) = rec
        .launch_with(1u64, async { Ok::<_, ()>(7) }, LaunchOptions::new())
        .await
    else {
        panic!("refused")
    };
    assert_eq!(bounded("handle", &mut h).await.unwrap(), 7);
    assert!(h.is_finished());
    let again = bounded(
        "the second await",
        tokio::spawn(async move { (&mut h).await.is_ok() }),
    )
    .await;
    let panic = again.expect_err("a second await must panic").into_panic();
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(message.contains("after it returned"), "{message}");
}

/// An event capacity far too large is capped instead of making `subscribe` panic (or
/// allocate without bound), and a capacity of 1000 behaves as 1024.
#[tokio::test(flavor = "current_thread")]
async fn event_capacity_is_capped_and_rounded() {
    let huge = AsyncTasksRecorder::builder()
        .event_capacity(usize::MAX)
        .build();
    let mut events = huge.subscribe();
    huge.launch_block(1u64, ok()).await.launched();
    assert!(matches!(bounded("event", events.next()).await, Some(Ok(_))));

    let rec = AsyncTasksRecorder::builder().event_capacity(1000).build();
    let mut events = rec.subscribe();
    // 1030 transitions: 6 past 1024 are missed, none past 1000 would be.
    for id in 0..515u64 {
        rec.launch_block(id, ok()).await.launched();
    }
    match bounded("event", events.next()).await.unwrap() {
        Err(Missed(n)) => assert_eq!(n, 6),
        Ok(t) => panic!("expected a Missed report, got {t:?}"),
    }
}
