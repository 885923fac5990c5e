//! Model-based property test on both stores, in real time: random sequences of
//! operations on a few ids, each step checked against the sequential model of
//! `tests/model` before the next one starts.
//!
//! `tests/model_based.rs` drives the in-memory recorder on a paused clock, scheduler
//! turn by scheduler turn; a networked store cannot be driven so, so this driver only
//! moves on when the recorder says a step is done: a launched future ends when the
//! test releases it, and the step then waits for the id through `wait`. The same steps
//! run on the in-memory recorder and, with the `redis` feature, on the Redis recorder
//! (two replicas of one namespace, each call through the next), and the injected
//! faults that do not depend on timing (stale reads, a second success) are caught on
//! both; the linearizability suite covers waits that do not wait.

mod common;
mod model;
#[cfg(feature = "redis")]
#[path = "support/redis_server.rs"]
mod redis_server;

use std::collections::HashMap;

use async_tasks_recorder::{FailureReason, TaskPhase, TaskState};
use common::bounded;
use model::{Fault, Model, Subject};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tokio::sync::oneshot;

const IDS: u64 = 3;

#[derive(Debug, Clone, Copy)]
enum Step {
    /// `launch` with a future that ends when released.
    Launch {
        id: u64,
    },
    /// `launch_block` of a future that ends at once, `ok` or not.
    LaunchBlock {
        id: u64,
        ok: bool,
    },
    /// Release the running future of the id (if the test holds one) and wait for it.
    Release {
        id: u64,
        ok: bool,
    },
    /// `cancel` the id.
    Cancel {
        id: u64,
    },
    /// `revoke_task_block` with a future that ends at once, `ok` or not.
    Revoke {
        id: u64,
        ok: bool,
    },
    Query {
        id: u64,
    },
    Quick {
        id: u64,
    },
    /// `wait` on an id that is not running (it answers at once).
    Wait {
        id: u64,
    },
    Counts,
}

fn step() -> impl Strategy<Value = Step> {
    let id = 0..IDS;
    prop_oneof![
        3 => id.clone().prop_map(|id| Step::Launch { id }),
        1 => (id.clone(), any::<bool>()).prop_map(|(id, ok)| Step::LaunchBlock { id, ok }),
        3 => (id.clone(), any::<bool>()).prop_map(|(id, ok)| Step::Release { id, ok }),
        1 => id.clone().prop_map(|id| Step::Cancel { id }),
        2 => (id.clone(), any::<bool>()).prop_map(|(id, ok)| Step::Revoke { id, ok }),
        2 => id.clone().prop_map(|id| Step::Query { id }),
        1 => id.clone().prop_map(|id| Step::Quick { id }),
        1 => id.clone().prop_map(|id| Step::Wait { id }),
        1 => Just(Step::Counts),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(step(), 1..40)
}

macro_rules! check {
    ($step:expr, $what:expr, $got:expr, $want:expr) => {{
        let (got, want) = ($got, $want);
        prop_assert_eq!(
            &got,
            &want,
            "step {:?}: {} was {:?}, the model says {:?}",
            $step,
            $what,
            got,
            want
        );
    }};
}

struct Driver {
    subject: Subject,
    model: Model,
    /// The release of each running future the test launched.
    gates: HashMap<u64, oneshot::Sender<bool>>,
}

impl Driver {
    async fn step(&mut self, step: Step) -> Result<(), TestCaseError> {
        match step {
            Step::Launch { id } => {
                let (tx, rx) = oneshot::channel::<bool>();
                let fut = async move {
                    // A dropped gate (the test ended) fails the attempt.
                    if rx.await.unwrap_or(false) {
                        Ok(())
                    } else {
                        Err(())
                    }
                };
                let got = self.subject.launch(id, fut).await;
                check!(step, "the launch", got, self.model.launch(id));
                if got.is_ok() {
                    self.gates.insert(id, tx);
                }
            }
            Step::LaunchBlock { id, ok } => {
                let fut = async move {
                    if ok {
                        Ok(())
                    } else {
                        Err(())
                    }
                };
                let got = self.subject.launch_block(id, fut).await;
                let want = self.model.launch(id);
                if want.is_ok() {
                    self.model.finish(id, ok);
                }
                check!(step, "the launch", got, want);
            }
            Step::Release { id, ok } => {
                let Some(gate) = self.gates.remove(&id) else {
                    return Ok(());
                };
                let _ = gate.send(ok);
                let (phase, reason) = bounded("the released future", self.subject.wait(id)).await;
                self.model.finish(id, ok);
                let want = if ok {
                    (TaskPhase::Success, None)
                } else {
                    (TaskPhase::Failed, Some(FailureReason::Error))
                };
                check!(step, "the end waited for", (phase, reason), want);
            }
            Step::Cancel { id } => {
                let got = bounded("cancel", self.subject.cancel(id)).await;
                let want = self.model.cancel(id);
                if want {
                    // The cancelled attempt's future is gone; its gate goes with it.
                    self.gates.remove(&id);
                }
                check!(step, "the cancel", got, want);
                if got {
                    let status = self.subject.status(id).await;
                    check!(
                        step,
                        "the reason",
                        status.last_failure,
                        Some(FailureReason::Cancelled)
                    );
                }
            }
            Step::Revoke { id, ok } => {
                let fut = async move {
                    if ok {
                        Ok(())
                    } else {
                        Err(())
                    }
                };
                let got = self.subject.revoke_block(id, fut).await;
                check!(step, "the revoke", got, self.model.revoke_block(id, ok));
            }
            Step::Query { id } => {
                check!(
                    step,
                    "the state",
                    self.subject.query(id).await,
                    self.model.query(id)
                );
            }
            Step::Quick { id } => {
                check!(
                    step,
                    "the quick state",
                    self.subject.quick(id).await,
                    self.model.quick(id)
                );
            }
            Step::Wait { id } => {
                // Only where it answers at once: a running id would wait for the test.
                if let Some(phase) = self.model.wait(id) {
                    let (got, _) = bounded("wait", self.subject.wait(id)).await;
                    check!(step, "the wait", got, phase);
                }
            }
            Step::Counts => {
                let c = self.subject.counts().await;
                let want = [
                    self.model.count(TaskState::Working),
                    self.model.count(TaskState::Success),
                    self.model.count(TaskState::Failed),
                ];
                check!(step, "the counts", [c.working, c.success, c.failed], want);
            }
        }
        Ok(())
    }

    /// Ends every running future, and checks the final states.
    async fn finish_all(&mut self) -> Result<(), TestCaseError> {
        let ids: Vec<u64> = self.gates.keys().copied().collect();
        for id in ids {
            self.step(Step::Release { id, ok: true }).await?;
        }
        for id in 0..IDS {
            self.step(Step::Query { id }).await?;
        }
        self.step(Step::Counts).await
    }
}

/// Which store a run uses, and what it needs.
struct Bench {
    rt: tokio::runtime::Runtime,
    #[cfg(feature = "redis")]
    server: Option<redis_server::RedisServer>,
    cases: std::sync::atomic::AtomicU64,
}

impl Bench {
    fn memory() -> Bench {
        Bench {
            rt: runtime(),
            #[cfg(feature = "redis")]
            server: None,
            cases: Default::default(),
        }
    }

    #[cfg(feature = "redis")]
    fn redis() -> Bench {
        Bench {
            rt: runtime(),
            server: Some(redis_server::RedisServer::start()),
            cases: Default::default(),
        }
    }

    fn subject(&self, fault: Fault) -> Subject {
        let case = self
            .cases
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        #[cfg(feature = "redis")]
        if let Some(server) = &self.server {
            let replicas = self.rt.block_on(async {
                let mut replicas = Vec::new();
                for _ in 0..2 {
                    let rec = async_tasks_recorder::redis::RedisRecorder::builder(server.url())
                        .namespace(format!("case{case}"))
                        .build();
                    replicas.push(bounded("build", rec).await.expect("builds"));
                }
                replicas
            });
            return Subject::on(model::Store::redis(replicas), fault);
        }
        let _ = case;
        Subject::new(fault)
    }

    fn run(&self, steps: &[Step], fault: Fault) -> Result<(), TestCaseError> {
        let subject = self.subject(fault);
        self.rt.block_on(async {
            let mut driver = Driver {
                subject,
                model: Model::default(),
                gates: HashMap::new(),
            };
            for &step in steps {
                driver.step(step).await?;
            }
            driver.finish_all().await
        })
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn follows_the_model(bench: &Bench, cases: u32) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(e) = runner.run(&steps(), |steps| bench.run(&steps, Fault::None)) {
        panic!("{e}");
    }
}

/// Runs the property against a faulty subject and returns the minimal failing case.
fn find_violation(bench: &Bench, fault: Fault) -> String {
    model::find_violation(fault, 512, &steps(), |steps| bench.run(steps, fault))
}

#[test]
fn memory_follows_the_model() {
    follows_the_model(&Bench::memory(), 256);
}

#[test]
fn memory_stale_reads_are_caught() {
    let report = find_violation(&Bench::memory(), Fault::StaleRead);
    assert!(report.contains("the state"), "{report}");
}

#[cfg(feature = "redis")]
#[test]
fn redis_follows_the_model() {
    follows_the_model(&Bench::redis(), 96);
}

#[cfg(feature = "redis")]
#[test]
fn redis_stale_reads_are_caught() {
    let report = find_violation(&Bench::redis(), Fault::StaleRead);
    assert!(report.contains("the state"), "{report}");
}

#[cfg(feature = "redis")]
#[test]
fn redis_second_successes_are_caught() {
    let report = find_violation(&Bench::redis(), Fault::DoubleSuccess);
    assert!(report.contains("the launch"), "{report}");
}
