//! Configuration: every setting of SPEC §5, read once from the environment into a typed,
//! validated struct.
//!
//! Why one struct read at start-up: a replica that starts must be able to serve. A
//! missing or malformed setting stops start-up with one line that names the variable
//! (see [`ConfigError`]), instead of failing on the first request that needs it.
//!
//! Secrets (`JWT_SECRET`, `WECHAT_SECRET`, `WECHATPAY_APIV3_KEY`, and the two URLs, which
//! may embed passwords) are [`SecretString`]s: their `Debug` prints `[REDACTED]`, so not
//! even a `{:?}` of the whole config can leak them.

pub mod templates;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// A setting that is missing or invalid. `Display` is the one line printed at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

impl ConfigError {
    fn new(var: &'static str, reason: impl Into<String>) -> Self {
        Self {
            var,
            reason: reason.into(),
        }
    }
}

/// Where each log line goes and how it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// PostgreSQL settings: all that `locallife migrate` needs.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `DATABASE_URL` without its `sslmode` and `sslrootcert` (read into `tls`): may
    /// hold a password, hence secret.
    pub url: SecretString,
    /// `DATABASE_POOL_SIZE`: connections per replica (default 16).
    pub pool_size: usize,
    /// From `sslmode` in `DATABASE_URL`.
    pub tls: PgTls,
}

/// How a replica talks to PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgTls {
    /// `sslmode` absent, `disable`, `allow` or `prefer`: plain TCP, for a private
    /// network (no unverified "opportunistic" TLS).
    Plain,
    /// `sslmode=require`, `verify-ca` or `verify-full`: TLS, the server's certificate
    /// verified, host name included, against `root_cert` (`sslrootcert` in the URL, or
    /// `PGSSLROOTCERT`) or else the system's and the built-in roots. Never plain.
    Verified { root_cert: Option<PathBuf> },
}

/// Splits `sslmode` and `sslrootcert` off a connection string (URL or `key=value`
/// form), which the driver does not understand in full; the rest is kept as written.
fn split_tls_params(url: &str) -> (String, Option<String>, Option<String>) {
    let mut mode = None;
    let mut root = None;
    let mut take = |key: &str, value: &str| match key {
        "sslmode" => {
            mode = Some(value.to_owned());
            true
        }
        "sslrootcert" => {
            root = Some(value.to_owned());
            true
        }
        _ => false,
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        let v = url::form_urlencoded::parse(format!("v={v}").as_bytes())
                            .next()
                            .map(|(_, v)| v.into_owned())
                            .unwrap_or_default();
                        !take(k, &v)
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        url.split_whitespace()
            .filter(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                !take(k, v.trim_matches('\''))
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    (rest, mode, root)
}

/// The longest lifetime a token may be minted with (`ACCESS_TOKEN_TTL`, `token --ttl`).
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// JWT access-token settings.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// `JWT_SECRET`: HS256 key, at least 32 bytes.
    pub secret: SecretString,
    /// `JWT_ISSUER` (default `locallife`).
    pub issuer: String,
    /// `JWT_AUDIENCE` (default `locallife`).
    pub audience: String,
    /// `ACCESS_TOKEN_TTL` (default 2h).
    pub access_token_ttl: Duration,
}

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

/// WebSocket tuning (SPEC §2.2, §3).
#[derive(Debug, Clone)]
pub struct WsConfig {
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub ack_timeout: Duration,
    pub max_redeliveries: u32,
    pub max_frame: usize,
    pub max_sockets_per_user: usize,
    pub drain_period: Duration,
    /// `WS_ADMISSION_RECHECK` (default 60 s): how often open sockets' admission is read
    /// again from the database, so a change made by any means takes effect.
    pub admission_recheck: Duration,
}

/// WeChat mini-program login (`code2Session`).
#[derive(Debug, Clone)]
pub struct WechatConfig {
    pub appid: String,
    pub secret: SecretString,
    pub api_base: url::Url,
}

/// WeChat Pay API v3. Every field is optional on its own; the parts that need a set of
/// them check for the whole set where they are built.
#[derive(Debug, Clone)]
pub struct WechatPayConfig {
    pub mchid: Option<String>,
    pub apiv3_key: Option<SecretString>,
    pub public_key_file: Option<PathBuf>,
    pub public_key_id: Option<String>,
    pub merchant_private_key_file: Option<PathBuf>,
    pub merchant_serial: Option<String>,
    pub api_base: url::Url,
    pub notify_url: Option<url::Url>,
}

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `REDIS_URL`: `redis://` plain, `rediss://` TLS (never plain); `redis-sentinel://`
    /// (or `rediss-sentinel://`) the primary a set of Sentinels names.
    pub url: SecretString,
    /// `REDIS_CA_FILE`: PEM certificates to verify a `rediss://` server against, instead of
    /// the system's roots (and the roots built into the binary).
    pub ca_file: Option<PathBuf>,
    /// `REDIS_MIN_REPLICAS_ACK` (default 0): an inbox write counts as done only once this
    /// many Redis replicas confirm it (`WAIT`).
    pub min_replicas_ack: u32,
    /// `REDIS_WAIT_TIMEOUT` (default 1 s): how long `WAIT` may take before the write is
    /// refused (503).
    pub wait_timeout: Duration,
}

impl RedisConfig {
    /// Whether the URL asks for TLS.
    pub fn tls(&self) -> bool {
        use secrecy::ExposeSecret;
        self.url.expose_secret().trim_start().starts_with("rediss")
    }
}

/// The whole configuration of a replica.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    /// `REDIS_URL` and its settings: absent means the single-node in-process engine.
    pub redis: Option<RedisConfig>,
    /// `REDIS_KEY_PREFIX` (default `ll`): every key and channel starts with it.
    pub redis_key_prefix: String,
    pub jwt: JwtConfig,
    pub listen_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub ws: WsConfig,
    pub payment_timeout: Duration,
    /// `HTTP_RATE_*`: request rate limits.
    pub rates: RateConfig,
    /// `HTTP_HEADER_READ_TIMEOUT`, `HTTP_IDLE_TIMEOUT`, `MAX_CONNECTIONS`.
    pub connections: ConnLimits,
    /// `ORDERS_UNPAID_MAX` (default 3): unpaid orders one consumer may hold at once.
    pub orders_unpaid_max: u32,
    pub rider_match_radius_m: u32,
    /// `WECHAT_APPID` + `WECHAT_SECRET`: both or neither. Without them login answers 503.
    pub wechat: Option<WechatConfig>,
    /// `WECHAT_SUBSCRIBE_FILE` and `PUSH_FALLBACK_AFTER`: the subscription-message
    /// fallback (SPEC §9); `None` without the file.
    pub subscribe: Option<SubscribeConfig>,
    pub wechat_pay: WechatPayConfig,
    pub log_format: LogFormat,
}

/// The subscription-message fallback.
#[derive(Debug, Clone)]
pub struct SubscribeConfig {
    /// Read from `WECHAT_SUBSCRIBE_FILE` and checked at start-up.
    pub templates: templates::Templates,
    /// `PUSH_FALLBACK_AFTER` (default 30 s): how long a notification stays neither
    /// delivered nor acked before it falls back.
    pub fallback_after: Duration,
}

const DEFAULT_WECHAT_API_BASE: &str = "https://api.weixin.qq.com";
const DEFAULT_WECHATPAY_API_BASE: &str = "https://api.mch.weixin.qq.com";

/// Every environment variable the service reads: the names `locallife config check`
/// knows, and (by a test in `tests/api/docs.rs`) exactly the names this file reads and
/// the rows of `docs/configuration.md`.
pub const SETTINGS: &[&str] = &[
    "ACCESS_TOKEN_TTL",
    "DATABASE_POOL_SIZE",
    "DATABASE_URL",
    "HOSTNAME",
    "HTTP_FORWARDED_FOR",
    "HTTP_HEADER_READ_TIMEOUT",
    "HTTP_IDLE_TIMEOUT",
    "HTTP_RATE_ADDRESS",
    "HTTP_RATE_BACK_OFFICE",
    "HTTP_RATE_LOGIN",
    "HTTP_RATE_USER",
    "JWT_AUDIENCE",
    "JWT_ISSUER",
    "JWT_SECRET",
    "LISTEN_ADDR",
    "LOG_FORMAT",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_ADDRESS",
    "METRICS_ADDR",
    "ORDERS_UNPAID_MAX",
    "PAYMENT_TIMEOUT",
    "PGSSLROOTCERT",
    "PUSH_FALLBACK_AFTER",
    "REDIS_CA_FILE",
    "REDIS_KEY_PREFIX",
    "REDIS_MIN_REPLICAS_ACK",
    "REDIS_URL",
    "REDIS_WAIT_TIMEOUT",
    "RIDER_MATCH_RADIUS_M",
    "RUST_LOG",
    "WECHATPAY_APIV3_KEY",
    "WECHATPAY_API_BASE",
    "WECHATPAY_MCHID",
    "WECHATPAY_MERCHANT_PRIVATE_KEY_FILE",
    "WECHATPAY_MERCHANT_SERIAL",
    "WECHATPAY_NOTIFY_URL",
    "WECHATPAY_PUBLIC_KEY_FILE",
    "WECHATPAY_PUBLIC_KEY_ID",
    "WECHAT_API_BASE",
    "WECHAT_APPID",
    "WECHAT_SECRET",
    "WECHAT_SUBSCRIBE_FILE",
    "WS_ACK_TIMEOUT",
    "WS_ADMISSION_RECHECK",
    "WS_DRAIN_PERIOD",
    "WS_IDLE_TIMEOUT",
    "WS_MAX_FRAME",
    "WS_MAX_REDELIVERIES",
    "WS_MAX_SOCKETS_PER_USER",
    "WS_PING_INTERVAL",
];

/// Variables of the environment that look like settings of this service (they begin
/// like one: `WS_`, `HTTP_`, `REDIS_`, …) but are none: a typo such as `WS_INTERVALL`
/// would otherwise be ignored without a word. Sorted.
pub fn unknown_settings(names: impl IntoIterator<Item = String>) -> Vec<String> {
    // `RUST_*` belongs to the toolchain (`RUST_BACKTRACE`), `HTTP_PROXY` to every HTTP
    // client: neither is ours to judge.
    const OTHERS: &[&str] = &["HTTP_PROXY", "HTTP_PROXY_REQUEST_FULLURI"];
    let prefixes: std::collections::BTreeSet<&str> = SETTINGS
        .iter()
        .filter_map(|s| s.split_once('_').map(|(head, _)| head))
        .filter(|head| *head != "RUST")
        .collect();
    let mut unknown: Vec<String> = names
        .into_iter()
        .filter(|name| {
            name.split_once('_')
                .is_some_and(|(head, _)| prefixes.contains(head))
                && !SETTINGS.contains(&name.as_str())
                && !OTHERS.contains(&name.as_str())
        })
        .collect();
    unknown.sort();
    unknown
}

/// Reads settings through a lookup function, so tests need not touch the process
/// environment (which is shared between test threads).
struct Vars<F>(F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    /// The value, or `None` when unset or blank.
    fn get(&self, var: &'static str) -> Option<String> {
        (self.0)(var).filter(|v| !v.trim().is_empty())
    }

    fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.get(var)
            .ok_or_else(|| ConfigError::new(var, "is required"))
    }

    fn or(&self, var: &'static str, default: &str) -> String {
        self.get(var).unwrap_or_else(|| default.to_owned())
    }

    fn duration(&self, var: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => parse_duration(&v).map_err(|reason| ConfigError::new(var, reason)),
        }
    }

    fn number<T: std::str::FromStr>(
        &self,
        var: &'static str,
        default: T,
        valid: impl Fn(&T) -> bool,
        expect: &str,
    ) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<T>()
                .ok()
                .filter(|n| valid(n))
                .ok_or_else(|| ConfigError::new(var, format!("expected {expect}, got {v:?}"))),
        }
    }

    fn addr(&self, var: &'static str, default: &str) -> Result<SocketAddr, ConfigError> {
        let v = self.or(var, default);
        v.trim().parse().map_err(|_| {
            ConfigError::new(
                var,
                format!("expected host:port like 0.0.0.0:8080, got {v:?}"),
            )
        })
    }

    fn url(&self, var: &'static str, default: &str) -> Result<url::Url, ConfigError> {
        parse_http_url(&self.or(var, default)).map_err(|reason| ConfigError::new(var, reason))
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `lookup` (the environment in production, a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(lookup);
        let database = database_from(&vars)?;

        let redis = match vars.get("REDIS_URL") {
            None => None,
            Some(v) => {
                let parsed = url::Url::parse(v.trim())
                    .map_err(|e| ConfigError::new("REDIS_URL", format!("not a URL: {e}")))?;
                if !matches!(
                    parsed.scheme(),
                    "redis"
                        | "rediss"
                        | "redis-sentinel"
                        | "rediss-sentinel"
                        | "redis-cluster"
                        | "rediss-cluster"
                ) {
                    return Err(ConfigError::new(
                        "REDIS_URL",
                        "must start with redis://, rediss://, redis-sentinel://, \
                         rediss-sentinel://, redis-cluster:// or rediss-cluster://",
                    ));
                }
                if parsed.scheme().ends_with("-sentinel")
                    && !parsed
                        .query_pairs()
                        .any(|(k, v)| k == "sentinelServiceName" && !v.is_empty())
                {
                    return Err(ConfigError::new(
                        "REDIS_URL",
                        "a redis-sentinel:// URL needs ?sentinelServiceName=NAME",
                    ));
                }
                let ca_file = vars.get("REDIS_CA_FILE").map(PathBuf::from);
                if ca_file.is_some() && !parsed.scheme().starts_with("rediss") {
                    return Err(ConfigError::new(
                        "REDIS_CA_FILE",
                        "is set but REDIS_URL is not rediss:// (TLS)",
                    ));
                }
                let min_replicas_ack = vars.number(
                    "REDIS_MIN_REPLICAS_ACK",
                    0,
                    |n| *n <= 16,
                    "a whole number from 0 to 16",
                )?;
                Some(RedisConfig {
                    url: SecretString::from(v.trim().to_owned()),
                    ca_file,
                    min_replicas_ack,
                    wait_timeout: vars.duration("REDIS_WAIT_TIMEOUT", Duration::from_secs(1))?,
                })
            }
        };
        let redis_key_prefix = vars.or("REDIS_KEY_PREFIX", "ll");
        if !redis_key_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            return Err(ConfigError::new(
                "REDIS_KEY_PREFIX",
                "may only hold letters, digits and - _ . :",
            ));
        }

        let secret = vars.required("JWT_SECRET")?;
        if secret.len() < 32 {
            return Err(ConfigError::new(
                "JWT_SECRET",
                format!("must be at least 32 bytes, got {}", secret.len()),
            ));
        }
        let jwt = JwtConfig {
            secret: SecretString::from(secret),
            issuer: vars.or("JWT_ISSUER", "locallife"),
            audience: vars.or("JWT_AUDIENCE", "locallife"),
            access_token_ttl: {
                let ttl = vars.duration("ACCESS_TOKEN_TTL", Duration::from_secs(2 * 3600))?;
                if ttl > MAX_TTL || ttl < Duration::from_secs(60) {
                    return Err(ConfigError::new(
                        "ACCESS_TOKEN_TTL",
                        "must be from 1m to 24h",
                    ));
                }
                ttl
            },
        };

        let ws = WsConfig {
            ping_interval: vars.duration("WS_PING_INTERVAL", Duration::from_secs(54))?,
            idle_timeout: vars.duration("WS_IDLE_TIMEOUT", Duration::from_secs(60))?,
            ack_timeout: vars.duration("WS_ACK_TIMEOUT", Duration::from_secs(10))?,
            max_redeliveries: vars.number("WS_MAX_REDELIVERIES", 5, |_| true, "a whole number")?,
            max_frame: match vars.get("WS_MAX_FRAME") {
                None => 4096,
                Some(v) => parse_size(&v)
                    .filter(|n| (128..=16 * 1024 * 1024).contains(n))
                    .ok_or_else(|| {
                        ConfigError::new(
                            "WS_MAX_FRAME",
                            format!(
                                "expected a size from 128 B to 16 MiB like 4096 or 4KiB, got {v:?}"
                            ),
                        )
                    })?,
            },
            max_sockets_per_user: vars.number(
                "WS_MAX_SOCKETS_PER_USER",
                5,
                |n| *n >= 1,
                "a whole number of at least 1",
            )?,
            drain_period: vars.duration("WS_DRAIN_PERIOD", Duration::from_secs(10))?,
            admission_recheck: vars.duration("WS_ADMISSION_RECHECK", Duration::from_secs(60))?,
        };
        if ws.idle_timeout <= ws.ping_interval {
            return Err(ConfigError::new(
                "WS_IDLE_TIMEOUT",
                "must be longer than WS_PING_INTERVAL, or answered pings could not keep a socket alive",
            ));
        }

        let wechat = match (vars.get("WECHAT_APPID"), vars.get("WECHAT_SECRET")) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "WECHAT_SECRET",
                    "is required when WECHAT_APPID is set",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "WECHAT_APPID",
                    "is required when WECHAT_SECRET is set",
                ))
            }
            (Some(appid), Some(secret)) => Some(WechatConfig {
                appid,
                secret: SecretString::from(secret),
                api_base: vars.url("WECHAT_API_BASE", DEFAULT_WECHAT_API_BASE)?,
            }),
        };

        let subscribe = match vars.get("WECHAT_SUBSCRIBE_FILE") {
            None => None,
            Some(path) => {
                if wechat.is_none() {
                    return Err(ConfigError::new(
                        "WECHAT_SUBSCRIBE_FILE",
                        "needs WECHAT_APPID and WECHAT_SECRET (the sends use the mini-program's access token)",
                    ));
                }
                let templates = templates::Templates::load(Path::new(&path))
                    .map_err(|why| ConfigError::new("WECHAT_SUBSCRIBE_FILE", why))?;
                let fallback_after =
                    vars.duration("PUSH_FALLBACK_AFTER", Duration::from_secs(30))?;
                if fallback_after < Duration::from_secs(1) {
                    return Err(ConfigError::new(
                        "PUSH_FALLBACK_AFTER",
                        "must be at least 1s",
                    ));
                }
                Some(SubscribeConfig {
                    templates,
                    fallback_after,
                })
            }
        };

        let apiv3_key = vars.get("WECHATPAY_APIV3_KEY");
        if let Some(key) = &apiv3_key {
            if key.len() != 32 {
                return Err(ConfigError::new(
                    "WECHATPAY_APIV3_KEY",
                    format!("must be exactly 32 bytes, got {}", key.len()),
                ));
            }
        }
        let wechat_pay = WechatPayConfig {
            mchid: vars.get("WECHATPAY_MCHID"),
            apiv3_key: apiv3_key.map(SecretString::from),
            public_key_file: vars.get("WECHATPAY_PUBLIC_KEY_FILE").map(PathBuf::from),
            public_key_id: vars.get("WECHATPAY_PUBLIC_KEY_ID"),
            merchant_private_key_file: vars
                .get("WECHATPAY_MERCHANT_PRIVATE_KEY_FILE")
                .map(PathBuf::from),
            merchant_serial: vars.get("WECHATPAY_MERCHANT_SERIAL"),
            api_base: vars.url("WECHATPAY_API_BASE", DEFAULT_WECHATPAY_API_BASE)?,
            notify_url: match vars.get("WECHATPAY_NOTIFY_URL") {
                None => None,
                Some(v) => Some(
                    parse_http_url(&v)
                        .map_err(|reason| ConfigError::new("WECHATPAY_NOTIFY_URL", reason))?,
                ),
            },
        };

        let log_format = match vars.or("LOG_FORMAT", "pretty").trim() {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("expected json or pretty, got {other:?}"),
                ))
            }
        };

        Ok(Config {
            database,
            redis,
            redis_key_prefix,
            jwt,
            listen_addr: vars.addr("LISTEN_ADDR", "0.0.0.0:8080")?,
            metrics_addr: vars.addr("METRICS_ADDR", "0.0.0.0:9090")?,
            ws,
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
                forwarded_for: vars.number(
                    "HTTP_FORWARDED_FOR",
                    false,
                    |_| true,
                    "true or false",
                )?,
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
            wechat,
            subscribe,
            wechat_pay,
            log_format,
        }
        .behind_proxy_rules())
    }

    /// Behind a proxy every connection comes from the proxy's address: the per-address
    /// connection cap would cap the proxy, so it is off (the proxy's own limits and the
    /// per-address request rate, keyed by `X-Forwarded-For`, protect the replica).
    fn behind_proxy_rules(mut self) -> Self {
        if self.rates.forwarded_for {
            self.connections.max_per_address = None;
        }
        self
    }
}

impl DatabaseConfig {
    /// Only the database settings: what `locallife migrate` reads, so a migration job
    /// needs no JWT secret.
    pub fn from_env() -> Result<Self, ConfigError> {
        database_from(&Vars(|k: &str| std::env::var(k).ok()))
    }

    /// The parsed connection settings.
    pub fn pg_config(&self) -> Result<tokio_postgres::Config, ConfigError> {
        let mut config: tokio_postgres::Config = self
            .url
            .expose_secret()
            .parse()
            .map_err(|_| ConfigError::new("DATABASE_URL", "not a valid PostgreSQL URL"))?;
        config.ssl_mode(match self.tls {
            PgTls::Plain => tokio_postgres::config::SslMode::Disable,
            PgTls::Verified { .. } => tokio_postgres::config::SslMode::Require,
        });
        Ok(config)
    }
}

fn database_from<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<DatabaseConfig, ConfigError> {
    let (url, sslmode, sslrootcert) = split_tls_params(vars.required("DATABASE_URL")?.trim());
    let tls = match sslmode.as_deref() {
        None | Some("disable" | "allow" | "prefer") => PgTls::Plain,
        Some("require" | "verify-ca" | "verify-full") => PgTls::Verified {
            root_cert: sslrootcert
                .or_else(|| vars.get("PGSSLROOTCERT"))
                .map(PathBuf::from),
        },
        Some(other) => {
            return Err(ConfigError::new(
                "DATABASE_URL",
                format!(
                    "sslmode must be disable, allow, prefer, require, verify-ca or verify-full, got {other:?}"
                ),
            ))
        }
    };
    let config = DatabaseConfig {
        url: SecretString::from(url),
        tls,
        pool_size: vars.number(
            "DATABASE_POOL_SIZE",
            16,
            |n| (1..=1000).contains(n),
            "a whole number from 1 to 1000",
        )?,
    };
    // Parse now so a typo stops start-up rather than the first query. The error names
    // the variable but never echoes the URL: it may hold a password.
    config.pg_config()?;
    Ok(config)
}

/// Parses `54s`, `15m`, `500ms`, `1h 30m`; zero is refused (no setting here means "never").
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|_| format!("expected a duration like 54s, 15m or 500ms, got {s:?}"))?;
    if d.is_zero() {
        return Err(format!("must be longer than zero, got {s:?}"));
    }
    Ok(d)
}

/// Parses a byte size: `4096`, `4KiB`, `4K`, `4KB` (1000), `1MiB`, `1M`, `1MB`.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits.parse().ok()?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1024,
        "KB" => 1000,
        "M" | "MiB" => 1024 * 1024,
        "MB" => 1_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn parse_http_url(s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s.trim()).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return Err(format!("expected an http(s) URL, got {s:?}"));
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lookalike_variables_are_unknown_settings() {
        let names = [
            "WS_INTERVALL",
            "WS_PING_INTERVAL",
            "REDIS_URI",
            "RUST_BACKTRACE",
            "HTTP_PROXY",
            "PATH",
            "JWT_SECRETS",
        ]
        .map(String::from);
        assert_eq!(
            super::unknown_settings(names),
            vec!["JWT_SECRETS", "REDIS_URI", "WS_INTERVALL"]
        );
    }

    use super::*;
    use std::collections::HashMap;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut map: HashMap<String, String> = HashMap::from([
            (
                "DATABASE_URL".into(),
                "postgres://u:hunter2@localhost/db".into(),
            ),
            ("JWT_SECRET".into(), SECRET.into()),
        ]);
        for (k, v) in pairs {
            map.insert((*k).into(), (*v).into());
        }
        Config::from_lookup(|k| map.get(k).cloned())
    }

    fn err_var(pairs: &[(&str, &str)]) -> &'static str {
        config(pairs).expect_err("should be refused").var
    }

    #[test]
    fn sslmode_chooses_verified_tls_or_plain_and_never_reaches_the_driver() {
        use secrecy::ExposeSecret;
        let db = |url: &str, extra: &[(&str, &str)]| {
            let mut pairs = vec![("DATABASE_URL", url)];
            pairs.extend_from_slice(extra);
            config(&pairs).map(|c| c.database)
        };
        let plain = db(
            "postgres://u:p%40ss@h:5/db?sslmode=prefer&application_name=x",
            &[],
        )
        .unwrap();
        assert_eq!(plain.tls, PgTls::Plain);
        assert_eq!(
            plain.url.expose_secret(),
            "postgres://u:p%40ss@h:5/db?application_name=x"
        );
        assert_eq!(
            plain.pg_config().unwrap().get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
        for mode in ["require", "verify-ca", "verify-full"] {
            let tls = db(&format!("postgres://h/db?sslmode={mode}"), &[]).unwrap();
            assert_eq!(tls.tls, PgTls::Verified { root_cert: None }, "{mode}");
            assert_eq!(tls.url.expose_secret(), "postgres://h/db");
            assert_eq!(
                tls.pg_config().unwrap().get_ssl_mode(),
                tokio_postgres::config::SslMode::Require
            );
        }
        let rooted = db(
            "postgresql://h/db?sslrootcert=%2Fetc%2Fca.pem&sslmode=verify-full",
            &[("PGSSLROOTCERT", "/other.pem")],
        )
        .unwrap();
        assert_eq!(
            rooted.tls,
            PgTls::Verified {
                root_cert: Some("/etc/ca.pem".into())
            }
        );
        let from_env = db(
            "host=h dbname=db sslmode=require",
            &[("PGSSLROOTCERT", "/ca.pem")],
        )
        .unwrap();
        assert_eq!(
            from_env.tls,
            PgTls::Verified {
                root_cert: Some("/ca.pem".into())
            }
        );
        assert_eq!(from_env.url.expose_secret(), "host=h dbname=db");
        assert_eq!(
            db("postgres://h/db?sslmode=sometimes", &[])
                .unwrap_err()
                .var,
            "DATABASE_URL"
        );
    }

    #[test]
    fn token_lifetimes_and_the_unpaid_cap_are_bounded() {
        for bad in ["48h", "25h", "30s"] {
            assert_eq!(
                err_var(&[("ACCESS_TOKEN_TTL", bad)]),
                "ACCESS_TOKEN_TTL",
                "{bad}"
            );
        }
        assert!(config(&[("ACCESS_TOKEN_TTL", "24h")]).is_ok());
        assert_eq!(config(&[]).unwrap().orders_unpaid_max, 3);
        assert_eq!(err_var(&[("ORDERS_UNPAID_MAX", "0")]), "ORDERS_UNPAID_MAX");
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = config(&[]).unwrap();
        assert!(c.redis.is_none());
        assert_eq!(c.redis_key_prefix, "ll");
        assert_eq!(c.listen_addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.metrics_addr, "0.0.0.0:9090".parse().unwrap());
        assert_eq!(c.ws.ping_interval, Duration::from_secs(54));
        assert_eq!(c.ws.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.ws.ack_timeout, Duration::from_secs(10));
        assert_eq!(c.ws.max_redeliveries, 5);
        assert_eq!(c.ws.max_frame, 4096);
        assert_eq!(c.ws.max_sockets_per_user, 5);
        assert_eq!(c.ws.drain_period, Duration::from_secs(10));
        assert_eq!(c.payment_timeout, Duration::from_secs(900));
        assert_eq!(c.rider_match_radius_m, 3000);
        assert!(c.wechat.is_none());
        assert_eq!(c.log_format, LogFormat::Pretty);
        assert_eq!(c.jwt.issuer, "locallife");
    }

    #[test]
    fn durations_take_units() {
        let c = config(&[
            ("WS_PING_INTERVAL", "500ms"),
            ("WS_IDLE_TIMEOUT", "2s"),
            ("PAYMENT_TIMEOUT", "15m"),
            ("ACCESS_TOKEN_TTL", "1h 30m"),
        ])
        .unwrap();
        assert_eq!(c.ws.ping_interval, Duration::from_millis(500));
        assert_eq!(c.ws.idle_timeout, Duration::from_secs(2));
        assert_eq!(c.payment_timeout, Duration::from_secs(900));
        assert_eq!(c.jwt.access_token_ttl, Duration::from_secs(5400));
    }

    #[test]
    fn each_bad_setting_is_named() {
        assert_eq!(err_var(&[("WS_PING_INTERVAL", "54")]), "WS_PING_INTERVAL");
        assert_eq!(err_var(&[("WS_ACK_TIMEOUT", "0s")]), "WS_ACK_TIMEOUT");
        assert_eq!(err_var(&[("PAYMENT_TIMEOUT", "soon")]), "PAYMENT_TIMEOUT");
        assert_eq!(err_var(&[("WS_IDLE_TIMEOUT", "10s")]), "WS_IDLE_TIMEOUT");
        assert_eq!(err_var(&[("LISTEN_ADDR", "8080")]), "LISTEN_ADDR");
        assert_eq!(err_var(&[("METRICS_ADDR", "x:y")]), "METRICS_ADDR");
        assert_eq!(err_var(&[("WS_MAX_FRAME", "4 parsecs")]), "WS_MAX_FRAME");
        assert_eq!(err_var(&[("WS_MAX_FRAME", "1")]), "WS_MAX_FRAME");
        assert_eq!(
            err_var(&[("WS_MAX_SOCKETS_PER_USER", "0")]),
            "WS_MAX_SOCKETS_PER_USER"
        );
        assert_eq!(
            err_var(&[("WS_MAX_REDELIVERIES", "-1")]),
            "WS_MAX_REDELIVERIES"
        );
        assert_eq!(
            err_var(&[("RIDER_MATCH_RADIUS_M", "0")]),
            "RIDER_MATCH_RADIUS_M"
        );
        assert_eq!(err_var(&[("LOG_FORMAT", "xml")]), "LOG_FORMAT");
        assert_eq!(err_var(&[("REDIS_URL", "http://x")]), "REDIS_URL");
        assert_eq!(
            err_var(&[("REDIS_URL", "redis-sentinel://s1:26379?node=s2:26379")]),
            "REDIS_URL"
        );
        let sentinel = config(&[(
            "REDIS_URL",
            "redis-sentinel://s1:26379?node=s2:26379&sentinelServiceName=main",
        )])
        .unwrap();
        assert!(sentinel.redis.is_some_and(|r| !r.tls()));
        let durable_cluster = config(&[
            ("REDIS_URL", "redis-cluster://n1:7000?node=n2:7000"),
            ("REDIS_MIN_REPLICAS_ACK", "1"),
        ])
        .unwrap();
        assert!(durable_cluster
            .redis
            .is_some_and(|r| r.min_replicas_ack == 1));
        // A CA file with a plaintext URL would be silently unused.
        assert_eq!(
            err_var(&[("REDIS_URL", "redis://x"), ("REDIS_CA_FILE", "/ca.pem")]),
            "REDIS_CA_FILE"
        );
        for bad in ["-1", "x", "17"] {
            assert_eq!(
                err_var(&[("REDIS_URL", "redis://x"), ("REDIS_MIN_REPLICAS_ACK", bad)]),
                "REDIS_MIN_REPLICAS_ACK"
            );
        }
        assert_eq!(err_var(&[("REDIS_KEY_PREFIX", "a b")]), "REDIS_KEY_PREFIX");
        assert_eq!(err_var(&[("WECHAT_APPID", "wx1")]), "WECHAT_SECRET");
        assert_eq!(err_var(&[("WECHAT_SECRET", "s")]), "WECHAT_APPID");
        assert_eq!(
            err_var(&[
                ("WECHAT_APPID", "a"),
                ("WECHAT_SECRET", "s"),
                ("WECHAT_API_BASE", "ftp://x")
            ]),
            "WECHAT_API_BASE"
        );
        assert_eq!(
            err_var(&[("WECHATPAY_APIV3_KEY", "short")]),
            "WECHATPAY_APIV3_KEY"
        );
        assert_eq!(
            err_var(&[("DATABASE_URL", "not a url at all ::")]),
            "DATABASE_URL"
        );
        assert_eq!(
            err_var(&[("DATABASE_POOL_SIZE", "0")]),
            "DATABASE_POOL_SIZE"
        );
    }

    #[test]
    fn jwt_secret_is_required_and_long_enough() {
        let map: HashMap<&str, &str> = HashMap::from([("DATABASE_URL", "postgres://localhost/db")]);
        let err = Config::from_lookup(|k| map.get(k).map(|v| v.to_string())).unwrap_err();
        assert_eq!(err.var, "JWT_SECRET");
        assert_eq!(
            err.to_string(),
            "invalid configuration: JWT_SECRET: is required"
        );
        let err = config(&[("JWT_SECRET", "31-bytes-long-secret-0123456789")]).unwrap_err();
        assert_eq!(err.var, "JWT_SECRET");
        assert!(err.to_string().contains("at least 32 bytes"), "{err}");
    }

    #[test]
    fn database_url_is_required() {
        let map: HashMap<&str, &str> = HashMap::from([("JWT_SECRET", SECRET)]);
        let err = Config::from_lookup(|k| map.get(k).map(|v| v.to_string())).unwrap_err();
        assert_eq!(err.var, "DATABASE_URL");
        // A blank value is as good as none.
        assert_eq!(err_var(&[("DATABASE_URL", "  ")]), "DATABASE_URL");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = config(&[
            ("REDIS_URL", "redis://:redispass@localhost:6379"),
            ("WECHAT_APPID", "wxappid"),
            ("WECHAT_SECRET", "wechat-secret-value"),
            ("WECHATPAY_APIV3_KEY", "abcdefghijklmnopqrstuvwxyz012345"),
        ])
        .unwrap();
        let dump = format!("{c:?}");
        for secret in [
            SECRET,
            "hunter2",
            "redispass",
            "wechat-secret-value",
            "abcdefghijklmnopqrstuvwxyz012345",
        ] {
            assert!(!dump.contains(secret), "Debug leaked {secret}: {dump}");
        }
        assert!(dump.contains("wxappid"), "non-secret fields stay visible");
    }

    #[test]
    fn error_lines_never_echo_secret_values() {
        let err = config(&[("DATABASE_URL", "postgres://u:hunter2@host:notaport/db")]).unwrap_err();
        assert_eq!(err.var, "DATABASE_URL");
        assert!(!err.to_string().contains("hunter2"));
        let err = config(&[("JWT_SECRET", "short-secret")]).unwrap_err();
        assert!(!err.to_string().contains("short-secret"));
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("4KiB"), Some(4096));
        assert_eq!(parse_size("4K"), Some(4096));
        assert_eq!(parse_size("4KB"), Some(4000));
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("4 KiB"), Some(4096));
        assert_eq!(parse_size("KiB"), None);
        assert_eq!(parse_size("-4"), None);
        assert_eq!(parse_size("4GiB"), None);
    }
}
