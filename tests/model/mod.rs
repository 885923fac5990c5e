//! The sequential reference model of the recorder, and the test subject: the real
//! recorder, optionally wrapped with an injected fault so that the checkers can be shown
//! to catch it.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use async_tasks_recorder::{
    AsyncTasksRecorder, FailureReason, LaunchError, LaunchOptions, RevokeFailReason, TaskHandle,
    TaskPhase, TaskState,
};

/// A record as the model keeps it. `NotFound` is the absence of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelState {
    Working,
    Success,
    Failed,
    /// A success whose revoke future is running.
    Revoking,
}

/// What a revoke call returned, without the handed-back future.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevokeOutcome {
    Ok,
    NotSuccess,
    Revoking,
    TaskError,
}

impl RevokeOutcome {
    pub fn of<F, R>(r: &Result<R, RevokeFailReason<F, ()>>) -> Self {
        match r {
            Ok(_) => RevokeOutcome::Ok,
            Err(RevokeFailReason::NotSuccess(_)) => RevokeOutcome::NotSuccess,
            Err(RevokeFailReason::Revoking(_)) => RevokeOutcome::Revoking,
            Err(RevokeFailReason::RevokeTaskError(_)) => RevokeOutcome::TaskError,
        }
    }
}

/// The plain, obviously-correct state machine: a map from id to state and the allowed
/// moves, one function per operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub states: HashMap<u64, ModelState>,
    /// `close()` was called: launches that would be accepted are refused instead.
    pub closed: bool,
}

impl Model {
    pub fn state(&self, id: u64) -> Option<ModelState> {
        self.states.get(&id).copied()
    }

    /// The 2.x query.
    pub fn query(&self, id: u64) -> TaskState {
        match self.state(id) {
            None => TaskState::NotFound,
            Some(ModelState::Working) => TaskState::Working,
            Some(ModelState::Success | ModelState::Revoking) => TaskState::Success,
            Some(ModelState::Failed) => TaskState::Failed,
        }
    }

    /// The quick query: Success/Failed when recorded so, else Working.
    pub fn quick(&self, id: u64) -> TaskState {
        match self.query(id) {
            TaskState::NotFound => TaskState::Working,
            s => s,
        }
    }

    /// Launch: `Ok` moves NotFound/Failed to Working; otherwise refused with the state.
    pub fn launch(&mut self, id: u64) -> Result<(), TaskState> {
        match self.state(id) {
            None | Some(ModelState::Failed) if self.closed => Err(self.query(id)),
            None | Some(ModelState::Failed) => {
                self.states.insert(id, ModelState::Working);
                Ok(())
            }
            Some(_) => Err(self.query(id)),
        }
    }

    /// The running future of `id` ended.
    pub fn finish(&mut self, id: u64, ok: bool) {
        assert_eq!(self.state(id), Some(ModelState::Working), "finish of {id}");
        let next = if ok {
            ModelState::Success
        } else {
            ModelState::Failed
        };
        self.states.insert(id, next);
    }

    /// The lease of the running attempt of `id` ended: Working becomes Failed.
    pub fn expire(&mut self, id: u64) {
        assert_eq!(self.state(id), Some(ModelState::Working), "expiry of {id}");
        self.states.insert(id, ModelState::Failed);
    }

    /// The start of a revoke: `Ok` moves Success to Revoking.
    pub fn revoke_begin(&mut self, id: u64) -> Result<(), RevokeOutcome> {
        match self.state(id) {
            Some(ModelState::Success) => {
                self.states.insert(id, ModelState::Revoking);
                Ok(())
            }
            Some(ModelState::Revoking) => Err(RevokeOutcome::Revoking),
            _ => Err(RevokeOutcome::NotSuccess),
        }
    }

    /// The end of a revoke: `ok` removes the record, otherwise it is Success again.
    pub fn revoke_end(&mut self, id: u64, ok: bool) -> RevokeOutcome {
        assert_eq!(
            self.state(id),
            Some(ModelState::Revoking),
            "revoke end of {id}"
        );
        if ok {
            self.states.remove(&id);
            RevokeOutcome::Ok
        } else {
            self.states.insert(id, ModelState::Success);
            RevokeOutcome::TaskError
        }
    }

    /// A whole blocking revoke whose future ends at once.
    pub fn revoke_block(&mut self, id: u64, ok: bool) -> RevokeOutcome {
        match self.revoke_begin(id) {
            Ok(()) => self.revoke_end(id, ok),
            Err(refused) => refused,
        }
    }

    /// Cancel: the running attempt of a `Working` id ends cancelled (the id becomes
    /// `Failed`) and the answer is `true`; any other id is left as it is, `false`.
    pub fn cancel(&mut self, id: u64) -> bool {
        if self.state(id) != Some(ModelState::Working) {
            return false;
        }
        self.states.insert(id, ModelState::Failed);
        true
    }

    /// Wait: the phase of an id in which nothing runs (`NotFound`, `Success` or
    /// `Failed`), or `None` while a future or a revoke of it runs (the wait blocks).
    pub fn wait(&self, id: u64) -> Option<TaskPhase> {
        match self.state(id) {
            None => Some(TaskPhase::NotFound),
            Some(ModelState::Success) => Some(TaskPhase::Success),
            Some(ModelState::Failed) => Some(TaskPhase::Failed),
            Some(ModelState::Working | ModelState::Revoking) => None,
        }
    }

    pub fn count(&self, state: TaskState) -> usize {
        self.states
            .keys()
            .filter(|&&id| self.query(id) == state)
            .count()
    }

    pub fn ids(&self, state: TaskState) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .states
            .keys()
            .copied()
            .filter(|&id| self.query(id) == state)
            .collect();
        ids.sort_unstable();
        ids
    }
}

/// Runs a property over `cases` random step sequences against a subject with `fault`,
/// which it must notice, and returns the report of the minimal failing sequence
/// (shrunk to at most 12 steps).
pub fn find_violation<T: std::fmt::Debug + Clone>(
    fault: Fault,
    cases: u32,
    steps: &impl proptest::strategy::Strategy<Value = Vec<T>>,
    run: impl Fn(&[T]) -> Result<(), proptest::test_runner::TestCaseError>,
) -> String {
    use proptest::test_runner::{Config, TestError, TestRunner};
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    match runner.run(steps, |steps| run(&steps)) {
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

/// A fault injected into the subject, to show that the checkers notice it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The real recorder.
    None,
    /// Queries answer from a per-id cache refreshed only every other query: a stale read.
    StaleRead,
    /// A launch refused with `Success` is let through anyway (by silently revoking first):
    /// a second success.
    DoubleSuccess,
    /// `wait` on an id that is `Working` or `Revoking` answers `Success` at once instead
    /// of waiting for the outcome.
    WaitTooSoon,
    /// `cancel` answers `true` as soon as it has asked a `Working` id's future to stop,
    /// without waiting for the attempt to end.
    CancelEarly,
    /// `status` answers from a per-id cache refreshed only every other read: a stale
    /// read of what `status` adds to the phase (kept values, progress, retries).
    StaleStatus,
}

/// The recorder under test, on one of the stores, with an optional fault.
#[derive(Clone)]
pub struct Subject {
    pub inner: Store,
    fault: Fault,
    cache: Arc<Mutex<HashMap<u64, (TaskState, bool)>>>,
    statuses: Arc<Mutex<HashMap<u64, (async_tasks_recorder::TaskStatus, bool)>>>,
}

/// The store a subject runs on.
#[derive(Clone)]
pub enum Store {
    Memory(AsyncTasksRecorder<u64>),
    /// Recorders with connections of their own on one namespace, standing for
    /// replicas: each call goes to the next one in turn, so that a task launched
    /// through one is read, awaited and cancelled through the others.
    #[cfg(feature = "redis")]
    Redis(
        Arc<[RedisRecorder<u64>]>,
        Arc<std::sync::atomic::AtomicUsize>,
    ),
}

impl Store {
    /// The Redis store over `replicas`.
    #[cfg(feature = "redis")]
    pub fn redis(replicas: Vec<RedisRecorder<u64>>) -> Store {
        assert!(!replicas.is_empty());
        Store::Redis(replicas.into(), Arc::default())
    }
}

/// The recorder one call goes to.
pub enum View<'a> {
    Memory(&'a AsyncTasksRecorder<u64>),
    #[cfg(feature = "redis")]
    Redis(&'a RedisRecorder<u64>),
}

impl Store {
    /// The recorder for the next call: on Redis, the next replica in turn.
    pub fn view(&self) -> View<'_> {
        match self {
            Store::Memory(rec) => View::Memory(rec),
            #[cfg(feature = "redis")]
            Store::Redis(replicas, turn) => {
                let n = turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                View::Redis(&replicas[n % replicas.len()])
            }
        }
    }
}

#[cfg(feature = "redis")]
use async_tasks_recorder::redis::{RedisRecorder, RevokeError};

/// Unwraps a Redis answer: a store error is never an answer the model could check.
#[cfg(feature = "redis")]
fn answered<T>(r: Result<T, async_tasks_recorder::StoreError>) -> T {
    r.unwrap_or_else(|e| panic!("the Redis store failed: {e}"))
}

#[cfg(feature = "redis")]
fn refused<F>(e: LaunchError<F>) -> TaskState {
    match e {
        LaunchError::Refused(state, _) => state,
        other => panic!("the Redis store failed: {other}"),
    }
}

/// A launch's handle, or the state that refused it; any other error fails the test.
fn handle_or_state<R, E, F>(
    result: Result<TaskHandle<R, E>, LaunchError<F>>,
) -> Result<TaskHandle<R, E>, TaskState> {
    match result {
        Ok(handle) => Ok(handle),
        Err(LaunchError::Refused(state, _)) => Err(state),
        Err(other) => panic!("the store failed, or is closed: {other}"),
    }
}

impl Subject {
    /// The in-memory recorder.
    pub fn new(fault: Fault) -> Self {
        Subject::on(Store::Memory(AsyncTasksRecorder::new()), fault)
    }

    pub fn on(inner: Store, fault: Fault) -> Self {
        Subject {
            inner,
            fault,
            cache: Arc::default(),
            statuses: Arc::default(),
        }
    }

    /// The in-memory recorder itself, for the tests that only run on it.
    pub fn memory(&self) -> &AsyncTasksRecorder<u64> {
        match self.inner.view() {
            View::Memory(rec) => rec,
            #[cfg(feature = "redis")]
            View::Redis(_) => panic!("this test runs on the in-memory store only"),
        }
    }

    /// The query without the fault.
    pub async fn query_fresh(&self, id: u64) -> TaskState {
        match self.inner.view() {
            View::Memory(rec) => rec.query_task_state(&id).await,
            #[cfg(feature = "redis")]
            View::Redis(rec) => answered(rec.query_task_state(&id).await),
        }
    }

    pub async fn query(&self, id: u64) -> TaskState {
        let fresh = self.query_fresh(id).await;
        if self.fault != Fault::StaleRead {
            return fresh;
        }
        let mut cache = self.cache.lock().unwrap();
        let entry = cache.entry(id).or_insert((fresh, false));
        // Every other query answers with the value cached by the previous one.
        entry.1 = !entry.1;
        if entry.1 {
            std::mem::replace(&mut entry.0, fresh)
        } else {
            entry.0 = fresh;
            fresh
        }
    }

    pub async fn quick(&self, id: u64) -> TaskState {
        match self.inner.view() {
            View::Memory(rec) => rec.query_task_state_quick(&id).await,
            #[cfg(feature = "redis")]
            View::Redis(rec) => answered(rec.query_task_state_quick(&id).await),
        }
    }

    async fn status_fresh(&self, id: u64) -> async_tasks_recorder::TaskStatus {
        match self.inner.view() {
            View::Memory(rec) => rec.status(&id).await,
            #[cfg(feature = "redis")]
            View::Redis(rec) => answered(rec.status(&id).await),
        }
    }

    /// `status` with the fault applied.
    pub async fn status(&self, id: u64) -> async_tasks_recorder::TaskStatus {
        let fresh = self.status_fresh(id).await;
        if self.fault != Fault::StaleStatus {
            return fresh;
        }
        let mut cache = self.statuses.lock().unwrap();
        let entry = cache.entry(id).or_insert((fresh.clone(), false));
        // Every other read answers with the value cached by the previous one.
        entry.1 = !entry.1;
        if entry.1 {
            std::mem::replace(&mut entry.0, fresh)
        } else {
            entry.0 = fresh.clone();
            fresh
        }
    }

    pub async fn count(&self, state: TaskState) -> usize {
        match self.inner.view() {
            View::Memory(rec) => rec.count(state).await,
            #[cfg(feature = "redis")]
            View::Redis(rec) => answered(rec.count(state).await),
        }
    }

    pub async fn counts(&self) -> async_tasks_recorder::StateCounts {
        match self.inner.view() {
            View::Memory(rec) => rec.counts().await,
            #[cfg(feature = "redis")]
            View::Redis(rec) => answered(rec.counts().await),
        }
    }

    /// A revoke run in the caller whose future is `fut`; a panic in it propagates.
    pub async fn revoke_block<F>(&self, id: u64, fut: F) -> RevokeOutcome
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        match self.inner.view() {
            View::Memory(rec) => RevokeOutcome::of(&rec.revoke_task_block(id, fut).await),
            #[cfg(feature = "redis")]
            View::Redis(rec) => match rec.revoke_task_block(id, fut).await {
                Ok(()) => RevokeOutcome::Ok,
                Err(RevokeError::NotSuccess(_)) => RevokeOutcome::NotSuccess,
                Err(RevokeError::Revoking(_)) => RevokeOutcome::Revoking,
                Err(RevokeError::RevokeTaskError(())) => RevokeOutcome::TaskError,
                Err(other) => panic!("the Redis store failed: {other:?}"),
            },
        }
    }

    async fn launch_plain<F>(&self, id: u64, fut: F) -> Result<(), (TaskState, Option<F>)>
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        match self.inner.view() {
            View::Memory(rec) => rec.launch(id, fut).await.map_err(|(s, f)| (s, Some(f))),
            #[cfg(feature = "redis")]
            View::Redis(rec) => match rec.launch(id, fut).await {
                Ok(()) => Ok(()),
                Err(LaunchError::Refused(s, f)) => Err((s, Some(f))),
                Err(other) => Err((refused(other), None)),
            },
        }
    }

    async fn launch_block_plain<F>(&self, id: u64, fut: F) -> Result<(), (TaskState, Option<F>)>
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        match self.inner.view() {
            View::Memory(rec) => rec
                .launch_block(id, fut)
                .await
                .map_err(|(s, f)| (s, Some(f))),
            #[cfg(feature = "redis")]
            View::Redis(rec) => match rec.launch_block(id, fut).await {
                Ok(()) => Ok(()),
                Err(LaunchError::Refused(s, f)) => Err((s, Some(f))),
                Err(other) => Err((refused(other), None)),
            },
        }
    }

    async fn launch_with_plain<F>(
        &self,
        id: u64,
        fut: F,
        options: LaunchOptions,
    ) -> Result<TaskHandle<(), ()>, (TaskState, Option<F>)>
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        let result = match self.inner.view() {
            View::Memory(rec) => rec.launch_with(id, fut, options).await,
            #[cfg(feature = "redis")]
            View::Redis(rec) => rec.launch_with(id, fut, options).await,
        };
        match result {
            Ok(handle) => Ok(handle),
            Err(LaunchError::Refused(s, f)) => Err((s, Some(f))),
            Err(other) => panic!("the store failed, or is closed: {other}"),
        }
    }

    /// Revokes a success at once, for the double-success fault.
    async fn force_revoke(&self, id: u64) {
        let _ = self.revoke_block(id, async { Ok::<(), ()>(()) }).await;
    }

    /// `launch` (spawned) with the fault applied.
    pub async fn launch<F>(&self, id: u64, fut: F) -> Result<(), TaskState>
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        match self.launch_plain(id, fut).await {
            Ok(()) => Ok(()),
            Err((TaskState::Success, Some(fut))) if self.fault == Fault::DoubleSuccess => {
                self.force_revoke(id).await;
                self.launch_plain(id, fut).await.map_err(|(s, _)| s)
            }
            Err((state, _)) => Err(state),
        }
    }

    /// `launch_block` with the fault applied.
    pub async fn launch_block<F>(&self, id: u64, fut: F) -> Result<(), TaskState>
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        match self.launch_block_plain(id, fut).await {
            Ok(()) => Ok(()),
            Err((TaskState::Success, Some(fut))) if self.fault == Fault::DoubleSuccess => {
                self.force_revoke(id).await;
                self.launch_block_plain(id, fut).await.map_err(|(s, _)| s)
            }
            Err((state, _)) => Err(state),
        }
    }

    /// `launch_with` with the fault applied.
    pub async fn launch_with<F>(
        &self,
        id: u64,
        fut: F,
        options: LaunchOptions,
    ) -> Result<TaskHandle<(), ()>, TaskState>
    where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        match self.launch_with_plain(id, fut, options).await {
            Ok(handle) => Ok(handle),
            Err((TaskState::Success, Some(fut))) if self.fault == Fault::DoubleSuccess => {
                self.force_revoke(id).await;
                self.launch_with_plain(id, fut, options)
                    .await
                    .map_err(|(s, _)| s)
            }
            Err((state, _)) => Err(state),
        }
    }

    /// `launch_kept`, without a fault.
    pub async fn launch_kept<F>(
        &self,
        id: u64,
        fut: F,
    ) -> Result<TaskHandle<u32, String>, TaskState>
    where
        F: Future<Output = Result<u32, String>> + Send + 'static,
    {
        let result = match self.inner.view() {
            View::Memory(rec) => rec.launch_kept(id, fut, LaunchOptions::new()).await,
            #[cfg(feature = "redis")]
            View::Redis(rec) => rec.launch_kept(id, fut, LaunchOptions::new()).await,
        };
        handle_or_state(result)
    }

    /// `launch_fenced`, without a fault: the task sees its context.
    pub async fn launch_fenced<M, F>(
        &self,
        id: u64,
        make: M,
    ) -> Result<TaskHandle<(), ()>, TaskState>
    where
        M: FnOnce(async_tasks_recorder::TaskContext) -> F + Send + 'static,
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        let result = match self.inner.view() {
            View::Memory(rec) => rec.launch_fenced(id, make, LaunchOptions::new()).await,
            #[cfg(feature = "redis")]
            View::Redis(rec) => rec.launch_fenced(id, make, LaunchOptions::new()).await,
        };
        handle_or_state(result)
    }

    /// `launch_retrying` with `policy`, without a fault.
    pub async fn launch_retrying<M, F>(
        &self,
        id: u64,
        make: M,
        policy: async_tasks_recorder::RetryPolicy,
    ) -> Result<TaskHandle<(), ()>, TaskState>
    where
        M: FnMut(async_tasks_recorder::TaskContext) -> F + Send + 'static,
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        let result = match self.inner.view() {
            View::Memory(rec) => {
                rec.launch_retrying(id, make, policy, LaunchOptions::new())
                    .await
            }
            #[cfg(feature = "redis")]
            View::Redis(rec) => {
                rec.launch_retrying(id, make, policy, LaunchOptions::new())
                    .await
            }
        };
        handle_or_state(result)
    }

    /// Whether `status` reads a reported progress at once. On Redis the lease holder
    /// writes it later (at most once per progress interval), so a read may lag.
    pub fn exact_progress(&self) -> bool {
        matches!(self.inner, Store::Memory(_))
    }

    async fn wait_plain(&self, id: u64) -> async_tasks_recorder::Settled {
        match self.inner.view() {
            View::Memory(rec) => rec.wait(&id).await,
            #[cfg(feature = "redis")]
            View::Redis(rec) => answered(rec.wait(&id).await),
        }
    }

    /// `wait` with the fault applied: the phase it answered, and the failure reason.
    pub async fn wait(&self, id: u64) -> (TaskPhase, Option<FailureReason>) {
        if self.fault == Fault::WaitTooSoon && !self.status(id).await.phase.is_final() {
            return (TaskPhase::Success, None);
        }
        let settled = self.wait_plain(id).await;
        (settled.phase, settled.failure)
    }

    /// With [`Fault::CancelEarly`], a cancel may have answered before its attempt
    /// ended: waits until every future this process launched has ended, so that the
    /// end of a history is read after them. Returns at once for the other faults,
    /// whose histories must end with nothing running as they are.
    pub async fn settle_early_cancels(&self) {
        if self.fault != Fault::CancelEarly {
            return;
        }
        match &self.inner {
            Store::Memory(rec) => rec.wait_idle().await,
            #[cfg(feature = "redis")]
            Store::Redis(replicas, _) => {
                for rec in replicas.iter() {
                    rec.wait_idle().await;
                }
            }
        }
    }

    /// `cancel` with the fault applied.
    pub async fn cancel(&self, id: u64) -> bool {
        let this = self.clone();
        let mut cancel = std::pin::pin!(async move {
            match this.inner.view() {
                View::Memory(rec) => rec.cancel(&id).await,
                #[cfg(feature = "redis")]
                View::Redis(rec) => answered(rec.cancel(&id).await),
            }
        });
        if self.fault != Fault::CancelEarly {
            return cancel.await;
        }
        // The first poll asks; a pending answer is taken for a yes.
        std::future::poll_fn(|cx| match cancel.as_mut().poll(cx) {
            Poll::Ready(cancelled) => Poll::Ready(cancelled),
            Poll::Pending => Poll::Ready(true),
        })
        .await
    }
}
