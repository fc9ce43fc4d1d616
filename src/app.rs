//! Building and running one replica.
//!
//! [`Application::build`] does everything that can fail at start-up (migrations, pools,
//! binding the listener) so that [`Application::run_until_stopped`] only serves. Tests
//! build with `LISTEN_ADDR` port 0 and read the port back.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::Pool;
use tokio::net::TcpListener;

use crate::auth::Tokens;
use crate::config::Config;
use crate::engine::memory::MemoryEngine;
use crate::engine::redis::RedisEngine;
use crate::engine::{Engine, Keys};
use crate::hub::{Close, Hub, HubConfig};
use crate::service::alerts::{self, Alerts};
use crate::wechat::pay::{NotifyVerifier, Payer};
use crate::wechat::WechatLogin;
use crate::{http, store};

/// What every handler shares. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Config,
    db: Pool,
    hub: Arc<Hub>,
    tokens: Tokens,
    wechat: Option<WechatLogin>,
    payer: Option<Payer>,
    pay_verifier: Option<NotifyVerifier>,
    alerts: Alerts,
    /// Stops the background tasks (sweeper, dependency watcher, alerts).
    background: tokio_util::sync::CancellationToken,
    draining: AtomicBool,
}

impl AppState {
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    pub fn db(&self) -> &Pool {
        &self.0.db
    }

    /// This replica's sockets, and through it the engine.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.0.hub
    }

    pub fn tokens(&self) -> &Tokens {
        &self.0.tokens
    }

    pub fn wechat(&self) -> Option<&WechatLogin> {
        self.0.wechat.as_ref()
    }

    /// JSAPI prepay, when merchant credentials are configured.
    pub fn payer(&self) -> Option<&Payer> {
        self.0.payer.as_ref()
    }

    /// Payment-notification verification, when its settings are configured.
    pub fn pay_verifier(&self) -> Option<&NotifyVerifier> {
        self.0.pay_verifier.as_ref()
    }

    pub fn alerts(&self) -> &Alerts {
        &self.0.alerts
    }

    /// True once shutdown has begun: `/readyz` answers 503 so the load balancer stops
    /// sending new work here.
    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.0.draining.store(true, Ordering::Relaxed);
    }

    fn start_background(&self) {
        let cancel = self.0.background.clone();
        let alerts = self.alerts().clone();
        alerts::supervise(
            &alerts,
            "payment_timeout_sweeper",
            crate::service::sweeper::run(self.clone(), cancel.clone()),
        );
        alerts::supervise(
            &alerts,
            "dependency_watcher",
            alerts::watch_dependencies(
                self.db().clone(),
                self.hub().engine().clone(),
                alerts.clone(),
                Duration::from_secs(1),
                cancel,
            ),
        );
    }
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
        let engine: Arc<dyn Engine> = match &config.redis_url {
            Some(url) => {
                let keys = Keys::new(&config.redis_key_prefix);
                Arc::new(RedisEngine::connect(url, keys).await?)
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
        // The geo index follows who is online in PostgreSQL (it is empty after a
        // single-node restart, or a Redis without persistence).
        for (rider, lat, lng) in store::riders::online_positions(&db)
            .await
            .unwrap_or_default()
        {
            let _ = hub.engine().geo_set(rider, lat, lng).await;
        }
        let background = tokio_util::sync::CancellationToken::new();
        let (alerts, _alerts_task) = Alerts::start(
            db.clone(),
            hub.engine().clone(),
            hub.replica_id().clone(),
            background.clone(),
        );
        if wechat.is_none() {
            tracing::warn!(
                "WECHAT_APPID and WECHAT_SECRET not set: /v1/auth/wechat-login answers 503"
            );
        }
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .with_context(|| format!("cannot listen on LISTEN_ADDR {}", config.listen_addr))?;
        let local_addr = listener.local_addr()?;
        let metrics_listener = TcpListener::bind(config.metrics_addr)
            .await
            .with_context(|| format!("cannot listen on METRICS_ADDR {}", config.metrics_addr))?;
        let metrics_addr = metrics_listener.local_addr()?;
        let state = AppState(Arc::new(Inner {
            tokens: Tokens::new(&config.jwt),
            config,
            db,
            hub,
            wechat,
            payer,
            pay_verifier,
            alerts,
            background,
            draining: AtomicBool::new(false),
        }));
        state.start_background();
        tokio::spawn(serve_metrics(metrics_listener, state.0.background.clone()));
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
    /// finish, and returns. Unacked notifications stay in the inboxes.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let drain_period = state.config().ws.drain_period;
        let router = http::router(self.state);
        let stopping = tokio_util::sync::CancellationToken::new();
        let drain_state = state.clone();
        let signalled = stopping.clone();
        let serve = axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            drain_state.start_draining();
            tracing::info!("draining: not ready, no new connections");
            signalled.cancel();
        });
        let mut serve = tokio::spawn(async move { serve.await });
        let drain = tokio::spawn({
            let state = state.clone();
            let stopping = stopping.clone();
            async move {
                stopping.cancelled().await;
                drain_sockets(&state, drain_period).await;
            }
        });
        // In-flight requests get the drain period and a little more; past it the
        // replica exits anyway so Kubernetes' own kill never has to.
        let grace = drain_period + Duration::from_secs(5);
        let served = tokio::select! {
            res = &mut serve => res.context("server task failed")?.context("server failed"),
            _ = async {
                stopping.cancelled().await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!("in-flight requests still open after the grace period");
                serve.abort();
                Ok(())
            }
        };
        let _ = tokio::time::timeout(grace, drain).await;
        state.0.background.cancel();
        let hub = state.hub().clone();
        hub.shutdown().await;
        hub.engine().shutdown().await;
        state.db().close();
        served
    }
}

/// Serves Prometheus' text exposition on `METRICS_ADDR` until the replica stops.
async fn serve_metrics(listener: TcpListener, stop: tokio_util::sync::CancellationToken) {
    let handle = crate::telemetry::metrics();
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move {
            handle.run_upkeep();
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
    let hub = state.hub();
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while !hub.all_sockets().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
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
