//! The Lua scripts, as Redis runs them, and the rounds ([`batch`]) that run the inbox
//! write and ack scripts for everything that waited: one call per slot.

use fred::prelude::*;
use fred::types::scripts::Script;

use super::connect::unavailable;
use crate::domain::UserId;
use crate::engine::batch::{self, Batcher};
use crate::engine::inbox::{keep_inbox_ms, InboxEntry, MsgId, DONE_KEEP_MS, DONE_MAX, INBOX_MAX};
use crate::engine::wire::{self, Event};
use crate::engine::{EngineError, Keys, Target};
use crate::tasks::Tasks;

/// Counts a connect attempt, then takes a socket place unless `max` live leases exist;
/// when they do, leases overdue for renewal give way first.
/// KEYS[1] user sockets zset, KEYS[2] connect counter;
/// ARGV now_ms, lease_until_ms, max, conn, connect limit, window ms, overdue_before_ms.
/// Returns 1 taken, 0 full, -1 rate limited.
pub(super) const ACQUIRE_LUA: &str = r"
local attempts = redis.call('INCR', KEYS[2])
if attempts == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[6]) end
if attempts > tonumber(ARGV[5]) then return -1 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[7])
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
";

/// What the inbox scripts share: the stream `s` of a user's unacked notifications and
/// the ids set `z` beside it (see [`Keys`]). Every inbox script takes the same first
/// ARGV: now (ms), how long acked ids are kept, how long out-of-order entries are
/// looked up, the ids set's bound, and the inbox's bound ([`common_args`]).
///
/// The stream's entry id is the message id whenever that is above the stream's last
/// id, which is how ids arrive (they are decided in time order): such a write is one
/// `XADD`, refused by Redis when the id is not new, and its ack one `XDEL`. An id at or
/// below the last one was written before (waiting, acked, withdrawn, dropped) or was
/// decided before one written since (a relay's retry, two replicas): it is looked up
/// (the ids set, then the stream at that id) and, when new, appended with an entry id
/// of its own and the message id in field `id`; the ids set keeps that entry's id
/// (scored `ms × 1024 + seq`, above every time in ms) until it is acked or stale.
///
/// Each entry holds the notification in field `n` and the entry's version in `v`
/// ([`wire::entry`]; `VERSION`, set by [`inbox_script`]).
///
/// The keys' expiry is kept in the ids set too (member `~keep`, rounded up to the hour):
/// one `ZADD GT` tells whether it must move, about once an hour per active user; only
/// then do both keys get `PEXPIREAT` and the ids set its trims. Both keys always get
/// the same expiry, and every script that can create the stream raises the mark in the
/// same call, so the stream never outlives the ids that guard it, nor lacks an expiry.
const INBOX_HELPERS: &str = r"
local HOUR = 3600000
local OOO = 562949953421312
local function num(x) return string.format('%.0f', x) end

local function entry_of(score)
  local ms = math.floor(score / 1024)
  return num(ms) .. '-' .. num(score - ms * 1024)
end

local function raise(z, keep)
  return redis.call('ZADD', z, 'GT', 'CH', keep, '~keep') == 1
end

local function bound(z, max)
  local over = redis.call('ZCARD', z) - max
  if over > 0 then redis.call('ZREMRANGEBYRANK', z, 0, over - 1) end
end

local function settle(s, z, keep)
  local now = tonumber(ARGV[1])
  redis.call('PEXPIREAT', s, keep)
  redis.call('PEXPIREAT', z, keep)
  redis.call('ZREMRANGEBYSCORE', z, '-inf', '(' .. num(now - tonumber(ARGV[2])))
  redis.call('ZREMRANGEBYSCORE', z, OOO, '(' .. num((now - tonumber(ARGV[3])) * 1024))
  bound(z, tonumber(ARGV[4]))
end

local function add(s, z, id, v)
  local r = redis.pcall('XADD', s, id, 'n', v, 'v', VERSION)
  if type(r) ~= 'table' then return true end
  if redis.call('ZSCORE', z, id) or #redis.call('XRANGE', s, id, id) > 0 then
    return false
  end
  local e = redis.call('XADD', s, '*', 'id', id, 'n', v, 'v', VERSION)
  local ms, seq = string.match(e, '^(%d+)%-(%d+)$')
  ms, seq = tonumber(ms), tonumber(seq)
  if seq >= 1024 then
    redis.call('XDEL', s, e)
    ms, seq = ms + 1, 0
    redis.call('XADD', s, num(ms) .. '-0', 'id', id, 'n', v, 'v', VERSION)
  end
  redis.call('ZADD', z, num(ms * 1024 + seq), id)
  return true
end

local function later(a, b)
  local am, as = string.match(a, '^(%d+)%-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)%-(%d+)$')
  if not am then return false end
  if not bm then return true end
  if tonumber(am) ~= tonumber(bm) then return tonumber(am) > tonumber(bm) end
  if #as ~= #bs then return #as > #bs end
  return as > bs
end

local function past(s, id)
  local r = redis.pcall('XADD', s, id, 'n', '0 ')
  if type(r) ~= 'table' then redis.call('XDEL', s, id) end
end

local function migrate(s, z, oi, om, od)
  if redis.call('EXISTS', oi, om, od) == 0 then return nil end
  local expiry = 0
  for _, key in ipairs({oi, om, od}) do
    expiry = math.max(expiry, redis.call('PEXPIRETIME', key))
  end
  local done = redis.call('ZRANGE', od, 0, -1, 'WITHSCORES')
  local batch, top = {}, nil
  for j = 1, #done, 2 do
    batch[#batch + 1] = done[j + 1]
    batch[#batch + 1] = done[j]
    if not top or later(done[j], top) then top = done[j] end
    if #batch >= 1000 or j + 2 > #done then
      redis.call('ZADD', z, 'NX', unpack(batch))
      batch = {}
    end
  end
  for _, id in ipairs(redis.call('ZRANGE', oi, 0, -1)) do
    local v = redis.call('HGET', om, id)
    if v and not redis.call('ZSCORE', z, id) then add(s, z, id, v) end
  end
  if top then past(s, top) end
  if redis.call('EXISTS', s) == 0 then past(s, '0-1') end
  redis.call('DEL', oi, om, od)
  return expiry
end

local function moved_keep(moved, keep)
  if moved and moved > tonumber(keep) then return num(math.ceil(moved / HOUR) * HOUR) end
  return keep
end

local function take_back(s, z, id, oi, om, od)
  local sc = redis.call('ZSCORE', z, id)
  if sc and tonumber(sc) >= OOO then
    redis.call('XDEL', s, entry_of(tonumber(sc)))
    redis.call('ZADD', z, ARGV[1], id)
    return 1
  end
  if not sc and redis.call('HDEL', om, id) == 1 then
    redis.call('ZREM', oi, id)
    redis.call('ZADD', od, ARGV[1], id)
    redis.call('PEXPIRE', od, ARGV[2])
    return 1
  end
  return 0
end
";

/// Adds notifications to inboxes (a round of them, for any users of one slot): each
/// unless it is there or was acked lately ([`INBOX_HELPERS`]: one `XADD` when its id is
/// new), publishing its `N` event (built in [`wire`]) in the same step; one write in
/// [`TRIM_EVERY`] (chosen at random) trims the stream to the bound. When the keys'
/// expiry mark moves, an inbox of release 0.3 still there is moved in first.
/// KEYS per notification: stream, ids set, and release 0.3's pending zset, frames hash
/// and acked zset. ARGV the common five, then per notification: id,
/// `<expires_ms> <tail>`, keep until (ms, the keys' expiry is raised to it, never
/// lowered), channel, event, trim (`1` or `0`).
/// Returns per notification: 1 added or 0 duplicate, and the number dropped by the bound.
const PUSH_LUA: &str = r"
local out = {}
for i = 0, #KEYS / 5 - 1 do
  local k, a = i * 5, 5 + i * 6
  local s, z = KEYS[k + 1], KEYS[k + 2]
  local keep = ARGV[a + 3]
  local added, dropped = 0, 0
  local raised = raise(z, keep)
  if raised then
    keep = moved_keep(migrate(s, z, KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]), keep)
    raise(z, keep)
  end
  if add(s, z, ARGV[a + 1], ARGV[a + 2]) then
    added = 1
    redis.call('PUBLISH', ARGV[a + 4], ARGV[a + 5])
    if ARGV[a + 6] == '1' then dropped = redis.call('XTRIM', s, 'MAXLEN', ARGV[5]) end
  end
  if raised then settle(s, z, keep) end
  out[#out + 1] = added
  out[#out + 1] = dropped
end
return out
";

/// Removes acked notifications (a round of them, from any users of one slot) and, for
/// each that was there, remembers the ack and tells the user's other sockets, if the
/// user may have any: with one socket lease (the acking socket's, which has recorded
/// the ack itself) nobody else needs the news, and the publish is skipped. A lease left
/// by a socket that ended without releasing it only costs a publish nobody needs. A
/// socket that takes its lease after this script runs reads the inbox afterwards and
/// never sees the notification.
/// An ack is one `XDEL` of the entry whose id is the message id, and one `ZADD` that
/// remembers the id and checks the keys' expiry mark; an out-of-order entry, or one in
/// release 0.3's keys, is looked up. The ack of id `0-0` (a barrier,
/// [`crate::engine::Inbox::acks_settled`]) touches nothing. One ack in [`TRIM_EVERY`]
/// bounds the ids set.
/// KEYS per ack: stream, ids set, release 0.3's three keys, socket leases zset. ARGV
/// the common five, keep until (ms), then per ack: id, channel, the `A` event
/// ([`wire::Event::Acked`]), trim (`1` or `0`).
/// Returns per ack 1 if it was in the inbox, else 0.
const ACK_LUA: &str = r"
local out = {}
for i = 0, #KEYS / 6 - 1 do
  local k, a = i * 6, 6 + i * 4
  local s, z = KEYS[k + 1], KEYS[k + 2]
  local id = ARGV[a + 1]
  local n = 0
  if id ~= '0-0' then
    n = redis.call('XDEL', s, id)
    if n == 1 then
      if redis.call('ZADD', z, 'GT', 'CH', ARGV[1], id, ARGV[6], '~keep') > 1 then
        settle(s, z, ARGV[6])
      end
    else
      n = take_back(s, z, id, KEYS[k + 3], KEYS[k + 4], KEYS[k + 5])
      if n == 1 and redis.call('EXISTS', s) == 1 and raise(z, ARGV[6]) then
        settle(s, z, ARGV[6])
      end
    end
    if n == 1 and redis.call('ZCARD', KEYS[k + 6]) > 1 then
      redis.call('PUBLISH', ARGV[a + 2], ARGV[a + 3])
    end
    if ARGV[a + 4] == '1' then bound(z, tonumber(ARGV[4])) end
  end
  out[i + 1] = n
end
return out
";

/// Withdraws a notification: removed if there, remembered as done either way, and every
/// replica told if it was there. When it is not there yet, the stream's last id is
/// raised past it, so that a late write of it is looked up and found done.
/// KEYS stream, ids set, release 0.3's three keys; ARGV the common five, keep until
/// (ms), id, channel, the `A` event.
pub(super) const WITHDRAW_LUA: &str = r"
local s, z, id = KEYS[1], KEYS[2], ARGV[7]
local n = redis.call('XDEL', s, id)
if n == 0 then
  n = take_back(s, z, id, KEYS[3], KEYS[4], KEYS[5])
  past(s, id)
end
redis.call('ZADD', z, ARGV[1], id)
if raise(z, ARGV[6]) then settle(s, z, ARGV[6]) end
if n == 1 then redis.call('PUBLISH', ARGV[8], ARGV[9]) end
return n
";

/// Reads an inbox in the order written, after moving in release 0.3's inbox if it is
/// still there: trims it to the bound (the newest stay), and removes expired entries on
/// the way (an out-of-order one's entry id with it). An entry of a newer version than
/// `VERSION` ([`wire::entry::VERSION`]) is left as it is and only counted.
/// KEYS stream, ids set, release 0.3's three keys; ARGV the common five, keep until
/// (ms, for a moved inbox).
/// Returns {expired count, dropped count, newer count, id, `<exp> <tail>`, id, ...}.
pub(super) const READ_LUA: &str = r"
local now = tonumber(ARGV[1])
local s, z = KEYS[1], KEYS[2]
local moved = migrate(s, z, KEYS[3], KEYS[4], KEYS[5])
if moved then
  local keep = moved_keep(moved, ARGV[6])
  if raise(z, keep) then settle(s, z, keep) end
end
local out = {0, redis.call('XTRIM', s, 'MAXLEN', ARGV[5]), 0}
local gone, forget = {}, {}
for _, e in ipairs(redis.call('XRANGE', s, '-', '+')) do
  local id, v, f, ver = e[1], nil, e[2], 1
  for j = 1, #f, 2 do
    if f[j] == 'n' then v = f[j + 1] elseif f[j] == 'id' then id = f[j + 1]
    elseif f[j] == 'v' then ver = tonumber(f[j + 1]) or VERSION + 1 end
  end
  local exp = v and tonumber(string.sub(v, 1, (string.find(v, ' ', 1, true) or 1) - 1))
  if ver > VERSION then
    out[3] = out[3] + 1
  elseif exp and exp > now then
    out[#out + 1] = id
    out[#out + 1] = v
  else
    gone[#gone + 1] = e[1]
    if id ~= e[1] then forget[#forget + 1] = id end
    out[1] = out[1] + 1
  end
end
if #gone > 0 then redis.call('XDEL', s, unpack(gone)) end
if #forget > 0 then redis.call('ZREM', z, unpack(forget)) end
return out
";

/// One inbox write or ack in this many (chosen at random) also bounds the stream or the
/// ids set: the bound costs a command, and an inbox over it by a few until the next is
/// harmless, as every read trims it to the bound exactly.
const TRIM_EVERY: u32 = 8;

/// How long an out-of-order entry's id is looked up after its write: longer than the
/// longest notification ttl (7 days) and the hour its inbox is kept past that.
const OUT_OF_ORDER_KEEP_MS: u64 = 8 * 24 * 3600 * 1000;

/// The ARGV every inbox script starts with ([`INBOX_HELPERS`]).
pub(super) fn common_args(now: u64) -> [Value; 5] {
    [
        Value::from(now.to_string()),
        Value::from(DONE_KEEP_MS.to_string()),
        Value::from(OUT_OF_ORDER_KEEP_MS.to_string()),
        Value::from((DONE_MAX + INBOX_MAX).to_string()),
        Value::from(INBOX_MAX.to_string()),
    ]
}

/// The keys' expiry for a write at `now` that must keep them `ms` longer: rounded up to
/// the hour, so the mark moves about once an hour per user.
pub(super) fn keep_until(now: u64, ms: u64) -> u64 {
    const HOUR: u64 = 3600 * 1000;
    (now + ms).div_ceil(HOUR) * HOUR
}

/// Whether this write or ack also bounds its inbox ([`TRIM_EVERY`]).
fn trim_flag() -> Value {
    Value::from(if rand::random::<u32>() % TRIM_EVERY == 0 {
        "1"
    } else {
        "0"
    })
}

/// An inbox script's text: the entry version it writes and reads (`VERSION`,
/// [`wire::entry::VERSION`]), [`INBOX_HELPERS`], then `body`, for the deployment
/// ([`script_for`]).
pub(super) fn inbox_script(body: &str, clustered: bool) -> Script {
    let version = wire::entry::VERSION;
    script_for(
        &format!("local VERSION = {version}\n{INBOX_HELPERS}{body}"),
        clustered,
    )
}

/// A script's text for the deployment: in a Cluster, the user-channel publishes inside
/// it are shard publishes (the channel is hash-tagged like the script's keys).
pub(super) fn script_for(lua: &str, clustered: bool) -> Script {
    if clustered {
        Script::from_lua(lua.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'"))
    } else {
        Script::from_lua(lua)
    }
}

/// Starts the rounds of acks and of inbox writes, supervised on `tasks`.
#[allow(clippy::type_complexity)]
pub(super) fn start(
    tasks: &Tasks,
    commands: &Client,
    keys: &Keys,
    clustered: bool,
) -> (
    Batcher<(UserId, MsgId), bool>,
    Batcher<PushJob, (bool, i64)>,
) {
    let rounds = |lua: &str| ScriptRounds {
        commands: commands.clone(),
        script: inbox_script(lua, clustered),
        keys: keys.clone(),
        clustered,
    };
    let acks = rounds(ACK_LUA).start(tasks, "redis_acks", ack_round);
    let pushes = rounds(PUSH_LUA).start(tasks, "redis_pushes", push_round);
    (acks, pushes)
}

/// What a round of one multi-job script needs: the connection, the script, the key
/// names, and whether Redis is a Cluster (one call per slot there).
#[derive(Clone)]
struct ScriptRounds {
    commands: Client,
    script: Script,
    keys: Keys,
    clustered: bool,
}

impl ScriptRounds {
    /// Starts the [`Batcher`] that runs `round` on whatever waited.
    fn start<J, R, Fut>(
        self,
        tasks: &Tasks,
        name: &'static str,
        round: impl Fn(ScriptRounds, Vec<J>) -> Fut + Send + Sync + 'static,
    ) -> Batcher<J, R>
    where
        J: Send + 'static,
        R: Send + 'static,
        Fut: std::future::Future<Output = Vec<Result<R, EngineError>>> + Send + 'static,
    {
        Batcher::start(tasks, name, move |jobs| round(self.clone(), jobs))
    }

    /// One round: one call per slot (one in all off a Cluster), the calls pipelined.
    /// `args` gives a group's keys and arguments; each job's answer is the next `width`
    /// integers of its call's answer, read by `parse`.
    async fn run<J, R>(
        &self,
        jobs: Vec<J>,
        user: impl Fn(&J) -> UserId,
        args: impl Fn(&[J]) -> (Vec<String>, Vec<Value>),
        width: usize,
        parse: impl Fn(&[i64]) -> R,
    ) -> Vec<Result<R, EngineError>> {
        let n = jobs.len();
        let groups = batch::by_slot(jobs, |j| self.clustered.then(|| self.keys.slot(user(j))));
        let calls = groups.iter().map(|(_, jobs)| {
            let (keys, args) = args(jobs);
            self.script
                .evalsha_with_reload::<Vec<i64>, _, _>(&self.commands, keys, args)
        });
        let answers = futures::future::join_all(calls).await;
        let mut out: Vec<Option<Result<R, EngineError>>> = (0..n).map(|_| None).collect();
        for ((at, _), answer) in groups.iter().zip(answers) {
            match answer {
                Ok(answer) => {
                    for (i, one) in at.iter().zip(answer.chunks_exact(width)) {
                        out[*i] = Some(Ok(parse(one)));
                    }
                }
                Err(e) => {
                    let e = unavailable(e);
                    for i in at {
                        out[*i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        out.into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Err(EngineError::Unavailable("no answer from the script".into()))
                })
            })
            .collect()
    }
}

/// A notification for an inbox, waiting for its round of [`PUSH_LUA`].
pub(super) struct PushJob {
    pub(super) user: UserId,
    pub(super) id: MsgId,
    pub(super) tail: String,
    pub(super) expires_ms: u64,
}

/// One round of inbox writes ([`PUSH_LUA`]): for each, whether it was added (not a
/// duplicate) and how many old entries the bound dropped.
async fn push_round(r: ScriptRounds, jobs: Vec<PushJob>) -> Vec<Result<(bool, i64), EngineError>> {
    let keys = &r.keys;
    let now = crate::time::unix_ms();
    let args = |jobs: &[PushJob]| {
        let mut k = Vec::with_capacity(jobs.len() * 5);
        let mut args = Vec::with_capacity(5 + jobs.len() * 6);
        args.extend(common_args(now));
        for j in jobs {
            k.extend(keys.inbox(j.user));
            k.extend(keys.old_inbox(j.user));
            let event = Event::Notify {
                id: j.id,
                expires_ms: j.expires_ms,
                frame: wire::frame(j.id, &j.tail),
            };
            args.extend([
                Value::from(j.id.to_string()),
                Value::from(wire::entry::value(j.expires_ms, &j.tail)),
                Value::from(keep_until(now, keep_inbox_ms(now, j.expires_ms)).to_string()),
                Value::from(keys.channel(Target::User(j.user))),
                Value::Bytes(event.encode()),
                trim_flag(),
            ]);
        }
        (k, args)
    };
    r.run(jobs, |j| j.user, args, 2, |a| (a[0] == 1, a[1]))
        .await
}

/// One round of acks ([`ACK_LUA`]): whether each was in its inbox.
async fn ack_round(r: ScriptRounds, jobs: Vec<(UserId, MsgId)>) -> Vec<Result<bool, EngineError>> {
    let keys = &r.keys;
    let now = crate::time::unix_ms();
    let args = |jobs: &[(UserId, MsgId)]| {
        let mut k = Vec::with_capacity(jobs.len() * 6);
        let mut args = Vec::with_capacity(6 + jobs.len() * 4);
        args.extend(common_args(now));
        args.push(Value::from(keep_until(now, DONE_KEEP_MS).to_string()));
        for (user, id) in jobs {
            k.extend(keys.inbox(*user));
            k.extend(keys.old_inbox(*user));
            k.push(keys.user_sockets(*user));
            args.extend([
                Value::from(id.to_string()),
                Value::from(keys.channel(Target::User(*user))),
                Value::Bytes(Event::Acked(*id).encode()),
                trim_flag(),
            ]);
        }
        (k, args)
    };
    r.run(jobs, |(user, _)| *user, args, 1, |a| a[0] == 1).await
}

/// The read script's answer as entries: `{expired count, dropped count, newer count, id,
/// "<exp> <tail>", ...}` ([`wire::entry::parse`]).
pub(crate) fn parse_inbox(raw: Vec<Value>) -> Result<Vec<InboxEntry>, EngineError> {
    let mut raw = raw.into_iter();
    let expired = raw.next().and_then(|v| v.as_i64()).unwrap_or(0);
    if expired > 0 {
        metrics::counter!("locallife_inbox_expired_total").increment(expired as u64);
    }
    let dropped = raw.next().and_then(|v| v.as_i64()).unwrap_or(0);
    if dropped > 0 {
        metrics::counter!("locallife_inbox_dropped_total").increment(dropped as u64);
    }
    let newer = raw.next().and_then(|v| v.as_i64()).unwrap_or(0);
    if newer > 0 {
        metrics::counter!("locallife_wire_newer_skipped_total", "format" => "inbox")
            .increment(newer as u64);
    }
    let mut entries = Vec::new();
    while let (Some(id), Some(value)) = (raw.next(), raw.next()) {
        let (Some(id), Some(value)) = (id.as_str(), value.as_str()) else {
            continue;
        };
        entries.extend(wire::entry::parse(&id, &value));
    }
    Ok(entries)
}
