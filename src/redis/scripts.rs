//! The Lua scripts that make every change to a record, each in one atomic step on the
//! server.
//!
//! Every script starts with the state machine's table, generated from
//! [`state::next`](crate::state::next) by [`lua_table`](crate::state::lua_table), and
//! asks it whether a move is allowed and where it leads; no script writes its own
//! rules. Time is the server's (`TIME`), so clocks of the client hosts never matter.
//!
//! A running phase's lease is its score in the group's `lease` set. A lease that has
//! ended is the state machine's `Expire` move: the scripts that change an id make that
//! move first ([`settle`]), the scripts that count or list a group make it for the whole
//! group first ([`reap`]), and the status script reports it without writing. So an id
//! whose holder died reads `Failed` (`worker_lost`) from the instant its lease ends, in
//! every read, whether or not anything sweeps.
//!
//! Retention (TTLs and the cap) follows the same rule: a record past its time to live
//! is expired by the next script that touches it or its group, and read as expired by
//! the status script before that; every script on one id also makes a few of its
//! group's due moves on the way, and counts and listings make all of them first.
//!
//! Transitions are published on the namespace's channel as
//! `T:<from>:<to>:<reason>:<token>:<id>`, cancel requests as `C:<token>:<id>`; the id
//! comes last, so it may hold any bytes.

use std::sync::OnceLock;

/// Helpers every script shares, after the generated `NEXT` table. `KEYS` holds one or
/// more groups' keys, eleven per group, in [`GROUP_KEYS`](super::keys::GROUP_KEYS)
/// order. `ARGV[1]` is the context, `<channel>|<failed ttl ms>|<success ttl ms>|<forget
/// successes: 0 or 1>|<cap per group>`, -1 for a setting that is off.
const PRELUDE: &str = r#"
local function int(x) return string.format('%d', x) end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- The settings of this call, read from its context by `load_context`.
local C = {}
local function load_context()
  local chan, f, s, forget, cap = string.match(ARGV[1], '^(.*)|(%-?%d+)|(%-?%d+)|([01])|(%-?%d+)$')
  C.chan, C.fttl, C.sttl, C.forget, C.cap = chan, tonumber(f), tonumber(s), forget == '1', tonumber(cap)
end
local function group(b)
  return { work = KEYS[b + 1], lease = KEYS[b + 2], succ = KEYS[b + 3], fail = KEYS[b + 4],
           rvk = KEYS[b + 5], seq = KEYS[b + 6], fexp = KEYS[b + 7], sexp = KEYS[b + 8],
           kept = KEYS[b + 9], queue = KEYS[b + 10], prog = KEYS[b + 11] }
end
local function emit(from, to, reason, token, id)
  redis.call('PUBLISH', C.chan, 'T:' .. from .. ':' .. to .. ':' .. reason .. ':' .. token .. ':' .. id)
end
-- token, attempts, since, cancel flag, previous failure of a Working record
local function work_fields(v)
  return string.match(v, '^(%d+):(%d+):(%d+):(%d):(.*)$')
end
-- token, since, the success's value of a Revoking record
local function rvk_fields(v)
  return string.match(v, '^(%d+):(%d+):(.*)$')
end
local function phase_of(g, id)
  if redis.call('HEXISTS', g.succ, id) == 1 then return 'success' end
  if redis.call('HEXISTS', g.fail, id) == 1 then return 'failed' end
  if redis.call('HEXISTS', g.work, id) == 1 then return 'working' end
  if redis.call('HEXISTS', g.rvk, id) == 1 then return 'revoking' end
  return 'not_found'
end
-- Retention. A Failed record, and a Success record with details, is queued in `fexp`
-- or `sexp` when a TTL or the cap applies to it, in the order the records finished:
-- scored by when (ms) times 1000, plus the last three digits of a number from the
-- group's counter, so that records of one millisecond keep their order (but for one
-- that crosses a multiple of 1000 there). When a record finished is also in its value
-- (`since`), which the TTLs read.
local function failed_since(v) return tonumber(string.match(v, '^%d+:[%w_]+:(%d+)')) end
local function success_since(v) return tonumber(string.match(v, '^%d+:(%d+)')) end
local function forget_failed(g, id)
  redis.call('ZREM', g.fexp, id)
  redis.call('HDEL', g.kept, id)
  if redis.call('HDEL', g.fail, id) == 1 then
    emit('failed', NEXT.failed.forget, '', '0', id)
  end
end
-- A success expires: to a tombstone (the phase stays Success, the details go), or
-- forgotten.
local function expire_success(g, id)
  redis.call('ZREM', g.sexp, id)
  if redis.call('HEXISTS', g.succ, id) == 0 then return end
  redis.call('HDEL', g.kept, id)
  if C.forget then
    redis.call('HDEL', g.succ, id)
    emit('success', NEXT.success.forget, '', '0', id)
  else
    redis.call('HSET', g.succ, id, '')
  end
end
-- The cap on queued records of the group: the oldest go first.
local function enforce_cap(g)
  if C.cap < 0 then return end
  while redis.call('ZCARD', g.fexp) + redis.call('ZCARD', g.sexp) > C.cap do
    local f = redis.call('ZRANGE', g.fexp, 0, 0, 'WITHSCORES')
    local s = redis.call('ZRANGE', g.sexp, 0, 0, 'WITHSCORES')
    if f[1] and (not s[1] or tonumber(f[2]) < tonumber(s[2])) then
      forget_failed(g, f[1])
    else
      expire_success(g, s[1])
    end
  end
end
local function order(g, at)
  return int(at * 1000 + redis.call('INCR', g.seq) % 1000)
end
local function queue_failed(g, id, at)
  if C.fttl >= 0 or C.cap >= 0 then
    redis.call('ZADD', g.fexp, order(g, at), id)
    enforce_cap(g)
  end
end
local function queue_success(g, id, at)
  if C.sttl >= 0 or C.cap >= 0 then
    redis.call('ZADD', g.sexp, order(g, at), id)
    enforce_cap(g)
  end
end
-- Whether a finished record's value says it is past `ttl`.
local function past(v, since, ttl, now)
  if ttl < 0 or not v or v == '' then return false end
  local at = since(v)
  return at ~= nil and at + ttl <= now
end
-- Expires the queued records at the front of `queue` that are past `ttl` (at most
-- `limit`; -1: all), from the oldest.
local function expire_front(g, queue, hash, since, ttl, now, limit, move)
  if ttl < 0 then return end
  local stop = -1
  if limit >= 0 then stop = limit - 1 end
  for _, id in ipairs(redis.call('ZRANGE', queue, 0, stop)) do
    local v = redis.call('HGET', hash, id)
    if v and not past(v, since, ttl, now) then return end
    move(g, id)
  end
end
-- A success put back by a failed revoke: its time to live starts again at `at` (a
-- tombstone stays one).
local function restarted(sv, at)
  local a, _, t = string.match(sv, '^(%d+):(%d+):(%d+)$')
  if not a then return sv end
  return a .. ':' .. int(at) .. ':' .. t
end
-- The Expire move of one id whose lease ended at lease_end.
local function expire(g, id, lease_end)
  redis.call('ZREM', g.lease, id)
  local v = redis.call('HGET', g.work, id)
  if v then
    local token, attempts = work_fields(v)
    local to = NEXT.working.expire
    redis.call('HDEL', g.work, id)
    redis.call('HDEL', g.queue, id)
    redis.call('HDEL', g.prog, id)
    redis.call('HSET', g.fail, id, attempts .. ':worker_lost:' .. int(lease_end) .. ':' .. token)
    emit('working', to, 'worker_lost', token, id)
    queue_failed(g, id, lease_end)
    return
  end
  v = redis.call('HGET', g.rvk, id)
  if v then
    local token, _, sv = rvk_fields(v)
    local to = NEXT.revoking.expire
    redis.call('HDEL', g.rvk, id)
    sv = restarted(sv, lease_end)
    redis.call('HSET', g.succ, id, sv)
    emit('revoking', to, '', token, id)
    if sv ~= '' then queue_success(g, id, lease_end) end
  end
end
-- Makes every move that is due for this id: its lease's end, then its TTL.
local function settle(g, id, now)
  local lease = redis.call('ZSCORE', g.lease, id)
  if lease and tonumber(lease) <= now then expire(g, id, tonumber(lease)) end
  if past(redis.call('HGET', g.fail, id), failed_since, C.fttl, now) then forget_failed(g, id) end
  if past(redis.call('HGET', g.succ, id), success_since, C.sttl, now) then expire_success(g, id) end
end
-- Makes the moves that are due in the group: at most `limit` of each kind (-1: all).
local function reap(g, now, limit)
  local due = redis.call('ZRANGEBYSCORE', g.lease, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #due, 2 do expire(g, due[i], tonumber(due[i + 1])) end
  expire_front(g, g.fexp, g.fail, failed_since, C.fttl, now, limit, forget_failed)
  expire_front(g, g.sexp, g.succ, success_since, C.sttl, now, limit, expire_success)
end
-- How many due moves of the group an operation on one id makes on the way.
local HOUSEKEEPING = 16
"#;

/// `launch(ctx, id, lease_ms, queued)` on one group: `{1, token, attempts}` or `{0,
/// phase}`. `queued` (`1`): the attempt waits for a running slot of its process until
/// `start`.
const LAUNCH: &str = r#"
local g, id, lease_ms = group(0), ARGV[2], tonumber(ARGV[3])
local now = now_ms()
settle(g, id, now)
reap(g, now, HOUSEKEEPING)
local from = phase_of(g, id)
local to = NEXT[from].launch
if not to then return {0, from} end
local attempts, prev = 1, ''
if from == 'failed' then
  local a, r = string.match(redis.call('HGET', g.fail, id), '^(%d+):([%w_]+):')
  attempts, prev = tonumber(a) + 1, r
  redis.call('HDEL', g.fail, id)
  redis.call('ZREM', g.fexp, id)
  redis.call('HDEL', g.kept, id)
end
local token = redis.call('INCR', g.seq)
redis.call('HSET', g.work, id, int(token) .. ':' .. int(attempts) .. ':' .. int(now) .. ':0:' .. prev)
redis.call('ZADD', g.lease, now + lease_ms, id)
if ARGV[4] == '1' then redis.call('HSET', g.queue, id, int(token)) end
emit(from, to, '', int(token), id)
return {1, token, attempts}
"#;

/// `progress(ctx, id, token, value, attempt)`: the running attempt numbered `attempt`
/// of the phase holding `token` reported `value`: `{1}`, or `{0}` when no such attempt
/// runs (a retry's earlier attempt is over). Subscribers hear of it as
/// `P:<token>:<value>:<id>`.
const PROGRESS: &str = r#"
local g, id = group(0), ARGV[2]
local v = redis.call('HGET', g.work, id)
if not v then return {0} end
local t, a = work_fields(v)
if t ~= ARGV[3] or a ~= ARGV[5] then return {0} end
redis.call('HSET', g.prog, id, ARGV[3] .. ':' .. ARGV[4])
redis.call('PUBLISH', C.chan, 'P:' .. ARGV[3] .. ':' .. ARGV[4] .. ':' .. id)
return {1}
"#;

/// `start(ctx, id, token)`: the queued attempt holding `token` got its running slot:
/// `{1}`, or `{0}` when no queued attempt holds it. The next attempt of a retry
/// starting: its wait (in `prog`) ends.
const START: &str = r#"
local g, id = group(0), ARGV[2]
local p = redis.call('HGET', g.prog, id)
if p and string.match(p, '^(%d+)::') == ARGV[3] then redis.call('HDEL', g.prog, id) end
if redis.call('HGET', g.queue, id) ~= ARGV[3] then return {0} end
redis.call('HDEL', g.queue, id)
return {1}
"#;

/// `retry(ctx, id, token, reason, wait_ms)`: the running attempt holding `token`
/// failed for `reason` and its next starts in `wait_ms`: `{1, next attempt}`; `{0, 1}`
/// when a cancel was asked for, `{0, 0}` when the token no longer holds the id. The record stays Working with the next attempt's number; `prog`
/// holds `<token>::<reason>:<next start, ms>` until that attempt starts (`start`) or
/// reports progress.
const RETRY: &str = r#"
local g, id = group(0), ARGV[2]
local now = now_ms()
settle(g, id, now)
local v = redis.call('HGET', g.work, id)
if not v then return {0, 0} end
local t, a, s, c, prev = work_fields(v)
if t ~= ARGV[3] then return {0, 0} end
if c == '1' then return {0, 1} end
local next_attempt = tonumber(a) + 1
redis.call('HSET', g.work, id, t .. ':' .. int(next_attempt) .. ':' .. s .. ':0:' .. prev)
redis.call('HSET', g.prog, id, t .. '::' .. ARGV[4] .. ':' .. int(now + tonumber(ARGV[5])))
return {1, next_attempt}
"#;

/// `renew(ctx, id, token, lease_ms, started)`: extends the lease of the running phase
/// holding `token`: `{1, cancel_requested}`, or `{0}` when the token no longer holds
/// it. `started` (`1`): the attempt runs, so it is no longer queued (a `start` whose
/// reply was lost).
const RENEW: &str = r#"
local g, id, lease_ms = group(0), ARGV[2], tonumber(ARGV[4])
local now = now_ms()
settle(g, id, now)
local cancel = 0
local v = redis.call('HGET', g.work, id)
local token
if v then
  local t, _, _, c = work_fields(v)
  token, cancel = t, tonumber(c)
else
  v = redis.call('HGET', g.rvk, id)
  if not v then return {0} end
  token = rvk_fields(v)
end
if token ~= ARGV[3] then return {0} end
redis.call('ZADD', g.lease, 'XX', now + lease_ms, id)
if ARGV[5] == '1' and redis.call('HGET', g.queue, id) == token then
  redis.call('HDEL', g.queue, id)
end
return {1, cancel}
"#;

/// `finish(ctx, id, token, ok, reason, kept)`: `{1, phase, reason}`; `{2, phase, reason}`
/// when the id's finished record was already made by this token (a retry of a finish
/// whose reply was lost, or the lease's expiry); `{0}` when the token no longer holds
/// the id.
const FINISH: &str = r#"
local g, id = group(0), ARGV[2]
local now = now_ms()
settle(g, id, now)
reap(g, now, HOUSEKEEPING)
local v = redis.call('HGET', g.work, id)
local token, attempts, _, cancel
if v then token, attempts, _, cancel = work_fields(v) end
if token ~= ARGV[3] then
  -- A retry whose first attempt landed (or whose lease ended): the finished record
  -- carries the token that made it.
  local done, to, why = redis.call('HGET', g.succ, id), 'success', ''
  if not done then done, to = redis.call('HGET', g.fail, id), 'failed' end
  if done and string.match(done, ':(%d+)$') == ARGV[3] then
    if to == 'failed' then why = string.match(done, '^%d+:([%w_]+):') end
    return {2, to, why}
  end
  return {0}
end
local op = 'finish_err'
if ARGV[4] == '1' then op = 'finish_ok' end
local to = NEXT.working[op]
local reason = ''
redis.call('HDEL', g.work, id)
redis.call('HDEL', g.queue, id)
redis.call('HDEL', g.prog, id)
redis.call('ZREM', g.lease, id)
-- What a keeping launch keeps, with the token that made it; the channel's message
-- says that there is some.
local kept = ''
if ARGV[6] and ARGV[6] ~= '' then
  redis.call('HSET', g.kept, id, token .. ':' .. ARGV[6])
  kept = '+k'
end
if to == 'success' then
  redis.call('HSET', g.succ, id, attempts .. ':' .. int(now) .. ':' .. token)
  emit('working', to, kept, token, id)
  queue_success(g, id, now)
else
  reason = ARGV[5]
  if reason == 'dropped' and cancel == '1' then reason = 'cancelled' end
  redis.call('HSET', g.fail, id, attempts .. ':' .. reason .. ':' .. int(now) .. ':' .. token)
  emit('working', to, reason .. kept, token, id)
  queue_failed(g, id, now)
end
return {1, to, reason}
"#;

/// `revoke_begin(ctx, id, lease_ms)`: `{1, token}` or `{0, phase}`.
const REVOKE_BEGIN: &str = r#"
local g, id, lease_ms = group(0), ARGV[2], tonumber(ARGV[3])
local now = now_ms()
settle(g, id, now)
reap(g, now, HOUSEKEEPING)
local from = phase_of(g, id)
local to = NEXT[from].revoke_begin
if not to then return {0, from} end
local sv = redis.call('HGET', g.succ, id)
redis.call('HDEL', g.succ, id)
redis.call('ZREM', g.sexp, id)
local token = redis.call('INCR', g.seq)
redis.call('HSET', g.rvk, id, int(token) .. ':' .. int(now) .. ':' .. sv)
redis.call('ZADD', g.lease, now + lease_ms, id)
emit(from, to, '', int(token), id)
return {1, token}
"#;

/// `revoke_end(ctx, id, token, ok)`: `{1, phase}`, or `{0}` for a stale token. A failed
/// revoke puts the success back as it was (a tombstone stays one), and its time to
/// live starts again.
const REVOKE_END: &str = r#"
local g, id = group(0), ARGV[2]
local now = now_ms()
settle(g, id, now)
local v = redis.call('HGET', g.rvk, id)
if not v then return {0} end
local token, _, sv = rvk_fields(v)
if token ~= ARGV[3] then return {0} end
local op = 'revoke_err'
if ARGV[4] == '1' then op = 'revoke_ok' end
local to = NEXT.revoking[op]
redis.call('HDEL', g.rvk, id)
redis.call('ZREM', g.lease, id)
if to == 'success' then
  sv = restarted(sv, now)
  redis.call('HSET', g.succ, id, sv)
else
  redis.call('HDEL', g.kept, id)
end
emit('revoking', to, '', token, id)
if to == 'success' and sv ~= '' then queue_success(g, id, now) end
return {1, to}
"#;

/// `status(ctx, id)`, read only: `{phase, attempts, reason, since_ms, token,
/// lease_left_ms, now_ms}`, all strings, empty where not known. A move that is due (a
/// lease's end, a TTL) is reported as made. For `Working`, `reason` is the failure of
/// the attempt before (empty if there was none).
const STATUS: &str = r#"
local g, id = group(0), ARGV[2]
local now = now_ms()
local function not_found() return {'not_found', '', '', '', '', '', int(now)} end
local function success(v)
  local a, s = string.match(v, '^(%d+):(%d+)')
  return {'success', a or '', '', s or '', '', '', int(now)}
end
-- A success whose TTL passed at `at`: a tombstone, or forgotten.
local function expired_success()
  if C.forget then return not_found() end
  return success('')
end
local v = redis.call('HGET', g.succ, id)
if v then
  if past(v, success_since, C.sttl, now) then return expired_success() end
  return success(v)
end
v = redis.call('HGET', g.fail, id)
if v then
  if past(v, failed_since, C.fttl, now) then return not_found() end
  local a, r, s = string.match(v, '^(%d+):([%w_]+):(%d+)')
  return {'failed', a or '', r or '', s or '', '', '', int(now)}
end
local lease = tonumber(redis.call('ZSCORE', g.lease, id) or now)
v = redis.call('HGET', g.work, id)
if v then
  local t, a, s, _, prev = work_fields(v)
  if lease <= now then
    if C.fttl >= 0 and lease + C.fttl <= now then return not_found() end
    return {NEXT.working.expire, a, 'worker_lost', int(lease), t, '', int(now)}
  end
  return {'working', a, prev, s, t, int(lease - now), int(now)}
end
v = redis.call('HGET', g.rvk, id)
if v then
  local t, s, sv = rvk_fields(v)
  if lease <= now then
    if sv ~= '' and C.sttl >= 0 and lease + C.sttl <= now then return expired_success() end
    return success(restarted(sv, lease))
  end
  return {'revoking', string.match(sv, '^(%d+):') or '', '', s, t, int(lease - now), int(now)}
end
return not_found()
"#;

/// `cancel(ctx, id)`: marks a `Working` id's attempt cancelled and tells the process
/// running it: `{1, token, lease_left_ms}`, or `{0, phase}` if the id is not `Working`.
const CANCEL: &str = r#"
local g, id = group(0), ARGV[2]
local now = now_ms()
settle(g, id, now)
local v = redis.call('HGET', g.work, id)
if not v then return {0, phase_of(g, id)} end
local t, a, s, _, prev = work_fields(v)
redis.call('HSET', g.work, id, t .. ':' .. a .. ':' .. s .. ':1:' .. prev)
redis.call('PUBLISH', C.chan, 'C:' .. t .. ':' .. id)
local lease = tonumber(redis.call('ZSCORE', g.lease, id))
return {1, t, int(lease - now)}
"#;

/// `counts(ctx)` of one group (the store runs one per group in one MULTI/EXEC), after
/// every due move: `{working, success (revoking included), failed, revoking, queued}`.
const COUNTS: &str = r#"
local now = now_ms()
local w, s, f, r, q = 0, 0, 0, 0, 0
for b = 0, #KEYS - 1, 11 do
  local g = group(b)
  reap(g, now, -1)
  w = w + redis.call('HLEN', g.work)
  s = s + redis.call('HLEN', g.succ)
  f = f + redis.call('HLEN', g.fail)
  r = r + redis.call('HLEN', g.rvk)
  q = q + redis.call('HLEN', g.queue)
end
return {w, s + r, f, r, q}
"#;

/// `scan(ctx, table, cursor, count)` of one group's `work`, `succ`, `fail` or `rvk`
/// hash, after the group's due moves: `{next_cursor, id, id, ...}`.
const SCAN: &str = r#"
local g = group(0)
reap(g, now_ms(), -1)
local res = redis.call('HSCAN', g[ARGV[2]], ARGV[3], 'COUNT', ARGV[4])
local out, kv = {res[1]}, res[2]
for i = 1, #kv, 2 do out[#out + 1] = kv[i] end
return out
"#;

/// One function of the library, called with `FCALL <name>`.
#[derive(Debug, Clone)]
pub(crate) struct Function(pub(crate) String);

/// The scripts as one Redis Functions library: the generated table and the prelude
/// run once, when the server loads it, and each call runs only its function, not the
/// prelude again (a large part of a short script's time on the server). The library's
/// name carries a hash of its code, so
/// processes of different versions of this crate each call their own.
#[derive(Debug)]
pub(crate) struct Scripts {
    /// The library's code, for `FUNCTION LOAD REPLACE`.
    pub(crate) library: String,
    pub(crate) launch: Function,
    pub(crate) start: Function,
    pub(crate) progress: Function,
    pub(crate) retry: Function,
    pub(crate) renew: Function,
    pub(crate) finish: Function,
    /// `finish` without its token check: the fault the tests inject (only a recorder
    /// built with that fault calls it).
    pub(crate) finish_unfenced: Function,
    pub(crate) revoke_begin: Function,
    pub(crate) revoke_end: Function,
    /// The status read as a function: the store reads with a transaction of plain
    /// commands instead (`read.rs`), tested against this one.
    #[cfg(test)]
    pub(crate) status: Function,
    pub(crate) cancel: Function,
    pub(crate) counts: Function,
    pub(crate) scan: Function,
}

/// Every command the library's functions call, as ACL rules name them. A unit test
/// reads the library's code to keep the list complete.
pub(crate) const FUNCTION_COMMANDS: &[&str] = &[
    "hdel",
    "hexists",
    "hget",
    "hlen",
    "hscan",
    "hset",
    "incr",
    "publish",
    "time",
    "zadd",
    "zcard",
    "zrange",
    "zrangebyscore",
    "zrem",
    "zscore",
];

/// FNV-1a, for the library's name.
fn fnv64(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Scripts {
    /// Built once per process.
    pub(crate) fn get() -> &'static Scripts {
        static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
        SCRIPTS.get_or_init(|| {
            let fenced = "if token ~= ARGV[3] then";
            assert!(
                FINISH.contains(fenced),
                "the finish script checks its token"
            );
            let unfenced = FINISH.replace(fenced, "if not v then");
            let bodies: [(&str, &str); 13] = [
                ("launch", LAUNCH),
                ("start", START),
                ("progress", PROGRESS),
                ("retry", RETRY),
                ("renew", RENEW),
                ("finish", FINISH),
                ("finish_unfenced", &unfenced),
                ("revoke_begin", REVOKE_BEGIN),
                ("revoke_end", REVOKE_END),
                ("status", STATUS),
                ("cancel", CANCEL),
                ("counts", COUNTS),
                ("scan", SCAN),
            ];
            // Every function sets the chunk's KEYS and ARGV, which the prelude's
            // helpers read, and its settings, then runs its body.
            let mut code = format!(
                "local KEYS, ARGV = {{}}, {{}}\n{}{PRELUDE}",
                crate::state::lua_table()
            );
            for (name, body) in bodies {
                code.push_str(&format!(
                    "local function f_{name}(keys, args)\nKEYS, ARGV = keys, args\nload_context()\n{body}\nend\n"
                ));
            }
            let lib = format!("atr_{:016x}", fnv64(&code));
            for (name, _) in bodies {
                code.push_str(&format!("redis.register_function('{lib}_{name}', f_{name})\n"));
            }
            let f = |name: &str| Function(format!("{lib}_{name}"));
            Scripts {
                library: format!("#!lua name={lib}\n{code}"),
                launch: f("launch"),
                start: f("start"),
                progress: f("progress"),
                retry: f("retry"),
                renew: f("renew"),
                finish: f("finish"),
                finish_unfenced: f("finish_unfenced"),
                revoke_begin: f("revoke_begin"),
                revoke_end: f("revoke_end"),
                #[cfg(test)]
                status: f("status"),
                cancel: f("cancel"),
                counts: f("counts"),
                scan: f("scan"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_step_through_a_groups_keys() {
        let n = super::super::keys::GROUP_KEYS.len();
        assert!(COUNTS.contains(&format!("for b = 0, #KEYS - 1, {n} do")));
        assert!(PRELUDE.contains(&format!("KEYS[b + {n}]")));
        assert!(!PRELUDE.contains(&format!("KEYS[b + {}]", n + 1)));
    }

    #[test]
    fn every_command_the_functions_call_is_listed() {
        let code = &Scripts::get().library;
        let mut called: Vec<String> = Vec::new();
        for call in ["redis.call(", "redis.pcall("] {
            for (at, _) in code.match_indices(call) {
                let rest = &code[at + call.len()..];
                let quote = rest.chars().next().expect("an argument");
                assert!(
                    quote == '\'' || quote == '"',
                    "a literal command name: {rest:.40}"
                );
                let name = rest[1..].split(quote).next().expect("a closing quote");
                called.push(name.to_ascii_lowercase());
            }
        }
        called.sort();
        called.dedup();
        assert_eq!(called, FUNCTION_COMMANDS);
    }
}
