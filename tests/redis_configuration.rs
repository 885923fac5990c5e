//! Bad settings and input on the Redis store give clear errors: a URL that does not
//! parse, a server that does not answer, a missing or wrong password, bad namespaces
//! and leases, a group count other than the namespace's, ids of another type, and
//! server settings that could lose records (refused, or reported as warnings).
#![cfg(feature = "redis")]

mod common;
#[path = "support/redis_recorder.rs"]
mod redis_recorder;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::time::Duration;

use async_tasks_recorder::redis::{RedisRecorder, ServerCheck};
use async_tasks_recorder::{StoreError, TaskState};
use common::{bounded, ok};
use redis_recorder::recorder;
use redis_server::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gives_clear_errors() {
    let build = |url: String| async move {
        bounded(
            "build",
            RedisRecorder::<String>::builder(url)
                .connect_timeout(Duration::from_secs(2))
                .build(),
        )
        .await
    };
    assert!(matches!(
        build("not a url".into()).await,
        Err(StoreError::InvalidConfig(_))
    ));
    // Nothing listens on a port we just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = build(format!("redis://127.0.0.1:{port}/")).await;
    assert!(
        matches!(
            down,
            Err(StoreError::Unreachable(_) | StoreError::TimedOut(_))
        ),
        "{down:?}"
    );

    let locked = RedisServer::start_with(&["--requirepass", "secret"]);
    let no_password = build(locked.url()).await;
    assert!(
        matches!(no_password, Err(StoreError::AuthFailed(_))),
        "{no_password:?}"
    );
    let wrong = build(format!("redis://:wrong@127.0.0.1:{}/", locked.port())).await;
    assert!(matches!(wrong, Err(StoreError::AuthFailed(_))), "{wrong:?}");
    let right = build(format!("redis://:secret@127.0.0.1:{}/", locked.port())).await;
    assert!(right.is_ok(), "{right:?}");

    let server = RedisServer::start();
    for ns in ["", "a.b", "{x}", "has space"] {
        let bad = RedisRecorder::<String>::builder(server.url())
            .namespace(ns)
            .build()
            .await;
        assert!(matches!(bad, Err(StoreError::InvalidConfig(_))), "{ns:?}");
    }
    let short = RedisRecorder::<String>::builder(server.url())
        .lease(Duration::from_millis(5))
        .build()
        .await;
    assert!(matches!(short, Err(StoreError::InvalidConfig(_))));
    let _first = RedisRecorder::<String>::builder(server.url())
        .namespace("g")
        .groups(8)
        .build()
        .await
        .unwrap();
    let other = RedisRecorder::<String>::builder(server.url())
        .namespace("g")
        .groups(16)
        .build()
        .await;
    assert!(
        matches!(other, Err(StoreError::Misconfigured(_))),
        "{other:?}"
    );

    // An id written by a recorder of another id type does not decode.
    let text: RedisRecorder<String> = recorder(&server, "mixed", Duration::from_secs(30)).await;
    text.launch_block("not-a-number".to_string(), ok())
        .await
        .unwrap();
    let numbers: RedisRecorder<u64> = recorder(&server, "mixed", Duration::from_secs(30)).await;
    let listed = numbers.ids_in_state(TaskState::Success).await;
    assert!(matches!(listed, Err(StoreError::BadId(_))), "{listed:?}");
    assert_eq!(
        numbers.counts().await.unwrap().success,
        1,
        "the record is still there"
    );

    // Weak settings are refused or reported.
    let weak =
        RedisServer::start_with(&["--appendonly", "no", "--maxmemory-policy", "allkeys-lru"]);
    let refused = RedisRecorder::<String>::builder(weak.url())
        .server_check(ServerCheck::Refuse)
        .build()
        .await;
    assert!(
        matches!(refused, Err(StoreError::Misconfigured(_))),
        "{refused:?}"
    );
    let warned = RedisRecorder::<String>::builder(weak.url())
        .build()
        .await
        .unwrap();
    assert_eq!(warned.warnings().len(), 2, "{:?}", warned.warnings());
}
