//! What the dashboard reads: one trait over both recorders.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::str::FromStr;

use async_tasks_recorder::{
    AsyncTasksRecorder, LaunchError, LaunchOptions, ListCursor, Page, RevokeFailReason,
    StateCounts, TaskState, TaskStatus, TransitionStream,
};

/// A task future an action makes: a new attempt of a failed task, or a compensating
/// revoke. Its error's text is kept with the record (the task page shows it).
pub type BoxTask = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>>;

/// Why an action changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The id is not `Failed` or `NotFound` (a retry); the record is unchanged.
    State(TaskState),
    /// The id is not `Success` (a revoke); the record is unchanged.
    NotSuccess,
    /// Another revoke of the id is running.
    Revoking,
    /// The revoke future failed: the id is `Success` again.
    RevokeFailed(String),
    /// The recorder refuses launches (it is closed), or the revoke lost its lease.
    Closed,
}

/// A store the dashboard could not read (on Redis: the server did not answer). The
/// page says so with `503 Service Unavailable`; nothing is retried behind the
/// operator's back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the task store did not answer: {}", self.0)
    }
}

impl std::error::Error for Unavailable {}

/// A recorder the dashboard can show: [`AsyncTasksRecorder`], and `RedisRecorder`
/// with the `redis` feature. Ids travel in URLs as their `Display` and come back
/// through `FromStr`, so those two must round-trip.
///
/// Every method reads through the recorder's public API: the dashboard never holds
/// a recorder lock between two calls.
pub trait Source: Clone + Send + Sync + 'static {
    /// The recorder's id type.
    type Id: Clone + PartialEq + fmt::Display + FromStr + Send + Sync + 'static;

    /// How many ids are in each state.
    fn counts(&self) -> impl Future<Output = Result<StateCounts, Unavailable>> + Send;

    /// A page of the ids in `state`, after `after`.
    fn page(
        &self,
        state: TaskState,
        after: Option<ListCursor>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<Self::Id>, Unavailable>> + Send;

    /// The status of one id.
    fn status(&self, id: &Self::Id)
        -> impl Future<Output = Result<TaskStatus, Unavailable>> + Send;

    /// The recorder's transitions from now on.
    fn subscribe(&self) -> TransitionStream<Self::Id>;

    /// Whether the recorder was closed (the application is shutting down): the live
    /// streams then end, so that a graceful shutdown does not wait for open tabs.
    fn is_closed(&self) -> bool;

    /// Cancels the running attempt of `id`: `true` if one ran and is now over.
    fn cancel(&self, id: &Self::Id) -> impl Future<Output = Result<bool, Unavailable>> + Send;

    /// Launches `task` as a new attempt of `id`, keeping its error's message.
    fn relaunch(
        &self,
        id: Self::Id,
        task: BoxTask,
    ) -> impl Future<Output = Result<Result<(), Refused>, Unavailable>> + Send;

    /// Revokes the success of `id` with `task`, waiting for it to end.
    fn revoke(
        &self,
        id: Self::Id,
        task: BoxTask,
    ) -> impl Future<Output = Result<Result<(), Refused>, Unavailable>> + Send;
}

impl<K> Source for AsyncTasksRecorder<K>
where
    K: Eq + Hash + Clone + fmt::Display + FromStr + Send + Sync + 'static,
{
    type Id = K;

    async fn counts(&self) -> Result<StateCounts, Unavailable> {
        Ok(AsyncTasksRecorder::counts(self).await)
    }

    async fn page(
        &self,
        state: TaskState,
        after: Option<ListCursor>,
        limit: usize,
    ) -> Result<Page<K>, Unavailable> {
        Ok(self.list_page(state, after.as_ref(), limit).await)
    }

    async fn status(&self, id: &K) -> Result<TaskStatus, Unavailable> {
        Ok(AsyncTasksRecorder::status(self, id).await)
    }

    fn subscribe(&self) -> TransitionStream<K> {
        AsyncTasksRecorder::subscribe(self)
    }

    fn is_closed(&self) -> bool {
        AsyncTasksRecorder::is_closed(self)
    }

    async fn cancel(&self, id: &K) -> Result<bool, Unavailable> {
        Ok(AsyncTasksRecorder::cancel(self, id).await)
    }

    async fn relaunch(&self, id: K, task: BoxTask) -> Result<Result<(), Refused>, Unavailable> {
        Ok(
            match self.launch_kept(id, task, LaunchOptions::new()).await {
                // The task goes on without its handle.
                Ok(_handle) => Ok(()),
                Err(LaunchError::Refused(state, _)) => Err(Refused::State(state)),
                Err(_) => Err(Refused::Closed),
            },
        )
    }

    async fn revoke(&self, id: K, task: BoxTask) -> Result<Result<(), Refused>, Unavailable> {
        Ok(match self.revoke_task_block(id, task).await {
            Ok(()) => Ok(()),
            Err(RevokeFailReason::NotSuccess(_)) => Err(Refused::NotSuccess),
            Err(RevokeFailReason::Revoking(_)) => Err(Refused::Revoking),
            Err(RevokeFailReason::RevokeTaskError(e)) => Err(Refused::RevokeFailed(e)),
        })
    }
}

#[cfg(feature = "redis")]
impl<K> Source for async_tasks_recorder::redis::RedisRecorder<K>
where
    K: async_tasks_recorder::redis::StoredId
        + Clone
        + PartialEq
        + fmt::Display
        + FromStr
        + Send
        + Sync
        + 'static,
{
    type Id = K;

    async fn counts(&self) -> Result<StateCounts, Unavailable> {
        async_tasks_recorder::redis::RedisRecorder::counts(self)
            .await
            .map_err(|e| Unavailable(e.to_string()))
    }

    async fn page(
        &self,
        state: TaskState,
        after: Option<ListCursor>,
        limit: usize,
    ) -> Result<Page<K>, Unavailable> {
        self.list_page(state, after.as_ref(), limit)
            .await
            .map_err(|e| Unavailable(e.to_string()))
    }

    async fn status(&self, id: &K) -> Result<TaskStatus, Unavailable> {
        async_tasks_recorder::redis::RedisRecorder::status(self, id)
            .await
            .map_err(|e| Unavailable(e.to_string()))
    }

    fn subscribe(&self) -> TransitionStream<K> {
        async_tasks_recorder::redis::RedisRecorder::subscribe(self)
    }

    fn is_closed(&self) -> bool {
        async_tasks_recorder::redis::RedisRecorder::is_closed(self)
    }

    async fn cancel(&self, id: &K) -> Result<bool, Unavailable> {
        async_tasks_recorder::redis::RedisRecorder::cancel(self, id)
            .await
            .map_err(|e| Unavailable(e.to_string()))
    }

    async fn relaunch(&self, id: K, task: BoxTask) -> Result<Result<(), Refused>, Unavailable> {
        match self.launch_kept(id, task, LaunchOptions::new()).await {
            Ok(_handle) => Ok(Ok(())),
            Err(LaunchError::Refused(state, _)) => Ok(Err(Refused::State(state))),
            Err(LaunchError::Store(e, _)) => Err(Unavailable(e.to_string())),
            Err(_) => Ok(Err(Refused::Closed)),
        }
    }

    async fn revoke(&self, id: K, task: BoxTask) -> Result<Result<(), Refused>, Unavailable> {
        use async_tasks_recorder::redis::RevokeError;
        match self.revoke_task_block(id, task).await {
            Ok(()) => Ok(Ok(())),
            Err(RevokeError::NotSuccess(_)) => Ok(Err(Refused::NotSuccess)),
            Err(RevokeError::Revoking(_)) => Ok(Err(Refused::Revoking)),
            Err(RevokeError::RevokeTaskError(e)) => Ok(Err(Refused::RevokeFailed(e))),
            Err(RevokeError::Store(e, _)) => Err(Unavailable(e.to_string())),
            Err(_) => Ok(Err(Refused::Closed)),
        }
    }
}
