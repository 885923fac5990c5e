//! Model-based property test: random sequences of operations on a few ids, driven
//! deterministically on a current-thread runtime (the test decides when each future
//! ends), compared step by step with the sequential model in `tests/model`.
//!
//! The same driver runs against subjects with injected faults, and must report them.

mod model;

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use async_tasks_recorder::{RevokeFailReason, TaskState};
use model::{Fault, Model, RevokeOutcome, Subject};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const IDS: u64 = 3;

/// How a future ends when the test releases it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Ok,
    Err,
    Panic,
}

/// Whether an operation spawns (`launch`, `revoke_task`) or runs in the caller
/// (`launch_block`, `revoke_task_block`, here inside a task the test owns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    Spawn,
    Block,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// Launch a future that runs until `Finish` releases it.
    Launch {
        id: u64,
        how: How,
    },
    /// End the running future of `id`, if any.
    Finish {
        id: u64,
        end: End,
    },
    /// Poll a `launch_block` once and drop it while its future runs.
    DropBlocking {
        id: u64,
    },
    Query {
        id: u64,
    },
    Quick {
        id: u64,
    },
    /// A blocking revoke whose future ends at once.
    RevokeNow {
        id: u64,
        end: End,
    },
    /// A revoke whose future runs until `RevokeFinish` releases it.
    RevokeStart {
        id: u64,
        how: How,
    },
    RevokeFinish {
        id: u64,
        end: End,
    },
    /// Poll a `revoke_task_block` once and drop it while its future runs.
    RevokeDrop {
        id: u64,
    },
    Counts,
    Ids {
        state: TaskState,
    },
}

fn end() -> impl Strategy<Value = End> {
    prop_oneof![3 => Just(End::Ok), 2 => Just(End::Err), 1 => Just(End::Panic)]
}

fn how() -> impl Strategy<Value = How> {
    prop_oneof![Just(How::Spawn), Just(How::Block)]
}

fn step() -> impl Strategy<Value = Step> {
    let id = 0..IDS;
    prop_oneof![
        4 => (id.clone(), how()).prop_map(|(id, how)| Step::Launch { id, how }),
        4 => (id.clone(), end()).prop_map(|(id, end)| Step::Finish { id, end }),
        1 => id.clone().prop_map(|id| Step::DropBlocking { id }),
        3 => id.clone().prop_map(|id| Step::Query { id }),
        2 => id.clone().prop_map(|id| Step::Quick { id }),
        2 => (id.clone(), end()).prop_map(|(id, end)| Step::RevokeNow { id, end }),
        2 => (id.clone(), how()).prop_map(|(id, how)| Step::RevokeStart { id, how }),
        2 => (id.clone(), end()).prop_map(|(id, end)| Step::RevokeFinish { id, end }),
        1 => id.clone().prop_map(|id| Step::RevokeDrop { id }),
        1 => Just(Step::Counts),
        1 => prop::sample::select(TaskState::ALL.to_vec()).prop_map(|state| Step::Ids { state }),
    ]
}

/// A future released by the test. `returned` is set just before it ends (also before
/// it panics); on a current-thread runtime the recorder settles the record in the same
/// poll, so once the flag is seen the record is final.
struct Running {
    release: oneshot::Sender<End>,
    returned: Arc<AtomicBool>,
    started: Arc<AtomicBool>,
    /// For the blocking forms: the test's task running the call.
    caller: Option<JoinHandle<CallResult>>,
}

#[derive(Debug)]
enum CallResult {
    Launch(Result<(), TaskState>),
    Revoke(RevokeOutcome),
}

fn released() -> (
    Running,
    impl Future<Output = Result<(), ()>> + Send + 'static,
) {
    let (tx, rx) = oneshot::channel();
    let returned = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let fut = {
        let returned = returned.clone();
        let started = started.clone();
        async move {
            started.store(true, Ordering::SeqCst);
            let end = rx.await.unwrap_or(End::Err);
            returned.store(true, Ordering::SeqCst);
            match end {
                End::Ok => Ok(()),
                End::Err => Err(()),
                End::Panic => panic!("released future panics (expected by the test)"),
            }
        }
    };
    (
        Running {
            release: tx,
            returned,
            started,
            caller: None,
        },
        fut,
    )
}

/// Yields until `cond` holds; a bounded number of scheduler turns (the runtime is
/// current-thread, so this is deterministic), failing the case if it never does.
async fn turns_until(what: &str, mut cond: impl FnMut() -> bool) -> Result<(), TestCaseError> {
    for _ in 0..10_000 {
        if cond() {
            return Ok(());
        }
        tokio::task::yield_now().await;
    }
    Err(TestCaseError::fail(format!("stuck waiting for {what}")))
}

fn poll_once<F: Future>(fut: F) -> Poll<F::Output> {
    let mut fut = pin!(fut);
    fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

fn outcome_of<F>(r: Result<(), RevokeFailReason<F, ()>>) -> RevokeOutcome {
    RevokeOutcome::of(&r)
}

macro_rules! check {
    ($step:expr, $what:expr, $got:expr, $want:expr) => {{
        let (got, want) = ($got, $want);
        if got != want {
            return Err(TestCaseError::fail(format!(
                "{:?}: {} was {:?}, the model says {:?}",
                $step, $what, got, want
            )));
        }
    }};
}

struct Driver {
    subject: Subject,
    model: Model,
    tasks: HashMap<u64, Running>,
    revokes: HashMap<u64, Running>,
}

impl Driver {
    async fn step(&mut self, step: Step) -> Result<(), TestCaseError> {
        let rec = self.subject.rec.clone();
        match step {
            Step::Launch { id, how } => {
                let (mut running, fut) = released();
                let want = self.model.launch(id);
                let got = match how {
                    How::Spawn => self.subject.launch(id, fut).await,
                    How::Block => {
                        let subject = self.subject.clone();
                        let caller = tokio::spawn(async move {
                            CallResult::Launch(subject.launch_block(id, fut).await)
                        });
                        let started = running.started.clone();
                        turns_until("launch_block to start or return", || {
                            started.load(Ordering::SeqCst) || caller.is_finished()
                        })
                        .await?;
                        if caller.is_finished() {
                            match caller.await {
                                Ok(CallResult::Launch(r)) => r,
                                other => panic!("unexpected {other:?}"),
                            }
                        } else {
                            running.caller = Some(caller);
                            Ok(())
                        }
                    }
                };
                check!(step, "the launch", got, want);
                if got.is_ok() {
                    self.tasks.insert(id, running);
                }
            }
            Step::Finish { id, end } => {
                if let Some(running) = self.tasks.remove(&id) {
                    let _ = running.release.send(end);
                    let returned = running.returned.clone();
                    turns_until("the future to end", || returned.load(Ordering::SeqCst)).await?;
                    if let Some(caller) = running.caller {
                        let r = caller.await;
                        let want_panic = end == End::Panic;
                        check!(
                            step,
                            "a panic reaching launch_block's caller",
                            r.is_err(),
                            want_panic
                        );
                        if let Ok(CallResult::Launch(r)) = r {
                            check!(step, "launch_block's return", r, Ok(()));
                        }
                    }
                    self.model.finish(id, end == End::Ok);
                }
            }
            Step::DropBlocking { id } => {
                let (_running, fut) = released();
                let want = self.model.launch(id);
                let got = match poll_once(self.subject.launch_block(id, fut)) {
                    Poll::Ready(r) => r,
                    Poll::Pending => Ok(()),
                };
                check!(step, "the launch", got, want);
                if got.is_ok() {
                    self.model.finish(id, false);
                }
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
            Step::RevokeNow { id, end } => {
                let want = self.model.revoke_block(id, end == End::Ok);
                let caller = tokio::spawn(async move {
                    let fut = async move {
                        match end {
                            End::Ok => Ok(()),
                            End::Err => Err(()),
                            End::Panic => panic!("revoke future panics (expected by the test)"),
                        }
                    };
                    outcome_of(rec.revoke_task_block(id, fut).await)
                });
                match caller.await {
                    Ok(got) => check!(step, "the revoke", got, want),
                    Err(e) => {
                        assert!(e.is_panic());
                        // A panic reaches the caller only from a revoke that ran.
                        check!(step, "a panicking revoke", want, RevokeOutcome::TaskError);
                    }
                }
            }
            Step::RevokeStart { id, how } => {
                let (mut running, fut) = released();
                let want = self.model.revoke_begin(id);
                let got = match how {
                    How::Spawn => match rec.revoke_task(id, fut).await {
                        Ok(()) => Ok(()),
                        Err(RevokeFailReason::NotSuccess(_)) => Err(RevokeOutcome::NotSuccess),
                        Err(RevokeFailReason::Revoking(_)) => Err(RevokeOutcome::Revoking),
                    },
                    How::Block => {
                        let caller = tokio::spawn(async move {
                            CallResult::Revoke(outcome_of(rec.revoke_task_block(id, fut).await))
                        });
                        let started = running.started.clone();
                        turns_until("revoke_task_block to start or return", || {
                            started.load(Ordering::SeqCst) || caller.is_finished()
                        })
                        .await?;
                        if caller.is_finished() {
                            match caller.await {
                                Ok(CallResult::Revoke(r)) => Err(r),
                                other => panic!("unexpected {other:?}"),
                            }
                        } else {
                            running.caller = Some(caller);
                            Ok(())
                        }
                    }
                };
                check!(step, "the revoke", got, want);
                if got.is_ok() {
                    self.revokes.insert(id, running);
                }
            }
            Step::RevokeFinish { id, end } => {
                if let Some(running) = self.revokes.remove(&id) {
                    let _ = running.release.send(end);
                    let returned = running.returned.clone();
                    turns_until("the revoke to end", || returned.load(Ordering::SeqCst)).await?;
                    let want = self.model.revoke_end(id, end == End::Ok);
                    if let Some(caller) = running.caller {
                        match caller.await {
                            Ok(CallResult::Revoke(got)) => check!(step, "the revoke", got, want),
                            Ok(other) => panic!("unexpected {other:?}"),
                            Err(e) => {
                                assert!(e.is_panic());
                                check!(step, "a panic", end, End::Panic);
                            }
                        }
                    }
                }
            }
            Step::RevokeDrop { id } => {
                let (_running, fut) = released();
                let want = self.model.revoke_begin(id);
                let got = match poll_once(rec.revoke_task_block(id, fut)) {
                    Poll::Ready(r) => Err(outcome_of(r)),
                    Poll::Pending => Ok(()),
                };
                check!(step, "the revoke", got, want);
                if got.is_ok() {
                    self.model.revoke_end(id, false);
                }
            }
            Step::Counts => {
                let c = rec.counts().await;
                let revoking = self
                    .model
                    .states
                    .values()
                    .filter(|s| **s == model::ModelState::Revoking)
                    .count();
                check!(
                    step,
                    "the counts (working, success, failed, revoking)",
                    (c.working, c.success, c.failed, c.revoking),
                    (
                        self.model.count(TaskState::Working),
                        self.model.count(TaskState::Success),
                        self.model.count(TaskState::Failed),
                        revoking
                    )
                );
            }
            Step::Ids { state } => {
                let mut got = rec.ids_in_state(state).await;
                got.sort_unstable();
                check!(step, "the ids", got, self.model.ids(state));
            }
        }
        Ok(())
    }

    /// Ends everything still running, then checks that every id is final and agrees
    /// with the model: nothing is stuck.
    async fn finish_all(&mut self) -> Result<(), TestCaseError> {
        for id in 0..IDS {
            self.step(Step::Finish { id, end: End::Err }).await?;
            self.step(Step::RevokeFinish { id, end: End::Err }).await?;
        }
        let c = self.subject.rec.counts().await;
        check!(
            "end",
            "working and revoking",
            (c.working, c.revoking),
            (0, 0)
        );
        for id in 0..IDS {
            self.step(Step::Query { id }).await?;
        }
        Ok(())
    }
}

fn run_case(steps: &[Step], fault: Fault) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut driver = Driver {
            subject: Subject::new(fault),
            model: Model::default(),
            tasks: HashMap::new(),
            revokes: HashMap::new(),
        };
        for &step in steps {
            driver.step(step).await?;
        }
        driver.finish_all().await
    })
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(step(), 1..60)
}

proptest! {
    #![proptest_config(Config { cases: 1000, ..Config::default() })]

    #[test]
    fn recorder_follows_the_model(steps in steps()) {
        run_case(&steps, Fault::None)?;
    }
}

/// Runs the property against a faulty subject and returns the minimal failing case.
fn find_violation(fault: Fault) -> String {
    let mut runner = TestRunner::new(Config {
        cases: 2048,
        failure_persistence: None,
        ..Config::default()
    });
    match runner.run(&steps(), |steps| run_case(&steps, fault)) {
        Ok(()) => panic!("the property test did not notice {fault:?}"),
        Err(TestError::Fail(reason, minimal)) => {
            let text = format!("{reason}\nminimal sequence: {minimal:#?}");
            eprintln!("{fault:?} caught: {text}");
            assert!(
                minimal.len() <= 12,
                "shrinking left {} steps",
                minimal.len()
            );
            text
        }
        Err(other) => panic!("unexpected {other:?}"),
    }
}

#[test]
fn property_test_catches_stale_reads() {
    let report = find_violation(Fault::StaleRead);
    assert!(report.contains("the state was"), "{report}");
}

#[test]
fn property_test_catches_a_second_success() {
    let report = find_violation(Fault::DoubleSuccess);
    assert!(report.contains("the launch was Ok(())"), "{report}");
}
