//! The Redis recorder's metrics, exact, against a real server: this process's
//! launches, refusals, ends and revokes are counted as on the in-memory recorder.
#![cfg(all(feature = "redis", feature = "metrics"))]

mod common;
#[path = "support/redis_server.rs"]
mod redis_server;

use async_tasks_recorder::redis::RedisRecorder;
use async_tasks_recorder::{LaunchError, TaskState};
use common::bounded;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use redis_server::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_process_s_work_is_counted() {
    // The series are registered while the recorder is built, which awaits: only a
    // global metrics recorder (one per test binary, so one test here) sees that.
    let debugging = DebuggingRecorder::new();
    let snapshotter = debugging.snapshotter();
    debugging
        .install()
        .expect("the only metrics recorder of this binary");

    let server = RedisServer::start();
    let rec: RedisRecorder<u64> = bounded(
        "build",
        RedisRecorder::builder(server.url()).namespace("m").build(),
    )
    .await
    .unwrap();
    rec.launch_block(1, async { Ok::<_, ()>(()) })
        .await
        .unwrap();
    rec.launch_block(2, async { Err::<(), _>(()) })
        .await
        .unwrap();
    assert!(matches!(
        rec.launch(1, async { Ok::<_, ()>(()) }).await,
        Err(LaunchError::Refused(TaskState::Success, _))
    ));
    rec.revoke_task_block(1, async { Ok::<_, ()>(()) })
        .await
        .unwrap();
    rec.close();
    assert!(matches!(
        rec.launch(3, async { Ok::<_, ()>(()) }).await,
        Err(LaunchError::Closed(_))
    ));

    let mut counters = std::collections::HashMap::new();
    let mut samples = 0;
    for (key, _unit, _description, value) in snapshotter.snapshot().into_vec() {
        let (_kind, key) = key.into_parts();
        let label = key.labels().next().map(|l| l.value().to_string());
        match value {
            DebugValue::Counter(n) => {
                counters.insert((key.name().to_string(), label), n);
            }
            DebugValue::Histogram(xs) => samples += xs.len(),
            DebugValue::Gauge(_) => {}
        }
    }
    let counter = |name: &str, label: Option<&str>| {
        counters
            .get(&(name.to_string(), label.map(str::to_string)))
            .copied()
            .unwrap_or_else(|| panic!("no series {name} {label:?}: {counters:?}"))
    };
    assert_eq!(counter("async_tasks_recorder_launches_total", None), 2);
    assert_eq!(counter("async_tasks_recorder_successes_total", None), 1);
    assert_eq!(
        counter("async_tasks_recorder_failures_total", Some("error")),
        1
    );
    assert_eq!(
        counter(
            "async_tasks_recorder_launches_refused_total",
            Some("success")
        ),
        1
    );
    assert_eq!(
        counter(
            "async_tasks_recorder_launches_refused_total",
            Some("closed")
        ),
        1
    );
    assert_eq!(counter("async_tasks_recorder_revokes_total", Some("ok")), 1);
    assert_eq!(samples, 2, "one duration sample per task");
}
