//! The hub's sweeper: one task, one tick, several duties, each its own function below.
//!
//! - **Keep-alive without a timer per socket** ([`keep_alive`]): every socket is looked
//!   at a few times per ping interval; the ones due for a Ping, idle past the timeout
//!   (4000), past their token's expiry (4001), or holding notifications unacked past
//!   `WS_ACK_TIMEOUT` (redelivery) are asked to act. Sockets sleep until there is work.
//! - **Housekeeping**: the engine's own clean-up, once a minute.
//! - **Trim**: freed handshake memory given back after a wave of connects ([`super::trim`]).
//! - **Leases**: this replica's socket places renewed (the per-user limit across
//!   replicas), every [`LEASE_RENEW`].
//! - **Census**: the socket counts other replicas read for `/v1/platform/connections`,
//!   reported on change (at most every [`CENSUS_MIN`]) and as a heartbeat.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

use super::registry::{Hub, HubConfig, LEASE, LEASE_RENEW};
use super::socket::Close;
use super::trim;
use crate::domain::UserId;
use crate::engine::{Census, ReplicaCensus};

/// How often live counts are reported at most, and at least (a heartbeat).
const CENSUS_MIN: Duration = Duration::from_millis(500);
const CENSUS_MAX: Duration = Duration::from_secs(10);
/// At most how often freed memory is given back after sockets were opened.
const TRIM_EVERY: Duration = Duration::from_secs(10);
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);

/// The sweeper's loop, until cancelled or the hub is gone.
pub(super) async fn run(hub: Weak<Hub>, cancel: CancellationToken) {
    let Some(config) = hub.upgrade().map(|h| h.config.clone()) else {
        return;
    };
    let mut interval = tokio::time::interval(tick(&config));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut housekeeping = Every::new(HOUSEKEEPING_EVERY);
    let mut leases = Every::new(LEASE_RENEW);
    let mut releases = Every::new(Duration::from_secs(1));
    let mut trim = Trim::default();
    let mut census = CensusReport::default();
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = cancel.cancelled() => return,
        }
        let Some(hub) = hub.upgrade() else { return };
        keep_alive(&hub, &config);
        if housekeeping.due() {
            hub.engine.housekeeping().await;
        }
        trim.after_connect_wave(&hub);
        if leases.due() {
            renew_leases(&hub).await;
        }
        if releases.due() {
            release_again(&hub);
        }
        census.report_if_due(&hub).await;
    }
}

/// A quarter of the shortest deadline the sweeper enforces, within 20 ms..1 s.
fn tick(config: &HubConfig) -> Duration {
    let shortest = config
        .ping_interval
        .min(config.idle_timeout)
        .min(config.ack_timeout);
    (shortest / 4).clamp(Duration::from_millis(20), Duration::from_secs(1))
}

/// A duty that runs every `period`.
struct Every {
    period: Duration,
    last: Instant,
}

impl Every {
    fn new(period: Duration) -> Self {
        Self {
            period,
            last: Instant::now(),
        }
    }

    fn due(&mut self) -> bool {
        if self.last.elapsed() >= self.period {
            self.last = Instant::now();
            true
        } else {
            false
        }
    }
}

/// Pings, idle and token-expiry closes, redelivery and expiry of unacked notifications.
fn keep_alive(hub: &Hub, config: &HubConfig) {
    let ping_ms = config.ping_interval.as_millis() as u64;
    let idle_ms = config.idle_timeout.as_millis() as u64;
    let ack_ms = config.ack_timeout.as_millis() as u64;
    let now = hub.now_ms();
    let unix_ms = crate::time::unix_ms();
    let unix_now = unix_ms / 1000;
    let (mut redelivered, mut expired) = (0, 0);
    hub.for_each_socket(|socket| {
        if now.saturating_sub(socket.last_seen()) >= idle_ms {
            socket.close(Close {
                code: 4000,
                reason: "idle timeout",
            });
        } else if unix_now >= socket.token_exp() {
            socket.close(Close {
                code: 4001,
                reason: "token expired",
            });
        } else if now.saturating_sub(socket.last_ping()) >= ping_ms {
            socket.request_ping(now);
        }
        let sweep = socket.sweep_pending(now, unix_ms, ack_ms, config.max_redeliveries);
        redelivered += sweep.redelivered;
        expired += sweep.expired;
    });
    if redelivered > 0 {
        // Only protocol-2 sockets redeliver on the live socket (SPEC §2.3).
        metrics::counter!("locallife_redeliveries_total", "protocol" => "2").increment(redelivered);
    }
    if expired > 0 {
        metrics::counter!("locallife_inbox_expired_total").increment(expired);
    }
}

/// After sockets were opened, once a tick has passed with none opened (the wave is
/// over), their handshakes' freed buffers are given back.
struct Trim {
    opened_before: u64,
    /// When the last trim ran, and how many sockets had been opened then.
    last: (Instant, u64),
}

impl Default for Trim {
    fn default() -> Self {
        Self {
            opened_before: 0,
            last: (Instant::now(), 0),
        }
    }
}

impl Trim {
    fn after_connect_wave(&mut self, hub: &Hub) {
        let opened = hub.opened();
        if opened == self.opened_before
            && opened != self.last.1
            && self.last.0.elapsed() >= TRIM_EVERY
        {
            self.last = (Instant::now(), opened);
            hub.tasks.spawn_blocking(trim::release_free_memory);
        }
        self.opened_before = opened;
    }
}

/// Gives back the places whose release failed: in a task of its own (Redis may still
/// be away, and the sweep must not wait for it), the first alone (then one command
/// fails, not thousands), then the rest together. What fails again is queued again.
fn release_again(hub: &Arc<Hub>) {
    let places = std::mem::take(&mut *hub.unreleased.lock().unwrap_or_else(|e| e.into_inner()));
    if places.is_empty() {
        return;
    }
    let engine = hub.engine.clone();
    let weak = Arc::downgrade(hub);
    hub.tasks.spawn_quiet(async move {
        let failed = match places.split_first() {
            Some(((user, conn), rest)) if engine.release_socket(*user, conn).await.is_ok() => {
                let results = futures::future::join_all(
                    rest.iter().map(|(u, c)| engine.release_socket(*u, c)),
                )
                .await;
                rest.iter()
                    .zip(results)
                    .filter(|(_, r)| r.is_err())
                    .map(|(p, _)| p.clone())
                    .collect()
            }
            _ => places,
        };
        if let Some(hub) = weak.upgrade() {
            hub.retry_release(failed);
        }
    });
}

async fn renew_leases(hub: &Hub) {
    let mut places: Vec<(UserId, Arc<str>)> = Vec::new();
    hub.for_each_socket(|s| places.push((s.user, s.conn_id.clone())));
    let until = crate::time::unix_ms() + LEASE.as_millis() as u64;
    if let Err(e) = hub.engine.renew_sockets(&places, until).await {
        tracing::warn!(error = %e, "cannot renew socket leases");
    }
}

/// The last census reported, and when.
#[derive(Default)]
struct CensusReport {
    last: Option<(Census, Instant)>,
}

impl CensusReport {
    async fn report_if_due(&mut self, hub: &Hub) {
        let census = hub.census();
        let due = match &self.last {
            None => true,
            Some((last, at)) => {
                (at.elapsed() >= CENSUS_MIN && *last != census) || at.elapsed() >= CENSUS_MAX
            }
        };
        if !due {
            return;
        }
        let report = ReplicaCensus {
            replica_id: hub.config.replica_id.to_string(),
            census: census.clone(),
            reported_at_ms: crate::time::unix_ms(),
        };
        if hub
            .engine
            .report_census(&hub.config.replica_id, Some(&report))
            .await
            .is_ok()
        {
            self.last = Some((census, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ping: u64, idle: u64, ack: u64) -> HubConfig {
        HubConfig {
            replica_id: "r".into(),
            ping_interval: Duration::from_millis(ping),
            idle_timeout: Duration::from_millis(idle),
            ack_timeout: Duration::from_millis(ack),
            max_redeliveries: 3,
        }
    }

    #[test]
    fn the_tick_is_a_quarter_of_the_shortest_deadline_within_bounds() {
        assert_eq!(
            tick(&config(30_000, 90_000, 10_000)),
            Duration::from_secs(1)
        );
        assert_eq!(
            tick(&config(400, 90_000, 10_000)),
            Duration::from_millis(100)
        );
        assert_eq!(tick(&config(10, 10, 10)), Duration::from_millis(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_periodic_duty_is_due_once_per_period() {
        let mut every = Every::new(Duration::from_secs(60));
        assert!(!every.due());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(!every.due());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(every.due());
        assert!(!every.due(), "not again until another period has passed");
    }
}
