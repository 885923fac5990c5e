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

/// Runs `id` to its end, a success if `ok` (else a failure).
pub(crate) async fn ended(recorder: &AsyncTasksRecorder<String>, id: &str, ok: bool) {
    recorder
        .launch_block(id.to_string(), async move {
            if ok {
                Ok(())
            } else {
                Err(())
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{id:?} launches"));
}

/// Reads server-sent events from `response` (with `buffer`, what was read of them
/// and not taken yet) until `want` accepts one, by its name and data. One bound for
/// the whole wait: the stream sends something every second.
pub(crate) async fn until_event(
    response: &mut reqwest::Response,
    buffer: &mut String,
    mut want: impl FnMut(&str, &str) -> bool,
) {
    bounded("the awaited event", async {
        loop {
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                let mut name = "message";
                let mut data = String::new();
                for line in event.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n;
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                if want(name, &data) {
                    return;
                }
            }
            let chunk = response
                .chunk()
                .await
                .expect("the stream stays open")
                .expect("the stream does not end");
            buffer.push_str(std::str::from_utf8(&chunk).expect("utf-8 events"));
        }
    })
    .await;
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
