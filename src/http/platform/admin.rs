//! Approving applications: a rider may then go online and be offered orders, a
//! merchant take orders.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::domain::{Role, Scope, UserId};
use crate::error::ApiError;
use crate::http::caller::Staff;
use crate::http::openapi::{IdStatus, UserStatus};
use crate::http::path::ApiPath;
use crate::http::suspensions;
use crate::state::AppState;
use crate::store;
use crate::store::suspensions::Approve;

/// Approves a rider's application: they may go online and be offered orders.
#[utoipa::path(post, path = "/platform/riders/{user_id}/approve", tag = "platform", security(("bearer" = []), ("service_key" = ["admin"])),
    params(("user_id" = i64, Path, description = "The rider (a user id)")),
    responses(
        (status = 200, description = "Approves a rider application.", body = UserStatus),
        (status = 403, description = "`forbidden`: requires the platform role; `missing_scope`: a service key without `admin`", body = crate::error::Body),
        (status = 409, description = "`rider_suspended`: a suspended rider is reinstated, not approved", body = crate::error::Body),
    ))]
pub async fn approve_rider(
    State(state): State<AppState>,
    staff: Staff,
    ApiPath(user): ApiPath<i64>,
) -> Result<Json<UserStatus>, ApiError> {
    staff.require(Scope::Admin)?;
    match store::riders::approve(state.db(), UserId(user), staff.user()).await? {
        Approve::Done => {}
        Approve::NotFound => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no rider application",
            ))
        }
        Approve::Suspended => return Err(suspensions::approving_suspended(Role::Rider)),
    }
    Ok(Json(UserStatus {
        user_id: UserId(user),
        status: "approved",
    }))
}

/// Approves a merchant: its admins may open sockets and it takes orders.
#[utoipa::path(post, path = "/platform/merchants/{id}/approve", tag = "platform", security(("bearer" = []), ("service_key" = ["admin"])),
    params(("id" = i64, Path, description = "The merchant")),
    responses(
        (status = 200, description = "Approves a merchant.", body = IdStatus),
        (status = 403, description = "`forbidden`: requires the platform role; `missing_scope`: a service key without `admin`", body = crate::error::Body),
        (status = 409, description = "`merchant_suspended`: a suspended merchant is reinstated, not approved", body = crate::error::Body),
    ))]
pub async fn approve_merchant(
    State(state): State<AppState>,
    staff: Staff,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<IdStatus>, ApiError> {
    staff.require(Scope::Admin)?;
    match store::merchants::approve(state.db(), id, staff.user()).await? {
        Approve::Done => {}
        Approve::NotFound => return Err(ApiError::not_found()),
        Approve::Suspended => return Err(suspensions::approving_suspended(Role::Merchant)),
    }
    Ok(Json(IdStatus {
        id,
        status: "approved",
    }))
}
