//! What the dashboard's test files share: a bounded wait, a failed task with a
//! message, and a router served on a free loopback port.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use async_tasks_recorder::{AsyncTasksRecorder, LaunchOptions};

/// The longest a test waits for anything; a guard against hangs, not a timing.
pub(crate) const HANG: Duration = Duration::from_secs(20);

pub(crate) async fn bounded<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(HANG, fut)
        .await
        .unwrap_or_else(|_| panic!("hung: {what}"))
}

/// Runs `id` to a failure whose error (kept with the record) is `message`.
pub(crate) async fn fail(recorder: &AsyncTasksRecorder<String>, id: &str, message: &str) {
    let message = message.to_string();
    let handle = recorder
        .launch_kept(
            id.to_string(),
            async move { Err::<(), _>(message) },
            LaunchOptions::new(),
        )
        .await
        .unwrap_or_else(|_| panic!("{id:?} launches"));
    let _ = bounded("a task", handle).await;
}

/// Serves `app` on a free loopback port for the rest of the test's runtime; its
/// address.
pub(crate) async fn serve_app(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}
