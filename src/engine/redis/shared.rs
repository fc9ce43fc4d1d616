//! [`Shared`] for [`RedisEngine`]: idempotency claims and the small values every replica
//! shares, as plain keys with an expiry.

use async_trait::async_trait;
use fred::prelude::*;

use super::connect::unavailable;
use super::RedisEngine;
use crate::engine::{EngineError, IdempotencyKey, Shared};

#[async_trait]
impl Shared for RedisEngine {
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
}
