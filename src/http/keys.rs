//! `/v1/platform/keys`: service keys for back-office services (SPEC §10), made, listed
//! and revoked by staff or by a key with the `admin` scope.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::caller::Staff;
use super::json::ApiJson;
use super::path::ApiPath;
use crate::domain::Scope;
use crate::error::ApiError;
use crate::service::keys as flows;
use crate::state::AppState;
use crate::store::keys::KeyInfo;

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"name": "order-system", "scopes": ["notify", "read"], "expires_in_s": 7776000}))]
pub struct NewKey {
    /// What the key is for, 1 to 100 characters; shown in receipts as `sent_by.name`.
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    /// `notify`, `read` and/or `admin`.
    #[schema(min_items = 1, max_items = 3)]
    scopes: Vec<Scope>,
    /// Seconds until it expires (at most 5 years); absent: until revoked.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 157680000)]
    expires_in_s: Option<u64>,
}

/// A key just made: the whole key is in `key`, shown only in this answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    id: i64,
    name: String,
    scopes: Vec<Scope>,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `llk_<id>_<secret>`: keep it secret; it cannot be shown again.
    key: String,
}

/// Makes a service key.
#[utoipa::path(post, path = "/platform/keys", operation_id = "create_key", tag = "keys",
    security(("bearer" = []), ("service_key" = ["admin"])),
    request_body = NewKey,
    responses(
        (status = 201, description = "Made; the key is shown only now", body = CreatedKey),
        (status = 403, description = "`forbidden`: requires the platform role; `missing_scope`: a service key without `admin`", body = crate::error::Body),
        (status = 422, description = "`invalid_name`, `invalid_scopes` or `invalid_expires_in`", body = crate::error::Body),
    ))]
pub async fn create(
    State(state): State<AppState>,
    staff: Staff,
    ApiJson(body): ApiJson<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    staff.require(Scope::Admin)?;
    let lifetime = body.expires_in_s.map(std::time::Duration::from_secs);
    let made = flows::create(state.db(), &body.name, &body.scopes, lifetime, staff.user()).await?;
    tracing::info!(key = made.info.id, "service key made");
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            id: made.info.id,
            name: made.info.name,
            scopes: made.info.scopes,
            expires_at: made.info.expires_at,
            key: made.key,
        }),
    ))
}

/// Every service key, newest first: never a secret.
#[utoipa::path(get, path = "/platform/keys", operation_id = "list_keys", tag = "keys",
    security(("bearer" = []), ("service_key" = ["admin"])),
    responses(
        (status = 200, description = "Every key, newest first", body = Vec<KeyInfo>),
        (status = 403, description = "`forbidden`: requires the platform role; `missing_scope`: a service key without `admin`", body = crate::error::Body),
    ))]
pub async fn list(
    State(state): State<AppState>,
    staff: Staff,
) -> Result<Json<Vec<KeyInfo>>, ApiError> {
    staff.require(Scope::Admin)?;
    Ok(Json(crate::store::keys::list(state.db()).await?))
}

/// Revokes a service key: refused on every replica within 5 s.
#[utoipa::path(delete, path = "/platform/keys/{id}", operation_id = "revoke_key", tag = "keys",
    security(("bearer" = []), ("service_key" = ["admin"])),
    params(("id" = i64, Path, description = "The key's id (the number in `llk_<id>_…`)")),
    responses(
        (status = 204, description = "Revoked (again, if it was already)"),
        (status = 403, description = "`forbidden`: requires the platform role; `missing_scope`: a service key without `admin`", body = crate::error::Body),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    staff: Staff,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    staff.require(Scope::Admin)?;
    if !flows::revoke(state.db(), state.key_cache(), id).await? {
        return Err(ApiError::not_found());
    }
    tracing::info!(key = id, "service key revoked");
    Ok(StatusCode::NO_CONTENT)
}
