//! [`RedisStore`]: the record operations, each one script call (one round trip) on
//! the namespace's server, with typed answers and our own errors. It implements the
//! storage seam ([`Records`]); leases (`renew`), the reads a waiter needs (`read`),
//! cancel requests with their token and paged scans are its own.

use std::time::Duration;

use ::redis::RedisError;

use super::conn::Conn;
use super::error::{missing_function, store_error};
use super::id::{group_of, StoredId};
use super::keys::Layout;
use super::read::{decide, Fields};
use super::reply::{
    bad_reply, decode_kept, encode_kept, granted_or_phase, number, phase, read_of, reason,
    sum_counts, table_of, Keep, Read,
};
use super::scripts::{Function, Scripts};
use crate::kept::Kept;
use crate::state::{Phase, Refused};
use crate::status::{FailureReason, Settled, TaskStatus};
use crate::store::{Finished, Granted, Outcome, Records, Retried};
use crate::{StateCounts, StoreError};

/// Where an id lives: its group and its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Loc {
    pub(crate) group: u16,
    pub(crate) bytes: Vec<u8>,
}

/// The answer of a renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renewed {
    /// The lease runs for another lease length; `cancel` if a cancel was requested.
    Held { cancel: bool },
    /// The token no longer holds the id.
    Lost,
}

/// The record operations on one namespace.
#[derive(Clone)]
pub(crate) struct RedisStore {
    conn: Conn,
    layout: std::sync::Arc<Layout>,
    lease_ms: u64,
    /// `ARGV[1]` of every script: the channel and the retention settings.
    ctx: std::sync::Arc<[u8]>,
    /// The injected fault of the tests: finish with the unfenced script.
    unfenced: bool,
    /// The retention settings, which the status read applies.
    keep: Keep,
    /// The most bytes a kept value may have.
    kept_limit: usize,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.layout.namespace())
            .field("lease_ms", &self.lease_ms)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    pub(crate) fn new(
        conn: Conn,
        layout: std::sync::Arc<Layout>,
        lease: Duration,
        keep: Keep,
        kept_limit: usize,
    ) -> Self {
        let ctx = format!("{}|{}", layout.channel(), keep.encode());
        RedisStore {
            conn,
            layout,
            lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
            ctx: ctx.into_bytes().into(),
            unfenced: false,
            keep,
            kept_limit,
        }
    }

    pub(crate) fn ignore_finish_tokens(&mut self) {
        self.unfenced = true;
    }

    /// The command connection, for tests that write records by hand.
    #[cfg(test)]
    pub(crate) fn conn(&self) -> Conn {
        self.conn.clone()
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    pub(crate) fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    /// The counts on a cluster, where the groups live on different primaries and no
    /// transaction spans them: one script per group, all sent at once, each group
    /// counted at its own instant.
    async fn counts_per_group(&self) -> Result<StateCounts, StoreError> {
        let mut calls = tokio::task::JoinSet::new();
        for g in 0..self.layout.groups() {
            let store = self.clone();
            calls.spawn(async move {
                let ctx = store.ctx.clone();
                let args: [&[u8]; 1] = [&ctx];
                read_again(|| store.call::<Vec<u64>>(&Scripts::get().counts, g, &args)).await
            });
        }
        let mut replies = Vec::with_capacity(usize::from(self.layout.groups()));
        while let Some(done) = calls.join_next().await {
            let reply =
                done.map_err(|e| StoreError::Unreachable(format!("a count failed: {e}")))?;
            replies.push(reply?);
        }
        sum_counts(&replies)
    }

    /// Calls `function` on one group's keys with `args`.
    async fn call<T: ::redis::FromRedisValue>(
        &self,
        function: &Function,
        group: u16,
        args: &[&[u8]],
    ) -> Result<T, StoreError> {
        let mut cmd = ::redis::cmd("FCALL");
        let keys = self.layout.group(group);
        cmd.arg(function.0.as_str()).arg(keys.len());
        for key in keys {
            cmd.arg(key.as_str());
        }
        for arg in args {
            cmd.arg(*arg);
        }
        let cmd = &cmd;
        self.with_library(move |mut conn| async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// Sends a request that calls the library's functions. A server that lacks the
    /// library (its functions were flushed) answers so: load it, and send once more.
    async fn with_library<T, F, Fut>(&self, send: F) -> Result<T, StoreError>
    where
        F: Fn(Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        match send(self.conn.clone()).await {
            Err(e) if missing_function(&e) => {
                load_library(&mut self.conn.clone()).await?;
                send(self.conn.clone()).await.map_err(store_error)
            }
            done => done.map_err(store_error),
        }
    }

    /// Runs a script whose reply is an array of strings and integers, as bytes.
    async fn fields(
        &self,
        script: &Function,
        group: u16,
        args: &[&[u8]],
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let reply: Vec<::redis::Value> = self.call(script, group, args).await?;
        reply
            .into_iter()
            .map(|v| match v {
                ::redis::Value::BulkString(b) => Ok(b),
                ::redis::Value::SimpleString(s) => Ok(s.into_bytes()),
                ::redis::Value::Int(i) => Ok(i.to_string().into_bytes()),
                ::redis::Value::Nil => Ok(Vec::new()),
                _ => Err(bad_reply("a script")),
            })
            .collect()
    }

    fn ctx(&self) -> &[u8] {
        &self.ctx
    }

    /// Extends the lease of the running phase `token` holds; `started`: its future
    /// runs (it is not queued).
    pub(crate) async fn renew(
        &self,
        loc: &Loc,
        token: u64,
        started: bool,
    ) -> Result<Renewed, StoreError> {
        let (token, lease) = (token.to_string(), self.lease_ms.to_string());
        let started: &[u8] = if started { b"1" } else { b"0" };
        let reply: Vec<i64> = self
            .call(
                &Scripts::get().renew,
                loc.group,
                &[
                    self.ctx(),
                    &loc.bytes,
                    token.as_bytes(),
                    lease.as_bytes(),
                    started,
                ],
            )
            .await?;
        match reply.as_slice() {
            [1, cancel] => Ok(Renewed::Held {
                cancel: *cancel == 1,
            }),
            [0] => Ok(Renewed::Lost),
            _ => Err(bad_reply("renew")),
        }
    }

    /// `Launch`, `queued` when the attempt waits for a running slot of this process
    /// (until [`start`](Self::start)).
    async fn launch_as(
        &self,
        loc: &Loc,
        queued: bool,
    ) -> Result<Result<Granted, Refused>, StoreError> {
        let lease = self.lease_ms.to_string();
        let queued: &[u8] = if queued { b"1" } else { b"0" };
        let reply: Vec<Vec<u8>> = self
            .fields(
                &Scripts::get().launch,
                loc.group,
                &[self.ctx(), &loc.bytes, lease.as_bytes(), queued],
            )
            .await?;
        Ok(
            granted_or_phase(&reply, "launch")?.map_err(|phase| Refused {
                phase,
                closed: false,
            }),
        )
    }

    /// Records the progress `value` of the running attempt holding `token`: `true` if
    /// it still runs.
    pub(crate) async fn progress(
        &self,
        loc: &Loc,
        token: u64,
        attempt: u32,
        value: u64,
    ) -> Result<bool, StoreError> {
        let (token, value) = (token.to_string(), value.to_string());
        let attempt = attempt.to_string();
        let reply: Vec<i64> = self
            .call(
                &Scripts::get().progress,
                loc.group,
                &[
                    self.ctx(),
                    &loc.bytes,
                    token.as_bytes(),
                    value.as_bytes(),
                    attempt.as_bytes(),
                ],
            )
            .await?;
        Ok(reply.first() == Some(&1))
    }

    /// Where `id` lives.
    pub(crate) fn loc<Q: StoredId + ?Sized>(&self, id: &Q) -> Loc {
        let mut bytes = Vec::new();
        id.encode(&mut bytes);
        Loc {
            group: group_of(&bytes, self.layout.groups()),
            bytes,
        }
    }

    /// The id's status and what a waiter needs beyond it, read without changing
    /// anything.
    pub(crate) async fn read(&self, loc: &Loc) -> Result<Read, StoreError> {
        // In GROUP_KEYS order.
        let [work, lease, succ, fail, rvk, _seq, _fexp, _sexp, kept, queue, prog] =
            self.layout.group(loc.group)
        else {
            unreachable!("every group has its eleven keys")
        };
        let id = loc.bytes.as_slice();
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("TIME")
            .cmd("HGET")
            .arg(succ.as_str())
            .arg(id)
            .cmd("HGET")
            .arg(fail.as_str())
            .arg(id)
            .cmd("ZSCORE")
            .arg(lease.as_str())
            .arg(id)
            .cmd("HGET")
            .arg(work.as_str())
            .arg(id)
            .cmd("HGET")
            .arg(rvk.as_str())
            .arg(id)
            .cmd("HGET")
            .arg(kept.as_str())
            .arg(id)
            .cmd("HGET")
            .arg(queue.as_str())
            .arg(id)
            .cmd("HGET")
            .arg(prog.as_str())
            .arg(id);
        type Reply = (
            (u64, u64),
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            Option<f64>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
        );
        let pipe = &pipe;
        let ((secs, micros), success, failed, lease, working, revoking, kept, queued, progress): Reply =
            read_again(|| async {
                let mut conn = self.conn.clone();
                pipe.query_async(&mut conn).await.map_err(store_error)
            })
            .await?;
        let fields = Fields {
            now_ms: secs * 1000 + micros / 1000,
            success,
            failed,
            // Scores are whole milliseconds, well within an f64's exact integers.
            lease_ms: lease.map(|ms| ms as u64),
            working,
            revoking,
            queued,
            progress,
        };
        Ok(read_of(decide(&fields, &self.keep), kept.as_deref()))
    }

    /// What the phase that `token` ended kept, if the record still keeps it (the id
    /// has not moved on): for a waiter that learned of the end from the channel.
    pub(crate) async fn kept(&self, loc: &Loc, token: u64) -> Result<Option<Kept>, StoreError> {
        let key = &self.layout.group(loc.group)[8];
        let value: Option<Vec<u8>> = read_again(|| async {
            let mut conn = self.conn.clone();
            ::redis::cmd("HGET")
                .arg(key.as_str())
                .arg(loc.bytes.as_slice())
                .query_async(&mut conn)
                .await
                .map_err(store_error)
        })
        .await?;
        Ok(value
            .as_deref()
            .and_then(decode_kept)
            .filter(|(t, _)| *t == token)
            .map(|(_, kept)| kept))
    }

    /// The most bytes a kept value may have.
    pub(crate) fn kept_limit(&self) -> usize {
        self.kept_limit
    }

    /// The status read by the library's `status` function, which the transaction read
    /// follows: the tests compare the two.
    #[cfg(test)]
    pub(crate) async fn read_by_function(&self, loc: &Loc) -> Result<Read, StoreError> {
        let args: [&[u8]; 2] = [self.ctx(), &loc.bytes];
        let reply: Vec<Vec<u8>> =
            read_again(|| self.fields(&Scripts::get().status, loc.group, &args)).await?;
        let [ph, attempts, why, since, token, lease_left, now] = reply.as_slice() else {
            return Err(bad_reply("status"));
        };
        Ok(read_of(
            super::read::Found {
                phase: phase(ph)?,
                attempts: number(attempts),
                reason: reason(why),
                since_ms: number(since),
                token: number(token),
                lease_left_ms: number(lease_left),
                now_ms: number(now).ok_or_else(|| bad_reply("status"))?,
                keeps: false,
                record_token: None,
                queued: false,
                progress: None,
                retry: None,
            },
            None,
        ))
    }

    /// Asks the process running a `Working` id to stop it: `Ok(Some((token, lease
    /// left)))`, or `Ok(None)` if the id is not `Working`.
    pub(crate) async fn request_cancel(
        &self,
        loc: &Loc,
    ) -> Result<Option<(u64, Duration)>, StoreError> {
        let reply: Vec<Vec<u8>> = self
            .fields(&Scripts::get().cancel, loc.group, &[self.ctx(), &loc.bytes])
            .await?;
        match reply.as_slice() {
            [flag, token, left] if flag.as_slice() == b"1" => {
                let token = number(token).ok_or_else(|| bad_reply("cancel"))?;
                let left = number(left).map_or(Duration::ZERO, Duration::from_millis);
                Ok(Some((token, left)))
            }
            [flag, _] if flag.as_slice() == b"0" => Ok(None),
            _ => Err(bad_reply("cancel")),
        }
    }

    /// One page of a group's hash of `phase`: the next cursor (0 when done) and ids.
    pub(crate) async fn scan(
        &self,
        group: u16,
        phase: Phase,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<Vec<u8>>), StoreError> {
        let Some(table) = table_of(phase) else {
            return Ok((0, Vec::new()));
        };
        let (cursor, count) = (cursor.to_string(), count.to_string());
        let args: [&[u8]; 4] = [
            self.ctx(),
            table.as_bytes(),
            cursor.as_bytes(),
            count.as_bytes(),
        ];
        let mut reply: Vec<Vec<u8>> =
            read_again(|| self.fields(&Scripts::get().scan, group, &args)).await?;
        if reply.is_empty() {
            return Err(bad_reply("scan"));
        }
        let next = number(&reply.remove(0)).ok_or_else(|| bad_reply("scan"))?;
        Ok((next, reply))
    }
}

/// The Redis store on the seam: every operation is one script call on the id's slot
/// group (one round trip), and counts one transaction over every group.
impl<K, Q> Records<K, Q> for RedisStore
where
    K: StoredId + Send + Sync,
    Q: StoredId + ?Sized,
{
    type Error = StoreError;
    type At<'q>
        = Loc
    where
        Q: 'q;

    fn at(&self, id: &Q) -> Loc {
        self.loc(id)
    }

    async fn launch<'q>(
        &self,
        loc: &Self::At<'q>,
        _: &K,
        queued: bool,
    ) -> Result<Result<Granted, Refused>, StoreError>
    where
        Q: 'q,
    {
        self.launch_as(loc, queued).await
    }

    async fn start<'q>(&self, loc: &Self::At<'q>, token: u64) -> Result<bool, StoreError>
    where
        Q: 'q,
    {
        let token = token.to_string();
        let reply: Vec<i64> = self
            .call(
                &Scripts::get().start,
                loc.group,
                &[self.ctx(), &loc.bytes, token.as_bytes()],
            )
            .await?;
        Ok(reply.first() == Some(&1))
    }

    async fn retry<'q>(
        &self,
        loc: &Self::At<'q>,
        token: u64,
        reason: FailureReason,
        wait: Duration,
    ) -> Result<Retried, StoreError>
    where
        Q: 'q,
    {
        let token = token.to_string();
        let wait_ms = wait.as_millis().to_string();
        let reply: Vec<i64> = self
            .call(
                &Scripts::get().retry,
                loc.group,
                &[
                    self.ctx(),
                    &loc.bytes,
                    token.as_bytes(),
                    reason.as_str().as_bytes(),
                    wait_ms.as_bytes(),
                ],
            )
            .await?;
        match reply[..] {
            [1, next] => Ok(Retried::Next(u32::try_from(next).unwrap_or(u32::MAX))),
            [0, 1] => Ok(Retried::Cancelled),
            [0, 0] => Ok(Retried::Gone),
            _ => Err(bad_reply("retry")),
        }
    }

    async fn finish<'q>(
        &self,
        loc: &Self::At<'q>,
        token: u64,
        outcome: Outcome,
        kept: Option<Kept>,
    ) -> Result<Finished, StoreError>
    where
        Q: 'q,
    {
        let token = token.to_string();
        let kept_arg = kept.as_ref().map(encode_kept).unwrap_or_default();
        let (ok, why): (&[u8], &str) = match outcome {
            Outcome::Ok => (b"1", ""),
            Outcome::Failed(reason) => (b"0", reason.as_str()),
        };
        let reply: Vec<Vec<u8>> = self
            .fields(
                if self.unfenced {
                    &Scripts::get().finish_unfenced
                } else {
                    &Scripts::get().finish
                },
                loc.group,
                &[
                    self.ctx(),
                    &loc.bytes,
                    token.as_bytes(),
                    ok,
                    why.as_bytes(),
                    &kept_arg,
                ],
            )
            .await?;
        match reply.as_slice() {
            [flag, to, why] if flag.as_slice() == b"1" || flag.as_slice() == b"2" => {
                let moved = flag.as_slice() == b"1";
                let settled = Settled {
                    phase: phase(to)?,
                    failure: reason(why),
                    // A repeat that found the end made (or the lease's end first)
                    // does not know what was kept.
                    kept: if moved { kept } else { None },
                };
                Ok(if moved {
                    Finished::Moved(settled)
                } else {
                    Finished::Already(settled)
                })
            }
            [flag] if flag.as_slice() == b"0" => Ok(Finished::Refused),
            _ => Err(bad_reply("finish")),
        }
    }

    async fn revoke_begin<'q>(&self, loc: &Self::At<'q>) -> Result<Result<u64, Phase>, StoreError>
    where
        Q: 'q,
    {
        let lease = self.lease_ms.to_string();
        let reply: Vec<Vec<u8>> = self
            .fields(
                &Scripts::get().revoke_begin,
                loc.group,
                &[self.ctx(), &loc.bytes, lease.as_bytes()],
            )
            .await?;
        Ok(granted_or_phase(&reply, "revoke_begin")?.map(|granted| granted.token))
    }

    async fn revoke_end<'q>(
        &self,
        loc: &Self::At<'q>,
        token: u64,
        ok: bool,
    ) -> Result<Option<Settled>, StoreError>
    where
        Q: 'q,
    {
        let token = token.to_string();
        let ok: &[u8] = if ok { b"1" } else { b"0" };
        let reply: Vec<Vec<u8>> = self
            .fields(
                &Scripts::get().revoke_end,
                loc.group,
                &[self.ctx(), &loc.bytes, token.as_bytes(), ok],
            )
            .await?;
        match reply.as_slice() {
            [flag, to] if flag.as_slice() == b"1" => Ok(Some(Settled {
                phase: phase(to)?,
                failure: None,
                kept: None,
            })),
            [flag] if flag.as_slice() == b"0" => Ok(None),
            _ => Err(bad_reply("revoke_end")),
        }
    }

    async fn phase<'q>(&self, loc: &Self::At<'q>) -> Result<Phase, StoreError>
    where
        Q: 'q,
    {
        Ok(self.read(loc).await?.status.phase)
    }

    async fn status<'q>(&self, loc: &Self::At<'q>) -> Result<TaskStatus, StoreError>
    where
        Q: 'q,
    {
        Ok(self.read(loc).await?.status)
    }

    async fn counts(&self) -> Result<StateCounts, StoreError> {
        if self.conn.is_cluster() {
            return self.counts_per_group().await;
        }
        // One script per slot group, so that each touches one slot, and all of them in
        // one MULTI/EXEC: the primary runs them with nothing in between (one instant),
        // in one round trip.
        let function = &Scripts::get().counts;
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        for g in 0..self.layout.groups() {
            let keys = self.layout.group(g);
            pipe.cmd("FCALL").arg(function.0.as_str()).arg(keys.len());
            for key in keys {
                pipe.arg(key.as_str());
            }
            pipe.arg(self.ctx());
        }
        let pipe = &pipe;
        let replies: Vec<Vec<u64>> = read_again(|| {
            self.with_library(move |mut conn| async move { pipe.query_async(&mut conn).await })
        })
        .await?;
        sum_counts(&replies)
    }
}

/// Loads (or replaces) the library of the record operations on the server. Loading
/// the same code again is harmless, so processes may race to do it.
pub(crate) async fn load_library(conn: &mut Conn) -> Result<(), StoreError> {
    ::redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(Scripts::get().library.as_str())
        .query_async::<::redis::Value>(conn)
        .await
        .map(drop)
        .map_err(store_error)
}

/// Runs a read once more when the connection it went out on had dropped. The
/// connection manager reconnects only once a command has failed on the dropped
/// connection, so without this every read just after an outage would fail once
/// although the server is back (a waiter woken by a re-established subscription, say).
/// Only for scripts that a repeat cannot make do anything twice: status changes
/// nothing, and scans and counts only make the expiry moves that are due, which a
/// repeat finds made.
async fn read_again<T, F, Fut>(mut read: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    match read().await {
        Err(StoreError::Unreachable(_)) => read().await,
        done => done,
    }
}
