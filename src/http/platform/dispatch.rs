//! Staff give a paid order to a rider (`order.dispatched`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use crate::domain::{Scope, UserId};
use crate::error::ApiError;
use crate::http::caller::Staff;
use crate::http::json::ApiJson;
use crate::http::path::ApiPath;
use crate::service::orders as flows;
use crate::state::AppState;
use crate::store::orders::{Order, Transition};

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"rider_id": 7}))]
pub struct Dispatch {
    /// The rider's user id.
    rider_id: i64,
}

/// Assigns a paid order to a rider, who gets `order.dispatched`.
#[utoipa::path(post, path = "/platform/orders/{id}/dispatch", tag = "platform", security(("bearer" = []), ("service_key" = ["admin"])),
    params(("id" = i64, Path, description = "The order")),
    request_body = Dispatch,
    responses(
        (status = 200, description = "Dispatched: the rider gets `order.dispatched`", body = Order),
        (status = 403, description = "`forbidden`: requires the platform role; `missing_scope`: a service key without `admin`", body = crate::error::Body),
        (status = 409, description = "`order_not_dispatchable`: only a paid order waiting for a rider", body = crate::error::Body),
        (status = 422, description = "`rider_not_approved`, or `invalid_body`", body = crate::error::Body),
    ))]
pub async fn dispatch(
    State(state): State<AppState>,
    staff: Staff,
    ApiPath(order): ApiPath<i64>,
    ApiJson(body): ApiJson<Dispatch>,
) -> Result<Json<Order>, ApiError> {
    staff.require(Scope::Admin)?;
    match flows::dispatch(&state, order, UserId(body.rider_id)).await? {
        Transition::Done(o) => Ok(Json(*o)),
        Transition::NotFound => Err(ApiError::not_found()),
        Transition::Refused(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "order_not_dispatchable",
            format!("the order is {status}; only a paid order waiting for a rider is dispatched"),
        )),
    }
}
