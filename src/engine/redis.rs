//! The Redis engine (fred): pub/sub between replicas, leased socket places, census.
//!
//! Two connections per replica. Commands (PUBLISH, scripts, hashes) go on one, which
//! fred pipelines on its own. Subscriptions live on a second, dedicated connection —
//! one per replica, never one per channel — because a connection in subscribed mode
//! can run nothing else. Its messages are read from fred's broadcast channel by one
//! task that hands them to the sink; if that task falls behind, the lagged messages
//! are counted (`locallife_pubsub_dropped_total`), never silently ignored: the inbox
//! redelivers what needs an ack.
//!
//! On every (re)connect of the subscriber connection the sink is told, and the hub
//! subscribes everything it needs again: a new connection has no subscriptions.
//!
//! A connection can look connected and deliver nothing (a failover that wedges
//! pub/sub, a paused server). So the replica proves its subscription live: every second
//! it publishes a canary on a channel only it subscribes to, and [`Engine::pubsub_live`]
//! says whether one came back within [`CANARY_FRESH`] (`/readyz` asks). A subscriber
//! whose canaries stop coming back while it counts as connected is reconnected, which
//! subscribes everything again and replays the inboxes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use fred::prelude::*;
use fred::types::scripts::Script;
use fred::types::Message;
use secrecy::ExposeSecret;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::batch::{self, Batcher};
use super::inbox::{keep_inbox_ms, InboxEntry, MsgId, Pushed, DONE_MAX, INBOX_IDLE_MS, INBOX_MAX};
use super::wire::{self, Event};
use super::{
    Engine, EngineError, Keys, Place, ReplicaCensus, Sink, Target, CONNECT_LIMIT, CONNECT_WINDOW_MS,
};
use crate::config::RedisConfig;
use crate::domain::UserId;
use crate::tasks::Tasks;

/// How long a command waits (for a connection, then an answer) before the engine counts
/// as unavailable and the caller answers 503.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How many pub/sub messages may wait for the dispatch task before the oldest are lost
/// (and counted).
const PUBSUB_BUFFER: usize = 1 << 15;
/// Lease renewals sent to Redis in one pipeline.
const RENEW_BATCH: usize = 1000;
/// How often the canary goes out.
const CANARY_EVERY: Duration = Duration::from_secs(1);
/// How recent the last returned canary must be for the subscription to count as live.
pub const CANARY_FRESH: Duration = Duration::from_secs(5);

/// Counts a connect attempt, then takes a socket place unless `max` live leases exist;
/// when they do, leases overdue for renewal give way first.
/// KEYS[1] user sockets zset, KEYS[2] connect counter;
/// ARGV now_ms, lease_until_ms, max, conn, connect limit, window ms, overdue_before_ms.
/// Returns 1 taken, 0 full, -1 rate limited.
const ACQUIRE_LUA: &str = r"
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
const WITHDRAW_LUA: &str = r"
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
const READ_LUA: &str = r"
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

/// A member of the rider index that is no rider: present while the index is whole. It
/// sits at 0°, 0° and is not a number, so no search returns it as a rider.
const GEO_READY: &str = "ready";

fn unavailable(e: fred::error::Error) -> EngineError {
    EngineError::Unavailable(e.to_string())
}

pub struct RedisEngine {
    keys: Keys,
    commands: Client,
    subscriber: Client,
    acquire: Script,
    /// Inbox writes, run in rounds like the acks.
    pushes: Batcher<PushJob, (bool, i64)>,
    /// Acks, run in rounds ([`batch`]): one script call per slot for all that waited.
    acks: Batcher<(UserId, MsgId), bool>,
    withdraw: Script,
    read: Script,
    sink: Arc<OnceLock<Weak<dyn Sink>>>,
    dropped: Arc<AtomicU64>,
    canary: Arc<Canary>,
    durability: Option<Durability>,
    /// A Redis Cluster: user channels are shard channels (SPUBLISH/SSUBSCRIBE), so a
    /// user's channel lives in the slot of their inbox and a publish touches one shard.
    clustered: bool,
}

/// A script's text for the deployment: in a Cluster, the user-channel publishes inside
/// it are shard publishes (the channel is hash-tagged like the script's keys).
fn script_for(lua: &str, clustered: bool) -> Script {
    if clustered {
        Script::from_lua(lua.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'"))
    } else {
        Script::from_lua(lua)
    }
}

/// `REDIS_MIN_REPLICAS_ACK`: inbox writes wait until that many replicas confirm them.
///
/// `WAIT` covers every write its connection made before it, so concurrent writers share
/// one: a writer counts its write done, then either finds it covered by a `WAIT` sent
/// after it, or sends the next one itself (one at a time per primary; fred sends a
/// blocking command alone on the connection). In a Cluster each primary has its own
/// connection, replicas and count: the `WAIT` goes to the node that took the write.
/// A write made before the connection was made again is not covered by any later
/// `WAIT` (the connection may point at a new primary): it is refused, and its caller
/// retries, the write being idempotent.
struct Durability {
    replicas: i64,
    timeout_ms: i64,
    /// Connections made so far by the command client.
    generation: Arc<AtomicU64>,
    /// Per primary (`None`: the one server of a standalone or Sentinel deployment).
    nodes: std::sync::Mutex<HashMap<Option<Server>, Arc<Confirmations>>>,
}

/// One primary's writes and `WAIT`s.
#[derive(Default)]
struct Confirmations {
    /// Writes completed, in order.
    written: AtomicU64,
    /// Every write up to this count is confirmed.
    confirmed: AtomicU64,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Durability {
    fn new(replicas: i64, timeout_ms: i64, generation: Arc<AtomicU64>) -> Self {
        Self {
            replicas,
            timeout_ms,
            generation,
            nodes: Default::default(),
        }
    }

    /// Refuses when the command connection was made again since `generation`: a later
    /// `WAIT` does not cover writes made on an earlier connection.
    fn same_connection(&self, generation: u64) -> Result<(), EngineError> {
        if self.generation.load(Ordering::Acquire) == generation {
            Ok(())
        } else {
            Err(EngineError::Unavailable(
                "the Redis connection was made again before the write was confirmed".into(),
            ))
        }
    }

    /// Waits until the write just completed (on connection `generation`, by `node` in
    /// a Cluster) is on enough replicas.
    async fn confirm(
        &self,
        commands: &Client,
        generation: u64,
        node: Option<Server>,
    ) -> Result<(), EngineError> {
        let this = self
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(node.clone())
            .or_default()
            .clone();
        let mine = this.written.fetch_add(1, Ordering::AcqRel) + 1;
        let _turn = this.one_at_a_time.lock().await;
        self.same_connection(generation)?;
        if this.confirmed.load(Ordering::Acquire) >= mine {
            return Ok(());
        }
        let upto = this.written.load(Ordering::Acquire);
        let started = std::time::Instant::now();
        let acked: i64 = match node {
            Some(node) => {
                commands
                    .with_cluster_node(node)
                    .wait(self.replicas, self.timeout_ms)
                    .await
            }
            None => commands.wait(self.replicas, self.timeout_ms).await,
        }
        .map_err(unavailable)?;
        metrics::histogram!("locallife_redis_wait_seconds").record(started.elapsed().as_secs_f64());
        self.same_connection(generation)?;
        if acked < self.replicas {
            metrics::counter!("locallife_redis_wait_short_total").increment(1);
            return Err(EngineError::Unavailable(format!(
                "{acked} of {} Redis replicas confirmed the write",
                self.replicas
            )));
        }
        this.confirmed.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }
}

/// This replica's pub/sub canary: its channel, and when one last came back.
struct Canary {
    channel: String,
    epoch: tokio::time::Instant,
    /// Microseconds after `epoch` when the last canary came back; 0: none yet.
    back_us: AtomicU64,
    /// Microseconds after `epoch` when the subscriber connection was last made: a
    /// canary from before proves nothing about the connection there is now.
    since_us: AtomicU64,
}

impl Canary {
    fn new(channel: String) -> Self {
        Canary {
            channel,
            epoch: tokio::time::Instant::now(),
            back_us: AtomicU64::new(0),
            since_us: AtomicU64::new(0),
        }
    }

    /// The subscriber connection was made again.
    fn reconnected(&self) {
        self.since_us.store(self.now_us(), Ordering::Relaxed);
    }

    fn now_us(&self) -> u64 {
        (self.epoch.elapsed().as_micros() as u64).max(1)
    }

    /// The payload of a canary sent now: its send time.
    fn payload(&self) -> String {
        self.now_us().to_string()
    }

    /// A canary came back: its round trip is recorded.
    fn returned(&self, payload: &[u8]) {
        let now = self.now_us();
        if let Some(sent) = std::str::from_utf8(payload)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        {
            let rtt = now.saturating_sub(sent) as f64 / 1e6;
            metrics::histogram!("locallife_redis_canary_rtt_seconds").record(rtt);
        }
        self.back_us.store(now, Ordering::Relaxed);
    }

    /// How long since a canary last came back (`None`: none ever did).
    fn age(&self) -> Option<Duration> {
        match self.back_us.load(Ordering::Relaxed) {
            0 => None,
            at => Some(Duration::from_micros(self.now_us().saturating_sub(at))),
        }
    }

    /// Whether pub/sub is proven: a canary came back lately, on this connection (a
    /// reconnect may land on a server the publishes do not reach, as a stale primary
    /// during a failover).
    fn fresh(&self) -> bool {
        self.back_us.load(Ordering::Relaxed) >= self.since_us.load(Ordering::Relaxed)
            && self.age().is_some_and(|a| a <= CANARY_FRESH)
    }
}

impl RedisEngine {
    /// Connects both connections, waiting a few seconds at most: a Redis that is down
    /// at start-up does not stop the replica (fred keeps reconnecting; `/readyz` says so).
    /// Its two tasks (pub/sub dispatch, reconnect watch) run supervised on `tasks`.
    pub async fn connect(
        settings: &RedisConfig,
        keys: Keys,
        tasks: &Tasks,
    ) -> anyhow::Result<Self> {
        let mut config = fred::types::config::Config::from_url(settings.url.expose_secret())
            .map_err(|_| anyhow::anyhow!("REDIS_URL is not a valid Redis URL"))?;
        let clustered = config.server.is_clustered();
        // rediss:// is TLS, verified, or nothing: never a plaintext fallback.
        config.tls = if settings.tls() {
            Some(tls_connector(settings.ca_file.as_deref())?.into())
        } else {
            None
        };
        // fred's default gives up for good when the first connection fails: a replica
        // started while Redis was down, or not yet answering (stopped, loading its
        // data), would never connect. The reconnect policy applies from the start.
        config.fail_fast = false;
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = COMMAND_TIMEOUT;
                c.internal_command_timeout = COMMAND_TIMEOUT;
                c.max_command_attempts = 2;
                c.auto_client_setname = true;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = COMMAND_TIMEOUT;
            })
            // Attempts 100 ms apart doubling to 500 ms, never given up: after an outage
            // the subscriber is back (and replays what its sockets missed) within half a
            // second of Redis, and an attempt costs Redis one refused connect.
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 500, 2));
        let commands = builder.build()?;
        // Only the subscriber needs deep channels: fred sizes every one of a client's
        // broadcast channels alike, and at 64k slots the two clients held ~90 MB.
        builder.with_performance_config(|p| p.broadcast_channel_capacity = PUBSUB_BUFFER);
        let subscriber = builder.build()?;

        let sink: Arc<OnceLock<Weak<dyn Sink>>> = Arc::new(OnceLock::new());
        let dropped = Arc::new(AtomicU64::new(0));
        let canary = Arc::new(Canary::new(
            keys.canary(&format!("{:016x}", rand::random::<u64>())),
        ));
        // Receivers are taken before connecting, so neither the first connect event nor
        // an early message can be missed (a restarted task takes new ones).
        let messages = std::sync::Mutex::new(Some(subscriber.message_rx()));
        let reconnects = std::sync::Mutex::new(Some(subscriber.reconnect_rx()));
        let cancel = tasks.cancel().clone();
        {
            let (subscriber, keys, sink, dropped, canary, cancel) = (
                subscriber.clone(),
                keys.clone(),
                sink.clone(),
                dropped.clone(),
                canary.clone(),
                cancel.clone(),
            );
            tasks.supervise("redis_dispatch", move || {
                let rx = take_or(&messages, || subscriber.message_rx());
                dispatch(
                    rx,
                    keys.clone(),
                    sink.clone(),
                    dropped.clone(),
                    canary.clone(),
                    cancel.clone(),
                )
            });
        }
        {
            let (commands, subscriber, sink, canary, cancel) = (
                commands.clone(),
                subscriber.clone(),
                sink.clone(),
                canary.clone(),
                cancel.clone(),
            );
            tasks.supervise("redis_reconnects", move || {
                let rx = take_or(&reconnects, || subscriber.reconnect_rx());
                watch_reconnects(
                    rx,
                    commands.clone(),
                    subscriber.clone(),
                    canary.clone(),
                    sink.clone(),
                    cancel.clone(),
                )
            });
        }
        {
            let (commands, subscriber, canary, cancel) = (
                commands.clone(),
                subscriber.clone(),
                canary.clone(),
                cancel.clone(),
            );
            tasks.supervise("redis_canary", move || {
                send_canaries(
                    commands.clone(),
                    subscriber.clone(),
                    canary.clone(),
                    cancel.clone(),
                )
            });
        }
        if clustered {
            let (subscriber, sink, cancel) = (subscriber.clone(), sink.clone(), cancel.clone());
            tasks.supervise("redis_topology", move || {
                watch_topology(subscriber.clone(), sink.clone(), cancel.clone())
            });
        }
        commands.connect();
        subscriber.connect();
        let waited = tokio::time::timeout(COMMAND_TIMEOUT, async {
            let a = commands.wait_for_connect().await;
            let b = subscriber.wait_for_connect().await;
            a.and(b)
        })
        .await;
        if !matches!(waited, Ok(Ok(()))) {
            tracing::warn!("Redis is not reachable yet; reconnecting in the background");
        }
        let durability = (settings.min_replicas_ack > 0).then(|| {
            let generation = Arc::new(AtomicU64::new(0));
            let (commands, generation2, cancel) =
                (commands.clone(), generation.clone(), cancel.clone());
            let first = std::sync::Mutex::new(Some(commands.reconnect_rx()));
            tasks.supervise("redis_generation", move || {
                let rx = take_or(&first, || commands.reconnect_rx());
                count_connections(rx, generation2.clone(), cancel.clone())
            });
            Durability::new(
                settings.min_replicas_ack.into(),
                settings.wait_timeout.as_millis().max(1) as i64,
                generation,
            )
        });
        let rounds = |lua: &str| ScriptRounds {
            commands: commands.clone(),
            script: script_for(lua, clustered),
            keys: keys.clone(),
            clustered,
        };
        let acks = rounds(ACK_LUA).start(tasks, "redis_acks", ack_round);
        let pushes = rounds(PUSH_LUA).start(tasks, "redis_pushes", push_round);
        Ok(Self {
            durability,
            keys,
            commands,
            subscriber,
            acquire: Script::from_lua(ACQUIRE_LUA),
            pushes,
            acks,
            read: Script::from_lua(READ_LUA),
            withdraw: script_for(WITHDRAW_LUA, clustered),
            clustered,
            sink,
            dropped,
            canary,
        })
    }

    /// The primary holding `user`'s keys, in a Cluster (`None` elsewhere): where the
    /// `WAIT` for a write of them goes.
    fn node_of(&self, user: UserId) -> Result<Option<Server>, EngineError> {
        if !self.clustered {
            return Ok(None);
        }
        let slot = self.keys.slot(user);
        self.commands
            .cached_cluster_state()
            .and_then(|state| state.get_server(slot).cloned())
            .map(Some)
            .ok_or_else(|| {
                EngineError::Unavailable("the Redis Cluster's slots are not known".into())
            })
    }

    /// Pub/sub messages lost because the dispatch task fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A TLS connector for `rediss://` (see [`crate::tls`]).
fn tls_connector(
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<fred::types::config::TlsConnector> {
    Ok(crate::tls::client_config(ca_file, "REDIS_CA_FILE")?.into())
}

/// The receiver taken before connecting, the first time; a fresh one after a restart.
fn take_or<T>(first: &std::sync::Mutex<Option<T>>, fresh: impl FnOnce() -> T) -> T {
    let taken = first.lock().unwrap_or_else(|e| e.into_inner()).take();
    taken.unwrap_or_else(fresh)
}

impl RedisEngine {
    /// The channels of `targets`: (shard channels, plain channels). Only a Cluster has
    /// shard channels: its users' channels.
    fn channels(&self, targets: &[Target]) -> (Vec<String>, Vec<String>) {
        let (shard, plain): (Vec<&Target>, Vec<&Target>) = targets
            .iter()
            .partition(|t| self.clustered && matches!(t, Target::User(_)));
        let names = |ts: Vec<&Target>| ts.into_iter().map(|t| self.keys.channel(*t)).collect();
        (names(shard), names(plain))
    }

    /// Puts `member` into the rider index at `lat`, `lng`.
    async fn geo_add(&self, member: Value, lat: f64, lng: f64) -> Result<(), EngineError> {
        let value = fred::types::geo::GeoValue {
            coordinates: fred::types::geo::GeoPosition {
                longitude: lng,
                latitude: lat,
            },
            member,
        };
        self.commands
            .geoadd::<i64, _, _>(self.keys.riders_geo(), None, false, value)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// Runs the ack or withdraw script for `id`; whether it was in the inbox.
    async fn remove(&self, script: &Script, user: UserId, id: MsgId) -> Result<bool, EngineError> {
        let removed: i64 = script
            .evalsha_with_reload(
                &self.commands,
                {
                    let [pending, frames, done] = self.keys.inbox(user);
                    vec![pending, frames, done, self.keys.user_sockets(user)]
                },
                vec![
                    Value::from(id.to_string()),
                    Value::from(self.keys.channel(Target::User(user))),
                    Value::Bytes(Event::Acked(id).encode()),
                    Value::from(crate::time::unix_ms().to_string()),
                    Value::from(DONE_MAX.to_string()),
                    Value::from(INBOX_IDLE_MS.to_string()),
                ],
            )
            .await
            .map_err(unavailable)?;
        Ok(removed == 1)
    }
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
struct PushJob {
    user: UserId,
    id: MsgId,
    tail: String,
    expires_ms: u64,
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

/// Hands every pub/sub message to the sink, zero-copy.
async fn dispatch(
    mut messages: tokio::sync::broadcast::Receiver<Message>,
    keys: Keys,
    sink: Arc<OnceLock<Weak<dyn Sink>>>,
    dropped: Arc<AtomicU64>,
    canary: Arc<Canary>,
    cancel: CancellationToken,
) {
    loop {
        let received = tokio::select! {
            m = messages.recv() => m,
            _ = cancel.cancelled() => return,
        };
        match received {
            Ok(message) => {
                let payload = match message.value {
                    Value::Bytes(b) => b,
                    Value::String(s) => s.into_inner(),
                    _ => continue,
                };
                if &*message.channel == canary.channel.as_str() {
                    canary.returned(&payload);
                    continue;
                }
                let Some(target) = keys.parse_channel(&message.channel) else {
                    continue;
                };
                if let Some(sink) = sink.get().and_then(Weak::upgrade) {
                    sink.deliver(target, payload);
                }
            }
            Err(RecvError::Lagged(n)) => {
                dropped.fetch_add(n, Ordering::Relaxed);
                metrics::counter!("locallife_pubsub_dropped_total").increment(n);
                tracing::warn!(lost = n, "pub/sub dispatch fell behind; replaying inboxes");
                if let Some(sink) = sink.get().and_then(Weak::upgrade) {
                    sink.missed();
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Waits for the next (re)connect reported on `reconnects` (a lagged receiver counts as
/// one); `false` once the channel closes or the replica stops.
async fn next_connect(
    reconnects: &mut tokio::sync::broadcast::Receiver<fred::types::config::Server>,
    cancel: &CancellationToken,
) -> bool {
    let received = tokio::select! {
        r = reconnects.recv() => r,
        _ = cancel.cancelled() => return false,
    };
    !matches!(received, Err(RecvError::Closed))
}

/// On every (re)connect of the subscriber connection: subscribes the canary (and sends
/// one at once, so readiness does not wait a period) and tells the sink.
async fn watch_reconnects(
    mut reconnects: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
    commands: Client,
    subscriber: Client,
    canary: Arc<Canary>,
    sink: Arc<OnceLock<Weak<dyn Sink>>>,
    cancel: CancellationToken,
) {
    while next_connect(&mut reconnects, &cancel).await {
        tracing::info!("Redis subscriber connected; subscribing again");
        canary.reconnected();
        if subscriber.subscribe(canary.channel.as_str()).await.is_ok() {
            let _ = commands
                .publish::<i64, _, _>(canary.channel.as_str(), canary.payload())
                .await;
        }
        if let Some(sink) = sink.get().and_then(Weak::upgrade) {
            sink.reconnected();
        }
    }
}

/// How often a Cluster's slot map is read again by the subscriber.
const TOPOLOGY_EVERY: Duration = Duration::from_secs(2);

/// A Cluster's slots move (a failover, a migration): the server drops the shard
/// subscriptions of a slot that left a node (`SUNSUBSCRIBE` pushed by the server), and
/// the subscriber does not follow by itself. So it reads the slot map every
/// [`TOPOLOGY_EVERY`]; when the map changed, everything is subscribed again (on the
/// slots' new owners) and the inboxes are replayed, as after a reconnect.
async fn watch_topology(
    subscriber: Client,
    sink: Arc<OnceLock<Weak<dyn Sink>>>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(TOPOLOGY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut known: Option<Vec<(u16, u16, Server)>> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return,
        }
        if subscriber.sync_cluster().await.is_err() {
            continue;
        }
        let Some(state) = subscriber.cached_cluster_state() else {
            continue;
        };
        let slots: Vec<(u16, u16, Server)> = state
            .slots()
            .iter()
            .map(|r| (r.start, r.end, r.primary.clone()))
            .collect();
        let moved = known.as_ref().is_some_and(|k| *k != slots);
        known = Some(slots);
        if moved {
            metrics::counter!("locallife_pubsub_resubscribes_total").increment(1);
            tracing::info!("Redis Cluster slots moved; subscribing again");
            if let Some(sink) = sink.get().and_then(Weak::upgrade) {
                sink.reconnected();
            }
        }
    }
}

/// Counts the command connection's (re)connects.
async fn count_connections(
    mut reconnects: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
    generation: Arc<AtomicU64>,
    cancel: CancellationToken,
) {
    while next_connect(&mut reconnects, &cancel).await {
        generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// Publishes a canary every [`CANARY_EVERY`]. When none has come back for
/// [`CANARY_FRESH`] while Redis answers commands, the subscription is wedged or lost:
/// the subscriber connection is made again (at most once per two periods), and its
/// reconnect subscribes everything again.
async fn send_canaries(
    commands: Client,
    subscriber: Client,
    canary: Arc<Canary>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(CANARY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut started = tokio::time::Instant::now();
    let mut last_forced: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return,
        }
        let sent = commands
            .publish::<i64, _, _>(canary.channel.as_str(), canary.payload())
            .await
            .is_ok();
        if !sent {
            // Redis itself is unreachable: the reconnect policy is at work already.
            started = tokio::time::Instant::now();
            continue;
        }
        // Stale only if canaries have gone out for a whole period since Redis last
        // refused one: right after an outage the last returned canary is old, but the
        // subscription may be fine (the next canary shows it).
        let stale =
            canary.age().is_none_or(|age| age > CANARY_FRESH) && started.elapsed() > CANARY_FRESH;
        let may_force = last_forced.is_none_or(|t| t.elapsed() >= CANARY_FRESH * 2);
        if stale && may_force {
            last_forced = Some(tokio::time::Instant::now());
            metrics::counter!("locallife_pubsub_resubscribes_total").increment(1);
            tracing::warn!(
                "pub/sub canary not coming back while Redis answers; reconnecting the subscriber"
            );
            if let Err(e) = subscriber.force_reconnection().await {
                tracing::warn!(error = %e, "subscriber reconnect failed; retrying");
            }
        }
    }
}

#[async_trait]
impl Engine for RedisEngine {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn set_sink(&self, sink: Weak<dyn Sink>) {
        let _ = self.sink.set(sink);
    }

    async fn publish(&self, target: Target, payload: Bytes) -> Result<(), EngineError> {
        let channel = self.keys.channel(target);
        let sent = if self.clustered && matches!(target, Target::User(_)) {
            self.commands
                .spublish::<i64, _, _>(channel, Value::Bytes(payload))
                .await
        } else {
            self.commands
                .publish::<i64, _, _>(channel, Value::Bytes(payload))
                .await
        };
        sent.map(|_| ()).map_err(unavailable)
    }

    async fn subscribe(&self, targets: &[Target]) -> Result<(), EngineError> {
        let (shard, plain) = self.channels(targets);
        if !plain.is_empty() {
            self.subscriber
                .subscribe(plain)
                .await
                .map_err(unavailable)?;
        }
        // One SSUBSCRIBE per channel: channels of different slots cannot share one.
        futures::future::try_join_all(shard.into_iter().map(|c| self.subscriber.ssubscribe(c)))
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn unsubscribe(&self, targets: &[Target]) -> Result<(), EngineError> {
        let (shard, plain) = self.channels(targets);
        if !plain.is_empty() {
            self.subscriber
                .unsubscribe(plain)
                .await
                .map_err(unavailable)?;
        }
        futures::future::try_join_all(shard.into_iter().map(|c| self.subscriber.sunsubscribe(c)))
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn push_inbox(
        &self,
        user: UserId,
        id: MsgId,
        tail: &str,
        expires_ms: u64,
    ) -> Result<Pushed, EngineError> {
        let generation = self
            .durability
            .as_ref()
            .map(|d| d.generation.load(Ordering::Acquire));
        let job = PushJob {
            user,
            id,
            tail: tail.to_owned(),
            expires_ms,
        };
        let (added, dropped) = self.pushes.call(job).await?;
        if dropped > 0 {
            metrics::counter!("locallife_inbox_dropped_total").increment(dropped as u64);
        }
        // A duplicate is confirmed too: its first write may not be on the replicas yet.
        if let (Some(d), Some(generation)) = (&self.durability, generation) {
            d.confirm(&self.commands, generation, self.node_of(user)?)
                .await?;
        }
        Ok(if added {
            Pushed::New
        } else {
            Pushed::Duplicate
        })
    }

    async fn ack(&self, user: UserId, id: MsgId) -> Result<bool, EngineError> {
        self.acks.call((user, id)).await
    }

    async fn ack_soon(&self, user: UserId, id: MsgId) {
        self.acks.cast((user, id)).await;
    }

    async fn acks_settled(&self, user: UserId) {
        // The queue runs in order: an ack of no notification (id 0-0, never in an
        // inbox) returns after every ack queued before it. Bounded: a socket's close
        // waits for this, and Redis may be down.
        let barrier = self.acks.call((user, MsgId { ms: 0, seq: 0 }));
        let _ = tokio::time::timeout(COMMAND_TIMEOUT, barrier).await;
    }

    async fn withdraw(&self, user: UserId, id: MsgId) -> Result<(), EngineError> {
        self.remove(&self.withdraw, user, id).await.map(|_| ())
    }

    async fn inbox(&self, user: UserId) -> Result<Vec<InboxEntry>, EngineError> {
        let [pending, frames, _] = self.keys.inbox(user);
        let raw: Vec<Value> = self
            .read
            .evalsha_with_reload(
                &self.commands,
                vec![pending, frames],
                vec![crate::time::unix_ms().to_string(), INBOX_MAX.to_string()],
            )
            .await
            .map_err(unavailable)?;
        parse_inbox(raw)
    }

    async fn geo_set(&self, rider: UserId, lat: f64, lng: f64) -> Result<(), EngineError> {
        self.geo_add(Value::from(rider.0), lat, lng).await
    }

    async fn claim_once(
        &self,
        key: &super::IdempotencyKey,
        value: &str,
        ttl_ms: u64,
    ) -> Result<Option<String>, EngineError> {
        // SET NX GET: stores unless present, and answers what was there (Redis 7).
        self.commands
            .set(
                self.keys.idempotency(key),
                value,
                Some(Expiration::PX(ttl_ms as i64)),
                Some(SetOptions::NX),
                true,
            )
            .await
            .map_err(unavailable)
    }

    async fn release_once(&self, key: &super::IdempotencyKey) -> Result<(), EngineError> {
        self.commands
            .del::<i64, _>(self.keys.idempotency(key))
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn shared_get(&self, key: &str) -> Result<Option<String>, EngineError> {
        self.commands
            .get(self.keys.shared(key))
            .await
            .map_err(unavailable)
    }

    async fn shared_set(
        &self,
        key: &str,
        value: &str,
        ttl_ms: u64,
        only_if_absent: bool,
    ) -> Result<bool, EngineError> {
        let stored: Option<String> = self
            .commands
            .set(
                self.keys.shared(key),
                value,
                Some(Expiration::PX(ttl_ms.max(1) as i64)),
                only_if_absent.then_some(SetOptions::NX),
                false,
            )
            .await
            .map_err(unavailable)?;
        Ok(stored.is_some())
    }

    async fn shared_remove_if(&self, key: &str, value: &str) -> Result<(), EngineError> {
        // Not atomic: at worst a token another replica just stored is dropped, and
        // fetched again.
        if self.shared_get(key).await?.as_deref() == Some(value) {
            self.commands
                .del::<i64, _>(self.keys.shared(key))
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn geo_ready(&self) -> Result<bool, EngineError> {
        let score: Option<f64> = self
            .commands
            .zscore(self.keys.riders_geo(), GEO_READY)
            .await
            .map_err(unavailable)?;
        Ok(score.is_some())
    }

    async fn geo_mark_ready(&self) -> Result<(), EngineError> {
        self.geo_add(Value::from(GEO_READY), 0.0, 0.0).await
    }

    async fn geo_remove(&self, rider: UserId) -> Result<(), EngineError> {
        self.commands
            .zrem::<i64, _, _>(self.keys.riders_geo(), rider.0)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn geo_near(
        &self,
        lat: f64,
        lng: f64,
        radius_m: f64,
        count: usize,
    ) -> Result<Vec<(UserId, f64)>, EngineError> {
        let found: Value = self
            .commands
            .geosearch(
                self.keys.riders_geo(),
                None,
                Some(fred::types::geo::GeoPosition {
                    longitude: lng,
                    latitude: lat,
                }),
                Some((radius_m, fred::types::geo::GeoUnit::Meters)),
                None,
                Some(fred::types::SortOrder::Asc),
                Some((count as u64, false)),
                false,
                true,
                false,
            )
            .await
            .map_err(unavailable)?;
        // WITHDIST answers [[member, distance], ...].
        let rows = found.into_array();
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let mut pair = row.into_array().into_iter();
                let member = pair.next()?.as_i64()?;
                let dist = pair.next()?.as_f64()?;
                Some((UserId(member), dist))
            })
            .collect())
    }

    async fn ping(&self) -> bool {
        let ok = |r: Result<Result<String, _>, _>| matches!(r, Ok(Ok(_)));
        let timeout = Duration::from_secs(1);
        ok(tokio::time::timeout(timeout, self.commands.ping::<String>(None)).await)
            && self.subscriber.is_connected()
    }

    fn pubsub_live(&self) -> Option<bool> {
        Some(self.canary.fresh())
    }

    async fn acquire_socket(
        &self,
        user: UserId,
        conn: &str,
        max: usize,
        lease_until_ms: u64,
        overdue_before_ms: u64,
    ) -> Result<Place, EngineError> {
        let now = crate::time::unix_ms();
        let taken: i64 = self
            .acquire
            .evalsha_with_reload(
                &self.commands,
                vec![self.keys.user_sockets(user), self.keys.user_connects(user)],
                vec![
                    now.to_string(),
                    lease_until_ms.to_string(),
                    max.to_string(),
                    conn.to_owned(),
                    CONNECT_LIMIT.to_string(),
                    CONNECT_WINDOW_MS.to_string(),
                    overdue_before_ms.to_string(),
                ],
            )
            .await
            .map_err(unavailable)?;
        Ok(match taken {
            1 => Place::Taken,
            -1 => Place::RateLimited,
            _ => Place::Full,
        })
    }

    async fn release_socket(&self, user: UserId, conn: &str) -> Result<(), EngineError> {
        self.commands
            .zrem::<i64, _, _>(self.keys.user_sockets(user), conn)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn renew_sockets(
        &self,
        sockets: &[(UserId, Arc<str>)],
        lease_until_ms: u64,
    ) -> Result<(), EngineError> {
        // Plain commands in pipelines of a thousand, not a script call each: at 19,000
        // sockets the per-call overhead was most of an idle replica's CPU. `ZADD XX`
        // extends a lease only if it is still there; the key's expiry follows.
        let until = lease_until_ms as f64;
        for chunk in sockets.chunks(RENEW_BATCH) {
            let pipeline = self.commands.pipeline();
            for (user, conn) in chunk {
                let key = self.keys.user_sockets(*user);
                let _: () = pipeline
                    .zadd(
                        key.as_str(),
                        Some(SetOptions::XX),
                        None,
                        false,
                        false,
                        (until, conn.as_ref()),
                    )
                    .await
                    .map_err(unavailable)?;
                let _: () = pipeline
                    .pexpire_at(key, lease_until_ms as i64, None)
                    .await
                    .map_err(unavailable)?;
            }
            let _: Vec<Value> = pipeline.all().await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn report_census(
        &self,
        replica: &str,
        census: Option<&ReplicaCensus>,
    ) -> Result<(), EngineError> {
        let key = self.keys.replicas();
        match census {
            Some(c) => {
                let json = serde_json::to_string(c)
                    .map_err(|e| EngineError::Unavailable(e.to_string()))?;
                self.commands
                    .hset::<i64, _, _>(key, (replica, json))
                    .await
                    .map(|_| ())
                    .map_err(unavailable)
            }
            None => self
                .commands
                .hdel::<i64, _, _>(key, replica)
                .await
                .map(|_| ())
                .map_err(unavailable),
        }
    }

    async fn censuses(&self, fresh_after_ms: u64) -> Result<Vec<ReplicaCensus>, EngineError> {
        let key = self.keys.replicas();
        let all: HashMap<String, String> =
            self.commands.hgetall(&key).await.map_err(unavailable)?;
        let mut fresh = Vec::new();
        let mut stale = Vec::new();
        for (replica, json) in all {
            match serde_json::from_str::<ReplicaCensus>(&json) {
                Ok(c) if c.reported_at_ms >= fresh_after_ms => fresh.push(c),
                _ => stale.push(replica),
            }
        }
        if !stale.is_empty() {
            // Replicas that died without saying goodbye.
            let _ = self.commands.hdel::<i64, _, _>(&key, stale).await;
        }
        Ok(fresh)
    }

    fn subscriber_name(&self) -> Option<String> {
        Some(self.subscriber.id().to_string())
    }

    async fn shutdown(&self) {
        let _ = self.subscriber.quit().await;
        let _ = self.commands.quit().await;
    }
}
