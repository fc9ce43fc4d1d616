//! The Redis connection (fred). Until the realtime engine lands this only backs
//! `/readyz`; key and channel names will be built in one module beside it.

use std::time::Duration;

use anyhow::Context;
use fred::prelude::*;
use secrecy::{ExposeSecret, SecretString};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A fred client that reconnects on its own. Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    client: Client,
    prefix: String,
}

impl Redis {
    /// Connects, waiting at most a few seconds. A Redis that is down at start-up does
    /// not stop the replica: fred keeps reconnecting and `/readyz` reports it.
    pub async fn connect(url: &SecretString, prefix: &str) -> anyhow::Result<Self> {
        let config = fred::types::config::Config::from_url(url.expose_secret())
            .context("REDIS_URL is not a valid Redis URL")?;
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = CONNECT_TIMEOUT;
                c.internal_command_timeout = CONNECT_TIMEOUT;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .build()
            .context("cannot build the Redis client")?;
        client.connect();
        if tokio::time::timeout(CONNECT_TIMEOUT, client.wait_for_connect())
            .await
            .map_or(true, |r| r.is_err())
        {
            tracing::warn!("Redis is not reachable yet; retrying in the background");
        }
        Ok(Self {
            client,
            prefix: prefix.to_owned(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `PING`, bounded: what `/readyz` asks.
    pub async fn ping(&self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(1), self.client.ping::<String>(None)).await,
            Ok(Ok(_))
        )
    }

    pub async fn quit(&self) {
        let _ = self.client.quit().await;
    }
}
