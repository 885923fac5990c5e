//! [`TaskContext`]: what a task knows about its own attempt.

/// What a task launched with `launch_fenced` knows about its own attempt: its fencing
/// token and its number.
///
/// Both recorders hand one to the closure that makes the task's future:
/// [`AsyncTasksRecorder::launch_fenced`](crate::AsyncTasksRecorder::launch_fenced) and,
/// with the `redis` feature, `RedisRecorder::launch_fenced`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskContext {
    pub(crate) token: u64,
    pub(crate) attempts: u32,
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
}
