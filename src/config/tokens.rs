//! Access tokens (`JWT_*`, `ACCESS_TOKEN_TTL`): the HS256 key and what every token is
//! minted with and checked for.

use std::time::Duration;

use secrecy::SecretString;

use super::vars::{ConfigError, Vars};

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

/// The tokens section.
pub(super) fn read<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<JwtConfig, ConfigError> {
    let secret = vars.required("JWT_SECRET")?;
    if secret.len() < 32 {
        return Err(ConfigError::new(
            "JWT_SECRET",
            format!("must be at least 32 bytes, got {}", secret.len()),
        ));
    }
    Ok(JwtConfig {
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
    })
}
