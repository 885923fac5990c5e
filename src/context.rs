//! [`TaskContext`]: what a task knows about its own attempt, and how it reports its
//! progress.

use std::sync::Arc;

/// Where an attempt's progress goes: the recorder's store, rate-limited.
pub(crate) trait Progress: Send + Sync {
    fn report(&self, value: u64);

    /// Ends this attempt's reports (later ones are ignored) and returns the reporter
    /// of the next attempt of the same launch (a retry).
    fn next(&self) -> Arc<dyn Progress>;
}

/// What a task launched with `launch_fenced` knows about its own attempt (its
/// fencing token and its number), and where it reports its progress.
///
/// Both recorders hand one to the closure that makes the task's future:
/// [`AsyncTasksRecorder::launch_fenced`](crate::AsyncTasksRecorder::launch_fenced) and,
/// with the `redis` feature, `RedisRecorder::launch_fenced`. Clones report for the
/// same attempt.
#[derive(Clone)]
pub struct TaskContext {
    pub(crate) token: u64,
    pub(crate) attempts: u32,
    pub(crate) progress: Option<Arc<dyn Progress>>,
}

impl std::fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskContext")
            .field("token", &self.token)
            .field("attempt", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl TaskContext {
    /// The attempt's fencing token: larger than the token of every earlier launch or
    /// revoke of the same id in this recorder (on Redis: in this namespace). Pass it
    /// along with every side effect, and let the place where the effect lands refuse
    /// a token smaller than the last one it accepted: then a worker that paused past
    /// its lease cannot overwrite the work of the one that took over.
    #[must_use]
    pub const fn token(&self) -> u64 {
        self.token
    }

    /// Which attempt this is since the id was last `NotFound` (1 for the first).
    #[must_use]
    pub const fn attempt(&self) -> u32 {
        self.attempts
    }

    /// Reports the attempt's progress: a number of your choosing (bytes done, a
    /// percentage), which [`status`](crate::AsyncTasksRecorder::status) shows as
    /// [`TaskStatus::progress`](crate::TaskStatus::progress) while the attempt runs,
    /// and [`subscribe`](crate::AsyncTasksRecorder::subscribe)rs receive as a
    /// [`Transition`](crate::Transition) from `Working` to `Working` with its
    /// [`progress`](crate::Transition::progress).
    ///
    /// Call it as often as you like: a report costs an atomic store and two
    /// uncontended mutexes (and a clock read), and what goes further is rate-limited
    /// ([`Builder::progress_interval`](crate::Builder::progress_interval), 250 ms by
    /// default). In memory `status` always reads the last value, and the first
    /// report of each interval is published to subscribers (a later one of the same
    /// interval only shows in `status` until the task reports again). On Redis the
    /// holder writes and publishes the latest value at most once per interval, so a
    /// read may be one interval behind. A report after the attempt ended is ignored.
    ///
    /// ```
    /// use async_tasks_recorder::{AsyncTasksRecorder, LaunchOptions, TaskContext};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let recorder = AsyncTasksRecorder::new();
    /// let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    /// let upload = |ctx: TaskContext| async move {
    ///     ctx.progress(50); // half the bytes are up
    ///     rx.await.map_err(|_| "cancelled")
    /// };
    /// let Ok(handle) = recorder.launch_fenced(7u32, upload, LaunchOptions::new()).await else {
    ///     panic!("refused")
    /// };
    /// tokio::task::yield_now().await; // let it run to its first await
    /// assert_eq!(recorder.status(&7).await.progress, Some(50));
    /// tx.send(()).unwrap();
    /// handle.await.unwrap();
    /// # }
    /// ```
    pub fn progress(&self, value: u64) {
        if let Some(progress) = &self.progress {
            progress.report(value);
        }
    }
}
