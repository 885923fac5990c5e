//! The hang guards of the tests: every wait a test makes is bounded by [`HANG`], so
//! that a bug fails the test instead of hanging it.

use std::future::Future;
use std::time::Duration;

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
