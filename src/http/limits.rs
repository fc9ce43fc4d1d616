//! Request rate limits (SPEC §4, abuse limits): per client address and per user,
//! checked before any database work, answered 429 with `Retry-After`. Back-office
//! routes (`/v1/platform/*`, the WeChat Pay webhook) have their own, generous quota:
//! back-office services publish from few addresses and few users. The WebSocket
//! endpoint is not limited here: it has its own per-user connect limit (in the engine,
//! across replicas), and a reconnect storm from users behind one carrier NAT must pass.
//!
//! Limits are per replica (a client spread over N replicas gets up to N times the
//! quota); each key's state is a few bytes, and keys idle for a while are dropped.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateConfig;
use crate::domain::UserId;
use crate::error::ApiError;
use crate::state::AppState;

/// Every this many checks, keys that have refilled are forgotten.
const SWEEP_EVERY: u64 = 10_000;

pub struct Limits {
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    by_user: DefaultKeyedRateLimiter<i64>,
    back_office_by_address: DefaultKeyedRateLimiter<IpAddr>,
    back_office_by_user: DefaultKeyedRateLimiter<i64>,
    checks: AtomicU64,
    forwarded_for: bool,
}

/// `per_second` sustained, twice that in a burst.
fn quota(per_second: u32) -> Quota {
    let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(per_second.max(1).saturating_mul(2)).unwrap_or(rate);
    Quota::per_second(rate).allow_burst(burst)
}

/// Whether `path` (the full one, `/v1/...`) is a back-office route.
pub fn back_office(path: &str) -> bool {
    path.starts_with("/v1/platform/") || path.starts_with("/v1/webhooks/")
}

/// The request's full path: inside the `/v1` router the URI has lost its prefix, the
/// original is kept in an extension.
pub fn full_path<'a>(extensions: &'a axum::http::Extensions, uri: &'a axum::http::Uri) -> &'a str {
    extensions
        .get::<axum::extract::OriginalUri>()
        .map_or(uri.path(), |original| original.0.path())
}

impl Limits {
    pub fn new(rates: &RateConfig) -> Self {
        Self {
            by_address: RateLimiter::keyed(quota(rates.address)),
            by_user: RateLimiter::keyed(quota(rates.user)),
            back_office_by_address: RateLimiter::keyed(quota(rates.back_office)),
            back_office_by_user: RateLimiter::keyed(quota(rates.back_office)),
            checks: AtomicU64::new(0),
            forwarded_for: rates.forwarded_for,
        }
    }

    /// The client's address: the connection's peer, or with `HTTP_FORWARDED_FOR` the
    /// last `X-Forwarded-For` entry (written by the trusted proxy).
    pub fn client_address(&self, request: &Request, peer: Option<IpAddr>) -> Option<IpAddr> {
        if self.forwarded_for {
            let forwarded = request
                .headers()
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|a| a.trim().parse::<IpAddr>().ok())
                .next_back();
            if forwarded.is_some() {
                return forwarded;
            }
        }
        peer
    }

    fn sweep(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.by_address.retain_recent();
            self.by_user.retain_recent();
            self.back_office_by_address.retain_recent();
            self.back_office_by_user.retain_recent();
        }
    }

    /// `Err(seconds to wait)` when `address` is over its quota.
    pub fn check_address(&self, address: IpAddr, back_office: bool) -> Result<(), u64> {
        self.sweep();
        let limiter = if back_office {
            &self.back_office_by_address
        } else {
            &self.by_address
        };
        check(limiter, &address)
    }

    /// `Err(seconds to wait)` when `user` is over its quota.
    pub fn check_user(&self, user: UserId, back_office: bool) -> Result<(), u64> {
        let limiter = if back_office {
            &self.back_office_by_user
        } else {
            &self.by_user
        };
        check(limiter, &user.0)
    }
}

/// One request of `key`: `Err(whole seconds to wait)` when over the quota.
fn check<K: Clone + Eq + std::hash::Hash>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), u64> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
    })
}

/// The 429 answer.
pub fn too_many(retry_after_s: u64, by: &str) -> ApiError {
    metrics::counter!("locallife_rate_limited_total", "kind" => by.to_owned()).increment(1);
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many requests; wait and try again",
    )
    .retry_after(retry_after_s.max(1))
}

/// The per-address limit, as a middleware in front of every `/v1` route but the socket
/// (the operations routes outside `/v1` are not limited).
pub async fn by_address(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = full_path(request.extensions(), request.uri());
    if path.starts_with("/v1/") && path != "/v1/ws" {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip());
        if let Some(address) = state.limits().client_address(&request, peer) {
            if let Err(wait) = state.limits().check_address(address, back_office(path)) {
                return too_many(wait, "address").into_response();
            }
        }
    }
    next.run(request).await
}
