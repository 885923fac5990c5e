//! Helpers shared by the integration tests; the bounded waits are in [`timing`].
#![allow(dead_code, unreachable_pub)]

pub mod timing;

// Re-exported so that the tests name them through `common`; not every test uses each.
#[allow(unused_imports)]
pub use timing::{bounded, on_thread_bounded, until_answered, HANG};

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use async_tasks_recorder::{AsyncTasksRecorder, TaskState};
use tokio::sync::oneshot;

/// Generates one test per runtime flavour from an `async fn` taking no arguments.
#[macro_export]
macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "current_thread")]
                async fn current_thread() {
                    super::$name().await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn multi_thread() {
                    super::$name().await
                }
            }
        )*
    };
}

/// In a property test driven step by step against a model: fails the case, from the
/// function it is used in, unless `$got` (what `$what` was at step `$step`) equals
/// what the model says, `$want`.
#[macro_export]
macro_rules! check_model {
    ($step:expr, $what:expr, $got:expr, $want:expr) => {{
        let (got, want) = ($got, $want);
        if got != want {
            return Err(::proptest::test_runner::TestCaseError::fail(format!(
                "{:?}: {} was {:?}, the model says {:?}",
                $step, $what, got, want
            )));
        }
    }};
}

/// Waits (yielding to the scheduler, never sleeping) until `id` reads `want`.
pub async fn until_state<K, Q>(rec: &AsyncTasksRecorder<K>, id: &Q, want: TaskState)
where
    K: Eq + Hash + Clone + Send + Sync + 'static + std::borrow::Borrow<Q>,
    Q: Hash + Eq + ?Sized + std::fmt::Debug,
{
    bounded(&format!("{id:?} to become {want:?}"), async {
        loop {
            if rec.query_task_state(id).await == want {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}

/// A future the test finishes by hand: it resolves to whatever is sent through the
/// returned sender (or `Err("dropped")` if the sender is dropped). It also reports that
/// it started and whether it was dropped before completing.
pub struct Gate {
    pub release: oneshot::Sender<Result<u32, &'static str>>,
    pub started: Arc<AtomicBool>,
    pub dropped_unfinished: Arc<AtomicBool>,
}

impl Gate {
    /// Waits, yielding to the scheduler under the hang guard, until the gated future
    /// has started running.
    pub async fn until_started(&self) {
        bounded("the gated future to start", async {
            while !self.started.load(Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
        })
        .await
    }
}

struct DropProbe {
    flag: Arc<AtomicBool>,
    armed: bool,
}

impl Drop for DropProbe {
    fn drop(&mut self) {
        if self.armed {
            self.flag.store(true, Ordering::SeqCst);
        }
    }
}

pub fn gate() -> (
    Gate,
    impl Future<Output = Result<u32, &'static str>> + Send + 'static,
) {
    let (tx, rx) = oneshot::channel();
    let started = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    let fut = {
        let started = started.clone();
        let probe = DropProbe {
            flag: dropped.clone(),
            armed: true,
        };
        async move {
            // Bind the whole probe: a closure would otherwise capture only `armed`.
            let mut probe = probe;
            started.store(true, Ordering::SeqCst);
            let out = rx.await.unwrap_or(Err("dropped"));
            probe.armed = false;
            out
        }
    };
    (
        Gate {
            release: tx,
            started,
            dropped_unfinished: dropped,
        },
        fut,
    )
}

/// `Ok(())` if `ok`, else `Err(())`: the output of the trivial jobs the tests launch.
pub fn outcome(ok: bool) -> Result<(), ()> {
    if ok {
        Ok(())
    } else {
        Err(())
    }
}

/// A future that counts its runs and returns `result`.
pub fn counted(
    runs: &Arc<AtomicUsize>,
    result: Result<(), ()>,
) -> impl Future<Output = Result<(), ()>> + Send + 'static {
    let runs = runs.clone();
    async move {
        runs.fetch_add(1, Ordering::SeqCst);
        result
    }
}

pub async fn ok() -> Result<(), ()> {
    Ok(())
}

pub async fn err() -> Result<(), ()> {
    Err(())
}

/// `unwrap` for launch results, whose error holds a future (not `Debug`).
pub trait Launched {
    /// Panics unless the launch was accepted.
    fn launched(self);
}

impl<F> Launched for Result<(), (TaskState, F)> {
    fn launched(self) {
        if let Err((state, _)) = self {
            panic!("launch refused in state {state:?}");
        }
    }
}

/// Polls `fut` exactly once, whatever it returns, and gives it back: what a caller
/// that drops a future after its first poll leaves behind.
pub async fn after_one_poll<F: Future + Unpin>(mut fut: F) -> F {
    std::future::poll_fn(|cx| {
        let _ = std::pin::Pin::new(&mut fut).poll(cx);
        std::task::Poll::Ready(())
    })
    .await;
    fut
}
