//! The recorder on Redis (or Valkey): one namespace of records shared by every process
//! of a service, with the guarantees of the in-memory recorder.
//!
//! Enabled by the `redis` cargo feature. Several replicas of a service build a
//! [`RedisRecorder`] on the same server and namespace; then any replica can launch an
//! id, and every replica reads its state, waits for it, cancels it or revokes it.
//!
//! ```no_run
//! use async_tasks_recorder::redis::RedisRecorder;
//! use async_tasks_recorder::TaskState;
//!
//! # async fn run() -> Result<(), async_tasks_recorder::StoreError> {
//! let recorder: RedisRecorder<String> = RedisRecorder::builder("redis://127.0.0.1:6379/")
//!     .namespace("uploads")
//!     .build()
//!     .await?;
//! let md5 = "9e107d9d372bb6826bd81d3542a419d6".to_string();
//! let upload = async { Ok::<_, std::io::Error>(()) };
//! if recorder.launch(md5.clone(), upload).await.is_ok() {
//!     // Any replica: every one reads the same state.
//!     let settled = recorder.wait(&md5).await?;
//!     assert_eq!(settled.state(), TaskState::Success);
//! }
//! # Ok(()) }
//! ```
//!
//! # What holds, and where
//! On one primary (a single server, or a primary with replicas that it never fails
//! over to), or on a [Redis Cluster](#redis-cluster) per id, with the settings below:
//! - **At most one success per id**, across every process: a launch is one atomic
//!   script that refuses an id that is `Working` or `Success` anywhere.
//! - **Linearizable**: every operation is one script on the primary, which runs them
//!   one at a time, and the scripts use the server's clock.
//! - **Nothing stuck**: a running task holds a lease that its process renews. If the
//!   process dies, pauses or loses the server, the id reads `Failed` with
//!   [`WorkerLost`](crate::FailureReason::WorkerLost) from the instant the lease ends,
//!   in every read (an ended lease is made its move by the next script that touches the
//!   id, and reported as such by the status script before that), and waiters in other
//!   processes wake. A process that cannot renew drops its future before the lease
//!   ends.
//! - **Fencing**: every launch and revoke gets a token, larger than every earlier one
//!   of the same id in the namespace (one counter per slot group, never reset). The end
//!   of a phase carries it; a stale token is refused, so a worker that paused past its
//!   lease cannot record an end over its successor's phase. The token reaches the task
//!   through [`RedisRecorder::launch_fenced`], so that side effects can be fenced too:
//!   without that, a paused worker can still write its file after its lease is gone.
//!
//! Leases and retention are measured by the server's clock, so the clocks of the
//! client hosts never matter; the server's own clock must not step backwards (a step
//! back of `d` lengthens every lease and time to live by `d`).
//!
//! `close`, `wait_idle` and `drain` act on this process only: a replica shutting down
//! does not stop the others. `counts` and listings cover the whole namespace.
//!
//! Tested against Redis 7.0; Valkey speaks the same protocol and scripts. Every script
//! touches the keys of one slot group (one hash slot); `counts` runs one per group
//! inside one `MULTI`/`EXEC`, which makes them one instant on one primary.
//!
//! # Redis Cluster
//! [`RedisRecorder::cluster_builder`] takes the URLs of some of a cluster's nodes (one
//! is enough to find the rest; give several, so that a recorder can start while one
//! is down). Everything else is built and used as on one server.
//! - **The same guarantees per id.** A namespace's records are spread over its slot
//!   groups ([`RedisBuilder::groups`], 16 by default), and each group's keys carry one
//!   hash tag, `{<namespace>.<group>}`, so they are in one slot, on one primary. Every
//!   operation on an id is one function call on that primary, so at most one success
//!   and linearizable reads hold per id as on one server (linearizability is a
//!   property of each id on its own, so it holds for the whole namespace).
//! - **Counts are per group.** No transaction spans primaries, so `counts` runs the
//!   groups' scripts side by side, each counting its group at its own instant: the sum
//!   is exact for ids that do not move while it runs, and an id that moves may be
//!   counted in its old or its new state. Listings are group by group, as on one
//!   server. Both cover every primary.
//! - **The library on every primary.** `build` sends `FUNCTION LOAD` to every primary;
//!   one that lacks it later (a replica promoted without it, a node added) gets it
//!   again from the first call that misses it.
//! - **Events.** A `PUBLISH` reaches every node of a cluster, so the recorder
//!   subscribes through one node, and through the next one given when that one fails.
//! - **Slots that move** (`MOVED`, `ASK`) are followed by the client. Spread: with
//!   three primaries, 16 groups put five or six on each; more groups spread wider.
//! - **Failover** has the caveat of replication above: a promoted replica may lack
//!   the last acknowledged transitions.
//!
//! # Durability, said plainly
//! The guarantees hold while the server keeps what it acknowledged:
//! - `appendonly yes` with `appendfsync always`: every transition is on disk before the
//!   reply. With `everysec`, a crash of the server can lose about a second of
//!   acknowledged transitions, and so a `Success`: the id may then run again.
//! - `maxmemory-policy noeviction`: an evicting policy may delete records.
//! - Replication is asynchronous: a failover to a replica can lose acknowledged
//!   transitions (`WAIT` does not change that), and with them at most once. Use one
//!   primary, or accept that a failover may repeat work.
//!
//! [`RedisBuilder::build`] reads these settings (`CONFIG GET`) and, by
//! [`ServerCheck`], warns or refuses.
//!
//! # Round trips and cost
//! A launch, a finish, a status read, a cancel request and a count are one round trip
//! each; a running task adds one renewal per third of its lease. Waiting costs one
//! read per wake-up. Records are fields of a few hashes per slot group (no key per
//! id), see the layout in `keys.rs`.
//!
//! # Why the `redis` crate
//! It is the maintained Rust client for Redis and Valkey: its `ConnectionManager`
//! reconnects by itself, its pipelines carry the `MULTI`/`EXEC` that counts need, and
//! it runs on Tokio. None of its types appear in this crate's API.
//!
//! # The operations on the server
//! Every operation that changes a record is one call (`FCALL`) of a function of one
//! Redis Functions library; the status read (`status`, `query_task_state`, and a
//! waiter's reads) is one `MULTI`/`EXEC` of plain reads instead, decided by the
//! recorder, because a Lua call costs the server several times what those reads cost
//! (see BENCHMARKS.md). The library (Redis >= 7.0, Valkey >= 7.2) is loaded by
//! `build` with `FUNCTION LOAD REPLACE` and kept by the server with its data (the
//! append-only file), so a restarted server has it. Its name carries a hash of its code: processes of different versions
//! of this crate can share a server, each calling its own. A server whose functions
//! were flushed gets it again from the first call that misses it.
//!
//! # Who may get in
//! - **Passwords and ACL users** go in the URL: `redis://user:password@host:6379/`.
//!   [`acl_rules`] gives the rules of a user that may run the recorders of one
//!   namespace and nothing else (its keys, its channel, the commands the recorder
//!   sends); the server then refuses that user any other namespace's keys.
//! - **TLS**, with the `redis-tls` feature (rustls): a `rediss://` URL, checked against
//!   the system's trust store, or against a private CA given with
//!   [`RedisBuilder::tls_root_certificates`]; [`RedisBuilder::tls_client_certificate`]
//!   for servers that ask for client certificates. Without the feature a `rediss://`
//!   URL is an [`InvalidConfig`](crate::StoreError::InvalidConfig) error.
//! - A wrong password, a forbidden key or command, and a certificate that is not
//!   trusted or not accepted are [`AuthFailed`](crate::StoreError::AuthFailed) at
//!   `build`, within the connect timeout, never a hang; no retry changes them.
//! - Ids never become key names (each is a field of its phase's hash), so an id with
//!   `{`, `}`, `:`, newlines or any other bytes stays inside its namespace's keys.
//!
//! # Retention
//! `failed_ttl`, `success_ttl` with tombstones or forgetting, and `max_finished` work as
//! on the in-memory recorder, without a background task (see
//! [`RedisBuilder::failed_ttl`]); the cap is counted per slot group
//! ([`RedisBuilder::max_finished`]). No record key has a native TTL.
//!
//! # Limits
//! [`RedisBuilder::max_running`] limits the futures running at once in **this
//! process**; each process of a namespace has its own limit.
//!
//! # Observability
//! With the `tracing` and `metrics` features, each process reports the launches,
//! refusals, ends and revokes it makes, with the spans, events and series of the
//! in-memory recorder (see the crate docs), and [`RedisBuilder::record_ids`] puts ids
//! in them. The `async_tasks_recorder_ids` gauge is not moved by the Redis recorder: a
//! process does not see the namespace's transitions as they happen, so its count would
//! be wrong; read [`RedisRecorder::counts`] instead. The reports are made by the
//! recorder from what each script returned, never by the scripts.

mod attempt;
mod builder;
mod conn;
mod error;
mod hub;
mod id;
mod keys;
mod read;
mod recorder;
mod reply;
mod runner;
mod scripts;
mod store;

pub use crate::TaskContext;
#[doc(hidden)]
pub use builder::InjectedFault;
pub use builder::{RedisBuilder, ServerCheck, MIN_LEASE};
pub use error::RevokeError;
pub use id::StoredId;
pub use recorder::RedisRecorder;

/// The ACL rules of a user that may run recorders of `namespace` and nothing else:
/// the namespace's keys and channel, and only the commands a recorder sends (those of
/// its functions library included), all other commands and keys denied. Add the
/// user's state and password:
///
/// ```
/// let rules = async_tasks_recorder::redis::acl_rules("uploads")?;
/// assert!(rules.starts_with("resetkeys ~atr:{uploads.* resetchannels &atr:{uploads.* -@all +fcall"));
/// // ACL SETUSER uploads-app on >PASSWORD <rules>
/// # Ok::<(), async_tasks_recorder::StoreError>(())
/// ```
///
/// Such a user cannot read the server's settings (`CONFIG GET`), so
/// [`RedisBuilder::build`] warns that it could not check them
/// ([`ServerCheck::Warn`]), and refuses with [`ServerCheck::Refuse`]; use
/// [`ServerCheck::Skip`] once they were checked otherwise. A recorder of another
/// namespace built with this user is refused by the server
/// ([`StoreError::AuthFailed`](crate::StoreError::AuthFailed)): the server checks
/// every key a command or function touches against the user's patterns.
///
/// # Errors
/// [`StoreError::InvalidConfig`](crate::StoreError::InvalidConfig) for a namespace
/// that [`RedisBuilder::namespace`] would refuse.
pub fn acl_rules(namespace: &str) -> Result<String, crate::StoreError> {
    // What the client sends besides the functions' calls: the function calls and the
    // library's load, the layout check at build, the transactions of the counts and
    // of the status read (which reads the clock and the id's fields), the
    // subscription to the channel and its pings, and on a cluster the slot map.
    const CLIENT: &[&str] = &[
        "fcall",
        "function|load",
        "hsetnx",
        "hget",
        "multi",
        "exec",
        "time",
        "zscore",
        "subscribe",
        // The subscription's liveness check.
        "ping",
        // A cluster client's view of the slots.
        "cluster|slots",
    ];
    let prefix = keys::Layout::new(namespace, 1)?.prefix();
    let mut rules = format!("resetkeys ~{prefix}* resetchannels &{prefix}* -@all");
    // Once each: some commands are in both lists.
    let functions = scripts::FUNCTION_COMMANDS
        .iter()
        .filter(|c| !CLIENT.contains(c));
    for command in CLIENT.iter().chain(functions) {
        rules.push_str(" +");
        rules.push_str(command);
    }
    Ok(rules)
}
