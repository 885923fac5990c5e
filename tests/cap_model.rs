//! Property test of `max_finished` against a sequential model: random sequences of
//! finished launches and revokes over enough ids to spread across the shards, checked
//! after every step against a model that keeps the full records in finishing order and
//! evicts from the oldest end.
//!
//! The model's rules, from the docs of `Builder::max_finished`: a finish adds a full
//! record at the young end; a relaunch of a failed id or the start of a revoke takes
//! its full record out (a relaunch or a revoke of an evicted id finds a tombstone or
//! nothing); a revoke that fails puts a full record back at the young end (a tombstone
//! stays a tombstone); over the cap, the oldest full record is evicted: forgotten with
//! `SuccessExpiry::Forget`, otherwise a success becomes a tombstone (still `Success`,
//! without details) and a failure is forgotten.
//!
//! Relaunches and revokes leave stale entries in the store's per-shard queues, which
//! is what this test is for: the cap must still evict in finishing order across all
//! shards.

mod common;

use std::collections::VecDeque;

use async_tasks_recorder::{AsyncTasksRecorder, SuccessExpiry, TaskState};
use common::outcome;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const IDS: u64 = 32;

#[derive(Debug, Clone, Copy)]
enum Step {
    /// `launch_block` of a future that returns at once, `Ok` or `Err`.
    Run { id: u64, ok: bool },
    /// `revoke_task_block` of a future that returns at once, `Ok` or `Err`.
    Revoke { id: u64, ok: bool },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..IDS, any::<bool>()).prop_map(|(id, ok)| Step::Run { id, ok }),
        1 => (0..IDS, any::<bool>()).prop_map(|(id, ok)| Step::Revoke { id, ok }),
    ]
}

/// What the model knows of one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rec {
    NotFound,
    /// A full record (counted by the cap) or a tombstone.
    Success {
        tomb: bool,
    },
    Failed,
}

struct Model {
    cap: usize,
    forget: bool,
    recs: Vec<Rec>,
    /// The ids of the full records, oldest finish first.
    order: VecDeque<u64>,
}

impl Model {
    fn new(cap: usize, forget: bool) -> Self {
        Model {
            cap,
            forget,
            recs: vec![Rec::NotFound; IDS as usize],
            order: VecDeque::new(),
        }
    }

    fn take_out(&mut self, id: u64) {
        self.order.retain(|&i| i != id);
    }

    fn finish(&mut self, id: u64, rec: Rec) {
        self.recs[id as usize] = rec;
        self.order.push_back(id);
        while self.order.len() > self.cap {
            let oldest = self.order.pop_front().expect("over the cap");
            let r = &mut self.recs[oldest as usize];
            *r = match *r {
                Rec::Success { .. } if !self.forget => Rec::Success { tomb: true },
                _ => Rec::NotFound,
            };
        }
    }

    /// Applies `step`; returns whether the recorder must accept it.
    fn apply(&mut self, step: Step) -> bool {
        match step {
            Step::Run { id, ok } => match self.recs[id as usize] {
                Rec::Success { .. } => false,
                Rec::NotFound | Rec::Failed => {
                    self.take_out(id);
                    let rec = if ok {
                        Rec::Success { tomb: false }
                    } else {
                        Rec::Failed
                    };
                    self.finish(id, rec);
                    true
                }
            },
            Step::Revoke { id, ok } => match self.recs[id as usize] {
                Rec::Success { tomb } => {
                    self.take_out(id);
                    if ok {
                        self.recs[id as usize] = Rec::NotFound;
                    } else if !tomb {
                        self.finish(id, Rec::Success { tomb: false });
                    }
                    true
                }
                Rec::NotFound | Rec::Failed => false,
            },
        }
    }
}

fn check(steps: Vec<Step>, cap: usize, forget: bool) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let expiry = if forget {
            SuccessExpiry::Forget
        } else {
            SuccessExpiry::Tombstone
        };
        let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::builder()
            .max_finished(cap)
            .success_expiry(expiry)
            // A full record has details, a tombstone has none.
            .track_details(true)
            .build();
        let mut m = Model::new(cap, forget);
        for (i, &step) in steps.iter().enumerate() {
            let accepted = match step {
                Step::Run { id, ok } => rec
                    .launch_block(id, std::future::ready(outcome(ok)))
                    .await
                    .is_ok(),
                Step::Revoke { id, ok } => {
                    match rec
                        .revoke_task_block(id, std::future::ready(outcome(ok)))
                        .await
                    {
                        Ok(()) => true,
                        // Refusals say so; a revoke future's own error is a revoke
                        // that ran.
                        Err(e) => e.into_future().is_none(),
                    }
                }
            };
            let want = m.apply(step);
            prop_assert_eq!(accepted, want, "step {}: {:?}", i, step);
            let mut full = 0;
            for id in 0..IDS {
                let status = rec.status(&id).await;
                let got = match status.phase.state() {
                    TaskState::NotFound => Rec::NotFound,
                    TaskState::Failed => Rec::Failed,
                    TaskState::Success => Rec::Success {
                        tomb: status.since.is_none(),
                    },
                    TaskState::Working => {
                        return Err(TestCaseError::fail(format!("step {i}: id {id} Working")))
                    }
                };
                prop_assert_eq!(
                    got,
                    m.recs[id as usize],
                    "step {}: {:?}; id {} (full records, oldest first: {:?})",
                    i,
                    step,
                    id,
                    m.order
                );
                full += usize::from(matches!(got, Rec::Failed | Rec::Success { tomb: false }));
            }
            prop_assert_eq!(full, m.order.len().min(cap), "step {}", i);
        }
        Ok(())
    })
}

#[test]
fn max_finished_matches_the_model() {
    for forget in [false, true] {
        for cap in [0, 1, 3, 8] {
            let mut runner = TestRunner::new(Config {
                cases: 120,
                failure_persistence: None,
                ..Config::default()
            });
            let result = runner.run(&prop::collection::vec(step(), 1..120), |steps| {
                check(steps, cap, forget)
            });
            if let Err(e) = result {
                panic!("forget = {forget}, cap = {cap}: {e}");
            }
        }
    }
}
