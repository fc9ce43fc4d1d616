//! Redis (`REDIS_*`): where the engine connects, how a write counts as durable, and the
//! prefix of every key and channel.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::vars::{ConfigError, Vars};

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

/// `REDIS_URL` and its settings: `None` without it (the single-node in-process engine).
pub(super) fn read<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<Option<RedisConfig>, ConfigError> {
    let Some(v) = vars.get("REDIS_URL") else {
        return Ok(None);
    };
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
    Ok(Some(RedisConfig {
        url: SecretString::from(v.trim().to_owned()),
        ca_file,
        min_replicas_ack,
        wait_timeout: vars.duration("REDIS_WAIT_TIMEOUT", Duration::from_secs(1))?,
    }))
}

/// `REDIS_KEY_PREFIX` (default `ll`), read with or without Redis.
pub(super) fn key_prefix<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<String, ConfigError> {
    let prefix = vars.or("REDIS_KEY_PREFIX", "ll");
    if !prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err(ConfigError::new(
            "REDIS_KEY_PREFIX",
            "may only hold letters, digits and - _ . :",
        ));
    }
    Ok(prefix)
}
