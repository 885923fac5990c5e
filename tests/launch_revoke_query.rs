//! The rules of launching, revoking and querying (the 2.x entry points), one test per
//! rule, each on both stores (the in-memory recorder, and the Redis recorder against a
//! server the test starts) and on a current-thread and a multi-thread runtime. The
//! rules are written once, in `tests/support/semantic_cases.rs`, against
//! `tests/support/backend.rs`.

#[path = "support/backend.rs"]
mod backend;
mod common;
#[path = "support/redis_server.rs"]
mod redis_server;
#[macro_use]
#[path = "support/semantic_cases.rs"]
mod cases;

use std::sync::Arc;

use async_tasks_recorder::{AsyncTasksRecorder, TaskState};
use backend::{Kind, Rec};
use cases::*;
use common::*;

/// Generates, for every rule `async fn(Rec)`, one test per store and runtime flavour.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;

                #[tokio::test(flavor = "current_thread")]
                async fn memory_current_thread() {
                    super::$name(Rec::new(Kind::Memory).await).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn memory_multi_thread() {
                    super::$name(Rec::new(Kind::Memory).await).await
                }

                #[cfg(feature = "redis")]
                #[tokio::test(flavor = "current_thread")]
                async fn redis_current_thread() {
                    super::$name(Rec::new(Kind::Redis).await).await
                }

                #[cfg(feature = "redis")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis_multi_thread() {
                    super::$name(Rec::new(Kind::Redis).await).await
                }
            }
        )*
    };
}

semantic_cases!(on_both_stores);

on_both_runtimes!(borrowed_query_forms_work);

async fn borrowed_query_forms_work() {
    let rec: AsyncTasksRecorder<String> = AsyncTasksRecorder::new();
    rec.launch_block("md5".to_string(), ok()).await.launched();
    assert_eq!(rec.query_task_state("md5").await, TaskState::Success);
    assert_eq!(
        rec.query_task_state(&"md5".to_string()).await,
        TaskState::Success
    );
    assert_eq!(rec.query_task_state_quick("md5").await, TaskState::Success);

    let rec: AsyncTasksRecorder<Arc<str>> = AsyncTasksRecorder::new();
    rec.launch_block(Arc::from("k"), ok()).await.launched();
    assert_eq!(rec.query_task_state("k").await, TaskState::Success);
}
