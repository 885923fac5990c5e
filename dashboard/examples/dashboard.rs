//! A demonstration service with the dashboard mounted at `/admin/tasks`: a stream of
//! made-up uploads (most succeed, some fail with a message, some hang until
//! cancelled), on the in-memory recorder.
//!
//! ```sh
//! cargo run -p async_tasks_recorder_dashboard --example dashboard
//! # then open http://127.0.0.1:8080/admin/tasks/
//! ```
//!
//! `ATR_DASHBOARD_ADDR` sets the address (default `127.0.0.1:8080`). Actions (cancel,
//! retry, revoke) need the token the service prints, as `Authorization: Bearer
//! <token>` or as a cookie `atr_token=<token>` (set it in the browser's console:
//! `document.cookie = "atr_token=<token>; path=/"`). Ctrl-C stops it.

use std::hash::BuildHasher;
use std::time::Duration;

use async_tasks_recorder::{AsyncTasksRecorder, LaunchOptions};
use async_tasks_recorder_dashboard::Dashboard;

/// Whether the request carries `token`, as a bearer header or an `atr_token` cookie.
fn carries(headers: &axum::http::HeaderMap, token: &str) -> bool {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == token);
    let cookie = headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix("atr_token="))
        .any(|t| t == token);
    bearer || cookie
}

/// A made-up upload: `n` decides how it goes.
async fn upload(n: u64) -> Result<String, String> {
    tokio::time::sleep(Duration::from_millis(200 + n % 7 * 150)).await;
    match n % 10 {
        3 => Err(format!("disk full on /var while writing part {}", n % 4)),
        7 => std::future::pending().await,
        _ => Ok(format!("stored as /files/{n:08x}")),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let recorder = AsyncTasksRecorder::<String>::new();
    let token = format!(
        "{:016x}",
        std::collections::hash_map::RandomState::new().hash_one(std::process::id())
    );
    let app = Dashboard::new(recorder.clone())
        .authorize({
            let token = token.clone();
            move |headers| carries(headers, &token)
        })
        .cancel()
        .retry(|_id: &String| async { Ok::<(), String>(()) })
        .revoke(|_id: &String| async { Ok::<(), String>(()) })
        .router("/admin/tasks");

    // The uploads, one every 300 ms.
    let feeder = recorder.clone();
    tokio::spawn(async move {
        for n in 0u64.. {
            let id = format!("upload-{n:05}");
            let _ = feeder
                .launch_kept(id, upload(n), LaunchOptions::new())
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });

    let addr = std::env::var("ATR_DASHBOARD_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("dashboard: http://{}/admin/tasks/", listener.local_addr()?);
    println!("actions need the token {token} (bearer header, or cookie atr_token)");
    println!("Ctrl-C to stop");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            // Closing the recorder ends the dashboard's live streams, which the
            // graceful shutdown would otherwise wait for.
            recorder.close();
        })
        .await
}
