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
//! it publishes a canary on a channel only it subscribes to, and
//! [`Broker::pubsub_live`](crate::engine::Broker::pubsub_live) says whether one came
//! back within [`CANARY_FRESH`] (`/readyz` asks). A subscriber whose canaries stop
//! coming back while it counts as connected is reconnected, which subscribes everything
//! again and replays the inboxes.
//!
//! # Rooms
//!
//! `mod.rs` holds [`RedisEngine`] and connects it, step by step: `connect.rs` builds and
//! connects the two clients; `pubsub.rs` runs the dispatch, the canary and the
//! reconnect and topology watchers; `durability.rs` the `WAIT` confirmations of
//! `REDIS_MIN_REPLICAS_ACK`; `scripts.rs` holds the Lua scripts and runs the inbox ones
//! in rounds. Each facet of the engine has its room: `broker.rs`, `inbox.rs`,
//! `shared.rs`, `geo.rs` (the rider index), `places.rs` (socket leases, census).

mod broker;
mod connect;
mod durability;
mod geo;
mod inbox;
mod places;
mod pubsub;
mod scripts;
mod shared;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use fred::prelude::*;
use fred::types::scripts::Script;

use durability::Durability;
use pubsub::{Canary, Listening};
use scripts::{inbox_script, PushJob, ACQUIRE_LUA, READ_LUA, WITHDRAW_LUA};

use crate::config::RedisConfig;
use crate::domain::UserId;
use crate::engine::batch::Batcher;
use crate::engine::inbox::MsgId;
use crate::engine::{Keys, Sink};
use crate::tasks::Tasks;

pub use pubsub::CANARY_FRESH;
/// For the property tests of untrusted bytes (`src/fuzz.rs`).
#[cfg(test)]
pub(crate) use scripts::parse_inbox;

pub struct RedisEngine {
    keys: Keys,
    commands: Client,
    subscriber: Client,
    acquire: Script,
    /// Inbox writes, run in rounds like the acks.
    pushes: Batcher<PushJob, (bool, i64)>,
    /// Acks, run in rounds ([`batch`](super::batch)): one script call per slot for all
    /// that waited.
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

impl RedisEngine {
    /// Connects both connections, waiting a few seconds at most: a Redis that is down
    /// at start-up does not stop the replica (fred keeps reconnecting; `/readyz` says so).
    /// Its tasks run supervised on `tasks`: pub/sub dispatch, the reconnect and topology
    /// watchers and the canary ([`pubsub`]), the `WAIT` generation counter
    /// ([`durability`], when asked for) and the rounds of inbox writes and acks
    /// ([`scripts`]).
    pub async fn connect(
        settings: &RedisConfig,
        keys: Keys,
        tasks: &Tasks,
    ) -> anyhow::Result<Self> {
        let (commands, subscriber, clustered) = connect::clients(settings)?;
        let Listening {
            sink,
            dropped,
            canary,
        } = pubsub::start(tasks, &commands, &subscriber, &keys, clustered);
        connect::wait_connected(&commands, &subscriber).await;
        let durability = durability::start(settings, &commands, tasks);
        let (acks, pushes) = scripts::start(tasks, &commands, &keys, clustered);
        Ok(Self {
            durability,
            keys,
            commands,
            subscriber,
            acquire: Script::from_lua(ACQUIRE_LUA),
            pushes,
            acks,
            read: inbox_script(READ_LUA, clustered),
            withdraw: inbox_script(WITHDRAW_LUA, clustered),
            clustered,
            sink,
            dropped,
            canary,
        })
    }

    /// Pub/sub messages lost because the dispatch task fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
