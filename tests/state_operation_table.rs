//! The states × operations table of the crate docs, one test per cell and store. Each
//! test puts id 1 into a state, applies one operation, and checks the answer and the
//! state after, on the in-memory recorder and (with the `redis` feature) on the Redis
//! recorder against a server it starts.

#[path = "support/backend.rs"]
mod backend;
mod common;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_tasks_recorder::TaskState;
use backend::{Kind, Rec, RevokeRefusal};
use common::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    NotFound,
    Working,
    Success,
    Revoking,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Launch,
    LaunchBlock,
    RevokeBlock,
    RevokeSpawn,
    Query,
    Quick,
    /// The running future (task or revoke) ends with Ok.
    EndOk,
    /// The running future (task or revoke) ends with Err.
    EndErr,
}

/// What the operation answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Accepted,
    Refused(TaskState),
    NotSuccess,
    Revoking,
    State(TaskState),
    /// A future ended (no caller answer).
    Ended,
    /// The operation does not apply in this state (nothing is running to end).
    NotApplicable,
}

/// The table from the crate docs, written out by hand: (answer, state afterwards,
/// revoke still running afterwards).
fn expected(start: Start, op: Op) -> (Answer, TaskState, bool) {
    use Answer::*;
    use TaskState as S;
    match (start, op) {
        (Start::NotFound, Op::Launch | Op::LaunchBlock) => (Accepted, S::Working, false),
        (Start::Failed, Op::Launch | Op::LaunchBlock) => (Accepted, S::Working, false),
        (Start::Working, Op::Launch | Op::LaunchBlock) => (Refused(S::Working), S::Working, false),
        (Start::Success, Op::Launch | Op::LaunchBlock) => (Refused(S::Success), S::Success, false),
        (Start::Revoking, Op::Launch | Op::LaunchBlock) => (Refused(S::Success), S::Success, true),

        (Start::NotFound, Op::RevokeBlock | Op::RevokeSpawn) => (NotSuccess, S::NotFound, false),
        (Start::Working, Op::RevokeBlock | Op::RevokeSpawn) => (NotSuccess, S::Working, false),
        (Start::Failed, Op::RevokeBlock | Op::RevokeSpawn) => (NotSuccess, S::Failed, false),
        (Start::Success, Op::RevokeBlock | Op::RevokeSpawn) => (Accepted, S::Success, true),
        (Start::Revoking, Op::RevokeBlock | Op::RevokeSpawn) => (Revoking, S::Success, true),

        (Start::NotFound, Op::Query) => (State(S::NotFound), S::NotFound, false),
        (Start::Working, Op::Query) => (State(S::Working), S::Working, false),
        (Start::Success, Op::Query) => (State(S::Success), S::Success, false),
        (Start::Revoking, Op::Query) => (State(S::Success), S::Success, true),
        (Start::Failed, Op::Query) => (State(S::Failed), S::Failed, false),

        (Start::NotFound, Op::Quick) => (State(S::Working), S::NotFound, false),
        (Start::Working, Op::Quick) => (State(S::Working), S::Working, false),
        (Start::Success, Op::Quick) => (State(S::Success), S::Success, false),
        (Start::Revoking, Op::Quick) => (State(S::Success), S::Success, true),
        (Start::Failed, Op::Quick) => (State(S::Failed), S::Failed, false),

        (Start::Working, Op::EndOk) => (Ended, S::Success, false),
        (Start::Working, Op::EndErr) => (Ended, S::Failed, false),
        (Start::Revoking, Op::EndOk) => (Ended, S::NotFound, false),
        (Start::Revoking, Op::EndErr) => (Ended, S::Success, false),
        (Start::NotFound | Start::Success | Start::Failed, Op::EndOk | Op::EndErr) => {
            (NotApplicable, start_state(start), false)
        }
    }
}

fn start_state(start: Start) -> TaskState {
    match start {
        Start::NotFound => TaskState::NotFound,
        Start::Working => TaskState::Working,
        Start::Success | Start::Revoking => TaskState::Success,
        Start::Failed => TaskState::Failed,
    }
}

/// Puts id 1 into `start`; returns the gate of the running future, if any.
async fn setup(rec: &Rec, start: Start) -> Option<Gate> {
    match start {
        Start::NotFound => None,
        Start::Working => {
            let (g, fut) = gate();
            rec.launch(1, fut).await.unwrap();
            Some(g)
        }
        Start::Success => {
            rec.launch_block(1, ok()).await.unwrap();
            None
        }
        Start::Failed => {
            rec.launch_block(1, err()).await.unwrap();
            None
        }
        Start::Revoking => {
            rec.launch_block(1, ok()).await.unwrap();
            let (g, fut) = gate();
            rec.revoke_task(1, fut).await.unwrap();
            Some(g)
        }
    }
}

async fn cell(kind: Kind, start: Start, op: Op) {
    let rec = Rec::new(kind).await;
    let running = setup(&rec, start).await;
    let runs = Arc::new(AtomicUsize::new(0));
    // Futures started by the operation are gated, so that the state right after it
    // (Working, or still revoking) can be observed; they are released at the end.
    let mut extra_gate = None;
    let mut end_status_before = None;
    let answer = match op {
        Op::Launch => {
            let (g, fut) = gate();
            let runs = runs.clone();
            extra_gate = Some(g);
            let fut = async move {
                runs.fetch_add(1, Ordering::SeqCst);
                fut.await
            };
            match rec.launch(1, fut).await {
                Ok(()) => Answer::Accepted,
                Err(s) => Answer::Refused(s),
            }
        }
        Op::LaunchBlock => {
            // Run it to the point where the future started, then look.
            let (g, fut) = gate();
            let started = g.started.clone();
            let task = tokio::spawn({
                let rec = rec.clone();
                async move { rec.launch_block(1, fut).await }
            });
            let answer = bounded("launch_block", async {
                loop {
                    if started.load(Ordering::SeqCst) {
                        return Answer::Accepted;
                    }
                    if task.is_finished() {
                        return Answer::Refused(task.await.unwrap().unwrap_err());
                    }
                    tokio::task::yield_now().await;
                }
            })
            .await;
            extra_gate = Some(g); // keeps the blocking future running until the end
            answer
        }
        Op::RevokeBlock | Op::RevokeSpawn => {
            let (g, fut) = gate();
            let started = g.started.clone();
            extra_gate = Some(g);
            let refusal = |e| match e {
                RevokeRefusal::NotSuccess => Answer::NotSuccess,
                RevokeRefusal::Revoking => Answer::Revoking,
                RevokeRefusal::Failed => unreachable!("the gated revoke has not ended"),
            };
            let result = if op == Op::RevokeSpawn {
                rec.revoke_task(1, fut).await.map_err(refusal)
            } else {
                let task = tokio::spawn({
                    let rec = rec.clone();
                    async move {
                        rec.revoke_task_block(1, fut)
                            .await
                            .map(|_| ())
                            .map_err(refusal)
                    }
                });
                bounded("revoke_task_block", async {
                    loop {
                        if started.load(Ordering::SeqCst) {
                            return Ok(());
                        }
                        if task.is_finished() {
                            return task.await.unwrap();
                        }
                        tokio::task::yield_now().await;
                    }
                })
                .await
            };
            match result {
                Ok(()) => Answer::Accepted,
                Err(a) => a,
            }
        }
        Op::Query => Answer::State(rec.query(1).await),
        Op::Quick => Answer::State(rec.quick(1).await),
        // Whether there is anything to end is the recorder's answer, not the setup's:
        // a future runs for the id exactly when its phase is not final (Working or
        // Revoking). The status is kept to check that an absent end changes nothing.
        Op::EndOk | Op::EndErr => {
            let before = rec.status(1).await;
            end_status_before = Some(before.clone());
            if before.phase.is_final() {
                Answer::NotApplicable
            } else {
                Answer::Ended
            }
        }
    };
    let (gate_for_end, gate_kept) = match op {
        Op::EndOk | Op::EndErr => (running, None),
        _ => (None, running),
    };
    if answer == Answer::NotApplicable {
        // Nothing ran to end: give the recorder every chance to change the record on
        // its own, then check that it did not (phase, attempts and failure reason).
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            Some(rec.status(1).await).map(|s| (s.phase, s.attempts, s.last_failure)),
            end_status_before.map(|s| (s.phase, s.attempts, s.last_failure)),
            "{start:?} × {op:?}: the record changed with nothing running"
        );
    }
    if let Some(g) = gate_for_end {
        let out = if op == Op::EndOk { Ok(0) } else { Err("no") };
        g.release.send(out).unwrap();
        bounded("the end to be recorded", async {
            loop {
                let c = rec.counts().await;
                if c.working == 0 && c.revoking == 0 {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
    }

    let (want_answer, want_state, want_revoking) = expected(start, op);
    assert_eq!(answer, want_answer, "{start:?} × {op:?}: answer");
    assert_eq!(
        rec.query(1).await,
        want_state,
        "{start:?} × {op:?}: state after"
    );
    assert_eq!(
        rec.counts().await.revoking,
        usize::from(want_revoking),
        "{start:?} × {op:?}: revoking after"
    );
    if matches!(answer, Answer::Refused(_)) {
        assert_eq!(
            runs.load(Ordering::SeqCst),
            0,
            "a refused future never starts"
        );
    }
    // Release whatever is still running; nothing may stay Working or Revoking.
    drop(extra_gate);
    drop(gate_kept);
    bounded("everything to settle", async {
        loop {
            let c = rec.counts().await;
            if c.working == 0 && c.revoking == 0 {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
}

macro_rules! cells {
    ($($name:ident: $start:ident, $op:ident;)*) => {
        $(
            mod $name {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn memory() {
                    cell(Kind::Memory, Start::$start, Op::$op).await;
                }

                #[cfg(feature = "redis")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis() {
                    cell(Kind::Redis, Start::$start, Op::$op).await;
                }
            }
        )*
    };
}

cells! {
    not_found_launch: NotFound, Launch;
    not_found_launch_block: NotFound, LaunchBlock;
    not_found_revoke_block: NotFound, RevokeBlock;
    not_found_revoke_spawn: NotFound, RevokeSpawn;
    not_found_query: NotFound, Query;
    not_found_quick: NotFound, Quick;
    not_found_end_ok: NotFound, EndOk;
    not_found_end_err: NotFound, EndErr;

    working_launch: Working, Launch;
    working_launch_block: Working, LaunchBlock;
    working_revoke_block: Working, RevokeBlock;
    working_revoke_spawn: Working, RevokeSpawn;
    working_query: Working, Query;
    working_quick: Working, Quick;
    working_end_ok: Working, EndOk;
    working_end_err: Working, EndErr;

    success_launch: Success, Launch;
    success_launch_block: Success, LaunchBlock;
    success_revoke_block: Success, RevokeBlock;
    success_revoke_spawn: Success, RevokeSpawn;
    success_query: Success, Query;
    success_quick: Success, Quick;
    success_end_ok: Success, EndOk;
    success_end_err: Success, EndErr;

    revoking_launch: Revoking, Launch;
    revoking_launch_block: Revoking, LaunchBlock;
    revoking_revoke_block: Revoking, RevokeBlock;
    revoking_revoke_spawn: Revoking, RevokeSpawn;
    revoking_query: Revoking, Query;
    revoking_quick: Revoking, Quick;
    revoking_end_ok: Revoking, EndOk;
    revoking_end_err: Revoking, EndErr;

    failed_launch: Failed, Launch;
    failed_launch_block: Failed, LaunchBlock;
    failed_revoke_block: Failed, RevokeBlock;
    failed_revoke_spawn: Failed, RevokeSpawn;
    failed_query: Failed, Query;
    failed_quick: Failed, Quick;
    failed_end_ok: Failed, EndOk;
    failed_end_err: Failed, EndErr;
}
