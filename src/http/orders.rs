//! `/v1/orders/...`: place an order, read it, urge it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::openapi::{OrderReceipts, Urged};

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

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"merchant_id": 1, "items": [{"product_id": 1, "quantity": 2}],
    "address": {"lat": 31.2304, "lng": 121.4737, "detail": "人民广场 1 号"}}))]
pub struct NewOrder {
    merchant_id: i64,
    items: Vec<NewItem>,
    address: NewAddress,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewItem {
    product_id: i64,
    quantity: i32,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewAddress {
    lat: f64,
    lng: f64,
    detail: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Created {
    #[serde(flatten)]
    order: Order,
    /// The `wx.requestPayment` parameters, or null when WeChat Pay is not configured.
    payment: Option<PayParams>,
}

/// Places an order: stock is reserved atomically, and WeChat Pay is asked for a
/// prepay when configured.
#[utoipa::path(post, path = "/orders", operation_id = "create_order", tag = "orders", security(("bearer" = [])),
    request_body = NewOrder,
    responses(
        (status = 201, description = "Placed, waiting for payment", body = Created),
        (status = 409, description = "`insufficient_stock`, `too_many_unpaid_orders` or `merchant_unavailable`; nothing reserved", body = super::openapi::Error),
        (status = 502, description = "`wechatpay_unavailable`: nothing was ordered", body = super::openapi::Error),
    ))]
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

/// The order, for its consumer, its merchant's admins, its rider and platform staff.
#[utoipa::path(get, path = "/orders/{id}", operation_id = "get_order", tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The order")),
    responses((status = 200, description = "The order", body = Order)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Order>, ApiError> {
    Ok(Json(visible(&state, &caller, id).await?))
}

/// The consumer urges the merchant (`order.urge`), at most once every 5 minutes.
#[utoipa::path(post, path = "/orders/{id}/urge", tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The order")),
    responses(
        (status = 202, description = "The merchant is urged", body = Urged),
        (status = 403, description = "`not_order_consumer`", body = super::openapi::Error),
        (status = 409, description = "`order_not_urgeable`: not paid, or already delivered", body = super::openapi::Error),
        (status = 429, description = "`urge_too_frequent` (or `rate_limited`)", body = super::openapi::Error),
    ))]
pub async fn urge(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<(StatusCode, Json<Urged>), ApiError> {
    let order = visible(&state, &caller, id).await?;
    if order.consumer_id != caller.id.0 {
        return Err(ApiError::forbidden(
            "not_order_consumer",
            "only the consumer urges an order",
        ));
    }
    match flows::urge(&state, id, caller.id).await? {
        UrgeOutcome::Urged => Ok((StatusCode::ACCEPTED, Json(Urged { order_id: id }))),
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
#[utoipa::path(get, path = "/orders/{id}/notifications", operation_id = "order_receipts", tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The order")),
    responses((status = 200, description = "The receipts of the order's notifications", body = OrderReceipts)))]
pub async fn receipts(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<OrderReceipts>, ApiError> {
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
    Ok(Json(OrderReceipts {
        order_id: id,
        notifications,
    }))
}
