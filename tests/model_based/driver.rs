//! The driver of the model-based property test: it makes each step on the subject and
//! on the model, decides when each launched or revoke future ends, and compares every
//! answer, the waiters' included.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use async_tasks_recorder::{
    FailureReason, Kept, LaunchError, LaunchOptions, RetryPolicy, RevokeFailReason, Settled,
    TaskError, TaskHandle, TaskPhase, TaskState,
};
use proptest::test_runner::TestCaseError;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::check_model;
use crate::common::timing::{settle, turns_until};
use crate::model::{self, Fault, Model, RevokeOutcome, Subject};
use crate::{End, How, Step, IDS};

/// One attempt of a retrying launch.
type Attempt = std::pin::Pin<Box<dyn Future<Output = Result<(), ()>> + Send>>;

/// What a reporting task reports.
const REPORTED: u64 = 42;

/// The message of a released future's panic.
const PANIC_MESSAGE: &str = "released future panics (expected by the test)";

/// A future released by the test. `returned` is set just before it ends (also before
/// it panics); on a current-thread runtime the recorder settles the record in the same
/// poll, so once the flag is seen the record is final.
struct Running {
    release: oneshot::Sender<End>,
    returned: Arc<AtomicBool>,
    started: Arc<AtomicBool>,
    /// For the blocking forms: the test's task running the call.
    caller: Option<JoinHandle<CallResult>>,
    /// For `launch_with`: the handle, and whether a timeout was set.
    handle: Option<TaskHandle<(), ()>>,
    timeout: bool,
    /// Launched with `launch_kept`.
    keeps: bool,
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
                End::Panic => panic!("{PANIC_MESSAGE}"),
            }
        }
    };
    (
        Running {
            release: tx,
            returned,
            started,
            caller: None,
            handle: None,
            timeout: false,
            keeps: false,
        },
        fut,
    )
}

fn poll_once<F: Future>(fut: F) -> Poll<F::Output> {
    let mut fut = pin!(fut);
    fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

fn outcome_of<F>(r: Result<(), RevokeFailReason<F, ()>>) -> RevokeOutcome {
    RevokeOutcome::of(&r)
}

/// A waiter on a running id; `want` is filled in when the model says the phase ended,
/// with what the ended phase kept.
struct Waiter {
    id: u64,
    task: JoinHandle<Settled>,
    want: Option<(TaskPhase, Option<Kept>)>,
    /// It waits on a revoke, whose end carries nothing kept.
    on_revoke: bool,
}

struct Driver {
    subject: Subject,
    model: Model,
    tasks: HashMap<u64, Running>,
    revokes: HashMap<u64, Running>,
    waiters: Vec<Waiter>,
    /// What the last attempt of each id kept when it ended (a launch clears it; only
    /// a keeping attempt's return or panic sets it).
    kept: HashMap<u64, Kept>,
    /// The progress the running attempt of each id reported (a launch clears it).
    progress: HashMap<u64, u64>,
    /// The ids whose retrying launch waits for its second attempt.
    backoff: std::collections::HashSet<u64>,
}

/// The final phase the model says an id is in (for waiters).
fn model_phase(model: &Model, id: u64) -> TaskPhase {
    match model.state(id) {
        None => TaskPhase::NotFound,
        Some(model::ModelState::Success) => TaskPhase::Success,
        Some(model::ModelState::Failed) => TaskPhase::Failed,
        Some(model::ModelState::Working) => TaskPhase::Working,
        Some(model::ModelState::Revoking) => TaskPhase::Revoking,
    }
}

impl Driver {
    /// A launch's answer as the model gives it: `Ok`, or the state that refused it
    /// (the state read back when the recorder was closed, which the model must say).
    async fn answer<F>(
        &self,
        step: Step,
        id: u64,
        launched: Result<(), LaunchError<F>>,
    ) -> Result<Result<(), TaskState>, TestCaseError> {
        Ok(match launched {
            Ok(()) => Ok(()),
            Err(LaunchError::Refused(state, _)) => Err(state),
            Err(LaunchError::Closed(_)) => {
                check_model!(step, "closed", true, self.model.closed);
                Err(self.subject.memory().query_task_state(&id).await)
            }
            Err(other) => panic!("step {step:?}: the in-memory store failed: {other}"),
        })
    }

    /// What the model says the record of `id` keeps: its last attempt's value while
    /// the record is that attempt's end (a success, also while revoked, or a failure).
    fn kept_of(&self, id: u64) -> Option<Kept> {
        match model_phase(&self.model, id) {
            TaskPhase::Success | TaskPhase::Revoking | TaskPhase::Failed => {
                self.kept.get(&id).cloned()
            }
            _ => None,
        }
    }

    /// After a step: waiters of ids whose running phase ended learn what to expect, and
    /// are checked.
    async fn check_waiters(&mut self, step: Step) -> Result<(), TestCaseError> {
        let mut pending = Vec::new();
        for mut w in std::mem::take(&mut self.waiters) {
            if w.want.is_none() {
                let now = model_phase(&self.model, w.id);
                // Still the same running phase: keep waiting. The driver ends a phase
                // only through steps, so a waiter never sees a later phase than this.
                if !now.is_final() {
                    pending.push(w);
                    continue;
                }
                let kept = if w.on_revoke {
                    None
                } else {
                    self.kept_of(w.id)
                };
                w.want = Some((now, kept));
            }
            let task = &w.task;
            turns_until("a waiter to wake", || task.is_finished()).await?;
            let got = w.task.await.expect("waiters do not panic");
            check_model!(
                step,
                "a waiter's outcome",
                (got.phase, got.kept),
                w.want.clone().unwrap()
            );
        }
        self.waiters = pending;
        Ok(())
    }

    async fn step(&mut self, step: Step) -> Result<(), TestCaseError> {
        self.apply(step).await?;
        self.check_waiters(step).await
    }

    async fn apply(&mut self, step: Step) -> Result<(), TestCaseError> {
        let rec = self.subject.memory().clone();
        match step {
            Step::LaunchWith { id, timeout } => {
                let (mut running, fut) = released();
                let want = self.model.launch(id);
                let options = if timeout {
                    LaunchOptions::new().timeout(std::time::Duration::from_secs(3600))
                } else {
                    LaunchOptions::new()
                };
                let got = match rec.launch_with(id, fut, options).await {
                    Ok(handle) => {
                        running.handle = Some(handle);
                        running.timeout = timeout;
                        Ok(())
                    }
                    Err(LaunchError::Refused(state, _)) => Err(state),
                    Err(LaunchError::Closed(_)) => {
                        check_model!(step, "closed", true, self.model.closed);
                        Err(rec.query_task_state(&id).await)
                    }
                    Err(other) => panic!("step {step:?}: the in-memory store failed: {other}"),
                };
                check_model!(step, "the launch", got, want);
                if got.is_ok() {
                    self.kept.remove(&id);
                    self.progress.remove(&id);
                }
                if got.is_ok() {
                    self.tasks.insert(id, running);
                }
            }
            Step::Elapse => {
                let timed: Vec<u64> = self
                    .tasks
                    .iter()
                    .filter(|(_, r)| r.timeout)
                    .map(|(&id, _)| id)
                    .collect();
                tokio::time::advance(std::time::Duration::from_secs(7200)).await;
                for id in std::mem::take(&mut self.backoff) {
                    let started = self.tasks[&id].started.clone();
                    turns_until("a retry's next attempt", || started.load(Ordering::SeqCst))
                        .await?;
                }
                for id in timed {
                    let running = self.tasks.remove(&id).unwrap();
                    let handle = running.handle.unwrap();
                    turns_until("the timeout to fire", || handle.is_finished()).await?;
                    let got = handle.await.map_err(|e| e.reason());
                    check_model!(
                        step,
                        "a timed-out handle",
                        got,
                        Err(FailureReason::TimedOut)
                    );
                    self.model.finish(id, false);
                }
            }
            Step::Wait { id } => {
                let want = model_phase(&self.model, id);
                if want.is_final() {
                    let got = settle("wait on a final id", rec.wait(&id)).await?;
                    check_model!(
                        step,
                        "wait on a final id",
                        (got.phase, got.kept),
                        (want, self.kept_of(id))
                    );
                } else {
                    let task = tokio::spawn(async move { rec.wait(&id).await });
                    // Let it register (or not): both must work.
                    tokio::task::yield_now().await;
                    self.waiters.push(Waiter {
                        id,
                        task,
                        want: None,
                        on_revoke: want == TaskPhase::Revoking,
                    });
                }
            }
            Step::Cancel { id } => {
                let working = self.model.state(id) == Some(model::ModelState::Working);
                let cancelled = settle("cancel to return", rec.cancel(&id)).await?;
                check_model!(step, "cancel's answer", cancelled, working);
                self.backoff.remove(&id);
                if let (true, Some(running)) = (working, self.tasks.remove(&id)) {
                    if let Some(caller) = running.caller {
                        let r = settle("a cancelled launch_block to return", caller).await?;
                        check_model!(step, "a cancelled launch_block's return", r.is_ok(), true);
                    }
                    if let Some(handle) = running.handle {
                        let got = settle("a cancelled handle", handle)
                            .await?
                            .map_err(|e| e.reason());
                        check_model!(
                            step,
                            "a cancelled handle",
                            got,
                            Err(FailureReason::Cancelled)
                        );
                    }
                    self.model.finish(id, false);
                    let reason = rec.status(&id).await.last_failure;
                    check_model!(
                        step,
                        "the failure reason",
                        reason,
                        Some(FailureReason::Cancelled)
                    );
                }
            }
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
                check_model!(step, "the launch", got, want);
                if got.is_ok() {
                    self.kept.remove(&id);
                    self.progress.remove(&id);
                }
                if got.is_ok() {
                    self.tasks.insert(id, running);
                }
            }
            Step::Finish { id, .. } if self.backoff.contains(&id) => {}
            Step::Finish { id, end } => {
                if let Some(running) = self.tasks.remove(&id) {
                    let _ = running.release.send(end);
                    let returned = running.returned.clone();
                    turns_until("the future to end", || returned.load(Ordering::SeqCst)).await?;
                    if let Some(caller) = running.caller {
                        let r = settle("launch_block to return", caller).await?;
                        let want_panic = end == End::Panic;
                        check_model!(
                            step,
                            "a panic reaching launch_block's caller",
                            r.is_err(),
                            want_panic
                        );
                        if let Ok(CallResult::Launch(r)) = r {
                            check_model!(step, "launch_block's return", r, Ok(()));
                        }
                    }
                    if let Some(handle) = running.handle {
                        let got = match settle("the handle", handle).await? {
                            Ok(()) => End::Ok,
                            Err(TaskError::Failed(())) => End::Err,
                            Err(TaskError::Panicked(_)) => End::Panic,
                            Err(other) => {
                                return Err(TestCaseError::fail(format!(
                                    "{step:?}: the handle said {:?}",
                                    other.reason()
                                )))
                            }
                        };
                        check_model!(step, "the handle", got, end);
                    }
                    if running.keeps {
                        let kept = match end {
                            End::Ok => Kept::Output("done".into()),
                            End::Err => Kept::Message("failed".into()),
                            End::Panic => Kept::Message(PANIC_MESSAGE.into()),
                        };
                        self.kept.insert(id, kept);
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
                check_model!(step, "the launch", got, want);
                if got.is_ok() {
                    self.kept.remove(&id);
                    self.progress.remove(&id);
                }
                if got.is_ok() {
                    self.model.finish(id, false);
                }
            }
            Step::Query { id } => {
                check_model!(
                    step,
                    "the state",
                    self.subject.query(id).await,
                    self.model.query(id)
                );
            }
            Step::Quick { id } => {
                check_model!(
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
                match settle("revoke_task_block to return", caller).await? {
                    Ok(got) => check_model!(step, "the revoke", got, want),
                    Err(e) => {
                        assert!(e.is_panic());
                        // A panic reaches the caller only from a revoke that ran.
                        check_model!(step, "a panicking revoke", want, RevokeOutcome::TaskError);
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
                check_model!(step, "the revoke", got, want);
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
                        match settle("revoke_task_block to return", caller).await? {
                            Ok(CallResult::Revoke(got)) => {
                                check_model!(step, "the revoke", got, want)
                            }
                            Ok(other) => panic!("unexpected {other:?}"),
                            Err(e) => {
                                assert!(e.is_panic());
                                check_model!(step, "a panic", end, End::Panic);
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
                check_model!(step, "the revoke", got, want);
                if got.is_ok() {
                    self.model.revoke_end(id, false);
                }
            }
            Step::Close => {
                rec.close();
                self.model.closed = true;
                check_model!(step, "is_closed", rec.is_closed(), true);
            }
            Step::Counts => {
                let c = rec.counts().await;
                let revoking = self
                    .model
                    .states
                    .values()
                    .filter(|s| **s == model::ModelState::Revoking)
                    .count();
                check_model!(
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
            Step::LaunchKept { id } => {
                let (mut running, fut) = released();
                running.keeps = true;
                let want = self.model.launch(id);
                let fut = async move { fut.await.map(|()| "done").map_err(|()| "failed") };
                let launched = rec.launch_kept(id, fut, LaunchOptions::new()).await;
                let got = self.answer(step, id, launched.map(drop)).await?;
                check_model!(step, "the launch", got, want);
                if got.is_ok() {
                    self.kept.remove(&id);
                    self.progress.remove(&id);
                    self.tasks.insert(id, running);
                }
            }
            Step::LaunchReporting { id } => {
                let (running, fut) = released();
                let want = self.model.launch(id);
                let make = move |ctx: async_tasks_recorder::TaskContext| async move {
                    ctx.progress(REPORTED);
                    fut.await
                };
                let launched = rec.launch_fenced(id, make, LaunchOptions::new()).await;
                let got = self.answer(step, id, launched.map(drop)).await?;
                check_model!(step, "the launch", got, want);
                if got.is_ok() {
                    self.kept.remove(&id);
                    let started = running.started.clone();
                    turns_until("the reporting task to start", || {
                        started.load(Ordering::SeqCst)
                    })
                    .await?;
                    self.progress.insert(id, REPORTED);
                    self.tasks.insert(id, running);
                }
            }
            Step::LaunchRetrying { id } => {
                let (mut running, fut) = released();
                let want = self.model.launch(id);
                // The first call fails at once; the second runs the released future.
                let (mut first, mut second) = (true, Some(fut));
                let make = move |_: async_tasks_recorder::TaskContext| -> Attempt {
                    match second.take() {
                        Some(fut) if !std::mem::take(&mut first) => Box::pin(fut),
                        fut => {
                            second = fut;
                            Box::pin(async { Err(()) })
                        }
                    }
                };
                let hour = std::time::Duration::from_secs(3600);
                let policy = RetryPolicy::new(2).backoff(hour, hour).jitter(0.0);
                let launched = rec
                    .launch_retrying(id, make, policy, LaunchOptions::new())
                    .await;
                let (got, handle) = match launched {
                    Ok(handle) => (Ok(()), Some(handle)),
                    Err(e) => (self.answer(step, id, Err::<(), _>(e)).await?, None),
                };
                check_model!(step, "the launch", got, want);
                if let Some(handle) = handle {
                    self.kept.remove(&id);
                    self.progress.remove(&id);
                    running.handle = Some(handle);
                    let mut waits = false;
                    for _ in 0..10_000 {
                        waits = rec.status(&id).await.retry_at.is_some();
                        if waits {
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                    if !waits {
                        return Err(TestCaseError::fail("stuck waiting for a retry's wait"));
                    }
                    self.backoff.insert(id);
                    self.tasks.insert(id, running);
                }
            }
            Step::Status { id } => {
                let status = rec.status(&id).await;
                let phase = model_phase(&self.model, id);
                let progress = match phase {
                    TaskPhase::Working => self.progress.get(&id).copied(),
                    _ => None,
                };
                let waits = phase == TaskPhase::Working && self.backoff.contains(&id);
                check_model!(
                    step,
                    "the status",
                    (status.phase, status.kept, status.progress),
                    (phase, self.kept_of(id), progress)
                );
                if phase == TaskPhase::Working {
                    check_model!(
                        step,
                        "a retry's wait (next attempt's time, failure)",
                        (status.retry_at.is_some(), status.last_failure),
                        (waits, waits.then_some(FailureReason::Error))
                    );
                }
            }
            Step::Ids { state } => {
                let mut got = rec.ids_in_state(state).await;
                got.sort_unstable();
                check_model!(step, "the ids", got, self.model.ids(state));
            }
        }
        Ok(())
    }

    /// Ends everything still running, then checks that every id is final and agrees
    /// with the model: nothing is stuck.
    async fn finish_all(&mut self) -> Result<(), TestCaseError> {
        if !self.backoff.is_empty() {
            self.step(Step::Elapse).await?;
        }
        for id in 0..IDS {
            self.step(Step::Finish { id, end: End::Err }).await?;
            self.step(Step::RevokeFinish { id, end: End::Err }).await?;
        }
        let c = self.subject.memory().counts().await;
        check_model!(
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

pub(crate) fn run_case(steps: &[Step], fault: Fault) -> Result<(), TestCaseError> {
    // A paused clock: timeouts fire only when `Elapse` moves it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let mut driver = Driver {
            subject: Subject::new(fault),
            model: Model::default(),
            tasks: HashMap::new(),
            revokes: HashMap::new(),
            waiters: Vec::new(),
            kept: HashMap::new(),
            progress: HashMap::new(),
            backoff: Default::default(),
        };
        for &step in steps {
            driver.step(step).await?;
        }
        driver.finish_all().await
    })
}
