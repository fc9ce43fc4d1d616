//! The engine moves events between replicas and keeps the little shared state the hub
//! needs (how many sockets a user has everywhere, how many each replica holds).
//!
//! Two implementations of [`Engine`], passing the same behaviour tests:
//! [`redis::RedisEngine`] for production (N replicas sharing Redis) and
//! [`memory::MemoryEngine`] for a single replica with no Redis (`REDIS_URL` unset).
//!
//! [`Engine`] is the sum of five facet traits, one per job (as centrifuge splits its
//! `Broker` from its `PresenceManager`): [`Broker`] (pub/sub between replicas, and
//! whether it is healthy), [`Inbox`] (each user's notifications until acked),
//! [`Shared`] (idempotency claims, small shared values), [`RiderIndex`] (online riders'
//! positions) and [`Places`] (socket leases, every replica's census).
//!
//! The engine does not know sockets. It hands every payload that arrives on a channel
//! this replica subscribed to the [`Sink`] (the hub), and tells it when the connection
//! to the broker was re-established so the hub can subscribe again.

mod batch;
pub mod inbox;
pub mod keys;
pub mod memory;
pub mod redis;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use inbox::{InboxEntry, MsgId, Pushed};
pub use keys::{IdempotencyKey, Keys, Target};
pub use wire::Event;

use crate::domain::UserId;

#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The broker cannot be reached; the caller answers 503 rather than lose anything.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
}

/// Receives what arrives from the broker. Implemented by the hub.
pub trait Sink: Send + Sync + 'static {
    /// A payload published to `target`, arrived on a channel this replica subscribed to.
    fn deliver(&self, target: Target, payload: Bytes);
    /// The broker connection was (re-)established: subscriptions must be made again.
    fn reconnected(&self);
    /// Payloads were lost on the way (the dispatch fell behind): whatever they carried
    /// must be found again in the inboxes.
    fn missed(&self);
}

/// The earth radius Redis uses for GEO distances, so both engines agree to the metre.
pub const EARTH_RADIUS_M: f64 = 6_372_797.560_856;

/// Great-circle distance in metres (haversine), as Redis computes it.
pub fn distance_m(lat1: f64, lng1: f64, lat2: f64, lng2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lng2 - lng1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().asin()
}

/// Connect attempts one user may make per [`CONNECT_WINDOW_MS`], across replicas; more are
/// refused (429) so a client stuck in a reconnect loop cannot hammer admission.
pub const CONNECT_LIMIT: u32 = 20;
pub const CONNECT_WINDOW_MS: u64 = 10_000;

/// What [`Places::acquire_socket`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Taken,
    /// The user holds the maximum number of sockets already.
    Full,
    /// The user connected too often in the current window.
    RateLimited,
}

/// One replica's sockets, as reported to the others.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Census {
    pub sockets: u64,
    pub by_role: BTreeMap<String, u64>,
}

/// A replica's [`Census`] and when it was taken (unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplicaCensus {
    pub replica_id: String,
    #[serde(flatten)]
    pub census: Census,
    pub reported_at_ms: u64,
}

/// Moves payloads between replicas: publishes to a channel, subscribes this replica to
/// channels (what arrives goes to the [`Sink`]), and says whether the broker is healthy.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// `redis` or `memory`.
    fn kind(&self) -> &'static str;

    /// Where payloads of subscribed channels go. Called once, before any subscribe.
    fn set_sink(&self, sink: std::sync::Weak<dyn Sink>);

    /// Publishes to every replica subscribed to `target`'s channel.
    async fn publish(&self, target: Target, payload: Bytes) -> Result<(), EngineError>;

    /// Subscribes this replica to the channels of `targets` (one round trip for all).
    async fn subscribe(&self, targets: &[Target]) -> Result<(), EngineError>;

    async fn unsubscribe(&self, targets: &[Target]) -> Result<(), EngineError>;

    /// Periodic clean-up of state that nothing else would expire (the in-process
    /// engine's idle inboxes). Redis expires keys itself.
    async fn housekeeping(&self) {}

    /// Whether the broker answers.
    async fn ping(&self) -> bool;

    /// Whether this replica's subscriptions provably deliver: a canary it published to
    /// itself came back lately. `None` where nothing can wedge (the in-process engine).
    fn pubsub_live(&self) -> Option<bool> {
        None
    }

    /// The name this replica's subscriber connection gives itself in `CLIENT LIST`
    /// (Redis only), so an operator can find it.
    fn subscriber_name(&self) -> Option<String> {
        None
    }

    /// Closes connections to the broker.
    async fn shutdown(&self);
}

/// Each user's inbox: notifications kept until acked, withdrawn or expired, written
/// and published in one step.
#[async_trait]
pub trait Inbox: Send + Sync + 'static {
    /// Writes notification `id` to `user`'s inbox, then publishes it on the user's
    /// channel, atomically: nothing can be live that is not in the inbox. Idempotent per
    /// id: an id already waiting, or acked lately, is neither written nor published
    /// again ([`Pushed::Duplicate`]). `tail` is the frame after the message id (see
    /// [`wire`]).
    async fn push_inbox(
        &self,
        user: UserId,
        id: MsgId,
        tail: &str,
        expires_ms: u64,
    ) -> Result<Pushed, EngineError>;

    /// Removes `id` from `user`'s inbox and, if it was there, remembers it as acked and
    /// tells every replica so their sockets stop redelivering it. Whether it was there.
    async fn ack(&self, user: UserId, id: MsgId) -> Result<bool, EngineError>;

    /// [`Inbox::ack`] for a socket, which does not wait for the outcome: queued (a
    /// wait only for room in the queue), and a failure logged. A notification whose ack
    /// was lost stays in the inbox and comes again on a later connect.
    async fn ack_soon(&self, user: UserId, id: MsgId) {
        if let Err(e) = self.ack(user, id).await {
            tracing::warn!(error = %e, "ack not recorded");
        }
    }

    /// Returns once every [`Inbox::ack_soon`] of `user` queued before it has run (or
    /// failed): a socket's acks are in the inbox before its close is answered, so a
    /// reconnect does not get them again.
    async fn acks_settled(&self, _user: UserId) {}

    /// Takes notification `id` back from `user` (an offer someone else took): removed
    /// from the inbox if there, remembered as done even if not there yet (so a late
    /// write cannot bring it back), and sockets stop redelivering it.
    async fn withdraw(&self, user: UserId, id: MsgId) -> Result<(), EngineError>;

    /// Every unexpired notification in `user`'s inbox, oldest first. Expired ones are
    /// removed (and counted) on the way.
    async fn inbox(&self, user: UserId) -> Result<Vec<InboxEntry>, EngineError>;
}

/// Small values every replica shares: idempotency claims and a few keys with an expiry.
#[async_trait]
pub trait Shared: Send + Sync + 'static {
    /// Stores `value` under idempotency key `key` for `ttl_ms` unless something is
    /// stored there already; `None` when this call stored it, else what was there.
    async fn claim_once(
        &self,
        key: &IdempotencyKey,
        value: &str,
        ttl_ms: u64,
    ) -> Result<Option<String>, EngineError>;

    /// Forgets idempotency key `key` (its request failed before doing anything).
    async fn release_once(&self, key: &IdempotencyKey) -> Result<(), EngineError>;

    /// A small value every replica shares (the WeChat access token, its refresh lock).
    async fn shared_get(&self, key: &str) -> Result<Option<String>, EngineError>;

    /// Stores `value` under shared `key` for `ttl_ms`; with `only_if_absent`, only when
    /// nothing is stored there. Whether it stored.
    async fn shared_set(
        &self,
        key: &str,
        value: &str,
        ttl_ms: u64,
        only_if_absent: bool,
    ) -> Result<bool, EngineError>;

    /// Removes shared `key` if it still holds `value`.
    async fn shared_remove_if(&self, key: &str, value: &str) -> Result<(), EngineError>;
}

/// Online riders' positions, for matching an order to the nearest riders.
#[async_trait]
pub trait RiderIndex: Send + Sync + 'static {
    /// Records an online rider's position for matching.
    async fn geo_set(&self, rider: UserId, lat: f64, lng: f64) -> Result<(), EngineError>;

    /// Whether the rider index is whole: marked by [`RiderIndex::geo_mark_ready`] after a
    /// rebuild, and gone with the data when the broker loses it (a Redis restarted
    /// without persistence, a failover to an empty replica).
    async fn geo_ready(&self) -> Result<bool, EngineError>;

    /// Marks the rider index whole (after filling it from PostgreSQL).
    async fn geo_mark_ready(&self) -> Result<(), EngineError>;

    /// Removes a rider from matching (offline).
    async fn geo_remove(&self, rider: UserId) -> Result<(), EngineError>;

    /// Riders within `radius_m` of a point, nearest first, at most `count`, with their
    /// distance in metres.
    async fn geo_near(
        &self,
        lat: f64,
        lng: f64,
        radius_m: f64,
        count: usize,
    ) -> Result<Vec<(UserId, f64)>, EngineError>;
}

/// Each user's socket places, leased across replicas and rate-limited, and every
/// replica's census.
#[async_trait]
pub trait Places: Send + Sync + 'static {
    /// Takes one of `user`'s socket places, everywhere, unless `max` are taken already
    /// or the user is over the connect rate limit. The place holds until
    /// `lease_until_ms` unless renewed by [`Places::renew_sockets`]. When `max` are
    /// taken, places whose lease ends before `overdue_before_ms` (overdue for renewal:
    /// their replica died, or lost Redis) are given up first.
    async fn acquire_socket(
        &self,
        user: UserId,
        conn: &str,
        max: usize,
        lease_until_ms: u64,
        overdue_before_ms: u64,
    ) -> Result<Place, EngineError>;

    async fn release_socket(&self, user: UserId, conn: &str) -> Result<(), EngineError>;

    /// Extends the leases of this replica's sockets, so that a replica that dies frees
    /// its users' places when the leases run out.
    async fn renew_sockets(
        &self,
        sockets: &[(UserId, Arc<str>)],
        lease_until_ms: u64,
    ) -> Result<(), EngineError>;

    /// Publishes this replica's census (`None` removes it: the replica is leaving).
    async fn report_census(
        &self,
        replica: &str,
        census: Option<&ReplicaCensus>,
    ) -> Result<(), EngineError>;

    /// Every live replica's latest census.
    async fn censuses(&self, fresh_after_ms: u64) -> Result<Vec<ReplicaCensus>, EngineError>;
}

/// Everything an engine does, one facet trait each: [`Broker`], [`Inbox`], [`Shared`],
/// [`RiderIndex`], [`Places`]. The replica holds one `Arc<dyn Engine>`; a caller imports
/// the facet whose methods it calls.
pub trait Engine: Broker + Inbox + Shared + RiderIndex + Places {}

impl<T: Broker + Inbox + Shared + RiderIndex + Places + ?Sized> Engine for T {}
