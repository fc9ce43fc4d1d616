//! `/v1/rider/...`: apply, online, offline, location, and the rider's side of orders.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::path::ApiPath;
use super::ApiJson;
use crate::app::AppState;
use crate::auth::Caller;
use crate::domain::UserId;
use crate::error::ApiError;
use crate::notify;
use crate::service::orders as flows;
use crate::store::orders::{Order, Transition};
use crate::store::riders;

#[derive(Deserialize)]
pub struct Apply {
    name: String,
    phone: String,
}

#[derive(Deserialize)]
pub struct Position {
    lat: f64,
    lng: f64,
}

impl Position {
    fn check(&self) -> Result<(), ApiError> {
        if crate::domain::valid_position(self.lat, self.lng) {
            Ok(())
        } else {
            Err(ApiError::unprocessable(
                "invalid_position",
                "lat must be within ±90 and lng within ±180",
            ))
        }
    }
}

fn not_approved() -> ApiError {
    ApiError::forbidden(
        "rider_not_approved",
        "the rider is not approved by the platform",
    )
}

pub async fn apply(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Apply>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = body.name.trim();
    let phone = body.phone.trim();
    if name.is_empty() || name.chars().count() > 50 {
        return Err(ApiError::unprocessable(
            "invalid_name",
            "name must be 1 to 50 characters",
        ));
    }
    if !(5..=20).contains(&phone.len()) || !phone.chars().all(|c| c.is_ascii_digit() || c == '+') {
        return Err(ApiError::unprocessable(
            "invalid_phone",
            "phone must be 5 to 20 digits",
        ));
    }
    if !riders::apply(state.db(), caller.id, name, phone).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_applied",
            "this user has applied already",
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({ "user_id": caller.id, "status": "pending" })),
    ))
}

pub async fn online(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Position>,
) -> Result<Json<Value>, ApiError> {
    body.check()?;
    riders::go_online(state.db(), caller.id, body.lat, body.lng)
        .await?
        .ok_or_else(not_approved)?;
    state
        .hub()
        .engine()
        .geo_set(caller.id, body.lat, body.lng)
        .await?;
    Ok(Json(json!({ "status": "online" })))
}

pub async fn offline(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    if !riders::go_offline(state.db(), caller.id).await? {
        return Err(not_approved());
    }
    let engine = state.hub().engine();
    engine.geo_remove(caller.id).await?;
    // Every socket of this rider, on every replica.
    notify::close_user(&**engine, caller.id, 4003, "rider offline").await?;
    Ok(Json(json!({ "status": "offline" })))
}

pub async fn location(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Position>,
) -> Result<StatusCode, ApiError> {
    body.check()?;
    update_location(&state, caller.id, body.lat, body.lng).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Shared by `POST /v1/rider/location` and the socket's `location` message.
pub async fn update_location(
    state: &AppState,
    rider: UserId,
    lat: f64,
    lng: f64,
) -> Result<(), ApiError> {
    if !riders::set_location(state.db(), rider, lat, lng).await? {
        return Err(match riders::state(state.db(), rider).await? {
            Some(s) if s.approved => ApiError::new(
                StatusCode::CONFLICT,
                "rider_offline",
                "go online before sending a location",
            ),
            _ => not_approved(),
        });
    }
    state.hub().engine().geo_set(rider, lat, lng).await?;
    Ok(())
}

/// The rider must be approved and online to take orders.
async fn require_online(state: &AppState, rider: UserId) -> Result<(), ApiError> {
    match riders::state(state.db(), rider).await? {
        Some(s) if s.approved && s.online => Ok(()),
        Some(s) if s.approved => Err(ApiError::forbidden("rider_offline", "the rider is offline")),
        _ => Err(not_approved()),
    }
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

pub async fn accept(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(order): ApiPath<i64>,
) -> Result<Json<Order>, ApiError> {
    require_online(&state, caller.id).await?;
    let t = flows::assign(&state, order, caller.id, false).await?;
    match t {
        Transition::Refused(status) if status == "pending_payment" || status == "closed" => {
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "order_not_available",
                format!("the order is {status}"),
            ))
        }
        other => order_answer(other, "order_taken"),
    }
}

pub async fn pickup(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(order): ApiPath<i64>,
) -> Result<Json<Order>, ApiError> {
    let t = crate::store::orders::pick_up(state.db(), order, caller.id).await?;
    order_answer(t, "invalid_order_status")
}

pub async fn deliver(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(order): ApiPath<i64>,
) -> Result<Json<Order>, ApiError> {
    let t = crate::store::orders::deliver(state.db(), order, caller.id).await?;
    order_answer(t, "invalid_order_status")
}
