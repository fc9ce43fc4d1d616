//! [`AppState`]: what every handler, session and business flow shares.
//!
//! It sits below every layer that uses it and imports only downward (configuration,
//! pools, the hub, clients, tasks), so `http`, `ws` and `service` depend on it and it on
//! none of them; [`crate::app`] builds it and runs the replica.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use deadpool_postgres::Pool;

use crate::auth::Tokens;
use crate::config::Config;
use crate::engine::Engine;
use crate::hub::Hub;
use crate::notify::alerts::Alerts;
use crate::notify::receipts::Receipts;
use crate::tasks::Tasks;
use crate::wechat::login::WechatLogin;
use crate::wechat::pay::{NotifyVerifier, Payer};

/// Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// Everything an [`AppState`] is made of, built by the application.
pub struct Parts {
    pub config: Config,
    pub db: Pool,
    pub hub: Arc<Hub>,
    pub tokens: Tokens,
    pub wechat: Option<WechatLogin>,
    pub payer: Option<Payer>,
    pub pay_verifier: Option<NotifyVerifier>,
    pub alerts: Alerts,
    pub receipts: Receipts,
    pub admissions: crate::store::admissions::Admissions,
    pub tasks: Tasks,
    pub sessions: Tasks,
}

struct Inner {
    parts: Parts,
    limits: crate::limits::Limits,
    key_cache: crate::auth::keys::KeyCache,
    known_users: crate::store::users::KnownUsers,
    draining: AtomicBool,
    /// Admission of notifications published through `/v1/platform/*`
    /// (`PUBLISH_MAX_IN_FLIGHT`, `PUBLISH_TARGET_LATENCY_MS`): a send takes its places
    /// before anything is written, or is refused (SPEC §11, overload).
    publishing: crate::limits::publishing::Publishing,
    /// Wakes this replica's outbox relay after a commit here.
    relay: tokio::sync::Notify,
}

impl AppState {
    pub fn new(parts: Parts) -> Self {
        Self(Arc::new(Inner {
            limits: crate::limits::Limits::new(&parts.config.rates),
            key_cache: Default::default(),
            known_users: Default::default(),
            publishing: crate::limits::publishing::Publishing::new(
                parts.config.publish_max_in_flight,
                parts.config.publish_target_latency,
            ),
            parts,
            draining: AtomicBool::new(false),
            relay: tokio::sync::Notify::new(),
        }))
    }

    /// Users seen to exist (never deleted): publishing asks PostgreSQL only about others.
    pub fn known_users(&self) -> &crate::store::users::KnownUsers {
        &self.0.known_users
    }

    /// Request rate limits (per address, per user).
    pub fn limits(&self) -> &crate::limits::Limits {
        &self.0.limits
    }

    /// What this replica last read of the service keys it was shown.
    pub fn key_cache(&self) -> &crate::auth::keys::KeyCache {
        &self.0.key_cache
    }

    pub fn config(&self) -> &Config {
        &self.0.parts.config
    }

    pub fn db(&self) -> &Pool {
        &self.0.parts.db
    }

    /// This replica's sockets.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.0.parts.hub
    }

    /// The engine that moves events between replicas.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        self.0.parts.hub.engine()
    }

    pub fn tokens(&self) -> &Tokens {
        &self.0.parts.tokens
    }

    pub fn wechat(&self) -> Option<&WechatLogin> {
        self.0.parts.wechat.as_ref()
    }

    /// JSAPI prepay, when merchant credentials are configured.
    pub fn payer(&self) -> Option<&Payer> {
        self.0.parts.payer.as_ref()
    }

    /// Payment-notification verification, when its settings are configured.
    pub fn pay_verifier(&self) -> Option<&NotifyVerifier> {
        self.0.parts.pay_verifier.as_ref()
    }

    pub fn alerts(&self) -> &Alerts {
        &self.0.parts.alerts
    }

    /// Where delivery and ack marks go (written in batches).
    pub fn receipts(&self) -> &Receipts {
        &self.0.parts.receipts
    }

    /// Where sockets' admissions are read (in rounds: a storm of connects is a few
    /// queries, not one each).
    pub fn admissions(&self) -> &crate::store::admissions::Admissions {
        &self.0.parts.admissions
    }

    /// The replica's background tasks: everything spawned goes through here.
    pub fn tasks(&self) -> &Tasks {
        &self.0.parts.tasks
    }

    /// The socket sessions, tracked apart so that a drain can wait for them before the
    /// background tasks stop.
    pub fn sessions(&self) -> &Tasks {
        &self.0.parts.sessions
    }

    /// The places of notifications being published on this replica.
    pub fn publishing(&self) -> &crate::limits::publishing::Publishing {
        &self.0.publishing
    }

    /// Tells the outbox relay that rows were committed: it runs now rather than at its
    /// next poll.
    pub fn wake_relay(&self) {
        self.0.relay.notify_one();
    }

    /// What the relay waits on.
    pub fn relay_wakeup(&self) -> &tokio::sync::Notify {
        &self.0.relay
    }

    /// True once shutdown has begun: `/readyz` answers 503 so the load balancer stops
    /// sending new work here.
    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.0.draining.store(true, Ordering::Relaxed);
    }
}
