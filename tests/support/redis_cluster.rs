//! A throwaway Redis Cluster for integration tests: `n` primaries, each a
//! [`RedisServer`] with `--cluster-enabled yes` on free loopback ports (its cluster bus
//! on another free port), joined by `redis-cli --cluster create` and ready once every
//! node reports `cluster_state:ok`. Every node is stopped, and its directory removed,
//! when the cluster is dropped, also when the test fails.
//!
//! Include it next to the single server's module:
//!
//! ```ignore
//! #[path = "support/redis_server.rs"]
//! mod redis_server;
//! #[path = "support/redis_cluster.rs"]
//! mod redis_cluster;
//! ```
#![allow(dead_code, unreachable_pub)]

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::redis_server::{free_port, redis_cli_binary, RedisServer};

/// How long the cluster may take to agree once created.
pub const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    password: Option<String>,
}

impl RedisCluster {
    /// Starts `primaries` nodes (at least 3, as `redis-cli --cluster create` wants),
    /// assigns the 16384 slots among them, and waits until the cluster is ready.
    ///
    /// # Panics
    /// If a node does not start, the cluster cannot be created, or it is not ready
    /// within [`CLUSTER_READY_TIMEOUT`]; with the output of `redis-cli` or the nodes'
    /// view of the cluster.
    pub fn start(primaries: usize) -> RedisCluster {
        RedisCluster::start_with(primaries, &[])
    }

    /// Like [`start`](Self::start), with `extra_args` for every node.
    pub fn start_with(primaries: usize, extra_args: &[&str]) -> RedisCluster {
        assert!(primaries >= 3, "a Redis Cluster needs at least 3 primaries");
        let nodes: Vec<RedisServer> = (0..primaries)
            .map(|_| {
                let bus = free_port().to_string();
                let mut args = vec![
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    "5000",
                ];
                args.extend_from_slice(extra_args);
                RedisServer::start_with(&args)
            })
            .collect();
        // A password given to the nodes is also the one they use with each other.
        let password = extra_args
            .iter()
            .position(|a| *a == "--requirepass")
            .and_then(|at| extra_args.get(at + 1))
            .map(|p| p.to_string());
        let cluster = RedisCluster { nodes, password };
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new(redis_cli_binary().expect("redis-cli is installed"))
            .args(cluster.auth())
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + CLUSTER_READY_TIMEOUT;
        loop {
            let states: Vec<String> = cluster
                .nodes
                .iter()
                .map(|n| {
                    let mut args = cluster.auth();
                    args.extend(["CLUSTER", "INFO"]);
                    n.try_cli(&args).unwrap_or_default()
                })
                .collect();
            // Every node agrees that the slots are served, and knows every other node.
            let known = format!("cluster_known_nodes:{primaries}");
            if states
                .iter()
                .all(|s| s.contains("cluster_state:ok") && s.contains(&known))
            {
                return cluster;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster was not ready within {CLUSTER_READY_TIMEOUT:?}: {states:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis-cli`'s arguments for the nodes' password, if they have one.
    fn auth(&self) -> Vec<&str> {
        match &self.password {
            Some(p) => vec!["-a", p.as_str(), "--no-auth-warning"],
            None => Vec::new(),
        }
    }

    /// The URL of every node, for `RedisRecorder::cluster_builder`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    pub fn node_mut(&mut self, i: usize) -> &mut RedisServer {
        &mut self.nodes[i]
    }
}
