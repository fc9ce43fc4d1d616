//! Service keys (SPEC §10, `migrations/V10__service_keys.sql`): the rows behind
//! `llk_<id>_<secret>`. Only the SHA-256 of a secret is stored.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreError;
use crate::domain::{Scope, UserId};

type Pool = deadpool_postgres::Pool;

/// A key as listed: never its secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    pub id: i64,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What authenticating with a key needs.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub id: i64,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub secret_sha256: Vec<u8>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
}

fn scopes_of(names: Vec<String>) -> Vec<Scope> {
    names.iter().filter_map(|s| s.parse().ok()).collect()
}

/// Stores a new key; it as listed.
pub async fn create(
    db: &Pool,
    name: &str,
    scopes: &[Scope],
    secret_sha256: &[u8],
    expires_at: Option<DateTime<Utc>>,
    created_by: Option<UserId>,
) -> Result<KeyInfo, StoreError> {
    let client = db.get().await?;
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let row = client
        .query_one(
            &format!(
                "INSERT INTO service_keys (name, scopes, secret_sha256, expires_at, created_by)
                 VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
            ),
            &[
                &name,
                &scopes,
                &secret_sha256,
                &expires_at,
                &created_by.map(|u| u.0),
            ],
        )
        .await?;
    Ok(info(&row))
}

const COLUMNS: &str = "id, name, scopes, created_at, expires_at, last_used_at, revoked_at";

fn info(r: &tokio_postgres::Row) -> KeyInfo {
    KeyInfo {
        id: r.get(0),
        name: r.get(1),
        scopes: scopes_of(r.get(2)),
        created_at: r.get(3),
        expires_at: r.get(4),
        last_used_at: r.get(5),
        revoked_at: r.get(6),
    }
}

/// Every key, newest first.
pub async fn list(db: &Pool) -> Result<Vec<KeyInfo>, StoreError> {
    let client = db.get().await?;
    Ok(client
        .query(
            &format!("SELECT {COLUMNS} FROM service_keys ORDER BY id DESC"),
            &[],
        )
        .await?
        .iter()
        .map(info)
        .collect())
}

/// One key as listed.
pub async fn get(db: &Pool, id: i64) -> Result<Option<KeyInfo>, StoreError> {
    let client = db.get().await?;
    Ok(client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM service_keys WHERE id = $1"),
            &[&id],
        )
        .await?
        .as_ref()
        .map(info))
}

/// What authenticating with key `id` needs.
pub async fn record(db: &Pool, id: i64) -> Result<Option<KeyRecord>, StoreError> {
    let client = db.get().await?;
    Ok(client
        .query_opt(
            "SELECT id, name, scopes, secret_sha256, expires_at, revoked_at IS NOT NULL
             FROM service_keys WHERE id = $1",
            &[&id],
        )
        .await?
        .map(|r| KeyRecord {
            id: r.get(0),
            name: r.get(1),
            scopes: scopes_of(r.get(2)),
            secret_sha256: r.get(3),
            expires_at: r.get(4),
            revoked: r.get(5),
        }))
}

/// Revokes key `id`; `false` when there is no such key (revoking twice is fine).
pub async fn revoke(db: &Pool, id: i64) -> Result<bool, StoreError> {
    let client = db.get().await?;
    let n = client
        .execute(
            "UPDATE service_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(n == 1)
}

/// Notes that key `id` was used now.
pub async fn touch(db: &Pool, id: i64) -> Result<(), StoreError> {
    let client = db.get().await?;
    client
        .execute(
            "UPDATE service_keys SET last_used_at = now() WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(())
}
