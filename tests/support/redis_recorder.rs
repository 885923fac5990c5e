//! Recorders on a Redis server that a test started: the build every Redis suite of
//! one process makes, under the hang guard, with the server's settings checked.
//!
//! Include it with `#[path = "support/redis_recorder.rs"] mod redis_recorder;` next to
//! `mod common;` and `#[path = "support/redis_server.rs"] mod redis_server;`.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use async_tasks_recorder::redis::{RedisRecorder, ServerCheck};

use super::common::bounded;
use super::redis_server::RedisServer;

/// A recorder of `namespace` on `server` with `lease`; its build refuses a server
/// whose settings could lose records (the test servers have none).
pub async fn recorder<K>(server: &RedisServer, namespace: &str, lease: Duration) -> RedisRecorder<K>
where
    K: async_tasks_recorder::redis::StoredId + Clone + Send + Sync + 'static,
{
    bounded(
        "build",
        RedisRecorder::builder(server.url())
            .namespace(namespace)
            .lease(lease)
            .server_check(ServerCheck::Refuse)
            .build(),
    )
    .await
    .expect("the recorder builds on the test server")
}
