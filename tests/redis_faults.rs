//! The sequential model checks a scenario of stale holders on the Redis recorder, and
//! catches an injected fault: a finish that ignores the fencing token.
//!
//! A worker on one replica pauses past its lease; another replica sees the id fail
//! (`WorkerLost`) and launches it again; the paused worker then ends its attempt with an
//! error. Every answer is compared with the model of `tests/model`, in which the stale
//! end does nothing: the id stays `Working` until its new attempt ends. A store that
//! lets the stale finish through ends the new attempt instead, and the check reports it.
#![cfg(feature = "redis")]

mod common;
mod model;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::time::Duration;

use async_tasks_recorder::redis::{InjectedFault, RedisRecorder, TaskContext};
use async_tasks_recorder::{FailureReason, LaunchOptions, TaskError, TaskPhase, TaskState};
use common::bounded;
use model::Model;
use redis_server::RedisServer;

const LEASE: Duration = Duration::from_secs(1);
const ID: u64 = 7;

async fn build(url: String, fault: Option<InjectedFault>) -> RedisRecorder<u64> {
    let mut builder = RedisRecorder::builder(url).namespace("stale").lease(LEASE);
    if let Some(fault) = fault {
        builder = builder.inject_fault(fault);
    }
    bounded("build", builder.build()).await.expect("builds")
}

/// Compares an answer with the model's; the first difference ends the scenario.
macro_rules! check {
    ($step:expr, $got:expr, $want:expr) => {{
        let (got, want) = ($got, $want);
        if got != want {
            return Err(format!(
                "{}: the store answered {got:?}, the model says {want:?}",
                $step
            ));
        }
    }};
}

/// Runs the scenario with the paused worker's replica built with `fault`; returns the
/// first answer that differs from the model's.
async fn scenario(fault: Option<InjectedFault>) -> Result<(), String> {
    let server = RedisServer::start();
    let mut model = Model::default();
    let b = build(server.url(), None).await;

    // Replica A runs the attempt on a runtime of its own, which the attempt freezes.
    let (paused_tx, paused_rx) = tokio::sync::oneshot::channel();
    let (resume_tx, resume_rx) = std::sync::mpsc::channel::<()>();
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
    let url = server.url();
    let replica = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let a = build(url, fault).await;
            let make = move |_: TaskContext| async move {
                let _ = paused_tx.send(());
                resume_rx.recv().unwrap();
                Err::<(), _>("the paused worker's late error")
            };
            let handle = a.launch_fenced(ID, make, LaunchOptions::new()).await;
            let handle = handle.unwrap_or_else(|e| panic!("A's launch: {e}"));
            let _ = ended_tx.send(handle.await.map_err(|e| e.reason()));
        });
    });
    model.launch(ID).unwrap();
    bounded("A's attempt to start", paused_rx).await.unwrap();
    check!(
        "query while A runs",
        b.query_task_state(&ID).await.unwrap(),
        model.query(ID)
    );

    // A's lease ends.
    let settled = bounded("the lease's end", b.wait(&ID)).await.unwrap();
    model.expire(ID);
    check!("the end B waited for", settled.state(), model.query(ID));
    check!(
        "the reason",
        settled.failure,
        Some(FailureReason::WorkerLost)
    );

    // B launches again; its attempt waits for the test.
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let accepted = b
        .launch(ID, async move { released.await.map_err(|_| ()) })
        .await;
    check!("B's launch", accepted.is_ok(), model.launch(ID).is_ok());

    // A wakes up and ends its attempt; the model ignores a stale end.
    resume_tx.send(()).unwrap();
    let a_ended = bounded("A's end", ended_rx).await.unwrap();
    check!(
        "query after A's stale end",
        b.query_task_state(&ID).await.unwrap(),
        model.query(ID)
    );
    check!("A's handle", a_ended, Err(TaskError::<()>::Lost.reason()));

    // B's attempt ends.
    release
        .send(())
        .map_err(|_| "B's attempt ended early".to_string())?;
    let settled = bounded("B's end", b.wait(&ID)).await.unwrap();
    model.finish(ID, true);
    check!("the end of B's attempt", settled.phase, TaskPhase::Success);
    check!(
        "query at the end",
        b.query_task_state(&ID).await.unwrap(),
        model.query(ID)
    );
    check!("the state", model.query(ID), TaskState::Success);
    replica
        .join()
        .map_err(|_| "replica A panicked".to_string())?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_holders_follow_the_model() {
    scenario(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checker_catches_a_finish_that_ignores_the_token() {
    let report = scenario(Some(InjectedFault::FinishIgnoresToken))
        .await
        .expect_err("a finish that ignores the token passed the model check");
    assert!(report.contains("query after A's stale end"), "{report}");
    println!("caught: {report}");
}
