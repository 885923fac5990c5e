//! The clients of a history, each a seeded random sequence of operations, and the
//! recording of one history: the clients run concurrently, then a drain ends what
//! they left running.

use std::sync::{Arc, Mutex};

use async_tasks_recorder::TaskState;
use tokio::sync::Barrier;
use tokio::task::JoinHandle;

use crate::common::bounded;
use crate::common::timing::Log;
use crate::gates::{Gates, How};
use crate::harness::{lock, revoke_gated, start_wait, Release, Shared};
use crate::history::Event;
use crate::model::Subject;
use crate::workloads::{Action, Rng, Workload, ACTIONS, IDS, TIMEOUTS_US};

/// One client: a seeded random sequence of operations.
pub(crate) async fn client(
    shared: Arc<Shared>,
    me: usize,
    mut rng: Rng,
    w: Workload,
    go: Arc<Barrier>,
) {
    // Start together, so that the clients overlap from the first operation.
    bounded("the other clients to start", go.wait()).await;
    let ops = w.min_ops + rng.below(w.max_ops - w.min_ops + 1);
    let total: u64 = w.weights.iter().sum();
    for _ in 0..ops {
        let id = rng.below(IDS);
        let mut roll = rng.below(total);
        let mut action = ACTIONS[0];
        for (&a, &weight) in ACTIONS.iter().zip(&w.weights) {
            if roll < weight {
                action = a;
                break;
            }
            roll -= weight;
        }
        match action {
            Action::Launch => {
                let roll = rng.below(100);
                let how = if roll < w.kept {
                    How::Kept(0)
                } else if roll < w.kept + w.fenced {
                    How::Fenced
                } else if roll < w.kept + w.fenced + w.retrying {
                    How::Retrying
                } else if rng.percent(w.with_handle) {
                    How::With(None)
                } else {
                    How::Plain
                };
                shared.launch(me, id, how).await;
            }
            Action::TimedLaunch => {
                let us = TIMEOUTS_US[rng.below(TIMEOUTS_US.len() as u64) as usize];
                shared.launch(me, id, How::With(Some(us))).await;
            }
            Action::Finish => match shared.take_gate(me, &mut rng) {
                // A waiting retry has no attempt to release: only a cancel ends it.
                Some(held) if held.gate.waiting => {
                    let id = held.gate.id;
                    shared.put_back(held.gate);
                    shared.status(me, id).await;
                }
                Some(held) => shared.finish(me, held, &mut rng, &w).await,
                None => shared.query(me, id).await,
            },
            Action::Status => shared.status(me, id).await,
            Action::Progress => match shared.take_gate(me, &mut rng) {
                Some(held) => shared.report(me, held, &mut rng).await,
                None => shared.status(me, id).await,
            },
            Action::Query => shared.query(me, id).await,
            Action::Quick => shared.quick(me, id).await,
            Action::Revoke => {
                if rng.percent(w.gated_revoke) {
                    revoke_gated(&shared, me, id);
                } else {
                    let end = rng.end(w.revoke_ok, w.revoke_panic);
                    shared.revoke(me, id, Release::Now(end)).await;
                }
            }
            Action::ReleaseRevoke => {
                let gate = {
                    let mut gates = lock(&shared.gates);
                    let n = gates.revokes.len() as u64;
                    (n > 0).then(|| gates.revokes.swap_remove(rng.below(n) as usize))
                };
                match gate {
                    Some((_, release)) => {
                        let _ = release.send(rng.end(w.revoke_ok, w.revoke_panic));
                    }
                    None => shared.quick(me, id).await,
                }
            }
            Action::Count => {
                let state = [TaskState::Working, TaskState::Success, TaskState::Failed]
                    [rng.below(3) as usize];
                shared.count(me, state).await;
            }
            Action::Counts => shared.counts(me).await,
            Action::Wait => start_wait(&shared, me, id).await,
            Action::Cancel => {
                let held = if rng.percent(w.free_cancel) {
                    None
                } else {
                    shared.take_gate(me, &mut rng)
                };
                match held {
                    Some(held) => shared.cancel_held(me, held, &mut rng, &w).await,
                    None => shared.cancel_free(me, id).await,
                }
            }
        }
        if rng.percent(w.yield_after) {
            tokio::task::yield_now().await;
        }
    }
}

/// Records one history: the clients run concurrently, then every open gate is released
/// (the launched futures by logged `finish` operations, timed ones left to time out as
/// the workload says) so that nothing is left running, and the waits resolve.
pub(crate) async fn record_history(subject: Subject, w: Workload, seed: u64) -> Vec<Event> {
    let shared = Arc::new(Shared {
        subject,
        limited: w.max_running.is_some(),
        log: Log::default(),
        gates: Mutex::new(Gates::default()),
        revokers: Mutex::new(Vec::new()),
        waiters: Mutex::new(Vec::new()),
    });
    let go = Arc::new(Barrier::new(w.clients));
    let clients: Vec<JoinHandle<()>> = (0..w.clients)
        .map(|me| {
            let rng = Rng::new(seed.wrapping_mul(16).wrapping_add(me as u64));
            tokio::spawn(client(Arc::clone(&shared), me, rng, w, Arc::clone(&go)))
        })
        .collect();
    for client in clients {
        bounded("a client", client)
            .await
            .expect("a client panicked");
    }

    // Drain, as one more client.
    let me = w.clients;
    let mut rng = Rng::new(seed.wrapping_mul(16).wrapping_add(15));
    bounded("the drain", async {
        while let Some(held) = shared.take_gate(me, &mut rng) {
            if held.gate.waiting {
                shared.cancel_held(me, held, &mut rng, &w).await;
            } else if shared.limited && !held.gate.started() && !held.gate.timed {
                // Queued, or not polled yet: the releases of the others free its slot.
                shared.put_back(held.gate);
                tokio::task::yield_now().await;
            } else {
                shared.finish(me, held, &mut rng, &w).await;
            }
        }
    })
    .await;
    let revokes = std::mem::take(&mut lock(&shared.gates).revokes);
    for (_, release) in revokes {
        let _ = release.send(rng.end(w.revoke_ok, w.revoke_panic));
    }
    let revokers = std::mem::take(&mut *lock(&shared.revokers));
    for task in revokers {
        bounded("a gated revoke", task)
            .await
            .expect("a revoke task panicked");
    }
    let waiters = std::mem::take(&mut *lock(&shared.waiters));
    for task in waiters {
        bounded("a wait", task).await.expect("a wait task panicked");
    }
    bounded(
        "the early-cancelled attempts",
        shared.subject.settle_early_cancels(),
    )
    .await;
    let counts = shared.subject.counts().await;
    assert_eq!(
        (counts.working, counts.revoking),
        (0, 0),
        "a history must end with nothing running"
    );
    {
        let gates = lock(&shared.gates);
        assert!(
            gates
                .busy
                .values()
                .chain(gates.blocking.values())
                .all(|&n| n == 0),
            "every attempt's end was seen and every cancel returned: {gates:?}"
        );
    }
    shared.log.take()
}
