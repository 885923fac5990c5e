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
//! Transitions are published on the namespace's channel as
//! `T:<from>:<to>:<reason>:<token>:<id>`, cancel requests as `C:<token>:<id>`; the id
//! comes last, so it may hold any bytes.

use std::sync::OnceLock;

/// Helpers every script shares, after the generated `NEXT` table. `KEYS` holds one or
/// more groups' keys, six per group, in [`GROUP_KEYS`](super::keys::GROUP_KEYS) order.
const PRELUDE: &str = r#"
local function int(x) return string.format('%d', x) end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function group(b)
  return { work = KEYS[b + 1], lease = KEYS[b + 2], succ = KEYS[b + 3],
           fail = KEYS[b + 4], rvk = KEYS[b + 5], seq = KEYS[b + 6] }
end
local function emit(chan, from, to, reason, token, id)
  redis.call('PUBLISH', chan, 'T:' .. from .. ':' .. to .. ':' .. reason .. ':' .. token .. ':' .. id)
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
-- The Expire move of one id whose lease ended at lease_end.
local function expire(g, chan, id, lease_end)
  redis.call('ZREM', g.lease, id)
  local v = redis.call('HGET', g.work, id)
  if v then
    local token, attempts = work_fields(v)
    local to = NEXT.working.expire
    redis.call('HDEL', g.work, id)
    redis.call('HSET', g.fail, id, attempts .. ':worker_lost:' .. int(lease_end) .. ':' .. token)
    emit(chan, 'working', to, 'worker_lost', token, id)
    return
  end
  v = redis.call('HGET', g.rvk, id)
  if v then
    local token, _, sv = rvk_fields(v)
    local to = NEXT.revoking.expire
    redis.call('HDEL', g.rvk, id)
    redis.call('HSET', g.succ, id, sv)
    emit(chan, 'revoking', to, '', token, id)
  end
end
-- Makes the Expire move of this id if its lease ended.
local function settle(g, chan, id, now)
  local lease = redis.call('ZSCORE', g.lease, id)
  if lease and tonumber(lease) <= now then expire(g, chan, id, tonumber(lease)) end
end
-- Makes the Expire move of every id of the group whose lease ended.
local function reap(g, chan, now)
  local due = redis.call('ZRANGEBYSCORE', g.lease, '-inf', now, 'WITHSCORES')
  for i = 1, #due, 2 do expire(g, chan, due[i], tonumber(due[i + 1])) end
end
"#;

/// `launch(chan, id, lease_ms)` on one group: `{1, token, attempts}` or `{0, phase}`.
const LAUNCH: &str = r#"
local g, chan, id, lease_ms = group(0), ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
settle(g, chan, id, now)
local from = phase_of(g, id)
local to = NEXT[from].launch
if not to then return {0, from} end
local attempts, prev = 1, ''
if from == 'failed' then
  local a, r = string.match(redis.call('HGET', g.fail, id), '^(%d+):([%w_]+):')
  attempts, prev = tonumber(a) + 1, r
  redis.call('HDEL', g.fail, id)
end
local token = redis.call('INCR', g.seq)
redis.call('HSET', g.work, id, int(token) .. ':' .. int(attempts) .. ':' .. int(now) .. ':0:' .. prev)
redis.call('ZADD', g.lease, now + lease_ms, id)
emit(chan, from, to, '', int(token), id)
return {1, token, attempts}
"#;

/// `renew(chan, id, token, lease_ms)`: extends the lease of the running phase holding
/// `token`: `{1, cancel_requested}`, or `{0}` when the token no longer holds it.
const RENEW: &str = r#"
local g, chan, id, lease_ms = group(0), ARGV[1], ARGV[2], tonumber(ARGV[4])
local now = now_ms()
settle(g, chan, id, now)
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
return {1, cancel}
"#;

/// `finish(chan, id, token, ok, reason)`: `{1, phase, reason}`; `{2, phase, reason}`
/// when the id's finished record was already made by this token (a retry of a finish
/// whose reply was lost, or the lease's expiry); `{0}` when the token no longer holds
/// the id.
const FINISH: &str = r#"
local g, chan, id = group(0), ARGV[1], ARGV[2]
local now = now_ms()
settle(g, chan, id, now)
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
redis.call('ZREM', g.lease, id)
if to == 'success' then
  redis.call('HSET', g.succ, id, attempts .. ':' .. int(now) .. ':' .. token)
else
  reason = ARGV[5]
  if reason == 'dropped' and cancel == '1' then reason = 'cancelled' end
  redis.call('HSET', g.fail, id, attempts .. ':' .. reason .. ':' .. int(now) .. ':' .. token)
end
emit(chan, 'working', to, reason, token, id)
return {1, to, reason}
"#;

/// `revoke_begin(chan, id, lease_ms)`: `{1, token}` or `{0, phase}`.
const REVOKE_BEGIN: &str = r#"
local g, chan, id, lease_ms = group(0), ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
settle(g, chan, id, now)
local from = phase_of(g, id)
local to = NEXT[from].revoke_begin
if not to then return {0, from} end
local sv = redis.call('HGET', g.succ, id)
redis.call('HDEL', g.succ, id)
local token = redis.call('INCR', g.seq)
redis.call('HSET', g.rvk, id, int(token) .. ':' .. int(now) .. ':' .. sv)
redis.call('ZADD', g.lease, now + lease_ms, id)
emit(chan, from, to, '', int(token), id)
return {1, token}
"#;

/// `revoke_end(chan, id, token, ok)`: `{1, phase}`, or `{0}` for a stale token.
const REVOKE_END: &str = r#"
local g, chan, id = group(0), ARGV[1], ARGV[2]
local now = now_ms()
settle(g, chan, id, now)
local v = redis.call('HGET', g.rvk, id)
if not v then return {0} end
local token, _, sv = rvk_fields(v)
if token ~= ARGV[3] then return {0} end
local op = 'revoke_err'
if ARGV[4] == '1' then op = 'revoke_ok' end
local to = NEXT.revoking[op]
redis.call('HDEL', g.rvk, id)
redis.call('ZREM', g.lease, id)
if to == 'success' then redis.call('HSET', g.succ, id, sv) end
emit(chan, 'revoking', to, '', token, id)
return {1, to}
"#;

/// `status(id)`, read only: `{phase, attempts, reason, since_ms, token, lease_left_ms,
/// now_ms}`, all strings, empty where not known. A running phase whose lease ended is
/// reported as its `Expire` move. For `Working`, `reason` is the failure of the attempt
/// before (empty if there was none).
const STATUS: &str = r#"
local g, id = group(0), ARGV[1]
local now = now_ms()
local function success(v)
  local a, s = string.match(v, '^(%d+):(%d+)')
  return {'success', a or '', '', s or '', '', '', int(now)}
end
local v = redis.call('HGET', g.succ, id)
if v then return success(v) end
v = redis.call('HGET', g.fail, id)
if v then
  local a, r, s = string.match(v, '^(%d+):([%w_]+):(%d+)')
  return {'failed', a or '', r or '', s or '', '', '', int(now)}
end
local lease = tonumber(redis.call('ZSCORE', g.lease, id) or now)
v = redis.call('HGET', g.work, id)
if v then
  local t, a, s, _, prev = work_fields(v)
  if lease <= now then return {NEXT.working.expire, a, 'worker_lost', int(lease), t, '', int(now)} end
  return {'working', a, prev, s, t, int(lease - now), int(now)}
end
v = redis.call('HGET', g.rvk, id)
if v then
  local t, s, sv = rvk_fields(v)
  if lease <= now then return success(sv) end
  return {'revoking', string.match(sv, '^(%d+):') or '', '', s, t, int(lease - now), int(now)}
end
return {'not_found', '', '', '', '', '', int(now)}
"#;

/// `cancel(chan, id)`: marks a `Working` id's attempt cancelled and tells the process
/// running it: `{1, token, lease_left_ms}`, or `{0, phase}` if the id is not `Working`.
const CANCEL: &str = r#"
local g, chan, id = group(0), ARGV[1], ARGV[2]
local now = now_ms()
settle(g, chan, id, now)
local v = redis.call('HGET', g.work, id)
if not v then return {0, phase_of(g, id)} end
local t, a, s, _, prev = work_fields(v)
redis.call('HSET', g.work, id, t .. ':' .. a .. ':' .. s .. ':1:' .. prev)
redis.call('PUBLISH', chan, 'C:' .. t .. ':' .. id)
local lease = tonumber(redis.call('ZSCORE', g.lease, id))
return {1, t, int(lease - now)}
"#;

/// `counts(chan)` over every group at one instant: `{working, success (revoking
/// included), failed, revoking}`.
const COUNTS: &str = r#"
local chan, now = ARGV[1], now_ms()
local w, s, f, r = 0, 0, 0, 0
for b = 0, #KEYS - 1, 6 do
  local g = group(b)
  reap(g, chan, now)
  w = w + redis.call('HLEN', g.work)
  s = s + redis.call('HLEN', g.succ)
  f = f + redis.call('HLEN', g.fail)
  r = r + redis.call('HLEN', g.rvk)
end
return {w, s + r, f, r}
"#;

/// `scan(chan, table, cursor, count)` of one group's `work`, `succ`, `fail` or `rvk`
/// hash: `{next_cursor, id, id, ...}`.
const SCAN: &str = r#"
local g = group(0)
reap(g, ARGV[1], now_ms())
local res = redis.call('HSCAN', g[ARGV[2]], ARGV[3], 'COUNT', ARGV[4])
local out, kv = {res[1]}, res[2]
for i = 1, #kv, 2 do out[#out + 1] = kv[i] end
return out
"#;

/// The scripts, each with the generated table and the prelude in front.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) launch: ::redis::Script,
    pub(crate) renew: ::redis::Script,
    pub(crate) finish: ::redis::Script,
    /// `finish` without its token check: the fault the tests inject.
    pub(crate) finish_unfenced: ::redis::Script,
    pub(crate) revoke_begin: ::redis::Script,
    pub(crate) revoke_end: ::redis::Script,
    pub(crate) status: ::redis::Script,
    pub(crate) cancel: ::redis::Script,
    pub(crate) counts: ::redis::Script,
    pub(crate) scan: ::redis::Script,
}

impl Scripts {
    /// Built once per process (hashing every script's text).
    pub(crate) fn get() -> &'static Scripts {
        static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
        SCRIPTS.get_or_init(|| {
            let table = crate::state::lua_table();
            let make = |body: &str| ::redis::Script::new(&format!("{table}{PRELUDE}{body}"));
            Scripts {
                launch: make(LAUNCH),
                renew: make(RENEW),
                finish: make(FINISH),
                finish_unfenced: {
                    let fenced = "if token ~= ARGV[3] then";
                    assert!(
                        FINISH.contains(fenced),
                        "the finish script checks its token"
                    );
                    make(&FINISH.replace(fenced, "if not v then"))
                },
                revoke_begin: make(REVOKE_BEGIN),
                revoke_end: make(REVOKE_END),
                status: make(STATUS),
                cancel: make(CANCEL),
                counts: make(COUNTS),
                scan: make(SCAN),
            }
        })
    }
}
