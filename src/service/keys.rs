//! Service keys (SPEC §10): making, listing and revoking them, and knowing the key a
//! request presents. Shared by the HTTP API (`/v1/platform/keys`) and the CLI
//! (`locallife key`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::auth::keys::{self, KeyCache};
use crate::domain::{Scope, UserId};
use crate::store::keys::{KeyInfo, KeyRecord};
use crate::store::{self, StoreError};

type Pool = deadpool_postgres::Pool;

/// The longest name.
pub const MAX_NAME: usize = 100;
/// The longest lifetime a key may be given (none: it lives until revoked).
pub const MAX_LIFETIME: Duration = Duration::from_secs(5 * 365 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("name must be 1 to {MAX_NAME} characters")]
    InvalidName,
    #[error("scopes must name at least one of notify, read, admin")]
    InvalidScopes,
    #[error("the lifetime must be 1 s to 5 years")]
    InvalidLifetime,
    /// Unknown, malformed, expired or revoked: all look alike to the caller.
    #[error("not a valid service key")]
    Refused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A key just made: what is listed of it, and the whole key (shown only now).
pub struct Created {
    pub info: KeyInfo,
    pub key: String,
}

/// Makes a key named `name` with `scopes`, living `lifetime` (or until revoked).
pub async fn create(
    db: &Pool,
    name: &str,
    scopes: &[Scope],
    lifetime: Option<Duration>,
    created_by: Option<UserId>,
) -> Result<Created, KeyError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(KeyError::InvalidName);
    }
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(KeyError::InvalidScopes);
    }
    let expires_at = match lifetime {
        None => None,
        Some(d) if d >= Duration::from_secs(1) && d <= MAX_LIFETIME => Some(
            Utc::now() + chrono::Duration::from_std(d).map_err(|_| KeyError::InvalidLifetime)?,
        ),
        Some(_) => return Err(KeyError::InvalidLifetime),
    };
    let (secret, hash) = keys::new_secret();
    let info = store::keys::create(db, name, &scopes, &hash, expires_at, created_by).await?;
    let key = keys::format(info.id, &secret);
    Ok(Created { info, key })
}

/// Revokes key `id` (refused at once here, within [`keys::CACHE_FOR`] on every other
/// replica); `false` when there is no such key.
pub async fn revoke(db: &Pool, cache: &KeyCache, id: i64) -> Result<bool, KeyError> {
    let found = store::keys::revoke(db, id).await?;
    cache.forget(id);
    Ok(found)
}

/// The key `credential` presents, if it is valid now: known, its secret right, not
/// expired, not revoked. Read from the cache when it is fresh.
pub async fn authenticate(
    db: &Pool,
    cache: &KeyCache,
    credential: &str,
) -> Result<Arc<KeyRecord>, KeyError> {
    let presented = keys::parse(credential).ok_or(KeyError::Refused)?;
    let record = match cache.get(presented.id) {
        Some(record) => record,
        None => {
            let record = store::keys::record(db, presented.id).await?;
            cache.put(presented.id, record);
            cache.get(presented.id).flatten()
        }
    }
    .ok_or(KeyError::Refused)?;
    let expired = record.expires_at.is_some_and(|at| at <= Utc::now());
    if !presented.matches(&record.secret_sha256) || record.revoked || expired {
        return Err(KeyError::Refused);
    }
    if cache.due_for_touch(record.id) {
        if let Err(e) = store::keys::touch(db, record.id).await {
            tracing::debug!(error = %e, key = record.id, "key use not recorded");
        }
    }
    Ok(record)
}
