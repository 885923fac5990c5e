//! Transition events (`subscribe`): every transition in order, a slow subscriber told
//! how many it missed, a capacity capped and rounded, and a stream that outlives the
//! recorder's clones until the tasks they started have ended.

mod common;

use std::time::Duration;

use async_tasks_recorder::{AsyncTasksRecorder, FailureReason, Missed, TaskPhase};
use common::*;

on_both_runtimes!(
    events_follow_transitions_in_order,
    a_slow_subscriber_is_told_what_it_missed,
);

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

/// "The stream ends once the recorder is gone: every clone dropped, and every task it
/// started ended." A task that outlives the last clone is still reported.
#[tokio::test(flavor = "current_thread")]
async fn the_stream_outlives_the_recorder_until_its_tasks_end() {
    let rec = AsyncTasksRecorder::new();
    let mut events = rec.subscribe();
    let (g, fut) = gate();
    rec.launch(1u64, fut).await.launched();
    drop(rec);
    let first = bounded("the launch event", events.next()).await;
    let first = first.expect("open").expect("nothing missed");
    assert_eq!(
        (first.from, first.to),
        (TaskPhase::NotFound, TaskPhase::Working)
    );
    g.release.send(Ok(1)).unwrap();
    let second = bounded("the finish event", events.next()).await;
    let second = second
        .expect("still open while the task ran")
        .expect("nothing missed");
    assert_eq!((second.id, second.to), (1, TaskPhase::Success));
    assert!(bounded("the end of the stream", events.next())
        .await
        .is_none());
}
