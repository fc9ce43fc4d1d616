//! Inboxes on Redis: where the `WAIT` for a write goes, the keys an inbox script
//! reads, and the withdraw script for one notification.

use fred::prelude::*;
use fred::types::scripts::Script;

use super::connect::unavailable;
use super::scripts::{common_args, keep_until};
use super::RedisEngine;
use crate::domain::UserId;
use crate::engine::inbox::{MsgId, DONE_KEEP_MS};
use crate::engine::wire::Event;
use crate::engine::{EngineError, Target};

impl RedisEngine {
    /// The primary holding `user`'s keys, in a Cluster (`None` elsewhere): where the
    /// `WAIT` for a write of them goes.
    pub(super) fn node_of(&self, user: UserId) -> Result<Option<Server>, EngineError> {
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
    pub(super) async fn remove(
        &self,
        script: &Script,
        user: UserId,
        id: MsgId,
    ) -> Result<bool, EngineError> {
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
