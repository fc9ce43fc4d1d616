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
//!
//! One file per section of `docs/configuration.md`, each with its types and the one
//! function [`Config::from_lookup`] calls to read it: `database.rs` and `redis.rs`
//! (storage), `tokens.rs`, `server.rs` (listeners and logs), `websocket.rs`,
//! `business.rs` (order timing, request rates, connection limits), `wechat.rs` (login
//! and subscription messages, whose file [`templates`] reads) and `wechat_pay.rs`.
//! `vars.rs` reads and parses one variable; `settings.rs` names them all ([`SETTINGS`]).

mod business;
mod database;
mod redis;
mod server;
mod settings;
pub mod templates;
mod tokens;
mod vars;
mod websocket;
mod wechat;
mod wechat_pay;

use std::net::SocketAddr;
use std::time::Duration;

pub use business::{ConnLimits, RateConfig};
pub use database::{DatabaseConfig, PgTls};
pub use redis::RedisConfig;
pub use server::LogFormat;
pub use settings::{unknown_settings, SETTINGS};
pub use tokens::{JwtConfig, MAX_TTL};
pub use vars::{parse_duration, parse_size, ConfigError};
pub use websocket::WsConfig;
pub use wechat::{SubscribeConfig, WechatConfig};
pub use wechat_pay::WechatPayConfig;

use vars::Vars;

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
    /// `PUBLISH_MAX_IN_FLIGHT` (default 1,000): notifications this replica publishes at
    /// once through `/v1/platform/*` (a batch counts each of its items); more are refused
    /// 503 `overloaded` rather than queued (SPEC §11).
    pub publish_max_in_flight: usize,
    /// `PUBLISH_TARGET_LATENCY` (default 50 ms; `off`: none): while sends of late have
    /// held their places longer than this on average, a send is admitted only when none
    /// is in flight (SPEC §11; [`crate::limits::publishing`]).
    pub publish_target_latency: Duration,
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

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `lookup` (the environment in production, a map in tests),
    /// one section after another; the first bad setting stops the reading.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(lookup);
        let database = database::read(&vars)?;
        let redis = redis::read(&vars)?;
        let redis_key_prefix = redis::key_prefix(&vars)?;
        let jwt = tokens::read(&vars)?;
        let ws = websocket::read(&vars)?;
        let wechat = wechat::login(&vars)?;
        let subscribe = wechat::subscribe(&vars, wechat.is_some())?;
        let wechat_pay = wechat_pay::read(&vars)?;
        let log_format = server::log_format(&vars)?;
        let listeners = server::listeners(&vars)?;
        let business = business::read(&vars)?;
        Ok(Config {
            database,
            redis,
            redis_key_prefix,
            jwt,
            listen_addr: listeners.listen_addr,
            metrics_addr: listeners.metrics_addr,
            ws,
            payment_timeout: business.payment_timeout,
            rates: business.rates,
            connections: business.connections,
            publish_max_in_flight: business.publish_max_in_flight,
            publish_target_latency: business.publish_target_latency,
            orders_unpaid_max: business.orders_unpaid_max,
            rider_match_radius_m: business.rider_match_radius_m,
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

#[cfg(test)]
mod tests {
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
    fn a_multi_host_url_keeps_every_host_and_asks_for_the_one_that_takes_writes() {
        // How a replica follows a failover to a promoted standby (docs/operations.md).
        use tokio_postgres::config::{Host, TargetSessionAttrs};
        let url =
            "postgres://u:p@db1:5432,db2:5433/db?target_session_attrs=read-write&sslmode=disable";
        let pg = config(&[("DATABASE_URL", url)])
            .unwrap()
            .database
            .pg_config()
            .unwrap();
        assert_eq!(
            pg.get_hosts(),
            [Host::Tcp("db1".into()), Host::Tcp("db2".into())]
        );
        assert_eq!(pg.get_ports(), [5432, 5433]);
        assert_eq!(pg.get_target_session_attrs(), TargetSessionAttrs::ReadWrite);
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
        assert_eq!(c.publish_max_in_flight, 1000);
        assert_eq!(c.publish_target_latency, Duration::from_millis(50));
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
        assert_eq!(
            err_var(&[("PUBLISH_MAX_IN_FLIGHT", "0")]),
            "PUBLISH_MAX_IN_FLIGHT"
        );
        assert_eq!(
            err_var(&[("PUBLISH_TARGET_LATENCY", "0")]),
            "PUBLISH_TARGET_LATENCY"
        );
        let off = config(&[("PUBLISH_TARGET_LATENCY", "off")]).unwrap();
        assert_eq!(off.publish_target_latency, Duration::ZERO);
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
}
