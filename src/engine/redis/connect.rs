//! Connecting to Redis: the two fred clients (commands, subscriber), built alike and
//! connected without holding up the replica; how long a command may wait, the TLS
//! connector, and what a failed command becomes ([`unavailable`]).

use std::time::Duration;

use fred::prelude::*;
use secrecy::ExposeSecret;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::config::RedisConfig;
use crate::engine::EngineError;

/// How long a command waits (for a connection, then an answer) before the engine counts
/// as unavailable and the caller answers 503.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How many pub/sub messages may wait for the dispatch task before the oldest are lost
/// (and counted).
const PUBSUB_BUFFER: usize = 1 << 15;

pub(super) fn unavailable(e: fred::error::Error) -> EngineError {
    EngineError::Unavailable(e.to_string())
}

/// Builds the command and the subscriber client for `settings`, not connected yet;
/// whether Redis is a Cluster.
pub(super) fn clients(settings: &RedisConfig) -> anyhow::Result<(Client, Client, bool)> {
    let mut config = fred::types::config::Config::from_url(settings.url.expose_secret())
        .map_err(|_| anyhow::anyhow!("REDIS_URL is not a valid Redis URL"))?;
    let clustered = config.server.is_clustered();
    // rediss:// is TLS, verified, or nothing: never a plaintext fallback.
    config.tls = if settings.tls() {
        Some(tls_connector(settings.ca_file.as_deref())?.into())
    } else {
        None
    };
    // fred's default gives up for good when the first connection fails: a replica
    // started while Redis was down, or not yet answering (stopped, loading its
    // data), would never connect. The reconnect policy applies from the start.
    config.fail_fast = false;
    let mut builder = Builder::from_config(config);
    builder
        .with_connection_config(|c| {
            c.connection_timeout = COMMAND_TIMEOUT;
            c.internal_command_timeout = COMMAND_TIMEOUT;
            c.max_command_attempts = 2;
            c.auto_client_setname = true;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = COMMAND_TIMEOUT;
        })
        // Attempts 100 ms apart doubling to 500 ms, never given up: after an outage
        // the subscriber is back (and replays what its sockets missed) within half a
        // second of Redis, and an attempt costs Redis one refused connect.
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 500, 2));
    let commands = builder.build()?;
    // Only the subscriber needs deep channels: fred sizes every one of a client's
    // broadcast channels alike, and at 64k slots the two clients held ~90 MB.
    builder.with_performance_config(|p| p.broadcast_channel_capacity = PUBSUB_BUFFER);
    let subscriber = builder.build()?;
    Ok((commands, subscriber, clustered))
}

/// Connects both clients, waiting a few seconds at most: a Redis that is down at
/// start-up does not stop the replica (fred keeps reconnecting; `/readyz` says so).
pub(super) async fn wait_connected(commands: &Client, subscriber: &Client) {
    commands.connect();
    subscriber.connect();
    let waited = tokio::time::timeout(COMMAND_TIMEOUT, async {
        let a = commands.wait_for_connect().await;
        let b = subscriber.wait_for_connect().await;
        a.and(b)
    })
    .await;
    if !matches!(waited, Ok(Ok(()))) {
        tracing::warn!("Redis is not reachable yet; reconnecting in the background");
    }
}

/// A TLS connector for `rediss://` (see [`crate::tls`]).
fn tls_connector(
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<fred::types::config::TlsConnector> {
    Ok(crate::tls::client_config(ca_file, "REDIS_CA_FILE")?.into())
}

/// The receiver taken before connecting, the first time; a fresh one after a restart.
pub(super) fn take_or<T>(first: &std::sync::Mutex<Option<T>>, fresh: impl FnOnce() -> T) -> T {
    let taken = first.lock().unwrap_or_else(|e| e.into_inner()).take();
    taken.unwrap_or_else(fresh)
}

/// Waits for the next (re)connect reported on `reconnects` (a lagged receiver counts as
/// one); `false` once the channel closes or the replica stops.
pub(super) async fn next_connect(
    reconnects: &mut tokio::sync::broadcast::Receiver<fred::types::config::Server>,
    cancel: &CancellationToken,
) -> bool {
    let received = tokio::select! {
        r = reconnects.recv() => r,
        _ = cancel.cancelled() => return false,
    };
    !matches!(received, Err(RecvError::Closed))
}
