//! `alert.system_error` to platform staff: faults a replica cannot mask.
//!
//! Raising never blocks and never fails: alerts go through a bounded queue (full: the
//! alert is dropped and counted) to one task that rate-limits per kind (one per
//! [`PER_KIND`]) and writes each alert into the outbox (so it survives this replica and
//! a Redis outage); while PostgreSQL is down it sends straight to the last known staff
//! list, retrying until one of the two works.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::domain::UserId;
use crate::engine::Engine;
use crate::engine::MsgId;
use crate::notify::{self, Kind, Notification};
use crate::store;
use crate::store::outbox::{Audience, NewRow};
use crate::tasks::Tasks;

/// At most one alert of a kind per this long, per replica.
pub const PER_KIND: Duration = Duration::from_secs(60);
const QUEUE: usize = 256;

#[derive(Debug, Clone)]
struct Alert {
    kind: &'static str,
    detail: String,
}

#[derive(Clone)]
pub struct Alerts {
    tx: mpsc::Sender<Alert>,
    /// Per kind, the recent occurrences counted by [`Alerts::raise_if_sustained`].
    recent: Arc<
        std::sync::Mutex<
            std::collections::HashMap<&'static str, std::collections::VecDeque<std::time::Instant>>,
        >,
    >,
}

impl Alerts {
    /// Starts the delivering task, supervised on `tasks`.
    pub fn start(
        db: deadpool_postgres::Pool,
        engine: Arc<dyn Engine>,
        replica: Arc<str>,
        tasks: &Tasks,
    ) -> Alerts {
        let (tx, rx) = mpsc::channel(QUEUE);
        // Shared so that a restarted task (after a panic) reads the same queue.
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let cancel = tasks.cancel().clone();
        tasks.supervise("alerts", move || {
            run(
                rx.clone(),
                db.clone(),
                engine.clone(),
                replica.clone(),
                cancel.clone(),
            )
        });
        Alerts {
            tx,
            recent: Default::default(),
        }
    }

    /// Counts one occurrence of `kind`, and raises the alert once `threshold` of them
    /// fall within `window` (on this replica): what anyone can cause with one anonymous
    /// request (a forged webhook) alerts staff only when it keeps happening.
    pub fn raise_if_sustained(
        &self,
        kind: &'static str,
        detail: impl Into<String>,
        threshold: usize,
        window: Duration,
    ) {
        let now = std::time::Instant::now();
        let sustained = {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            let times = recent.entry(kind).or_default();
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) > window)
            {
                times.pop_front();
            }
            if times.len() < threshold {
                times.push_back(now);
            }
            times.len() >= threshold
        };
        if sustained {
            self.raise(kind, detail);
        }
    }

    /// Raises an alert of `kind` (a short snake_case word: `redis_unreachable`).
    /// `detail` is for staff: never a secret, token or payload.
    pub fn raise(&self, kind: &'static str, detail: impl Into<String>) {
        let alert = Alert {
            kind,
            detail: detail.into(),
        };
        tracing::warn!(kind, detail = %alert.detail, "system alert");
        if self.tx.try_send(alert).is_err() {
            metrics::counter!("locallife_alerts_dropped_total").increment(1);
        }
    }
}

/// The `alert.system_error` notification of `kind` (a short snake_case word) with
/// `detail` for staff: the one builder of it, for the alerts a replica raises here (with
/// its `replica`) and those a business flow writes in its own transaction (with their
/// `order_id`: a payment that came late or twice).
pub fn system_error(kind: &'static str, detail: impl Into<String>) -> Notification {
    Notification::new(Kind::SystemError, "系统错误", detail).with("kind", kind)
}

async fn run(
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Alert>>>,
    db: deadpool_postgres::Pool,
    engine: Arc<dyn Engine>,
    replica: Arc<str>,
    cancel: CancellationToken,
) {
    let mut rx = rx.lock().await;
    let mut last: HashMap<&'static str, Instant> = HashMap::new();
    let staff_cache: Mutex<Vec<UserId>> =
        Mutex::new(store::users::platform_staff(&db).await.unwrap_or_default());
    loop {
        let alert = tokio::select! {
            a = rx.recv() => match a { Some(a) => a, None => return },
            _ = cancel.cancelled() => return,
        };
        if last.get(alert.kind).is_some_and(|t| t.elapsed() < PER_KIND) {
            metrics::counter!("locallife_alerts_suppressed_total").increment(1);
            continue;
        }
        last.insert(alert.kind, Instant::now());
        let n = system_error(alert.kind, alert.detail.clone()).with("replica", replica.as_ref());
        // Durable first: an outbox row, sent by any replica's relay, also after this one
        // died and once Redis is back. While PostgreSQL is down (no row can be written)
        // the alert goes straight to the staff last seen, under the same id, so a row
        // written later and the direct send are one notification.
        let row = n.outbox(Audience::PlatformStaff, None);
        let Ok(id) = row.message_id.parse::<MsgId>() else {
            continue;
        };
        let mut backoff = Duration::from_millis(200);
        while !cancel.is_cancelled() {
            if write_row(&db, &row).await.is_ok() {
                break;
            }
            let staff = staff_cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if !staff.is_empty() {
                let mut sent = true;
                for user in staff {
                    sent &= notify::to_user_as(&*engine, user, id, &n).await.is_ok();
                }
                if sent {
                    break;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = cancel.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        if let Ok(staff) = store::users::platform_staff(&db).await {
            *staff_cache.lock().unwrap_or_else(|e| e.into_inner()) = staff;
        }
    }
}

async fn write_row(db: &deadpool_postgres::Pool, row: &NewRow) -> Result<(), store::StoreError> {
    let client = db.get().await?;
    store::outbox::insert(&client, std::slice::from_ref(row)).await
}

/// Watches PostgreSQL and the engine; raises an alert when either becomes unreachable.
pub async fn watch_dependencies(
    db: deadpool_postgres::Pool,
    engine: Arc<dyn Engine>,
    alerts: Alerts,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut pg_ok = true;
    let mut engine_ok = true;
    let mut interval = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = cancel.cancelled() => return,
        }
        let pg = store::ping(&db).await.is_ok();
        if !pg {
            metrics::counter!("locallife_postgres_errors_total").increment(1);
        }
        if pg_ok && !pg {
            alerts.raise("postgres_unreachable", "PostgreSQL is unreachable");
        }
        pg_ok = pg;
        let e = engine.ping().await;
        if !e {
            metrics::counter!("locallife_redis_errors_total").increment(1);
        }
        if engine_ok && !e {
            alerts.raise("redis_unreachable", "Redis is unreachable");
        }
        engine_ok = e;
    }
}
