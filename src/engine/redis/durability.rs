//! `REDIS_MIN_REPLICAS_ACK`: an inbox write counts as done once `WAIT` says enough
//! replicas hold it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fred::prelude::*;
use tokio_util::sync::CancellationToken;

use super::connect::{next_connect, take_or, unavailable};
use crate::config::RedisConfig;
use crate::engine::EngineError;
use crate::tasks::Tasks;

/// The confirmations `settings` ask for, if any; the task counting the command
/// connection's (re)connects runs supervised on `tasks`.
pub(super) fn start(
    settings: &RedisConfig,
    commands: &Client,
    tasks: &Tasks,
) -> Option<Durability> {
    let cancel = tasks.cancel().clone();
    (settings.min_replicas_ack > 0).then(|| {
        let generation = Arc::new(AtomicU64::new(0));
        let (commands, generation2, cancel) =
            (commands.clone(), generation.clone(), cancel.clone());
        let first = std::sync::Mutex::new(Some(commands.reconnect_rx()));
        tasks.supervise("redis_generation", move || {
            let rx = take_or(&first, || commands.reconnect_rx());
            count_connections(rx, generation2.clone(), cancel.clone())
        });
        Durability::new(
            settings.min_replicas_ack.into(),
            settings.wait_timeout.as_millis().max(1) as i64,
            generation,
        )
    })
}

/// `REDIS_MIN_REPLICAS_ACK`: inbox writes wait until that many replicas confirm them.
///
/// `WAIT` covers every write its connection made before it, so concurrent writers share
/// one: a writer counts its write done, then either finds it covered by a `WAIT` sent
/// after it, or sends the next one itself (one at a time per primary; fred sends a
/// blocking command alone on the connection). In a Cluster each primary has its own
/// connection, replicas and count: the `WAIT` goes to the node that took the write.
/// A write made before the connection was made again is not covered by any later
/// `WAIT` (the connection may point at a new primary): it is refused, and its caller
/// retries, the write being idempotent.
pub(super) struct Durability {
    replicas: i64,
    timeout_ms: i64,
    /// Connections made so far by the command client.
    pub(super) generation: Arc<AtomicU64>,
    /// Per primary (`None`: the one server of a standalone or Sentinel deployment).
    nodes: std::sync::Mutex<HashMap<Option<Server>, Arc<Confirmations>>>,
}

/// One primary's writes and `WAIT`s.
#[derive(Default)]
struct Confirmations {
    /// Writes completed, in order.
    written: AtomicU64,
    /// Every write up to this count is confirmed.
    confirmed: AtomicU64,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Durability {
    fn new(replicas: i64, timeout_ms: i64, generation: Arc<AtomicU64>) -> Self {
        Self {
            replicas,
            timeout_ms,
            generation,
            nodes: Default::default(),
        }
    }

    /// Refuses when the command connection was made again since `generation`: a later
    /// `WAIT` does not cover writes made on an earlier connection.
    fn same_connection(&self, generation: u64) -> Result<(), EngineError> {
        if self.generation.load(Ordering::Acquire) == generation {
            Ok(())
        } else {
            Err(EngineError::Unavailable(
                "the Redis connection was made again before the write was confirmed".into(),
            ))
        }
    }

    /// Waits until the write just completed (on connection `generation`, by `node` in
    /// a Cluster) is on enough replicas.
    pub(super) async fn confirm(
        &self,
        commands: &Client,
        generation: u64,
        node: Option<Server>,
    ) -> Result<(), EngineError> {
        let this = self
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(node.clone())
            .or_default()
            .clone();
        let mine = this.written.fetch_add(1, Ordering::AcqRel) + 1;
        let _turn = this.one_at_a_time.lock().await;
        self.same_connection(generation)?;
        if this.confirmed.load(Ordering::Acquire) >= mine {
            return Ok(());
        }
        let upto = this.written.load(Ordering::Acquire);
        let started = std::time::Instant::now();
        let acked: i64 = match node {
            Some(node) => {
                commands
                    .with_cluster_node(node)
                    .wait(self.replicas, self.timeout_ms)
                    .await
            }
            None => commands.wait(self.replicas, self.timeout_ms).await,
        }
        .map_err(unavailable)?;
        metrics::histogram!("locallife_redis_wait_seconds").record(started.elapsed().as_secs_f64());
        self.same_connection(generation)?;
        if acked < self.replicas {
            metrics::counter!("locallife_redis_wait_short_total").increment(1);
            return Err(EngineError::Unavailable(format!(
                "{acked} of {} Redis replicas confirmed the write",
                self.replicas
            )));
        }
        this.confirmed.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }
}

/// Counts the command connection's (re)connects.
async fn count_connections(
    mut reconnects: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
    generation: Arc<AtomicU64>,
    cancel: CancellationToken,
) {
    while next_connect(&mut reconnects, &cancel).await {
        generation.fetch_add(1, Ordering::AcqRel);
    }
}
