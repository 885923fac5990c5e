//! Expiry without the background sweeper: on the recorder's own launches and
//! finishes, by an explicit `sweep`, and on a runtime without a time driver.

mod common;

use std::time::Duration;

use async_tasks_recorder::{AsyncTasksRecorder, TaskState};
use common::on_thread_bounded;

const TTL: Duration = Duration::from_secs(10);

fn without_sweeper() -> AsyncTasksRecorder<u64> {
    AsyncTasksRecorder::builder()
        .failed_ttl(TTL)
        .background_sweep(false)
        .build()
}

/// Sleeps on the paused clock (which jumps) and lets any spawned task run.
async fn pass(d: Duration) {
    tokio::time::sleep(d).await;
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn with_the_background_sweep_off_nothing_expires_by_itself_and_sweep_expires_it() {
    let rec = without_sweeper();
    assert!(rec
        .launch_block(1, async { Err::<(), ()>(()) })
        .await
        .is_ok());
    pass(TTL * 3).await;
    assert_eq!(rec.query_task_state(&1).await, TaskState::Failed);
    assert_eq!(rec.counts().await.failed, 1);
    rec.sweep();
    assert_eq!(rec.query_task_state(&1).await, TaskState::NotFound);
    assert_eq!(rec.counts().await.failed, 0);
}

#[tokio::test(start_paused = true)]
async fn sweep_leaves_records_whose_time_has_not_come() {
    let rec = without_sweeper();
    assert!(rec
        .launch_block(1, async { Err::<(), ()>(()) })
        .await
        .is_ok());
    pass(TTL / 2).await;
    rec.sweep();
    assert_eq!(rec.query_task_state(&1).await, TaskState::Failed);
}

#[tokio::test(start_paused = true)]
async fn a_launch_first_expires_what_is_due_in_its_shard() {
    let rec = without_sweeper();
    assert!(rec
        .launch_block(1, async { Err::<(), ()>(()) })
        .await
        .is_ok());
    assert_eq!(rec.status(&1).await.attempts, Some(1));
    // Before the time to live: the relaunch continues the failed record's history.
    assert!(rec
        .launch_block(1, async { Err::<(), ()>(()) })
        .await
        .is_ok());
    assert_eq!(rec.status(&1).await.attempts, Some(2));
    pass(TTL * 2).await;
    // After it: the launch expired the record first, so this is a first attempt.
    assert!(rec
        .launch_block(1, async { Err::<(), ()>(()) })
        .await
        .is_ok());
    assert_eq!(rec.status(&1).await.attempts, Some(1));
}

/// On a runtime without a time driver the background task cannot make its timer: it
/// panics once (Tokio reports the panic of a spawned task and goes on), is not
/// started again, and `sweep` still expires records.
#[test]
fn without_a_time_driver_sweep_still_expires() {
    let answer = on_thread_bounded("a runtime without a time driver", || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::builder()
            .failed_ttl(Duration::from_millis(5))
            .build();
        rt.block_on(async {
            for id in 0..3 {
                assert!(rec.launch(id, async { Err::<(), ()>(()) }).await.is_ok());
                // The task and, on the first launch, the sweeper task run.
                for _ in 0..8 {
                    tokio::task::yield_now().await;
                }
            }
            let failed = rec.counts().await.failed;
            std::thread::sleep(Duration::from_millis(20));
            rec.sweep();
            (failed, rec.counts().await.failed)
        })
    });
    assert_eq!(answer, (3, 0));
}
