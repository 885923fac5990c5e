//! Trait implementations of the public API: the recorder and its values are `Send`,
//! `Sync` and `Clone`, every public future is `Send` (checked at compile time), and the
//! recorder's `Debug` shows its counts.

use async_tasks_recorder::{AsyncTasksRecorder, RevokeFailReason, StateCounts, TaskState};

fn assert_send<T: Send>(_: &T) {}
fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}

async fn fut() -> Result<u8, std::io::Error> {
    Ok(1)
}

#[test]
fn recorder_and_values_are_send_sync() {
    assert_send_sync_clone::<AsyncTasksRecorder<String>>();
    assert_send_sync_clone::<AsyncTasksRecorder<std::sync::Arc<str>>>();
    assert_send_sync_clone::<TaskState>();
    assert_send_sync_clone::<StateCounts>();
    assert_error::<RevokeFailReason<std::future::Ready<()>, std::io::Error>>();
}

#[test]
fn every_public_future_is_send() {
    let rec: AsyncTasksRecorder<String> = AsyncTasksRecorder::default();
    let id = || "id".to_string();
    assert_send(&rec.launch(id(), fut()));
    assert_send(&rec.launch_block(id(), fut()));
    assert_send(&rec.query_task_state("id"));
    assert_send(&rec.query_task_state_quick("id"));
    assert_send(&rec.revoke_task_block(id(), fut()));
    assert_send(&rec.revoke_task(id(), fut()));
    assert_send(&rec.count(TaskState::Failed));
    assert_send(&rec.counts());
    assert_send(&rec.ids_in_state(TaskState::Failed));
    assert_send(&rec.for_each_in_state(TaskState::Failed, |_| {}));
    let options = async_tasks_recorder::LaunchOptions::new();
    assert_send(&rec.launch_with(id(), fut(), options));
    assert_send(&rec.launch_fenced(id(), |_ctx| fut(), options));
    assert_send(&rec.status("id"));
    assert_send(&rec.wait("id"));
    assert_send(&rec.cancel("id"));
    assert_send(&rec.wait_idle());
    assert_send(&rec.drain(None));
}

/// The Redis recorder's futures, checked at compile time: the function is never
/// called (building a recorder needs a server); if one of them were not `Send`, this
/// file would not compile.
#[cfg(feature = "redis")]
#[allow(dead_code)]
fn every_redis_future_is_send(rec: &async_tasks_recorder::redis::RedisRecorder<String>) {
    use async_tasks_recorder::redis::RedisRecorder;
    assert_send_sync_clone::<RedisRecorder<String>>();
    assert_error::<async_tasks_recorder::StoreError>();
    assert_error::<async_tasks_recorder::redis::RevokeError<std::future::Ready<()>, std::io::Error>>(
    );
    assert_send(&RedisRecorder::<String>::builder("redis://127.0.0.1/").build());
    let id = || "id".to_string();
    let options = async_tasks_recorder::LaunchOptions::new();
    assert_send(&rec.launch(id(), fut()));
    assert_send(&rec.launch_with(id(), fut(), options));
    assert_send(&rec.launch_fenced(id(), |_ctx| fut(), options));
    assert_send(&rec.launch_block(id(), fut()));
    assert_send(&rec.query_task_state("id"));
    assert_send(&rec.query_task_state_quick("id"));
    assert_send(&rec.status("id"));
    assert_send(&rec.wait("id"));
    assert_send(&rec.cancel("id"));
    assert_send(&rec.revoke_task_block(id(), fut()));
    assert_send(&rec.revoke_task(id(), fut()));
    assert_send(&rec.count(TaskState::Failed));
    assert_send(&rec.counts());
    assert_send(&rec.ids_in_state(TaskState::Failed));
    assert_send(&rec.for_each_in_state(TaskState::Failed, |_| {}));
    assert_send(&rec.wait_idle());
    assert_send(&rec.drain(None));
}

#[test]
fn debug_output_shows_counts() {
    let rec: AsyncTasksRecorder<u8> = AsyncTasksRecorder::new();
    let text = format!("{rec:?}");
    assert!(text.contains("working: 0"), "{text}");
}
