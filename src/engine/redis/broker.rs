//! [`Broker`] for [`RedisEngine`]: publishes on the command connection, subscribes on
//! the subscriber connection (shard channels for users in a Cluster), and says whether
//! both are healthy.

use std::sync::Weak;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use fred::prelude::*;

use super::connect::unavailable;
use super::RedisEngine;
use crate::engine::{Broker, EngineError, Sink, Target};

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
impl Broker for RedisEngine {
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

    async fn ping(&self) -> bool {
        let ok = |r: Result<Result<String, _>, _>| matches!(r, Ok(Ok(_)));
        let timeout = Duration::from_secs(1);
        ok(tokio::time::timeout(timeout, self.commands.ping::<String>(None)).await)
            && self.subscriber.is_connected()
    }

    fn pubsub_live(&self) -> Option<bool> {
        Some(self.canary.fresh())
    }

    fn subscriber_name(&self) -> Option<String> {
        Some(self.subscriber.id().to_string())
    }

    async fn shutdown(&self) {
        let _ = self.subscriber.quit().await;
        let _ = self.commands.quit().await;
    }
}
