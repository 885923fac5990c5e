//! Property test of `max_running` against a sequential model: random launches,
//! finishes, cancels and reads over a few ids with two running slots, checked after
//! every step against a model that keeps the running ids and a first-in first-out
//! queue of the others.
//!
//! The model's rules, from the docs of `Builder::max_running` and `TaskStatus::queued`:
//! an accepted launch runs if a slot is free and nobody is queued, else it joins the
//! end of the queue (the id reads `Working` either way, and `queued` while it waits);
//! when a running task ends (it returns, or a cancel stops it), the task at the head of
//! the queue gets its slot; a cancelled queued task leaves the queue, `Failed`
//! (`Cancelled`), without taking a slot. The runtime is current-thread, so a task that
//! got a slot has started once the scheduler has run it: the driver lets it run (a
//! bounded number of turns) before it compares.

mod common;

use std::collections::{HashMap, VecDeque};

use async_tasks_recorder::{AsyncTasksRecorder, FailureReason, TaskPhase};
use common::timing::settle;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use tokio::sync::oneshot;

const IDS: u64 = 5;
const SLOTS: usize = 2;

#[derive(Debug, Clone, Copy)]
enum Step {
    /// `launch` of a future that runs until `Finish` releases it.
    Launch { id: u64 },
    /// Release the running future of `id` (nothing if it is queued or not running).
    Finish { id: u64, ok: bool },
    /// `cancel` the id.
    Cancel { id: u64 },
    /// `status` of the id: its phase and whether it is queued.
    Status { id: u64 },
    /// `counts`: working and queued.
    Counts,
}

fn step() -> impl Strategy<Value = Step> {
    let id = 0..IDS;
    prop_oneof![
        4 => id.clone().prop_map(|id| Step::Launch { id }),
        3 => (id.clone(), any::<bool>()).prop_map(|(id, ok)| Step::Finish { id, ok }),
        1 => id.clone().prop_map(|id| Step::Cancel { id }),
        3 => id.clone().prop_map(|id| Step::Status { id }),
        1 => Just(Step::Counts),
    ]
}

/// The model: every id's phase, the running ids and the queue.
#[derive(Debug, Default)]
struct Model {
    phases: HashMap<u64, TaskPhase>,
    running: Vec<u64>,
    queue: VecDeque<u64>,
}

impl Model {
    fn phase(&self, id: u64) -> TaskPhase {
        self.phases.get(&id).copied().unwrap_or(TaskPhase::NotFound)
    }

    fn launch(&mut self, id: u64) -> bool {
        if !matches!(self.phase(id), TaskPhase::NotFound | TaskPhase::Failed) {
            return false;
        }
        self.phases.insert(id, TaskPhase::Working);
        if self.running.len() < SLOTS && self.queue.is_empty() {
            self.running.push(id);
        } else {
            self.queue.push_back(id);
        }
        true
    }

    /// A running task of `id` ended as `to`: the head of the queue gets the slot.
    fn end_running(&mut self, id: u64, to: TaskPhase) -> Option<u64> {
        self.running.retain(|&r| r != id);
        self.phases.insert(id, to);
        let next = self.queue.pop_front()?;
        self.running.push(next);
        Some(next)
    }
}

struct Driver {
    rec: AsyncTasksRecorder<u64>,
    model: Model,
    /// The gates of launched futures, by id.
    gates: HashMap<u64, oneshot::Sender<bool>>,
}

impl Driver {
    /// Lets the scheduler run until `id` reads as started (a slot it was given), or
    /// fails the case after a bounded number of turns.
    async fn until_started(&self, step: Step, id: u64) -> Result<(), TestCaseError> {
        for _ in 0..10_000 {
            if !self.rec.status(&id).await.queued {
                return Ok(());
            }
            tokio::task::yield_now().await;
        }
        Err(TestCaseError::fail(format!(
            "{step:?}: {id} got a slot by the model but stays queued"
        )))
    }

    /// Lets the scheduler run until `id` is no longer `Working`.
    async fn until_ended(&self, id: u64) -> Result<(), TestCaseError> {
        for _ in 0..10_000 {
            if self.rec.status(&id).await.phase != TaskPhase::Working {
                return Ok(());
            }
            tokio::task::yield_now().await;
        }
        Err(TestCaseError::fail(format!("{id} never ended")))
    }

    async fn step(&mut self, step: Step) -> Result<(), TestCaseError> {
        match step {
            Step::Launch { id } => {
                let (tx, rx) = oneshot::channel::<bool>();
                let fut = async move {
                    match rx.await {
                        Ok(true) => Ok(()),
                        _ => Err(()),
                    }
                };
                let want = self.model.launch(id);
                let got = self.rec.launch(id, fut).await.is_ok();
                check_model!(step, "the launch", got, want);
                if got {
                    self.gates.insert(id, tx);
                    // Let a task with a slot start, as the scheduler would.
                    for _ in 0..4 {
                        tokio::task::yield_now().await;
                    }
                }
            }
            Step::Finish { id, ok } => {
                if !self.model.running.contains(&id) {
                    return Ok(());
                }
                let gate = self.gates.remove(&id).expect("a running id has a gate");
                let _ = gate.send(ok);
                self.until_ended(id).await?;
                let to = if ok {
                    TaskPhase::Success
                } else {
                    TaskPhase::Failed
                };
                if let Some(next) = self.model.end_running(id, to) {
                    self.until_started(step, next).await?;
                }
            }
            Step::Cancel { id } => {
                let working = self.model.phase(id) == TaskPhase::Working;
                let cancelled = settle("the cancel", self.rec.cancel(&id)).await?;
                check_model!(step, "cancel's answer", cancelled, working);
                if working {
                    self.gates.remove(&id);
                    if let Some(at) = self.model.queue.iter().position(|&q| q == id) {
                        self.model.queue.remove(at);
                        self.model.phases.insert(id, TaskPhase::Failed);
                    } else if let Some(next) = self.model.end_running(id, TaskPhase::Failed) {
                        self.until_started(step, next).await?;
                    }
                    let status = self.rec.status(&id).await;
                    check_model!(
                        step,
                        "the reason",
                        status.last_failure,
                        Some(FailureReason::Cancelled)
                    );
                }
            }
            Step::Status { id } => {
                let status = self.rec.status(&id).await;
                let queued = self.model.queue.contains(&id);
                check_model!(
                    step,
                    "the status",
                    (status.phase, status.queued),
                    (self.model.phase(id), queued)
                );
            }
            Step::Counts => {
                let counts = self.rec.counts().await;
                let working = self.model.running.len() + self.model.queue.len();
                check_model!(
                    step,
                    "working and queued",
                    (counts.working, counts.queued),
                    (working, self.model.queue.len())
                );
            }
        }
        Ok(())
    }
}

fn run_case(steps: &[Step]) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut driver = Driver {
            rec: AsyncTasksRecorder::builder().max_running(SLOTS).build(),
            model: Model::default(),
            gates: HashMap::new(),
        };
        for &step in steps {
            driver.step(step).await?;
        }
        // Everything ends: release the running ones until none is left.
        while let Some(&id) = driver.model.running.first() {
            driver.step(Step::Finish { id, ok: true }).await?;
        }
        for id in 0..IDS {
            driver.step(Step::Status { id }).await?;
        }
        driver.step(Step::Counts).await
    })
}

proptest! {
    #![proptest_config(Config { cases: 500, ..Config::default() })]

    #[test]
    fn the_running_limit_follows_the_model(steps in prop::collection::vec(step(), 1..40)) {
        run_case(&steps)?;
    }
}
