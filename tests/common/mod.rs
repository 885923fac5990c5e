//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_tasks_recorder::{AsyncTasksRecorder, TaskState};
use tokio::sync::oneshot;

/// The longest any single wait in a test may take before it is declared hung. Generous
/// so that a slow, loaded CI machine never trips it; it is a guard, not a timing.
pub const HANG: Duration = Duration::from_secs(30);

/// Runs `fut`, failing the test if it has not finished within [`HANG`].
pub async fn bounded<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(HANG, fut).await {
        Ok(out) => out,
        Err(_) => panic!("hung: {what}"),
    }
}

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

/// Retries `op` while the store cannot answer (a server restarting, a connection
/// coming back), every 50 ms for at most [`HANG`]; panics with `what` after that.
pub async fn until_answered<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, async_tasks_recorder::StoreError>>,
{
    let deadline = std::time::Instant::now() + HANG;
    loop {
        match op().await {
            Ok(value) => return value,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{what}: the store did not come back: {e}"),
        }
    }
}
