//! `/v1/rider/...`: apply, online, offline, location, and the rider's side of orders
//! (the flows are [`crate::service::riders`] and [`crate::service::orders`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::openapi::{StatusOnly, UserStatus};

use super::caller::Caller;
use super::json::ApiJson;
use super::path::ApiPath;
use crate::error::ApiError;
use crate::service::orders as flows;
use crate::service::riders;
use crate::state::AppState;
use crate::store::orders::{Order, Transition};

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"name": "张三", "phone": "13800000000"}))]
pub struct Apply {
    #[schema(min_length = 1, max_length = 50)]
    name: String,
    /// Digits and `+`.
    #[schema(min_length = 5, max_length = 20, pattern = "^[0-9+]+$")]
    phone: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"lat": 31.2304, "lng": 121.4737}))]
pub struct Position {
    /// WGS-84, within ±85.05112878 (what the rider index can hold).
    #[schema(minimum = -85.05112878, maximum = 85.05112878)]
    lat: f64,
    /// WGS-84, within ±180.
    #[schema(minimum = -180, maximum = 180)]
    lng: f64,
}

/// Applies to ride; platform staff approve.
#[utoipa::path(post, path = "/rider/apply", tag = "riders", security(("bearer" = [])),
    request_body = Apply,
    responses(
        (status = 201, description = "Applied", body = UserStatus),
        (status = 409, description = "`already_applied`", body = crate::error::Body),
    ))]
pub async fn apply(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Apply>,
) -> Result<(StatusCode, Json<UserStatus>), ApiError> {
    riders::apply(&state, caller.id, &body.name, &body.phone).await?;
    Ok((
        StatusCode::CREATED,
        Json(UserStatus {
            user_id: caller.id,
            status: "pending",
        }),
    ))
}

/// Goes online at a position: new orders nearby are pushed to the rider.
#[utoipa::path(post, path = "/rider/online", tag = "riders", security(("bearer" = [])),
    request_body = Position,
    responses(
        (status = 200, description = "Online", body = StatusOnly),
        (status = 403, description = "`rider_not_approved`", body = crate::error::Body),
    ))]
pub async fn online(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Position>,
) -> Result<Json<StatusOnly>, ApiError> {
    riders::go_online(&state, caller.id, body.lat, body.lng).await?;
    Ok(Json(StatusOnly { status: "online" }))
}

/// Goes offline: every socket of the rider, on every replica, closes with 4003.
#[utoipa::path(post, path = "/rider/offline", tag = "riders", security(("bearer" = [])),
    responses(
        (status = 200, description = "Offline", body = StatusOnly),
        (status = 403, description = "`rider_not_approved`", body = crate::error::Body),
    ))]
pub async fn offline(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<StatusOnly>, ApiError> {
    riders::go_offline(&state, caller.id).await?;
    Ok(Json(StatusOnly { status: "offline" }))
}

/// Reports the rider's position (also possible over the socket).
#[utoipa::path(post, path = "/rider/location", tag = "riders", security(("bearer" = [])),
    request_body = Position,
    responses(
        (status = 204, description = "Recorded"),
        (status = 403, description = "`rider_not_approved`", body = crate::error::Body),
        (status = 409, description = "`rider_offline`", body = crate::error::Body),
    ))]
pub async fn location(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Position>,
) -> Result<StatusCode, ApiError> {
    riders::update_location(&state, caller.id, body.lat, body.lng).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn order_answer(t: Transition, refused_code: &'static str) -> Result<Json<Order>, ApiError> {
    match t {
        Transition::Done(order) => Ok(Json(*order)),
        Transition::NotFound => Err(ApiError::not_found()),
        Transition::Refused(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            refused_code,
            format!("the order is {status}"),
        )),
    }
}

/// Takes the order: the first rider wins; the other recommended riders get `order.taken`.
#[utoipa::path(post, path = "/rider/orders/{id}/accept", tag = "riders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The order")),
    responses(
        (status = 200, description = "The order", body = Order),
        (status = 403, description = "`rider_not_approved` or `rider_offline`", body = crate::error::Body),
        (status = 409, description = "`order_taken` (another rider has it) or `order_not_available`", body = crate::error::Body),
    ))]
pub async fn accept(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(order): ApiPath<i64>,
) -> Result<Json<Order>, ApiError> {
    match flows::accept(&state, order, caller.id).await? {
        Transition::Refused(status) if status.is_unavailable() => Err(ApiError::new(
            StatusCode::CONFLICT,
            "order_not_available",
            format!("the order is {status}"),
        )),
        other => order_answer(other, "order_taken"),
    }
}

/// Picked up from the merchant.
#[utoipa::path(post, path = "/rider/orders/{id}/pickup", tag = "riders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The order")),
    responses(
        (status = 200, description = "The order", body = Order),
        (status = 403, description = "`rider_not_approved` or `rider_offline`", body = crate::error::Body),
        (status = 409, description = "`invalid_order_status`", body = crate::error::Body),
    ))]
pub async fn pickup(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(order): ApiPath<i64>,
) -> Result<Json<Order>, ApiError> {
    let t = flows::pick_up(&state, order, caller.id).await?;
    order_answer(t, "invalid_order_status")
}

/// Delivered to the consumer.
#[utoipa::path(post, path = "/rider/orders/{id}/deliver", tag = "riders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The order")),
    responses(
        (status = 200, description = "The order", body = Order),
        (status = 403, description = "`rider_not_approved` or `rider_offline`", body = crate::error::Body),
        (status = 409, description = "`invalid_order_status`", body = crate::error::Body),
    ))]
pub async fn deliver(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(order): ApiPath<i64>,
) -> Result<Json<Order>, ApiError> {
    let t = flows::deliver(&state, order, caller.id).await?;
    order_answer(t, "invalid_order_status")
}
