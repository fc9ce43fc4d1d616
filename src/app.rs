//! Building and running one replica.
//!
//! [`Application::build`] does everything that can fail at start-up (migrations, pools,
//! binding the listener) so that [`Application::run_until_stopped`] only serves. Tests
//! build with `LISTEN_ADDR` port 0 and read the port back.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Tokens;
use crate::config::Config;
use crate::engine::memory::MemoryEngine;
use crate::engine::redis::RedisEngine;
use crate::engine::{Engine, Keys};
use crate::hub::{Close, Hub, HubConfig};
use crate::notify::alerts::{self, Alerts};
use crate::notify::receipts::Receipts;
use crate::state::{AppState, Parts};
use crate::tasks::Tasks;
use crate::wechat::login::WechatLogin;
use crate::wechat::pay::{NotifyVerifier, Payer};
use crate::{http, service, store};

/// How long the background tasks get to end once the replica stops.
const TASKS_DEADLINE: Duration = Duration::from_secs(5);
/// How long sessions get to end after their close frame was queued.
const SESSIONS_DEADLINE: Duration = Duration::from_secs(3);

/// Runs `job(state, cancel)` supervised on the replica's tasks.
fn supervise<J, F>(state: &AppState, name: &'static str, job: J)
where
    J: Fn(AppState, CancellationToken) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let (s, cancel) = (state.clone(), state.tasks().cancel().clone());
    state
        .tasks()
        .supervise(name, move || job(s.clone(), cancel.clone()));
}

/// The replica-wide background tasks, supervised: restarted if they panic.
fn start_background(state: &AppState) {
    let tasks = state.tasks();
    let cancel = tasks.cancel().clone();
    {
        let (state, cancel) = (state.clone(), cancel.clone());
        tasks.supervise("payment_timeout_sweeper", move || {
            service::sweeper::run(state.clone(), cancel.clone())
        });
    }
    supervise(state, "outbox_relay", service::relay::run);
    supervise(state, "outbox_listener", service::relay::listen);
    supervise(state, "outbox_upkeep", service::relay::upkeep);
    supervise(state, "subscription_fallback", service::fallback::run);
    supervise(state, "geo_index", service::riders::keep_geo_index);
    supervise(state, "admission_recheck", crate::ws::recheck_admission);
    let (db, engine, alerts) = (
        state.db().clone(),
        state.engine().clone(),
        state.alerts().clone(),
    );
    tasks.supervise("dependency_watcher", move || {
        alerts::watch_dependencies(
            db.clone(),
            engine.clone(),
            alerts.clone(),
            Duration::from_secs(1),
            cancel.clone(),
        )
    });
}

/// A built replica, bound and ready to serve.
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    metrics_addr: SocketAddr,
    state: AppState,
}

impl Application {
    /// Applies pending migrations, opens the pools and binds `LISTEN_ADDR`.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        crate::telemetry::metrics();
        let applied = store::migrate::run(&config.database).await?;
        if !applied.is_empty() {
            tracing::info!(versions = ?applied, "applied migrations");
        }
        let db = store::connect_pool(&config.database)?;
        let tasks = Tasks::new();
        let engine: Arc<dyn Engine> = match &config.redis {
            Some(redis) => {
                let keys = Keys::new(&config.redis_key_prefix);
                Arc::new(RedisEngine::connect(redis, keys, &tasks).await?)
            }
            None => {
                tracing::info!("REDIS_URL not set: single-node mode with the in-process engine");
                Arc::new(MemoryEngine::new())
            }
        };
        let hub = Hub::start(
            HubConfig {
                replica_id: replica_id().into(),
                ping_interval: config.ws.ping_interval,
                idle_timeout: config.ws.idle_timeout,
                ack_timeout: config.ws.ack_timeout,
                max_redeliveries: config.ws.max_redeliveries,
            },
            engine,
            &tasks,
        )
        .await;
        let wechat = config.wechat.clone().map(WechatLogin::new);
        let appid = config.wechat.as_ref().map(|w| w.appid.as_str());
        let payer = Payer::from_config(&config.wechat_pay, appid)?;
        let pay_verifier = NotifyVerifier::from_config(&config.wechat_pay)?;
        if pay_verifier.is_none() {
            tracing::warn!(
                "WeChat Pay notification settings incomplete (WECHATPAY_MCHID, _APIV3_KEY, \
                 _PUBLIC_KEY_FILE, _PUBLIC_KEY_ID): payment notifications will be refused"
            );
        }
        let alerts = Alerts::start(
            db.clone(),
            hub.engine().clone(),
            hub.replica_id().clone(),
            &tasks,
        );
        {
            let alerts = alerts.clone();
            tasks.on_panic(move |name| {
                alerts.raise("task_panicked", format!("background task {name} panicked"));
            });
        }
        if wechat.is_none() {
            tracing::warn!(
                "WECHAT_APPID and WECHAT_SECRET not set: /v1/auth/wechat-login answers 503"
            );
        }
        http::server::fit_file_limit(config.connections.max_connections);
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .with_context(|| format!("cannot listen on LISTEN_ADDR {}", config.listen_addr))?;
        let local_addr = listener.local_addr()?;
        let metrics_listener = TcpListener::bind(config.metrics_addr)
            .await
            .with_context(|| format!("cannot listen on METRICS_ADDR {}", config.metrics_addr))?;
        let metrics_addr = metrics_listener.local_addr()?;
        let db_for_receipts = db.clone();
        let admissions = crate::store::admissions::Admissions::start(&tasks, db.clone());
        let state = AppState::new(Parts {
            tokens: Tokens::new(&config.jwt),
            config,
            db,
            hub,
            wechat,
            payer,
            pay_verifier,
            alerts,
            receipts: Receipts::start(db_for_receipts, &tasks),
            admissions,
            tasks: tasks.clone(),
            sessions: Tasks::new(),
        });
        start_background(&state);
        tasks.spawn(
            "metrics_server",
            serve_metrics(metrics_listener, tasks.cancel().clone()),
        );
        Ok(Self {
            listener,
            local_addr,
            metrics_addr,
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `/metrics` is served.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then drains: reports not ready, stops
    /// accepting, closes sockets with 1001 spread over `WS_DRAIN_PERIOD` (so their
    /// clients reconnect elsewhere without a thundering herd), lets in-flight requests
    /// finish, stops every background task (waiting for them, with a deadline), and
    /// returns. Unacked notifications stay in the inboxes.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let drain_period = state.config().ws.drain_period;
        let router = http::router(self.state);
        let stopping = CancellationToken::new();
        let drain_state = state.clone();
        let signalled = stopping.clone();
        let limits = state.config().connections;
        let stop_serving = CancellationToken::new();
        let serve = {
            let served = http::server::run(self.listener, router, limits, stop_serving.clone());
            async move {
                let announce = async move {
                    shutdown.await;
                    drain_state.start_draining();
                    tracing::info!("draining: not ready, no new connections");
                    signalled.cancel();
                    stop_serving.cancel();
                };
                // The server ends only once asked to: wait for both.
                tokio::join!(served, announce);
                anyhow::Ok(())
            }
        };
        // In-flight requests get the drain period and a little more; past it the
        // replica exits anyway so Kubernetes' own kill never has to.
        let grace = drain_period + Duration::from_secs(5);
        let serving = async {
            let served = tokio::select! {
                res = serve => res,
                _ = async {
                    stopping.cancelled().await;
                    tokio::time::sleep(grace).await;
                } => {
                    tracing::warn!("in-flight requests still open after the grace period");
                    Ok(())
                }
            };
            // A server that failed drains too.
            stopping.cancel();
            served
        };
        let draining = async {
            stopping.cancelled().await;
            let _ = tokio::time::timeout(grace, drain_sockets(&state, drain_period)).await;
        };
        let (served, ()) = tokio::join!(serving, draining);
        state.tasks().shutdown(TASKS_DEADLINE).await;
        let hub = state.hub().clone();
        hub.shutdown().await;
        hub.engine().shutdown().await;
        state.db().close();
        served
    }
}

/// Serves Prometheus' text exposition on `METRICS_ADDR` until the replica stops.
async fn serve_metrics(listener: TcpListener, stop: CancellationToken) {
    let handle = crate::telemetry::metrics();
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move {
            handle.run_upkeep();
            crate::telemetry::sample_runtime();
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                handle.render(),
            )
        }),
    );
    let _ = axum::serve(listener, router)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
}

/// Closes every socket with 1001, spread evenly over `period`, then waits (briefly) for
/// their sessions to end.
async fn drain_sockets(state: &AppState, period: Duration) {
    let started = std::time::Instant::now();
    let sockets = state.hub().all_sockets();
    let total = sockets.len();
    tracing::info!(
        sockets = total,
        period_ms = period.as_millis() as u64,
        "closing sockets"
    );
    // Batches at most every 20 ms, evenly across the period.
    const STEP: Duration = Duration::from_millis(20);
    let steps = (period.as_millis() / STEP.as_millis()).max(1) as usize;
    let per_batch = total.div_ceil(steps).max(1);
    let batches = total.div_ceil(per_batch).max(1) as u32;
    let close = Close {
        code: 1001,
        reason: "replica shutting down",
    };
    let mut interval = tokio::time::interval((period / batches).max(Duration::from_millis(1)));
    for batch in sockets.chunks(per_batch) {
        interval.tick().await;
        for socket in batch {
            socket.close(close);
        }
    }
    if !state.sessions().wait(SESSIONS_DEADLINE).await {
        tracing::warn!("sockets still open after the drain");
    }
    metrics::histogram!("locallife_drain_duration_seconds").record(started.elapsed().as_secs_f64());
}

/// A replica's name: the pod name where there is one (Kubernetes sets `HOSTNAME`), plus
/// a random suffix so that replicas sharing a name (tests, restarts) never collide.
fn replica_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "replica".into());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}
