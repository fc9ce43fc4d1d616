//! Pub/sub: the task that hands the subscriber's messages to the sink, the canary that
//! proves the subscription delivers, and the watchers that have everything subscribed
//! again after a reconnect, a wedged subscription or a Cluster's slots moving.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use fred::prelude::*;
use fred::types::Message;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::connect::{next_connect, take_or};
use crate::engine::{Keys, Sink};
use crate::tasks::Tasks;

/// How often the canary goes out.
const CANARY_EVERY: Duration = Duration::from_secs(1);
/// How recent the last returned canary must be for the subscription to count as live.
pub const CANARY_FRESH: Duration = Duration::from_secs(5);

/// What the pub/sub tasks share with the engine: where payloads go, how many were
/// lost, and the canary.
pub(super) struct Listening {
    pub(super) sink: Arc<OnceLock<Weak<dyn Sink>>>,
    pub(super) dropped: Arc<AtomicU64>,
    pub(super) canary: Arc<Canary>,
}

/// Starts the pub/sub tasks (dispatch, reconnect watch, canary; in a Cluster the
/// topology watch), supervised on `tasks`. Called before the clients connect.
pub(super) fn start(
    tasks: &Tasks,
    commands: &Client,
    subscriber: &Client,
    keys: &Keys,
    clustered: bool,
) -> Listening {
    let sink: Arc<OnceLock<Weak<dyn Sink>>> = Arc::new(OnceLock::new());
    let dropped = Arc::new(AtomicU64::new(0));
    let canary = Arc::new(Canary::new(
        keys.canary(&format!("{:016x}", rand::random::<u64>())),
    ));
    // Receivers are taken before connecting, so neither the first connect event nor
    // an early message can be missed (a restarted task takes new ones).
    let messages = std::sync::Mutex::new(Some(subscriber.message_rx()));
    let reconnects = std::sync::Mutex::new(Some(subscriber.reconnect_rx()));
    let cancel = tasks.cancel().clone();
    {
        let (subscriber, keys, sink, dropped, canary, cancel) = (
            subscriber.clone(),
            keys.clone(),
            sink.clone(),
            dropped.clone(),
            canary.clone(),
            cancel.clone(),
        );
        tasks.supervise("redis_dispatch", move || {
            let rx = take_or(&messages, || subscriber.message_rx());
            dispatch(
                rx,
                keys.clone(),
                sink.clone(),
                dropped.clone(),
                canary.clone(),
                cancel.clone(),
            )
        });
    }
    {
        let (commands, subscriber, sink, canary, cancel) = (
            commands.clone(),
            subscriber.clone(),
            sink.clone(),
            canary.clone(),
            cancel.clone(),
        );
        tasks.supervise("redis_reconnects", move || {
            let rx = take_or(&reconnects, || subscriber.reconnect_rx());
            watch_reconnects(
                rx,
                commands.clone(),
                subscriber.clone(),
                canary.clone(),
                sink.clone(),
                cancel.clone(),
            )
        });
    }
    {
        let (commands, subscriber, canary, cancel) = (
            commands.clone(),
            subscriber.clone(),
            canary.clone(),
            cancel.clone(),
        );
        tasks.supervise("redis_canary", move || {
            send_canaries(
                commands.clone(),
                subscriber.clone(),
                canary.clone(),
                cancel.clone(),
            )
        });
    }
    if clustered {
        let (subscriber, sink, cancel) = (subscriber.clone(), sink.clone(), cancel.clone());
        tasks.supervise("redis_topology", move || {
            watch_topology(subscriber.clone(), sink.clone(), cancel.clone())
        });
    }
    Listening {
        sink,
        dropped,
        canary,
    }
}

/// This replica's pub/sub canary: its channel, and when one last came back.
pub(super) struct Canary {
    channel: String,
    epoch: tokio::time::Instant,
    /// Microseconds after `epoch` when the last canary came back; 0: none yet.
    back_us: AtomicU64,
    /// Microseconds after `epoch` when the subscriber connection was last made: a
    /// canary from before proves nothing about the connection there is now.
    since_us: AtomicU64,
}

impl Canary {
    fn new(channel: String) -> Self {
        Canary {
            channel,
            epoch: tokio::time::Instant::now(),
            back_us: AtomicU64::new(0),
            since_us: AtomicU64::new(0),
        }
    }

    /// The subscriber connection was made again.
    fn reconnected(&self) {
        self.since_us.store(self.now_us(), Ordering::Relaxed);
    }

    fn now_us(&self) -> u64 {
        (self.epoch.elapsed().as_micros() as u64).max(1)
    }

    /// The payload of a canary sent now: its send time.
    fn payload(&self) -> String {
        self.now_us().to_string()
    }

    /// A canary came back: its round trip is recorded.
    fn returned(&self, payload: &[u8]) {
        let now = self.now_us();
        if let Some(sent) = std::str::from_utf8(payload)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        {
            let rtt = now.saturating_sub(sent) as f64 / 1e6;
            metrics::histogram!("locallife_redis_canary_rtt_seconds").record(rtt);
        }
        self.back_us.store(now, Ordering::Relaxed);
    }

    /// How long since a canary last came back (`None`: none ever did).
    fn age(&self) -> Option<Duration> {
        match self.back_us.load(Ordering::Relaxed) {
            0 => None,
            at => Some(Duration::from_micros(self.now_us().saturating_sub(at))),
        }
    }

    /// Whether pub/sub is proven: a canary came back lately, on this connection (a
    /// reconnect may land on a server the publishes do not reach, as a stale primary
    /// during a failover).
    pub(super) fn fresh(&self) -> bool {
        self.back_us.load(Ordering::Relaxed) >= self.since_us.load(Ordering::Relaxed)
            && self.age().is_some_and(|a| a <= CANARY_FRESH)
    }
}

/// Hands every pub/sub message to the sink, zero-copy.
async fn dispatch(
    mut messages: tokio::sync::broadcast::Receiver<Message>,
    keys: Keys,
    sink: Arc<OnceLock<Weak<dyn Sink>>>,
    dropped: Arc<AtomicU64>,
    canary: Arc<Canary>,
    cancel: CancellationToken,
) {
    loop {
        let received = tokio::select! {
            m = messages.recv() => m,
            _ = cancel.cancelled() => return,
        };
        match received {
            Ok(message) => {
                let payload = match message.value {
                    Value::Bytes(b) => b,
                    Value::String(s) => s.into_inner(),
                    _ => continue,
                };
                if &*message.channel == canary.channel.as_str() {
                    canary.returned(&payload);
                    continue;
                }
                let Some(target) = keys.parse_channel(&message.channel) else {
                    continue;
                };
                if let Some(sink) = sink.get().and_then(Weak::upgrade) {
                    sink.deliver(target, payload);
                }
            }
            Err(RecvError::Lagged(n)) => {
                dropped.fetch_add(n, Ordering::Relaxed);
                metrics::counter!("locallife_pubsub_dropped_total").increment(n);
                tracing::warn!(lost = n, "pub/sub dispatch fell behind; replaying inboxes");
                if let Some(sink) = sink.get().and_then(Weak::upgrade) {
                    sink.missed();
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// On every (re)connect of the subscriber connection: subscribes the canary (and sends
/// one at once, so readiness does not wait a period) and tells the sink.
async fn watch_reconnects(
    mut reconnects: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
    commands: Client,
    subscriber: Client,
    canary: Arc<Canary>,
    sink: Arc<OnceLock<Weak<dyn Sink>>>,
    cancel: CancellationToken,
) {
    while next_connect(&mut reconnects, &cancel).await {
        tracing::info!("Redis subscriber connected; subscribing again");
        canary.reconnected();
        if subscriber.subscribe(canary.channel.as_str()).await.is_ok() {
            let _ = commands
                .publish::<i64, _, _>(canary.channel.as_str(), canary.payload())
                .await;
        }
        if let Some(sink) = sink.get().and_then(Weak::upgrade) {
            sink.reconnected();
        }
    }
}

/// How often a Cluster's slot map is read again by the subscriber.
const TOPOLOGY_EVERY: Duration = Duration::from_secs(2);

/// A Cluster's slots move (a failover, a migration): the server drops the shard
/// subscriptions of a slot that left a node (`SUNSUBSCRIBE` pushed by the server), and
/// the subscriber does not follow by itself. So it reads the slot map every
/// [`TOPOLOGY_EVERY`]; when the map changed, everything is subscribed again (on the
/// slots' new owners) and the inboxes are replayed, as after a reconnect.
async fn watch_topology(
    subscriber: Client,
    sink: Arc<OnceLock<Weak<dyn Sink>>>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(TOPOLOGY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut known: Option<Vec<(u16, u16, Server)>> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return,
        }
        if subscriber.sync_cluster().await.is_err() {
            continue;
        }
        let Some(state) = subscriber.cached_cluster_state() else {
            continue;
        };
        let slots: Vec<(u16, u16, Server)> = state
            .slots()
            .iter()
            .map(|r| (r.start, r.end, r.primary.clone()))
            .collect();
        let moved = known.as_ref().is_some_and(|k| *k != slots);
        known = Some(slots);
        if moved {
            metrics::counter!("locallife_pubsub_resubscribes_total").increment(1);
            tracing::info!("Redis Cluster slots moved; subscribing again");
            if let Some(sink) = sink.get().and_then(Weak::upgrade) {
                sink.reconnected();
            }
        }
    }
}

/// Publishes a canary every [`CANARY_EVERY`]. When none has come back for
/// [`CANARY_FRESH`] while Redis answers commands, the subscription is wedged or lost:
/// the subscriber connection is made again (at most once per two periods), and its
/// reconnect subscribes everything again.
async fn send_canaries(
    commands: Client,
    subscriber: Client,
    canary: Arc<Canary>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(CANARY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut started = tokio::time::Instant::now();
    let mut last_forced: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return,
        }
        let sent = commands
            .publish::<i64, _, _>(canary.channel.as_str(), canary.payload())
            .await
            .is_ok();
        if !sent {
            // Redis itself is unreachable: the reconnect policy is at work already.
            started = tokio::time::Instant::now();
            continue;
        }
        // Stale only if canaries have gone out for a whole period since Redis last
        // refused one: right after an outage the last returned canary is old, but the
        // subscription may be fine (the next canary shows it).
        let stale =
            canary.age().is_none_or(|age| age > CANARY_FRESH) && started.elapsed() > CANARY_FRESH;
        let may_force = last_forced.is_none_or(|t| t.elapsed() >= CANARY_FRESH * 2);
        if stale && may_force {
            last_forced = Some(tokio::time::Instant::now());
            metrics::counter!("locallife_pubsub_resubscribes_total").increment(1);
            tracing::warn!(
                "pub/sub canary not coming back while Redis answers; reconnecting the subscriber"
            );
            if let Err(e) = subscriber.force_reconnection().await {
                tracing::warn!(error = %e, "subscriber reconnect failed; retrying");
            }
        }
    }
}
