//! `/v1/rider/...`: apply, online, offline, location, and the rider's side of orders
//! (the flows are [`crate::service::riders`] and [`crate::service::orders`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::caller::Caller;
use super::json::ApiJson;
use super::path::ApiPath;
use crate::error::ApiError;
use crate::service::orders as flows;
use crate::service::riders;
use crate::state::AppState;
use crate::store::orders::{Order, Transition};

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

pub async fn apply(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Apply>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    riders::apply(&state, caller.id, &body.name, &body.phone).await?;
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
    riders::go_online(&state, caller.id, body.lat, body.lng).await?;
    Ok(Json(json!({ "status": "online" })))
}

pub async fn offline(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    riders::go_offline(&state, caller.id).await?;
    Ok(Json(json!({ "status": "offline" })))
}

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

pub async fn pickup(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(order): ApiPath<i64>,
) -> Result<Json<Order>, ApiError> {
    let t = flows::pick_up(&state, order, caller.id).await?;
    order_answer(t, "invalid_order_status")
}

pub async fn deliver(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(order): ApiPath<i64>,
) -> Result<Json<Order>, ApiError> {
    let t = flows::deliver(&state, order, caller.id).await?;
    order_answer(t, "invalid_order_status")
}
