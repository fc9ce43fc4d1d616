//! `/v1/orders/...`: place an order, read it, urge it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::caller::Caller;
use super::json::ApiJson;
use super::path::ApiPath;
use crate::domain::Role;
use crate::error::ApiError;
use crate::service::orders as flows;
use crate::state::AppState;
use crate::store::orders::{self, Address, Order, UrgeOutcome};
use crate::wechat::pay::PayParams;

const MAX_ITEMS: usize = 50;

#[derive(Deserialize)]
pub struct NewOrder {
    merchant_id: i64,
    items: Vec<NewItem>,
    address: NewAddress,
}

#[derive(Deserialize)]
pub struct NewItem {
    product_id: i64,
    quantity: i32,
}

#[derive(Deserialize)]
pub struct NewAddress {
    lat: f64,
    lng: f64,
    detail: String,
}

#[derive(Serialize)]
pub struct Created {
    #[serde(flatten)]
    order: Order,
    payment: Option<PayParams>,
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewOrder>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    if body.items.is_empty() || body.items.len() > MAX_ITEMS {
        return Err(ApiError::unprocessable(
            "invalid_items",
            format!("an order has 1 to {MAX_ITEMS} items"),
        ));
    }
    if body.items.iter().any(|i| !(1..=999).contains(&i.quantity)) {
        return Err(ApiError::unprocessable(
            "invalid_items",
            "quantity must be 1 to 999",
        ));
    }
    let a = &body.address;
    if !crate::domain::valid_position(a.lat, a.lng) {
        return Err(ApiError::unprocessable(
            "invalid_address",
            "lat must be within ±90 and lng within ±180",
        ));
    }
    if a.detail.trim().is_empty() || a.detail.chars().count() > 200 {
        return Err(ApiError::unprocessable(
            "invalid_address",
            "detail must be 1 to 200 characters",
        ));
    }
    let items: Vec<(i64, i32)> = body
        .items
        .iter()
        .map(|i| (i.product_id, i.quantity))
        .collect();
    let address = Address {
        lat: a.lat,
        lng: a.lng,
        detail: a.detail.trim().to_owned(),
    };
    let (order, payment) =
        flows::create(&state, caller.id, body.merchant_id, &items, &address).await?;
    Ok((StatusCode::CREATED, Json(Created { order, payment })))
}

/// The order, if the caller may see it; 404 otherwise (not 403: that would confirm
/// the order exists).
async fn visible(state: &AppState, caller: &Caller, id: i64) -> Result<Order, ApiError> {
    let order = orders::get(state.db(), id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if caller.has(Role::Platform) || orders::visible_to(state.db(), &order, caller.id).await? {
        Ok(order)
    } else {
        Err(ApiError::not_found())
    }
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Order>, ApiError> {
    Ok(Json(visible(&state, &caller, id).await?))
}

pub async fn urge(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let order = visible(&state, &caller, id).await?;
    if order.consumer_id != caller.id.0 {
        return Err(ApiError::forbidden(
            "not_order_consumer",
            "only the consumer urges an order",
        ));
    }
    match flows::urge(&state, id, caller.id).await? {
        UrgeOutcome::Urged => Ok((StatusCode::ACCEPTED, Json(json!({ "order_id": id })))),
        UrgeOutcome::NotFound => Err(ApiError::not_found()),
        UrgeOutcome::TooSoon => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "urge_too_frequent",
            "an order may be urged once every 5 minutes",
        )),
        UrgeOutcome::NotUrgeable => Err(ApiError::new(
            StatusCode::CONFLICT,
            "order_not_urgeable",
            "only a paid order that is not delivered yet can be urged",
        )),
    }
}

/// `GET /v1/orders/{id}/notifications`: the receipts of the order's notifications, for
/// its merchant's admins and platform staff (404 for anyone else).
pub async fn receipts(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    let order = orders::get(state.db(), id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let allowed = caller.has(Role::Platform)
        || crate::store::merchants::admins(state.db(), order.merchant_id)
            .await?
            .contains(&caller.id);
    if !allowed {
        return Err(ApiError::not_found());
    }
    let notifications = crate::store::receipts::of_order(state.db(), id).await?;
    Ok(Json(
        json!({ "order_id": id, "notifications": notifications }),
    ))
}
