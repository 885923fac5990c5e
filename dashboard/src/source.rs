//! What the dashboard reads: one trait over both recorders.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::str::FromStr;

use async_tasks_recorder::{
    AsyncTasksRecorder, ListCursor, Page, StateCounts, TaskState, TaskStatus, TransitionStream,
};

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
}
