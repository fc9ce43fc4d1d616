//! [`Inbox`] for [`RedisEngine`]: inbox writes and acks go to their rounds
//! ([`super::scripts`]), a write waits for its `WAIT` confirmation where one is asked
//! for ([`super::durability`]), and withdrawals and reads run their script alone; the
//! keys an inbox script reads (the stream and ids set, then release 0.3's).

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use fred::prelude::*;
use fred::types::scripts::Script;

use super::connect::{unavailable, COMMAND_TIMEOUT};
use super::scripts::{common_args, keep_until, parse_inbox, PushJob};
use super::RedisEngine;
use crate::domain::UserId;
use crate::engine::inbox::{InboxEntry, MsgId, Pushed, DONE_KEEP_MS, INBOX_IDLE_MS};
use crate::engine::wire::Event;
use crate::engine::{EngineError, Inbox, Target};

impl RedisEngine {
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

    /// Runs the withdraw script for `id`; whether it was in the inbox.
    async fn remove(&self, script: &Script, user: UserId, id: MsgId) -> Result<bool, EngineError> {
        let now = crate::time::unix_ms();
        let mut args = common_args(now).to_vec();
        args.extend([
            Value::from(keep_until(now, DONE_KEEP_MS).to_string()),
            Value::from(id.to_string()),
            Value::from(self.keys.channel(Target::User(user))),
            Value::Bytes(Event::Acked(id).encode()),
        ]);
        let removed: i64 = script
            .evalsha_with_reload(&self.commands, self.inbox_keys(user), args)
            .await
            .map_err(unavailable)?;
        Ok(removed == 1)
    }

    /// The keys an inbox script reads: the stream and ids set, then release 0.3's.
    pub(super) fn inbox_keys(&self, user: UserId) -> Vec<String> {
        let mut keys = self.keys.inbox(user).to_vec();
        keys.extend(self.keys.old_inbox(user));
        keys
    }
}

#[async_trait]
impl Inbox for RedisEngine {
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
}
