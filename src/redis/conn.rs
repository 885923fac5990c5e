//! [`Conn`]: the command connection of a recorder, to one server or to a Redis
//! Cluster, behind the client's own connection trait, so that every command is built
//! and sent the same way on both.
//!
//! On one server it is the client's `ConnectionManager` (one multiplexed connection
//! that reconnects by itself). On a cluster it is the client's cluster connection,
//! which sends each command to the primary of its first key's slot (every record
//! operation's keys are one slot group's, so one slot), follows `MOVED` and `ASK`
//! redirects while slots move, and sends `FUNCTION LOAD` to every primary.

use ::redis::aio::{ConnectionLike, ConnectionManager};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, Pipeline, RedisFuture, Value};

/// A connection for commands (not for pub/sub).
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server.
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl Conn {
    /// Whether the commands of different slot groups may go to different servers, so
    /// that no transaction can span groups.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
