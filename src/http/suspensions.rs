//! Platform staff suspend and reinstate riders and merchants, and read who did it, when
//! and why (SPEC §4). The flows are [`crate::service::suspensions`].

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::caller::{Principal, Staff};
use super::json::ApiJson;
use super::openapi::{IdStatus, UserStatus};
use super::path::ApiPath;
use crate::domain::{Approval, Reason, Role, Scope, UserId};
use crate::error::ApiError;
use crate::service::suspensions as flows;
use crate::state::AppState;
use crate::store::suspensions::{Account, Actor, SuspensionEvent};

/// Who a change is recorded as: the member of staff, or the service key.
fn actor(staff: &Staff) -> Actor {
    match staff.principal {
        Principal::User(user) => Actor::Staff(user),
        Principal::Key { id, .. } => Actor::Key(id),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"reason": "多次超时未送达"}))]
pub struct Suspend {
    /// Why, shown to the rider or the merchant's admins on `GET /v1/me`: one line of 1
    /// to 200 characters. Optional; the whole body may be left out.
    #[serde(default)]
    reason: Option<String>,
}

/// The optional body's reason, checked.
fn reason(body: Option<ApiJson<Suspend>>) -> Result<Option<Reason>, ApiError> {
    body.and_then(|ApiJson(b)| b.reason)
        .map(|text| Reason::parse(&text))
        .transpose()
        .map_err(|e| ApiError::unprocessable("invalid_reason", e.to_string()))
}

/// 409 to an approval of a suspended account (`rider_suspended`, `merchant_suspended`):
/// approving is not the way back, so that the way back is always recorded.
pub fn approving_suspended(role: Role) -> ApiError {
    let (code, message) = match role {
        Role::Rider => (
            "rider_suspended",
            "the rider is suspended: reinstate, do not approve",
        ),
        _ => (
            "merchant_suspended",
            "the merchant is suspended: reinstate, do not approve",
        ),
    };
    ApiError::new(axum::http::StatusCode::CONFLICT, code, message)
}

/// A rider's suspension.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RiderSuspension {
    user_id: UserId,
    #[schema(example = "suspended")]
    status: Approval,
    /// The standing suspension: this one, or the earlier one a repeat found (`null`
    /// only for one made other than through the API).
    suspension: Option<SuspensionEvent>,
}

/// A merchant's suspension.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MerchantSuspension {
    id: i64,
    #[schema(example = "suspended")]
    status: Approval,
    /// As for a rider.
    suspension: Option<SuspensionEvent>,
}

/// A rider's state and history.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RiderSuspensions {
    user_id: UserId,
    status: Approval,
    /// Suspensions and reinstatements, newest first (the latest 100).
    events: Vec<SuspensionEvent>,
}

/// A merchant's state and history.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MerchantSuspensions {
    id: i64,
    status: Approval,
    /// Suspensions and reinstatements, newest first (the latest 100).
    events: Vec<SuspensionEvent>,
}

/// `POST /v1/platform/riders/{user_id}/suspend`: an approved rider is `suspended`,
/// offline and out of matching; within 5 s every socket admitted as that rider, on every
/// replica, drops the role (closes with 4003 when it had no other).
#[utoipa::path(post, path = "/platform/riders/{user_id}/suspend", tag = "platform", security(("bearer" = []), ("service_key" = ["admin"])),
    params(("user_id" = i64, Path, description = "The rider (a user id)")),
    request_body = Option<Suspend>,
    responses(
        (status = 200, description = "Suspended (or already: nothing changes, the sockets are told again). Recorded with who, when and why.", body = RiderSuspension),
        (status = 403, description = "`forbidden`: requires the platform role; `missing_scope`: a service key without `admin`", body = crate::error::Body),
        (status = 404, description = "`not_found`: no rider application", body = crate::error::Body),
        (status = 409, description = "`rider_not_approved`: only an approved rider is suspended", body = crate::error::Body),
        (status = 422, description = "`invalid_reason`, or `invalid_body`", body = crate::error::Body),
        (status = 503, description = "`engine_unavailable`: suspended, but the sockets could not be told (they are at the next re-check; repeating the request tells them)", body = crate::error::Body),
    ))]
#[tracing::instrument(skip_all, fields(rider = user))]
pub async fn suspend_rider(
    State(state): State<AppState>,
    staff: Staff,
    ApiPath(user): ApiPath<i64>,
    body: Option<ApiJson<Suspend>>,
) -> Result<Json<RiderSuspension>, ApiError> {
    staff.require(Scope::Admin)?;
    let reason = reason(body)?;
    let account = Account::Rider(UserId(user));
    let suspension = flows::suspend(&state, account, actor(&staff), reason.as_ref()).await?;
    Ok(Json(RiderSuspension {
        user_id: UserId(user),
        status: Approval::Suspended,
        suspension,
    }))
}

/// `POST /v1/platform/merchants/{id}/suspend`: an approved merchant is `suspended` (no
/// orders); each of its admins who administers no other approved merchant loses the
/// merchant role on their sockets the same way.
#[utoipa::path(post, path = "/platform/merchants/{id}/suspend", tag = "platform", security(("bearer" = []), ("service_key" = ["admin"])),
    params(("id" = i64, Path, description = "The merchant")),
    request_body = Option<Suspend>,
    responses(
        (status = 200, description = "Suspended (or already: nothing changes, the sockets are told again). Recorded with who, when and why.", body = MerchantSuspension),
        (status = 403, description = "`forbidden`: requires the platform role; `missing_scope`: a service key without `admin`", body = crate::error::Body),
        (status = 409, description = "`merchant_not_approved`: only an approved merchant is suspended", body = crate::error::Body),
        (status = 422, description = "`invalid_reason`, or `invalid_body`", body = crate::error::Body),
        (status = 503, description = "`engine_unavailable`: suspended, but the sockets could not be told (they are at the next re-check; repeating the request tells them)", body = crate::error::Body),
    ))]
#[tracing::instrument(skip_all, fields(merchant = id))]
pub async fn suspend_merchant(
    State(state): State<AppState>,
    staff: Staff,
    ApiPath(id): ApiPath<i64>,
    body: Option<ApiJson<Suspend>>,
) -> Result<Json<MerchantSuspension>, ApiError> {
    staff.require(Scope::Admin)?;
    let reason = reason(body)?;
    let account = Account::Merchant(id);
    let suspension = flows::suspend(&state, account, actor(&staff), reason.as_ref()).await?;
    Ok(Json(MerchantSuspension {
        id,
        status: Approval::Suspended,
        suspension,
    }))
}

/// `POST /v1/platform/riders/{user_id}/reinstate`: a suspended rider is `approved`
/// again (and offline until they go online), recorded with who and when.
#[utoipa::path(post, path = "/platform/riders/{user_id}/reinstate", tag = "platform", security(("bearer" = []), ("service_key" = ["admin"])),
    params(("user_id" = i64, Path, description = "The rider (a user id)")),
    responses(
        (status = 200, description = "Approved again (or already approved: nothing changes)", body = UserStatus),
        (status = 403, description = "`forbidden`: requires the platform role; `missing_scope`: a service key without `admin`", body = crate::error::Body),
        (status = 404, description = "`not_found`: no rider application", body = crate::error::Body),
        (status = 409, description = "`rider_not_suspended`: a pending or rejected application is approved, not reinstated", body = crate::error::Body),
    ))]
#[tracing::instrument(skip_all, fields(rider = user))]
pub async fn reinstate_rider(
    State(state): State<AppState>,
    staff: Staff,
    ApiPath(user): ApiPath<i64>,
) -> Result<Json<UserStatus>, ApiError> {
    staff.require(Scope::Admin)?;
    flows::reinstate(&state, Account::Rider(UserId(user)), actor(&staff)).await?;
    Ok(Json(UserStatus {
        user_id: UserId(user),
        status: "approved",
    }))
}

/// `POST /v1/platform/merchants/{id}/reinstate`: a suspended merchant is `approved`
/// again, recorded with who and when.
#[utoipa::path(post, path = "/platform/merchants/{id}/reinstate", tag = "platform", security(("bearer" = []), ("service_key" = ["admin"])),
    params(("id" = i64, Path, description = "The merchant")),
    responses(
        (status = 200, description = "Approved again (or already approved: nothing changes)", body = IdStatus),
        (status = 403, description = "`forbidden`: requires the platform role; `missing_scope`: a service key without `admin`", body = crate::error::Body),
        (status = 409, description = "`merchant_not_suspended`: a pending or rejected merchant is approved, not reinstated", body = crate::error::Body),
    ))]
#[tracing::instrument(skip_all, fields(merchant = id))]
pub async fn reinstate_merchant(
    State(state): State<AppState>,
    staff: Staff,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<IdStatus>, ApiError> {
    staff.require(Scope::Admin)?;
    flows::reinstate(&state, Account::Merchant(id), actor(&staff)).await?;
    Ok(Json(IdStatus {
        id,
        status: "approved",
    }))
}

/// `GET /v1/platform/riders/{user_id}/suspensions`: the rider's state, and every
/// suspension and reinstatement with who, when and why.
#[utoipa::path(get, path = "/platform/riders/{user_id}/suspensions", tag = "platform", security(("bearer" = []), ("service_key" = ["read"])),
    params(("user_id" = i64, Path, description = "The rider (a user id)")),
    responses(
        (status = 200, description = "The state and the history, newest first", body = RiderSuspensions),
        (status = 403, description = "`forbidden`: requires the platform role; `missing_scope`: a service key without `read`", body = crate::error::Body),
        (status = 404, description = "`not_found`: no rider application", body = crate::error::Body),
    ))]
pub async fn rider_suspensions(
    State(state): State<AppState>,
    staff: Staff,
    ApiPath(user): ApiPath<i64>,
) -> Result<Json<RiderSuspensions>, ApiError> {
    staff.require(Scope::Read)?;
    let (status, events) = flows::history(&state, Account::Rider(UserId(user))).await?;
    Ok(Json(RiderSuspensions {
        user_id: UserId(user),
        status,
        events,
    }))
}

/// `GET /v1/platform/merchants/{id}/suspensions`: the merchant's state, and every
/// suspension and reinstatement with who, when and why.
#[utoipa::path(get, path = "/platform/merchants/{id}/suspensions", tag = "platform", security(("bearer" = []), ("service_key" = ["read"])),
    params(("id" = i64, Path, description = "The merchant")),
    responses(
        (status = 200, description = "The state and the history, newest first", body = MerchantSuspensions),
        (status = 403, description = "`forbidden`: requires the platform role; `missing_scope`: a service key without `read`", body = crate::error::Body),
    ))]
pub async fn merchant_suspensions(
    State(state): State<AppState>,
    staff: Staff,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<MerchantSuspensions>, ApiError> {
    staff.require(Scope::Read)?;
    let (status, events) = flows::history(&state, Account::Merchant(id)).await?;
    Ok(Json(MerchantSuspensions { id, status, events }))
}
