//! The business section of the settings: how long an order may stay unpaid, request
//! rates and connection limits (SPEC §4 "Abuse limits"), how many notifications a
//! replica publishes at once (SPEC §11 "Overload"), how many unpaid orders a consumer
//! may hold, and how far away a rider is offered an order.

use std::time::Duration;

use super::vars::{ConfigError, Vars};

/// Request rate limits, per second sustained (twice that in a burst), per replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateConfig {
    /// `HTTP_RATE_USER` (default 20): per authenticated user.
    pub user: u32,
    /// `HTTP_RATE_ADDRESS` (default 1000): per client address (many users share a
    /// carrier's NAT address).
    pub address: u32,
    /// `HTTP_RATE_BACK_OFFICE` (default 1000): per user and per address on
    /// `/v1/platform/*` and the WeChat Pay webhook.
    pub back_office: u32,
    /// `HTTP_RATE_LOGIN` (default 10): anonymous logins per client address, checked
    /// before WeChat's `code2Session` is called (the app's daily WeChat quota is shared
    /// by every user).
    pub login: u32,
    /// `HTTP_FORWARDED_FOR` (default false): behind an ingress or load balancer that
    /// appends the client's address to `X-Forwarded-For`, take the client address from
    /// that header's last entry (the one the proxy wrote; earlier ones are the client's
    /// own claims) instead of the connection's peer.
    pub forwarded_for: bool,
}

/// HTTP connection limits (SPEC §4 "Abuse limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// `HTTP_HEADER_READ_TIMEOUT` (default 10 s): from the accept, or from the first byte
    /// of a later request, to the end of its headers.
    pub header_read_timeout: Duration,
    /// `HTTP_IDLE_TIMEOUT` (default 60 s): a kept-alive connection with no request
    /// running and nothing moving is closed after this long.
    pub idle_timeout: Duration,
    /// `MAX_CONNECTIONS` (default 20,000): connections held at once, WebSockets included;
    /// more are answered 503 and closed.
    pub max_connections: usize,
    /// `MAX_CONNECTIONS_PER_ADDRESS` (default 1,000): connections held at once from one
    /// client address (an IPv6 client by its /64); `None` behind a proxy
    /// (`HTTP_FORWARDED_FOR`), where every connection comes from the proxy.
    pub max_per_address: Option<usize>,
}

/// The business settings, as [`super::Config`] holds them.
pub(super) struct Business {
    pub(super) payment_timeout: Duration,
    pub(super) rates: RateConfig,
    pub(super) connections: ConnLimits,
    pub(super) publish_max_in_flight: usize,
    pub(super) publish_target_latency: Duration,
    pub(super) orders_unpaid_max: u32,
    pub(super) rider_match_radius_m: u32,
}

/// The business section.
pub(super) fn read<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Business, ConfigError> {
    Ok(Business {
        payment_timeout: vars.duration("PAYMENT_TIMEOUT", Duration::from_secs(15 * 60))?,
        rates: RateConfig {
            user: vars.number(
                "HTTP_RATE_USER",
                20,
                |n| *n >= 1,
                "a whole number, at least 1",
            )?,
            address: vars.number(
                "HTTP_RATE_ADDRESS",
                1000,
                |n| *n >= 1,
                "a whole number, at least 1",
            )?,
            back_office: vars.number(
                "HTTP_RATE_BACK_OFFICE",
                1000,
                |n| *n >= 1,
                "a whole number, at least 1",
            )?,
            login: vars.number(
                "HTTP_RATE_LOGIN",
                10,
                |n| *n >= 1,
                "a whole number, at least 1",
            )?,
            forwarded_for: vars.number("HTTP_FORWARDED_FOR", false, |_| true, "true or false")?,
        },
        connections: ConnLimits {
            header_read_timeout: vars
                .duration("HTTP_HEADER_READ_TIMEOUT", Duration::from_secs(10))?,
            idle_timeout: vars.duration("HTTP_IDLE_TIMEOUT", Duration::from_secs(60))?,
            max_connections: vars.number(
                "MAX_CONNECTIONS",
                20_000,
                |n| (1..=10_000_000).contains(n),
                "a whole number from 1 to 10000000",
            )?,
            max_per_address: Some(vars.number(
                "MAX_CONNECTIONS_PER_ADDRESS",
                1_000,
                |n| (1..=10_000_000).contains(n),
                "a whole number from 1 to 10000000",
            )?),
        },
        publish_max_in_flight: vars.number(
            "PUBLISH_MAX_IN_FLIGHT",
            1_000,
            |n| (1..=1_000_000).contains(n),
            "a whole number from 1 to 1000000",
        )?,
        publish_target_latency: if vars.or("PUBLISH_TARGET_LATENCY", "").trim() == "off" {
            Duration::ZERO
        } else {
            vars.duration("PUBLISH_TARGET_LATENCY", Duration::from_millis(50))?
        },
        orders_unpaid_max: vars.number(
            "ORDERS_UNPAID_MAX",
            3,
            |n| (1..=1000).contains(n),
            "a whole number from 1 to 1000",
        )?,
        rider_match_radius_m: vars.number(
            "RIDER_MATCH_RADIUS_M",
            3000,
            |n| (1..=100_000).contains(n),
            "metres from 1 to 100000",
        )?,
    })
}
