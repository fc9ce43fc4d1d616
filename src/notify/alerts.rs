//! `alert.system_error` to platform staff: faults a replica cannot mask.
//!
//! Raising never blocks and never fails: alerts go through a bounded queue (full: the
//! alert is dropped and counted) to one task that rate-limits per kind (one per
//! [`PER_KIND`]) and delivers each alert once it can be delivered — while Redis is down
//! it waits and retries; while PostgreSQL is down it uses the last known staff list.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::domain::UserId;
use crate::engine::Engine;
use crate::notify::{self, Kind, Notification};
use crate::store;
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
        Alerts { tx }
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

async fn run(
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Alert>>>,
    db: deadpool_postgres::Pool,
    engine: Arc<dyn Engine>,
    replica: Arc<str>,
    cancel: CancellationToken,
) {
    let mut rx = rx.lock().await;
    let mut last: HashMap<&'static str, Instant> = HashMap::new();
    let staff_cache: Mutex<Vec<UserId>> = Mutex::new(Vec::new());
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
        let n = Notification::new(Kind::SystemError, "系统错误", alert.detail.clone())
            .with("kind", alert.kind)
            .with("replica", replica.as_ref());
        let mut backoff = Duration::from_millis(200);
        let mut pending: Option<Vec<UserId>> = None;
        while !cancel.is_cancelled() {
            let staff = match pending.take() {
                Some(s) => s,
                None => match store::users::platform_staff(&db).await {
                    Ok(s) => {
                        *staff_cache.lock().unwrap_or_else(|e| e.into_inner()) = s.clone();
                        s
                    }
                    Err(_) => staff_cache
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone(),
                },
            };
            let mut failed = Vec::new();
            for user in staff {
                if notify::to_user(&*engine, user, &n).await.is_err() {
                    failed.push(user);
                }
            }
            if failed.is_empty() {
                break;
            }
            pending = Some(failed);
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = cancel.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
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
