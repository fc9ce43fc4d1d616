//! PostgreSQL (`DATABASE_URL`, `DATABASE_POOL_SIZE`, `PGSSLROOTCERT`): all that
//! `locallife migrate` needs, and the TLS its `sslmode` asks for.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use super::vars::{ConfigError, Vars};

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

impl DatabaseConfig {
    /// Only the database settings: what `locallife migrate` reads, so a migration job
    /// needs no JWT secret.
    pub fn from_env() -> Result<Self, ConfigError> {
        read(&Vars(|k: &str| std::env::var(k).ok()))
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

/// The database section.
pub(super) fn read<F: Fn(&str) -> Option<String>>(
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
