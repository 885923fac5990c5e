//! `launch_kept`: what a task ended with (its output, its error's message, its panic's
//! message) is read by any clone or replica through `status` and `wait`, lives as
//! long as the record's phase, and stays within the recorder's limit. Each rule runs
//! on both stores (the Redis one against a server the test starts).

#[path = "support/backend.rs"]
mod backend;
mod common;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::time::Duration;

use async_tasks_recorder::{FailureReason, Kept, TaskPhase, TaskState};
use backend::{Kind, Rec, Tune};
use common::*;

each_store!(
    an_output_is_read_by_a_replica_through_status_and_wait,
    failure_messages_are_kept_until_a_relaunch,
    a_panic_keeps_its_message_and_a_timeout_keeps_nothing,
    launches_that_do_not_keep_store_nothing,
    the_limit_cuts_messages_and_refuses_outputs,
    a_revoke_removes_the_output_and_a_failed_one_keeps_it,
    a_tombstone_keeps_nothing,
);

fn output(text: &str) -> Option<Kept> {
    Some(Kept::Output(text.into()))
}

fn message(text: &str) -> Option<Kept> {
    Some(Kept::Message(text.into()))
}

async fn an_output_is_read_by_a_replica_through_status_and_wait(kind: Kind) {
    let rec = Rec::new(kind).await;
    let replica = rec.replica().await;
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let task = async move {
        released.await.map_err(|_| "dropped")?;
        Ok::<_, &str>("s3://bucket/md5-1")
    };
    let ended = rec.launch_kept(1, task).await.expect("launched");
    // The replica waits while the task runs, so that its wait ends on the transition
    // (on Redis: from the channel's message, then the record).
    let waiter = tokio::spawn({
        let replica = replica.clone();
        async move { replica.wait(1).await }
    });
    assert_eq!(replica.status(1).await.kept, None, "nothing while Working");
    release.send(()).unwrap();
    bounded("the task", ended).await.expect("it succeeded");
    let settled = bounded("the waiter", waiter).await.unwrap();
    assert_eq!(settled.phase, TaskPhase::Success);
    assert_eq!(settled.kept, output("s3://bucket/md5-1"));
    let status = replica.status(1).await;
    assert_eq!(status.phase, TaskPhase::Success);
    assert_eq!(status.kept, output("s3://bucket/md5-1"));
    // A wait after the end answers from the record.
    assert_eq!(replica.wait(1).await.kept, output("s3://bucket/md5-1"));
}

async fn failure_messages_are_kept_until_a_relaunch(kind: Kind) {
    let rec = Rec::new(kind).await;
    let failing = async { Err::<u32, _>("disk full on /var") };
    let ended = rec.launch_kept(2, failing).await.expect("launched");
    assert!(bounded("the task", ended).await.is_err());
    let status = rec.status(2).await;
    assert_eq!(status.phase, TaskPhase::Failed);
    assert_eq!(status.last_failure, Some(FailureReason::Error));
    assert_eq!(status.kept, message("disk full on /var"));
    assert_eq!(rec.wait(2).await.kept, message("disk full on /var"));

    // A relaunch ends the failed phase and what it kept; a success keeps its output.
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let retry = async move {
        released.await.map_err(|_| "dropped")?;
        Ok::<_, &str>(42u64)
    };
    let ended = rec
        .launch_kept(2, retry)
        .await
        .expect("a failed id launches");
    let working = rec.status(2).await;
    assert_eq!((working.phase, working.kept), (TaskPhase::Working, None));
    release.send(()).unwrap();
    bounded("the retry", ended).await.expect("it succeeded");
    assert_eq!(rec.status(2).await.kept, output("42"));

    // A task whose output is `()` keeps its failures' messages and no output.
    let unit = async { Ok::<(), std::io::Error>(()) };
    let ended = rec.launch_kept(20, unit).await.expect("launched");
    bounded("the task", ended).await.expect("it succeeded");
    let status = rec.status(20).await;
    assert_eq!((status.phase, status.kept), (TaskPhase::Success, None));
    let io = async { Err::<(), _>(std::io::Error::other("no space left on device")) };
    let ended = rec.launch_kept(21, io).await.expect("launched");
    assert!(bounded("the task", ended).await.is_err());
    assert_eq!(
        rec.status(21).await.kept,
        message("no space left on device")
    );
}

async fn a_panic_keeps_its_message_and_a_timeout_keeps_nothing(kind: Kind) {
    let rec = Rec::new(kind).await;
    let panicking = async {
        if true {
            panic!("bucket gone");
        }
        Ok::<u32, String>(1)
    };
    let ended = rec.launch_kept(3, panicking).await.expect("launched");
    assert!(bounded("the task", ended).await.is_err());
    let status = rec.status(3).await;
    assert_eq!(status.last_failure, Some(FailureReason::Panicked));
    assert_eq!(status.kept, message("bucket gone"));

    // Cancelled: the reason says it, nothing is kept.
    let never = std::future::pending::<Result<u32, String>>();
    let ended = rec.launch_kept(4, never).await.expect("launched");
    assert!(bounded("the cancel", rec.cancel(4)).await);
    assert!(bounded("the task", ended).await.is_err());
    let status = rec.status(4).await;
    assert_eq!(status.last_failure, Some(FailureReason::Cancelled));
    assert_eq!(status.kept, None);
}

async fn launches_that_do_not_keep_store_nothing(kind: Kind) {
    let rec = Rec::new(kind).await;
    rec.launch_block(5, async { Ok::<_, String>("not kept".to_string()) })
        .await
        .unwrap();
    rec.launch_block(6, async { Err::<(), _>("not kept".to_string()) })
        .await
        .unwrap();
    rec.launch(7, async { Ok::<_, ()>(()) }).await.unwrap();
    rec.until_state(7, TaskState::Success).await;
    for id in [5, 6, 7] {
        assert_eq!(rec.status(id).await.kept, None, "id {id}");
        assert_eq!(rec.wait(id).await.kept, None, "id {id}");
    }
}

async fn the_limit_cuts_messages_and_refuses_outputs(kind: Kind) {
    let tune = Tune {
        max_kept_len: Some(16),
        ..Tune::default()
    };
    let rec = Rec::tuned(kind, &tune).await;
    let long = async { Ok::<_, String>("x".repeat(17)) };
    let ended = rec.launch_kept(8, long).await.expect("launched");
    bounded("the task", ended).await.expect("it succeeded");
    let status = rec.status(8).await;
    assert_eq!(status.phase, TaskPhase::Success, "the success stands");
    assert_eq!(status.kept, Some(Kept::TooLarge { len: 17, limit: 16 }));

    let fits = async { Ok::<_, String>("y".repeat(16)) };
    let ended = rec.launch_kept(9, fits).await.expect("launched");
    bounded("the task", ended).await.expect("it succeeded");
    assert_eq!(rec.status(9).await.kept, output(&"y".repeat(16)));

    let wordy = async { Err::<(), _>("the disk /var is full, and so is /tmp") };
    let ended = rec.launch_kept(10, wordy).await.expect("launched");
    assert!(bounded("the task", ended).await.is_err());
    let kept = rec.status(10).await.kept;
    let text = kept.as_ref().and_then(Kept::message).expect("a message");
    assert_eq!(text, "the disk /var…");
    assert!(text.len() <= 16);
}

async fn a_revoke_removes_the_output_and_a_failed_one_keeps_it(kind: Kind) {
    let rec = Rec::new(kind).await;
    let ended = rec
        .launch_kept(11, async { Ok::<_, String>("file-11".to_string()) })
        .await
        .expect("launched");
    bounded("the task", ended).await.expect("it succeeded");
    let refused = rec.revoke_task_block(11, async { Err::<(), _>(()) }).await;
    assert!(refused.is_err());
    assert_eq!(rec.status(11).await.kept, output("file-11"), "put back");
    rec.revoke_task_block(11, async { Ok::<_, ()>(()) })
        .await
        .expect("revoked");
    let status = rec.status(11).await;
    assert_eq!((status.phase, status.kept), (TaskPhase::NotFound, None));
}

async fn a_tombstone_keeps_nothing(kind: Kind) {
    let tune = Tune {
        success_ttl: Some(Duration::from_millis(50)),
        failed_ttl: Some(Duration::from_millis(50)),
        ..Tune::default()
    };
    let rec = Rec::tuned(kind, &tune).await;
    let ended = rec
        .launch_kept(12, async { Ok::<_, String>("file-12".to_string()) })
        .await
        .expect("launched");
    bounded("the task", ended).await.expect("it succeeded");
    let ended = rec
        .launch_kept(13, async { Err::<(), _>("gone".to_string()) })
        .await
        .expect("launched");
    assert!(bounded("the task", ended).await.is_err());
    // Read until the retention moved both (the TTL is short; the guard bounds it, so
    // a value that outlived its record fails the test as a hang).
    bounded("the TTLs to pass", async {
        loop {
            let success = rec.status(12).await;
            let failed = rec.status(13).await;
            if success.kept.is_none() && failed.phase == TaskPhase::NotFound {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let tombstone = rec.status(12).await;
    assert_eq!(
        tombstone.phase,
        TaskPhase::Success,
        "still refuses launches"
    );
    assert_eq!(tombstone.kept, None, "a tombstone keeps none of it");
    assert_eq!(rec.status(13).await.kept, None);
}
