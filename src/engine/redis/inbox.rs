//! Inboxes on Redis: where the `WAIT` for a write goes, and the ack or withdraw script
//! for one notification.

use fred::prelude::*;
use fred::types::scripts::Script;

use super::connect::unavailable;
use super::RedisEngine;
use crate::domain::UserId;
use crate::engine::inbox::{MsgId, DONE_MAX, INBOX_IDLE_MS};
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

    /// Runs the ack or withdraw script for `id`; whether it was in the inbox.
    pub(super) async fn remove(
        &self,
        script: &Script,
        user: UserId,
        id: MsgId,
    ) -> Result<bool, EngineError> {
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
