//! Property test of retention against a sequential model with time: random sequences
//! of finished launches, revokes, clock jumps and queries on a few ids, on a
//! current-thread runtime with a paused clock.
//!
//! The model knows when every record finished, so for each record it knows a time
//! before which it must still be there (its TTL) and one after which it must be gone
//! (the TTL plus two sweeper ticks); in between, either answer is right and the model
//! adopts what it saw. Checked at every step: the state of every id, its detailed
//! status (attempts, failure reason, whether it is a tombstone), whether a launch or a
//! revoke is accepted, the counts, and that a tombstoned or unexpired success never
//! runs again.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_tasks_recorder::{AsyncTasksRecorder, FailureReason, SuccessExpiry, TaskPhase};
use common::{counted, outcome};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const IDS: u64 = 4;
const FAILED_TTL: u64 = 1000;
const SUCCESS_TTL: u64 = 2000;
/// The sweeper's period: a sixteenth of the shortest TTL.
const TICK: u64 = FAILED_TTL / 16;

#[derive(Debug, Clone, Copy)]
enum Step {
    /// `launch_block` of a future that returns at once, `Ok` or `Err`.
    Run { id: u64, ok: bool },
    /// `revoke_task_block` of a future that returns at once.
    Revoke { id: u64, ok: bool },
    /// Jump the clock by this many milliseconds (letting the sweeper run).
    Advance { ms: u64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..IDS, any::<bool>()).prop_map(|(id, ok)| Step::Run { id, ok }),
        1 => (0..IDS, any::<bool>()).prop_map(|(id, ok)| Step::Revoke { id, ok }),
        3 => prop_oneof![0..200u64, 900..1100u64, 1900..2300u64].prop_map(|ms| Step::Advance { ms }),
    ]
}

/// What the model knows of one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rec {
    NotFound,
    /// Finished at `at` (ms); `tomb` once known to be a tombstone.
    Success {
        at: u64,
        attempts: u32,
        tomb: bool,
    },
    Failed {
        at: u64,
        attempts: u32,
    },
}

/// Where a record stands against its expiry at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Age {
    Fresh,
    Either,
    Expired,
}

fn age(at: u64, ttl: u64, now: u64) -> Age {
    if now < at + ttl {
        Age::Fresh
    } else if now >= at + ttl + 2 * TICK {
        Age::Expired
    } else {
        Age::Either
    }
}

struct Model {
    forget: bool,
    recs: [Rec; IDS as usize],
    now: u64,
}

impl Model {
    /// The record of `id` with what is certain by now applied; `Age::Either` left for
    /// the caller to resolve by observation.
    fn settle(&mut self, id: u64) -> (Rec, Age) {
        let now = self.now;
        let rec = self.recs[id as usize];
        let a = match rec {
            Rec::NotFound => Age::Fresh,
            Rec::Failed { at, .. } => age(at, FAILED_TTL, now),
            Rec::Success { tomb: true, .. } => Age::Fresh,
            Rec::Success { at, .. } => age(at, SUCCESS_TTL, now),
        };
        if a == Age::Expired {
            self.recs[id as usize] = self.expired(rec);
        }
        (
            self.recs[id as usize],
            if a == Age::Expired { Age::Fresh } else { a },
        )
    }

    fn expired(&self, rec: Rec) -> Rec {
        match rec {
            Rec::Failed { .. } => Rec::NotFound,
            Rec::Success { .. } if self.forget => Rec::NotFound,
            Rec::Success { at, attempts, .. } => Rec::Success {
                at,
                attempts,
                tomb: true,
            },
            Rec::NotFound => Rec::NotFound,
        }
    }
}

fn check(steps: Vec<Step>, forget: bool) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let start = tokio::time::Instant::now();
        let expiry = if forget {
            SuccessExpiry::Forget
        } else {
            SuccessExpiry::Tombstone
        };
        let rec: AsyncTasksRecorder<u64> = AsyncTasksRecorder::builder()
            .failed_ttl(Duration::from_millis(FAILED_TTL))
            .success_ttl(Duration::from_millis(SUCCESS_TTL))
            .success_expiry(expiry)
            .track_details(true)
            .build();
        let mut m = Model {
            forget,
            recs: [Rec::NotFound; IDS as usize],
            now: 0,
        };
        let runs = Arc::new(AtomicUsize::new(0));
        for (i, step) in steps.into_iter().enumerate() {
            match step {
                Step::Advance { ms } => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    for _ in 0..4 {
                        tokio::task::yield_now().await;
                    }
                    m.now = u64::try_from(start.elapsed().as_millis()).unwrap();
                }
                Step::Run { id, ok } => {
                    let (before, a) = m.settle(id);
                    let runs_before = runs.load(Ordering::SeqCst);
                    let accepted = rec
                        .launch_block(id, counted(&runs, outcome(ok)))
                        .await
                        .is_ok();
                    let ran = runs.load(Ordering::SeqCst) - runs_before;
                    prop_assert_eq!(ran, usize::from(accepted), "step {}", i);
                    let may_launch_now = matches!(before, Rec::NotFound | Rec::Failed { .. });
                    let may_launch_expired =
                        matches!(m.expired(before), Rec::NotFound | Rec::Failed { .. });
                    match a {
                        Age::Fresh | Age::Expired => prop_assert_eq!(
                            accepted,
                            may_launch_now,
                            "step {}: launch of {} in {:?}",
                            i,
                            id,
                            before
                        ),
                        Age::Either => prop_assert!(
                            accepted == may_launch_now || accepted == may_launch_expired,
                            "step {}: launch of {} in {:?} (expiring)",
                            i,
                            id,
                            before
                        ),
                    }
                    if accepted {
                        // Attempts count on from a failure that was still there, or
                        // start over after it was forgotten.
                        let status = rec.status(&id).await;
                        let attempts = status.attempts.expect("details are tracked");
                        let prior = match before {
                            Rec::Failed { attempts, .. } => attempts,
                            _ => 0,
                        };
                        match a {
                            Age::Either => prop_assert!(
                                attempts == prior + 1 || attempts == 1,
                                "step {}: attempts {}",
                                i,
                                attempts
                            ),
                            _ => prop_assert_eq!(attempts, prior + 1, "step {}", i),
                        }
                        m.recs[id as usize] = if ok {
                            Rec::Success {
                                at: m.now,
                                attempts,
                                tomb: false,
                            }
                        } else {
                            Rec::Failed {
                                at: m.now,
                                attempts,
                            }
                        };
                    } else if a == Age::Either && !may_launch_now {
                        // Refused: it was still there (a success, possibly now a
                        // tombstone); learnt on the next look.
                    }
                }
                Step::Revoke { id, ok } => {
                    let (before, a) = m.settle(id);
                    let result = rec.revoke_task_block(id, async move {
                        if ok {
                            Ok(())
                        } else {
                            Err(())
                        }
                    });
                    let result = result.await;
                    let ran = !matches!(
                        result,
                        Err(async_tasks_recorder::RevokeFailReason::NotSuccess(_))
                            | Err(async_tasks_recorder::RevokeFailReason::Revoking(_))
                    );
                    let success_now = matches!(before, Rec::Success { .. });
                    let success_expired = matches!(m.expired(before), Rec::Success { .. });
                    if a == Age::Either {
                        prop_assert!(ran == success_now || ran == success_expired, "step {}", i);
                    } else {
                        prop_assert_eq!(ran, success_now, "step {}: revoke of {:?}", i, before);
                    }
                    if ran {
                        m.recs[id as usize] = if ok {
                            Rec::NotFound
                        } else {
                            // Back to Success; a timed record's TTL starts again, a
                            // tombstone stays one.
                            match before {
                                Rec::Success {
                                    attempts,
                                    tomb: false,
                                    ..
                                } if a != Age::Either => Rec::Success {
                                    at: m.now,
                                    attempts,
                                    tomb: false,
                                },
                                Rec::Success { attempts, .. } => {
                                    let status = rec.status(&id).await;
                                    Rec::Success {
                                        at: m.now,
                                        attempts,
                                        tomb: status.since.is_none(),
                                    }
                                }
                                other => other,
                            }
                        };
                    }
                }
            }

            // Every id against the model, resolving what may go either way.
            let mut working_or_revoking = 0;
            let (mut success, mut failed) = (0, 0);
            for id in 0..IDS {
                let (want, a) = m.settle(id);
                let status = rec.status(&id).await;
                prop_assert_eq!(
                    rec.query_task_state(&id).await,
                    status.phase.state(),
                    "step {}",
                    i
                );
                let seen = match (status.phase, want) {
                    (TaskPhase::NotFound, Rec::NotFound) => Rec::NotFound,
                    (TaskPhase::NotFound, _)
                        if a == Age::Either && m.expired(want) == Rec::NotFound =>
                    {
                        Rec::NotFound
                    }
                    (TaskPhase::Failed, Rec::Failed { at, attempts }) => {
                        prop_assert_eq!(status.attempts, Some(attempts), "step {}", i);
                        prop_assert_eq!(status.last_failure, Some(FailureReason::Error));
                        Rec::Failed { at, attempts }
                    }
                    (TaskPhase::Success, Rec::Success { at, attempts, tomb }) => {
                        let is_tomb = status.since.is_none();
                        if is_tomb {
                            prop_assert!(
                                tomb || (a != Age::Fresh && !m.forget),
                                "step {}: id {} tombstoned too early",
                                i,
                                id
                            );
                            prop_assert_eq!(status.attempts, None);
                        } else {
                            prop_assert!(!tomb, "step {}: a tombstone came back", i);
                            prop_assert_eq!(status.attempts, Some(attempts), "step {}", i);
                        }
                        Rec::Success {
                            at,
                            attempts,
                            tomb: is_tomb,
                        }
                    }
                    (got, want) => {
                        return Err(TestCaseError::fail(format!(
                            "step {i}: id {id} is {got:?}, model has {want:?} ({a:?}) at {} ms",
                            m.now
                        )))
                    }
                };
                m.recs[id as usize] = seen;
                match seen {
                    Rec::Success { .. } => success += 1,
                    Rec::Failed { .. } => failed += 1,
                    Rec::NotFound => {}
                }
                working_or_revoking += usize::from(!status.phase.is_final());
            }
            prop_assert_eq!(working_or_revoking, 0);
            // The sweeper only runs while the test sleeps, so the counts match what
            // was just seen.
            let counts = rec.counts().await;
            prop_assert_eq!(
                (counts.success, counts.failed),
                (success, failed),
                "step {}",
                i
            );
        }
        Ok(())
    })
}

#[test]
fn retention_matches_the_model() {
    for forget in [false, true] {
        let mut runner = TestRunner::new(Config {
            cases: 300,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&prop::collection::vec(step(), 1..60), |steps| {
            check(steps, forget)
        });
        if let Err(e) = result {
            panic!("forget = {forget}: {e}");
        }
    }
}
