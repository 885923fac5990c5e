//! The dashboard over a `RedisRecorder`, against a redis-server the test starts on a
//! free loopback port: two recorders stand for two replicas; the dashboard of one
//! shows, live, what the other does.
#![cfg(feature = "redis")]

#[path = "support/common.rs"]
mod common;
#[path = "../../tests/support/redis_server.rs"]
mod redis_server;

use std::time::Duration;

use async_tasks_recorder::redis::RedisRecorder;
use async_tasks_recorder::LaunchOptions;
use async_tasks_recorder_dashboard::Dashboard;
use common::{bounded, serve_app, until_event};
use redis_server::RedisServer;

async fn replica(server: &RedisServer) -> RedisRecorder<String> {
    bounded(
        "the recorder to build",
        RedisRecorder::builder(server.url())
            .namespace("dashboard")
            .lease(Duration::from_secs(5))
            .build(),
    )
    .await
    .expect("the recorder builds on the test server")
}

async fn get(url: &str) -> (u16, String) {
    let response = bounded("a page", reqwest::get(url))
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (
        status,
        bounded("a body", response.text()).await.expect("a body"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_of_one_replica_shows_another_s_tasks_live() {
    let server = RedisServer::start();
    let shown = replica(&server).await;
    let other = replica(&server).await;
    let app = Dashboard::new(shown).page_size(2).router("/tasks");
    let addr = serve_app(app).await;
    let base = format!("http://{addr}/tasks");

    // Three failures launched by the other replica, one with a message that is markup.
    for (id, message) in [("a", "disk full"), ("b", "<i>quota</i>"), ("c", "timeout")] {
        let message = message.to_string();
        let handle = other
            .launch_kept(
                id.to_string(),
                async move { Err::<(), _>(message) },
                LaunchOptions::new(),
            )
            .await
            .unwrap_or_else(|e| panic!("{id} launches: {e}"));
        let _ = bounded("a task", handle).await;
    }
    let (status, overview) = get(&format!("{base}/")).await;
    assert_eq!(status, 200, "{overview}");
    assert!(
        overview.contains(r#"<td id="count-failed">3</td>"#),
        "{overview}"
    );

    // Two pages of two through the Redis listing cursor.
    let (_, first) = get(&format!("{base}/list?state=failed")).await;
    let next = first
        .split_once(r#"<a id="next" href=""#)
        .map(|(_, rest)| {
            rest.split_once('"')
                .expect("an address")
                .0
                .replace("&amp;", "&")
        })
        .expect("a second page");
    let (_, second) = get(&format!("http://{addr}{next}")).await;
    let listed = [&first, &second]
        .iter()
        .map(|page| page.matches(r#"<a class="id""#).count())
        .sum::<usize>();
    assert_eq!(listed, 3);

    let (_, page) = get(&format!("{base}/task?id=b")).await;
    assert!(
        page.contains("&lt;i&gt;quota&lt;/i&gt;") && !page.contains("<i>quota"),
        "{page}"
    );

    // The live stream of this replica hears of the other's new success.
    let mut events = bounded("the stream", reqwest::get(format!("{base}/events")))
        .await
        .expect("the stream");
    let mut buffer = String::new();
    until_event(&mut events, &mut buffer, |name, data| {
        name == "counts" && data.contains(r#""success":0"#)
    })
    .await;
    other
        .launch_block("d".to_string(), async { Ok::<(), ()>(()) })
        .await
        .unwrap_or_else(|e| panic!("d launches: {e}"));
    until_event(&mut events, &mut buffer, |name, data| {
        name == "counts" && data.contains(r#""success":1"#)
    })
    .await;
}
