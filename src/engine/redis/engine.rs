//! [`Engine`] for [`RedisEngine`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use fred::prelude::*;

use super::connect::{unavailable, COMMAND_TIMEOUT};
use super::geo::GEO_READY;
use super::scripts::{common_args, keep_until, parse_inbox, PushJob};
use super::RedisEngine;
use crate::domain::UserId;
use crate::engine::inbox::{InboxEntry, MsgId, Pushed, INBOX_IDLE_MS};
use crate::engine::{
    Engine, EngineError, IdempotencyKey, Place, ReplicaCensus, Sink, Target, CONNECT_LIMIT,
    CONNECT_WINDOW_MS,
};

/// Lease renewals sent to Redis in one pipeline.
const RENEW_BATCH: usize = 1000;

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
        let now = crate::time::unix_ms();
        let mut args = common_args(now).to_vec();
        args.push(Value::from(keep_until(now, INBOX_IDLE_MS).to_string()));
        let raw: Vec<Value> = self
            .read
            .evalsha_with_reload(&self.commands, self.inbox_keys(user), args)
            .await
            .map_err(unavailable)?;
        parse_inbox(raw)
    }

    async fn geo_set(&self, rider: UserId, lat: f64, lng: f64) -> Result<(), EngineError> {
        self.geo_add(Value::from(rider.0), lat, lng).await
    }

    async fn claim_once(
        &self,
        key: &IdempotencyKey,
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

    async fn release_once(&self, key: &IdempotencyKey) -> Result<(), EngineError> {
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
