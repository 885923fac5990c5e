//! Time in the tests: the hang guards, which bound every wait a test makes (in real
//! time, or in scheduler turns for the deterministic drivers) so that a bug fails the
//! test instead of hanging it, and the timing of the operations that
//! the linearizability histories record (an operation's span on a clock, and instants
//! marked from inside a future), on one process's clock or on the machine's.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use proptest::test_runner::TestCaseError;

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

/// Runs `f` on its own thread and fails the test if it has not returned within
/// [`HANG`]: the hang guard for runtimes without a time driver, where Tokio's own
/// timeouts cannot be used.
pub fn on_thread_bounded<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(HANG) {
        Ok(out) => out,
        Err(e) => panic!("hung or panicked: {what} ({e})"),
    }
}

/// The instant a wait that polls or retries must give up at.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Instant);

impl Deadline {
    /// `limit` from now.
    pub fn after(limit: Duration) -> Deadline {
        Deadline(Instant::now() + limit)
    }

    /// The time left, or `None` once the deadline has passed.
    pub fn left(self) -> Option<Duration> {
        self.0.checked_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn passed(self) -> bool {
        Instant::now() >= self.0
    }
}

/// Retries `op` while the store cannot answer (a server restarting, a connection
/// coming back), every 50 ms for at most [`HANG`]; panics with `what` after that.
pub async fn until_answered<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, async_tasks_recorder::StoreError>>,
{
    let deadline = Deadline::after(HANG);
    loop {
        match op().await {
            Ok(value) => return value,
            Err(_) if !deadline.passed() => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{what}: the store did not come back: {e}"),
        }
    }
}

/// The most scheduler turns that a deterministic driver waits for something, on a
/// current-thread runtime where each turn lets every ready task run: a guard, as
/// [`HANG`] is in real time.
pub const TURNS: usize = 10_000;

/// Yields until `cond` holds, for at most [`TURNS`] scheduler turns (deterministic on a
/// current-thread runtime), failing the property test's case if it never does.
pub async fn turns_until(what: &str, mut cond: impl FnMut() -> bool) -> Result<(), TestCaseError> {
    for _ in 0..TURNS {
        if cond() {
            return Ok(());
        }
        tokio::task::yield_now().await;
    }
    Err(TestCaseError::fail(format!("stuck waiting for {what}")))
}

/// Awaits `fut` for at most [`TURNS`] scheduler turns, failing the case instead of
/// parking forever if it never resolves: a lost wake-up fails the case rather than
/// hanging the test.
pub async fn settle<F: Future>(what: &str, fut: F) -> Result<F::Output, TestCaseError> {
    let mut fut = pin!(fut);
    for _ in 0..TURNS {
        if let Poll::Ready(out) =
            std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
        {
            return Ok(out);
        }
        tokio::task::yield_now().await;
    }
    Err(TestCaseError::fail(format!("stuck waiting for {what}")))
}

/// A clock that histories are timed on: [`LOCAL`] within one process, [`MACHINE`]
/// across processes.
#[derive(Debug, Clone, Copy)]
pub struct Clock<T>(fn() -> T);

/// This process's monotonic clock.
pub const LOCAL: Clock<Instant> = Clock(Instant::now);

/// `CLOCK_MONOTONIC` in nanoseconds, which every process of the machine shares.
pub const MACHINE: Clock<u64> = Clock(machine_now);

fn machine_now() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// When an operation was invoked, and when it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span<T> {
    pub invoked: T,
    pub returned: T,
}

impl<T: Copy> Clock<T> {
    /// Now.
    pub fn now(self) -> T {
        (self.0)()
    }

    /// Makes the operation `op` gives and runs it, and gives its output with its span:
    /// the instants just before `op` was called and just after its future returned.
    pub async fn timed<F: Future>(self, op: impl FnOnce() -> F) -> (Span<T>, F::Output) {
        let invoked = self.now();
        let out = op().await;
        (self.since(invoked), out)
    }

    /// The span of an operation invoked at `invoked` that returns now.
    pub fn since(self, invoked: T) -> Span<T> {
        Span {
            invoked,
            returned: self.now(),
        }
    }

    /// A mark to set later, from inside a future.
    pub fn mark(self) -> Mark<T> {
        Mark {
            clock: self,
            at: Arc::new(OnceLock::new()),
        }
    }
}

/// An instant taken once, by the first of its clones to [`set`](Mark::set) it (a
/// future's first poll, its end), and read after by any clone.
#[derive(Debug, Clone)]
pub struct Mark<T> {
    clock: Clock<T>,
    at: Arc<OnceLock<T>>,
}

impl<T: Copy> Mark<T> {
    /// Takes the instant now, unless it was taken before.
    pub fn set(&self) {
        let _ = self.at.set(self.clock.now());
    }

    /// The instant, if it was taken.
    pub fn get(&self) -> Option<T> {
        self.at.get().copied()
    }
}

/// The events of one history, in the order they were logged, by any task or thread.
#[derive(Debug)]
pub struct Log<E>(Mutex<Vec<E>>);

impl<E> Default for Log<E> {
    fn default() -> Self {
        Log(Mutex::new(Vec::new()))
    }
}

impl<E> Log<E> {
    pub fn push(&self, event: E) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
    }

    /// Every event logged so far, leaving the log empty.
    pub fn take(&self) -> Vec<E> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}
