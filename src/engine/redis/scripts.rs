//! The Lua scripts, as Redis runs them, and the rounds ([`batch`]) that run the inbox
//! write and ack scripts for everything that waited: one call per slot.

use fred::prelude::*;
use fred::types::scripts::Script;

use super::connect::unavailable;
use crate::domain::UserId;
use crate::engine::batch::{self, Batcher};
use crate::engine::inbox::{keep_inbox_ms, InboxEntry, MsgId, DONE_MAX, INBOX_IDLE_MS, INBOX_MAX};
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

/// Adds notifications to inboxes (a round of them, for any users of one slot): each
/// unless it is there or was acked lately; bounds and refreshes the inbox, and
/// publishes the notification's `N` event (built in [`wire`]), in one step.
/// KEYS per notification: pending zset, frames hash, acked zset. ARGV max entries, then
/// per notification: id, decision ms, expires_ms, tail, keep ms (the keys' expiry is
/// extended to it, never shortened), channel, event.
/// Returns per notification: 1 added or 0 duplicate, and the number dropped by the bound.
const PUSH_LUA: &str = r"
local max = tonumber(ARGV[1])
local out = {}
for i = 0, #KEYS / 3 - 1 do
  local k, a = i * 3, 1 + i * 7
  local id = ARGV[a + 1]
  local added, dropped = 0, 0
  if not redis.call('ZSCORE', KEYS[k + 3], id)
    and redis.call('HSETNX', KEYS[k + 2], id, ARGV[a + 3] .. ' ' .. ARGV[a + 4]) == 1 then
    added = 1
    redis.call('ZADD', KEYS[k + 1], ARGV[a + 2], id)
    local over = redis.call('ZCARD', KEYS[k + 1]) - max
    if over > 0 then
      local old = redis.call('ZPOPMIN', KEYS[k + 1], over)
      for j = 1, #old, 2 do redis.call('HDEL', KEYS[k + 2], old[j]) end
      dropped = over
    end
    for _, key in ipairs({KEYS[k + 1], KEYS[k + 2]}) do
      if redis.call('PEXPIRE', key, ARGV[a + 5], 'GT') == 0 then
        redis.call('PEXPIRE', key, ARGV[a + 5], 'NX')
      end
    end
    redis.call('PUBLISH', ARGV[a + 6], ARGV[a + 7])
  end
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
/// The acked set is trimmed only when it is over its bound (one `ZCARD` per ack, the
/// oldest removed): its ids are remembered while the set lives.
/// KEYS per ack: pending zset, frames hash, acked zset, socket leases zset. ARGV now ms,
/// keep count, idle ms, then per ack: id, channel, the `A` event
/// ([`wire::Event::Acked`]).
/// Returns per ack 1 if it was in the inbox, else 0.
const ACK_LUA: &str = r"
local now, max = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 0, #KEYS / 4 - 1 do
  local k, a = i * 4, 3 + i * 3
  local id = ARGV[a + 1]
  local n = redis.call('HDEL', KEYS[k + 2], id)
  redis.call('ZREM', KEYS[k + 1], id)
  if n == 1 then
    redis.call('ZADD', KEYS[k + 3], now, id)
    if redis.call('ZCARD', KEYS[k + 3]) > max then
      redis.call('ZREMRANGEBYRANK', KEYS[k + 3], 0, -max - 1)
    end
    redis.call('PEXPIRE', KEYS[k + 3], ARGV[3])
    if redis.call('ZCARD', KEYS[k + 4]) > 1 then
      redis.call('PUBLISH', ARGV[a + 2], ARGV[a + 3])
    end
  end
  out[i + 1] = n
end
return out
";

/// Withdraws a notification: removed if there, remembered as done either way, and every
/// replica told if it was there. KEYS pending zset, frames hash, acked zset, socket
/// leases zset (unused); ARGV id, channel, the `A` event, now ms, keep count, idle ms.
/// The acked set is bounded as [`ACK_LUA`] bounds it.
pub(super) const WITHDRAW_LUA: &str = r"
local n = redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
if redis.call('ZCARD', KEYS[3]) > tonumber(ARGV[5]) then
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -tonumber(ARGV[5]) - 1)
end
redis.call('PEXPIRE', KEYS[3], ARGV[6])
if n == 1 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return n
";

/// Reads an inbox, oldest first, removing expired entries (and ids whose frame is
/// gone) on the way.
/// KEYS pending zset, frames hash; ARGV now ms, max entries.
/// Returns {expired count, id, `<exp> <tail>`, id, ...}.
pub(super) const READ_LUA: &str = r"
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local out = {0}
local now = tonumber(ARGV[1])
for _, id in ipairs(ids) do
  local v = redis.call('HGET', KEYS[2], id)
  local exp = v and tonumber(string.sub(v, 1, (string.find(v, ' ', 1, true) or 1) - 1))
  if exp and exp > now then
    table.insert(out, id)
    table.insert(out, v)
  else
    redis.call('ZREM', KEYS[1], id)
    if v then
      redis.call('HDEL', KEYS[2], id)
      out[1] = out[1] + 1
    end
  end
end
return out
";

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
        script: script_for(lua, clustered),
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
        let mut k = Vec::with_capacity(jobs.len() * 3);
        let mut args = Vec::with_capacity(1 + jobs.len() * 7);
        args.push(Value::from(INBOX_MAX.to_string()));
        for j in jobs {
            k.extend(keys.inbox(j.user));
            let event = Event::Notify {
                id: j.id,
                expires_ms: j.expires_ms,
                frame: wire::frame(j.id, &j.tail),
            };
            args.extend([
                Value::from(j.id.to_string()),
                Value::from(j.id.ms.to_string()),
                Value::from(j.expires_ms.to_string()),
                Value::from(j.tail.as_str()),
                Value::from(keep_inbox_ms(now, j.expires_ms).to_string()),
                Value::from(keys.channel(Target::User(j.user))),
                Value::Bytes(event.encode()),
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
    let now = crate::time::unix_ms().to_string();
    let args = |jobs: &[(UserId, MsgId)]| {
        let mut k = Vec::with_capacity(jobs.len() * 4);
        let mut args = Vec::with_capacity(3 + jobs.len() * 3);
        args.extend([
            Value::from(now.as_str()),
            Value::from(DONE_MAX.to_string()),
            Value::from(INBOX_IDLE_MS.to_string()),
        ]);
        for (user, id) in jobs {
            let [pending, frames, done] = keys.inbox(*user);
            k.extend([pending, frames, done, keys.user_sockets(*user)]);
            args.extend([
                Value::from(id.to_string()),
                Value::from(keys.channel(Target::User(*user))),
                Value::Bytes(Event::Acked(*id).encode()),
            ]);
        }
        (k, args)
    };
    r.run(jobs, |(user, _)| *user, args, 1, |a| a[0] == 1).await
}

/// The read script's answer as entries: `{expired count, id, "<exp> <tail>", ...}`.
pub(crate) fn parse_inbox(raw: Vec<Value>) -> Result<Vec<InboxEntry>, EngineError> {
    let mut raw = raw.into_iter();
    let expired = raw.next().and_then(|v| v.as_i64()).unwrap_or(0);
    if expired > 0 {
        metrics::counter!("locallife_inbox_expired_total").increment(expired as u64);
    }
    let mut entries = Vec::new();
    while let (Some(id), Some(value)) = (raw.next(), raw.next()) {
        let (Some(id), Some(value)) = (id.as_str(), value.as_str()) else {
            continue;
        };
        let Ok(id) = id.parse::<MsgId>() else {
            continue;
        };
        let Some((exp, tail)) = value.split_once(' ') else {
            continue;
        };
        let Ok(expires_ms) = exp.parse::<u64>() else {
            continue;
        };
        entries.push(InboxEntry {
            id,
            expires_ms,
            frame: wire::frame(id, tail),
        });
    }
    Ok(entries)
}
