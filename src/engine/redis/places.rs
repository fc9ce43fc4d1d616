//! [`Places`] for [`RedisEngine`]: each user's socket places as a sorted set of leases
//! (taken by a script that also counts connect attempts), and every replica's census in
//! one hash.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use fred::prelude::*;

use super::connect::unavailable;
use super::RedisEngine;
use crate::domain::UserId;
use crate::engine::{EngineError, Place, Places, ReplicaCensus, CONNECT_LIMIT, CONNECT_WINDOW_MS};

/// Lease renewals sent to Redis in one pipeline.
const RENEW_BATCH: usize = 1000;

#[async_trait]
impl Places for RedisEngine {
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
}
