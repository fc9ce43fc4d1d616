//! Request rate limits (SPEC §4, abuse limits): per client address and per user,
//! checked before any database work, answered 429 with `Retry-After`. Back-office
//! routes (`/v1/platform/*`, the WeChat Pay webhook) have their own, generous quota:
//! back-office services publish from few addresses and few users. The WebSocket
//! upgrade counts here too (a refused upgrade must cost nothing but this check); the
//! address quota is generous enough for a reconnect storm from users behind one
//! carrier NAT, and the per-user connect limit is checked before the database too.
//!
//! Limits are per replica (a client spread over N replicas gets up to N times the
//! quota); each key's state is a few bytes, and keys idle for a while are dropped.
//!
//! The axum middleware that applies them, and their 429, are [`crate::http::limits`].
//!
//! The logouts this replica has read live here too, and with them [`Limits::check_token`],
//! the one check of an access token and its revocation. The admission of platform sends
//! under overload is [`publishing`].

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::Request;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::auth::jwt::{Claims, Tokens};
use crate::config::RateConfig;
use crate::domain::{TokenEpoch, UserId};

pub mod publishing;

/// Every this many checks, keys that have refilled are forgotten.
const SWEEP_EVERY: u64 = 10_000;

/// Users whose revocation (their token epoch) this replica remembers; past this many
/// the memory starts over (a forgotten one costs one database read to learn again).
const REVOKED_USERS: usize = 100_000;

/// What a user's request quota is kept per: the token (its user and when it was
/// minted). A refused, stolen or logged-out token spends only its own quota, never that
/// of its user's other tokens; a user gets new tokens only by signing in, which has a
/// budget of its own per address.
type TokenKey = (i64, u64);

pub struct Limits {
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    by_user: DefaultKeyedRateLimiter<TokenKey>,
    back_office_by_address: DefaultKeyedRateLimiter<IpAddr>,
    back_office_by_user: DefaultKeyedRateLimiter<TokenKey>,
    /// Service keys (SPEC §10), each its own quota: the back-office one.
    by_key: DefaultKeyedRateLimiter<i64>,
    /// Anonymous logins per address, before WeChat is called.
    login_by_address: DefaultKeyedRateLimiter<IpAddr>,
    /// Socket upgrades per user on this replica, before the database is asked: the
    /// engine's connect limit (across replicas) is checked only after admission.
    connect_by_user: DefaultKeyedRateLimiter<TokenKey>,
    /// Per user, which tokens their logouts refused, as last read: a replayed
    /// logged-out token is refused here, costing neither a database read nor its user's
    /// quota. A reading only ever lags the database, so it never refuses a good token.
    revoked: std::sync::Mutex<std::collections::HashMap<i64, TokenEpoch>>,
    checks: AtomicU64,
    forwarded_for: bool,
}

/// The engine's connect limit as a local quota: its whole window's attempts in a burst,
/// refilled evenly over the window.
fn connect_quota() -> Quota {
    let limit = NonZeroU32::new(crate::engine::CONNECT_LIMIT).unwrap_or(NonZeroU32::MIN);
    let period =
        std::time::Duration::from_millis(crate::engine::CONNECT_WINDOW_MS / u64::from(limit.get()));
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(limit))
        .allow_burst(limit)
}

/// `per_second` sustained, twice that in a burst.
fn quota(per_second: u32) -> Quota {
    let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(per_second.max(1).saturating_mul(2)).unwrap_or(rate);
    Quota::per_second(rate).allow_burst(burst)
}

impl Limits {
    pub fn new(rates: &RateConfig) -> Self {
        Self {
            by_address: RateLimiter::keyed(quota(rates.address)),
            by_user: RateLimiter::keyed(quota(rates.user)),
            back_office_by_address: RateLimiter::keyed(quota(rates.back_office)),
            back_office_by_user: RateLimiter::keyed(quota(rates.back_office)),
            by_key: RateLimiter::keyed(quota(rates.back_office)),
            login_by_address: RateLimiter::keyed(quota(rates.login)),
            connect_by_user: RateLimiter::keyed(connect_quota()),
            revoked: Default::default(),
            checks: AtomicU64::new(0),
            forwarded_for: rates.forwarded_for,
        }
    }

    /// The client's address: the connection's peer, or with `HTTP_FORWARDED_FOR` the
    /// right-most `X-Forwarded-For` entry (the one the trusted proxy wrote; earlier ones
    /// are the client's own claims). A right-most entry that does not parse (`unknown`,
    /// garbage) means the peer, never the entry before it. Keyed by [`address_key`].
    pub fn client_address(&self, request: &Request, peer: Option<IpAddr>) -> Option<IpAddr> {
        let forwarded = if self.forwarded_for {
            forwarded_for(request.headers())
        } else {
            None
        };
        forwarded.or(peer).map(address_key)
    }

    fn sweep(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.by_address.retain_recent();
            self.by_user.retain_recent();
            self.back_office_by_address.retain_recent();
            self.back_office_by_user.retain_recent();
            self.login_by_address.retain_recent();
            self.by_key.retain_recent();
            self.connect_by_user.retain_recent();
        }
    }

    /// `Err(seconds to wait)` when service key `id` is over its quota (checked before the
    /// key is looked up).
    pub fn check_key(&self, id: i64) -> Result<(), u64> {
        self.sweep();
        check(&self.by_key, &id)
    }

    /// `Err(seconds to wait)` when `address` has signed in too often: checked before
    /// WeChat's `code2Session`, whose quota the whole app shares.
    pub fn check_login(&self, address: IpAddr) -> Result<(), u64> {
        self.sweep();
        check(&self.login_by_address, &address)
    }

    /// `Err(seconds to wait)` when this token of `user` has opened sockets too often on this
    /// replica (the engine's limit, [`crate::engine::CONNECT_LIMIT`] per window, checked
    /// before the database; the engine checks it again across replicas).
    pub fn check_connect(&self, user: UserId, claims: &Claims) -> Result<(), u64> {
        self.sweep();
        check(&self.connect_by_user, &(user.0, claims.issued_ms()))
    }

    /// The one check of a user's access token, wherever one is presented (an HTTP
    /// caller, a socket's admission, a socket's in-band `auth`): the signature and
    /// expiry; then a logout this replica remembers, before anything else; then `gate`
    /// (the caller's own rule, still before any database work: its quota, or the
    /// socket's user); then `load` reads what the caller needs, with the user's token
    /// epoch, which refuses a token issued before their last logout (and is
    /// remembered). A refused token, or a user `load` finds gone, is `refused()`.
    pub async fn check_token<T, E, Fut>(
        &self,
        tokens: &Tokens,
        token: &str,
        refused: fn() -> E,
        gate: impl FnOnce(UserId, &Claims) -> Result<(), E>,
        load: impl FnOnce(UserId) -> Fut,
    ) -> Result<(UserId, Claims, T), E>
    where
        Fut: std::future::Future<Output = Result<Option<(T, TokenEpoch)>, E>>,
    {
        let (user, claims) = tokens.verify(token).map_err(|_| refused())?;
        // A token known to be logged out is refused before it can spend its user's
        // quota (a stolen, logged-out token cannot lock its owner out) or cost a query.
        if self.known_revoked(user, &claims) {
            return Err(refused());
        }
        gate(user, &claims)?;
        let (loaded, epoch) = load(user).await?.ok_or_else(refused)?;
        if claims.revoked_by(&epoch) {
            self.remember_revoked(user, epoch);
            return Err(refused());
        }
        Ok((user, claims, loaded))
    }

    /// Whether `claims` is known to be refused for `user`: by a logout this replica
    /// has read already.
    pub fn known_revoked(&self, user: UserId, claims: &Claims) -> bool {
        let revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        revoked
            .get(&user.0)
            .is_some_and(|tokens| claims.revoked_by(tokens))
    }

    /// Remembers where `user`'s tokens stand after a logout (the later of this and what
    /// was remembered).
    pub fn remember_revoked(&self, user: UserId, tokens: TokenEpoch) {
        let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        if revoked.len() >= REVOKED_USERS && !revoked.contains_key(&user.0) {
            revoked.clear();
        }
        let at = revoked.entry(user.0).or_default();
        *at = at.max(tokens);
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

    /// `Err(seconds to wait)` when the token of `user` with `claims` is over its quota.
    pub fn check_user(&self, user: UserId, claims: &Claims, back_office: bool) -> Result<(), u64> {
        let limiter = if back_office {
            &self.back_office_by_user
        } else {
            &self.by_user
        };
        check(limiter, &(user.0, claims.issued_ms()))
    }
}

/// The right-most entry of the `X-Forwarded-For` headers (the last header's last
/// entry), if it is an address: IPv4 or IPv6, with a port or not (`1.2.3.4:80`,
/// `[2001:db8::1]:80`).
pub fn forwarded_for(headers: &axum::http::HeaderMap) -> Option<IpAddr> {
    let last = headers.get_all("x-forwarded-for").iter().next_back()?;
    let entry = last.to_str().ok()?.rsplit(',').next()?.trim();
    parse_address(entry)
}

/// An address as proxies write it: bare, `v4:port`, `[v6]` or `[v6]:port`.
fn parse_address(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = entry.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .and_then(|e| e.parse::<std::net::Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

/// What a client address is counted as: an IPv4 address itself, an IPv6 address by its
/// /64 (one subscriber's prefix: a client that rotates through its addresses is still
/// one client). An IPv4-mapped IPv6 address counts as its IPv4 address.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(prefix))
            }
        },
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_right_most_forwarded_entry_counts_with_or_without_a_port() {
        let at = |v: &[&str]| forwarded_for(&headers(v));
        let proxy: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(at(&["6.7.0.1, 203.0.113.7"]), Some(proxy));
        assert_eq!(at(&["6.7.0.1, 203.0.113.7:51234"]), Some(proxy));
        assert_eq!(at(&["6.7.0.1", "203.0.113.7"]), Some(proxy));
        assert_eq!(
            at(&["[2001:db8::1]:443"]),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            at(&["1.1.1.1, 2001:db8::1"]),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(at(&["[2001:db8::2]"]), Some("2001:db8::2".parse().unwrap()));
    }

    #[test]
    fn an_unparsable_right_most_entry_never_falls_back_to_the_clients_claims() {
        let at = |v: &[&str]| forwarded_for(&headers(v));
        assert_eq!(at(&["6.7.0.1, unknown"]), None);
        assert_eq!(at(&["6.7.0.1, "]), None);
        assert_eq!(at(&["6.7.0.1, 203.0.113.7:x"]), None);
        assert_eq!(at(&[]), None);
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(address_key(v4), v4);
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(mapped), v4);
    }
}
