//! `/v1/orders/...`: place an order, read it, urge it, refuse it (its merchant); and
//! `/v1/platform/orders/{id}/close` (staff), which shares the closing rules.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::openapi::{OrderReceipts, Urged};

use super::caller::{Caller, Principal, Reader, Staff};
use super::json::ApiJson;
use super::path::ApiPath;
use crate::domain::{OrderStatus, Reason, Role, Scope, UserId};
use crate::error::ApiError;
use crate::service::orders as flows;
use crate::state::AppState;
use crate::store::orders::{self, Address, Closer, Order, Transition, UrgeOutcome};
use crate::store::receipts::Receipt;
use crate::wechat::pay::PayParams;

const MAX_ITEMS: usize = 50;
/// The most of one product in an order (after lines of the same product are merged).
const MAX_QUANTITY: i32 = 999;
/// The most units in an order, all products together.
const MAX_TOTAL_QUANTITY: i32 = 2_000;

/// The order's lines with each product once (lines of the same product added up), each
/// within [`MAX_QUANTITY`] and all within [`MAX_TOTAL_QUANTITY`]: repeating a line
/// cannot get round the per-line cap.
fn merged_lines(lines: &[NewItem]) -> Result<Vec<(i64, i32)>, ApiError> {
    let pairs: Vec<(i64, i32)> = lines.iter().map(|l| (l.product_id, l.quantity)).collect();
    merged_lines_of(&pairs)
}

/// [`merged_lines`] of (product, quantity) pairs.
pub(crate) fn merged_lines_of(lines: &[(i64, i32)]) -> Result<Vec<(i64, i32)>, ApiError> {
    let invalid = |message: String| ApiError::unprocessable("invalid_items", message);
    let mut merged: Vec<(i64, i32)> = Vec::with_capacity(lines.len());
    for &(product, quantity) in lines {
        if quantity < 1 {
            return Err(invalid(format!("quantity must be 1 to {MAX_QUANTITY}")));
        }
        match merged.iter_mut().find(|(p, _)| *p == product) {
            Some((_, q)) => *q = q.saturating_add(quantity),
            None => merged.push((product, quantity)),
        }
    }
    if merged.iter().any(|(_, q)| *q > MAX_QUANTITY) {
        return Err(invalid(format!(
            "quantity must be 1 to {MAX_QUANTITY} per product (lines of one product are added up)"
        )));
    }
    let total = merged.iter().fold(0i32, |t, (_, q)| t.saturating_add(*q));
    if total > MAX_TOTAL_QUANTITY {
        return Err(invalid(format!(
            "an order holds at most {MAX_TOTAL_QUANTITY} units in all"
        )));
    }
    Ok(merged)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"merchant_id": 1, "items": [{"product_id": 1, "quantity": 2}],
    "address": {"lat": 31.2304, "lng": 121.4737, "detail": "人民广场 1 号"}}))]
pub struct NewOrder {
    merchant_id: i64,
    /// Lines of one product are added up; at most 999 of a product, 2,000 units in all.
    #[schema(min_items = 1, max_items = 50)]
    items: Vec<NewItem>,
    address: NewAddress,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewItem {
    product_id: i64,
    #[schema(minimum = 1, maximum = 999)]
    quantity: i32,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewAddress {
    #[schema(minimum = -85.05112878, maximum = 85.05112878)]
    lat: f64,
    #[schema(minimum = -180, maximum = 180)]
    lng: f64,
    #[schema(min_length = 1, max_length = 200)]
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
        (status = 409, description = "`insufficient_stock`, `too_many_unpaid_orders` or `merchant_unavailable`; nothing reserved", body = crate::error::Body),
        (status = 502, description = "`wechatpay_unavailable`: nothing was ordered", body = crate::error::Body),
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
    let items = merged_lines(&body.items)?;
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

/// The consumer urges the merchant (`order.urged`), at most once every 5 minutes.
#[utoipa::path(post, path = "/orders/{id}/urge", tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The order")),
    responses(
        (status = 202, description = "The merchant is urged", body = Urged),
        (status = 403, description = "`not_order_consumer`", body = crate::error::Body),
        (status = 409, description = "`order_not_urgeable`: not paid, or already delivered", body = crate::error::Body),
        (status = 429, description = "`urge_too_frequent` (or `rate_limited`)", body = crate::error::Body),
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

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"reason": "商品已售罄，无法出餐"}))]
pub struct CloseOrder {
    /// Why: one line of 1 to 200 characters, shown to the consumer with the order.
    reason: String,
}

fn close_reason(body: &CloseOrder) -> Result<Reason, ApiError> {
    Reason::parse(&body.reason)
        .map_err(|e| ApiError::unprocessable("invalid_reason", e.to_string()))
}

/// The answer to a close or a refusal; `why_not` explains a refusal from the status.
fn closed(
    t: Transition,
    why_not: impl FnOnce(OrderStatus) -> &'static str,
) -> Result<Json<Order>, ApiError> {
    match t {
        Transition::Done(order) => Ok(Json(*order)),
        Transition::NotFound => Err(ApiError::not_found()),
        Transition::Refused(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "order_not_closable",
            format!("the order is {status}; {}", why_not(status)),
        )),
    }
}

/// `POST /v1/platform/orders/{id}/close`: staff close a paid order that will not be
/// delivered. Its stock is returned (unless a rider already picked it up), its offers
/// are withdrawn (`order.taken` to the riders still holding one), a rider who has it
/// gets `rider.command`, and the consumer's order shows the reason. A refund through
/// WeChat Pay is not part of this.
#[utoipa::path(post, path = "/platform/orders/{id}/close", operation_id = "close_order", tag = "platform", security(("bearer" = []), ("service_key" = ["admin"])),
    params(("id" = i64, Path, description = "The order")),
    request_body = CloseOrder,
    responses(
        (status = 200, description = "Closed: the order, `closed`, with `close_reason` and `closed_by`", body = Order),
        (status = 403, description = "`forbidden`: requires the platform role; `missing_scope`: a service key without `admin`", body = crate::error::Body),
        (status = 404, description = "`not_found`: no such order", body = crate::error::Body),
        (status = 409, description = "`order_not_closable`: not paid yet, already delivered, or closed", body = crate::error::Body),
        (status = 422, description = "`invalid_reason`, or `invalid_body`", body = crate::error::Body),
    ))]
pub async fn close(
    State(state): State<AppState>,
    staff: Staff,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<CloseOrder>,
) -> Result<Json<Order>, ApiError> {
    staff.require(Scope::Admin)?;
    let reason = close_reason(&body)?;
    let closer = match staff.principal {
        Principal::User(user) => Closer::Staff(user),
        Principal::Key { id, .. } => Closer::Key(id),
    };
    closed(flows::close(&state, id, closer, &reason).await?, |_| {
        "only a paid order that is not delivered yet can be closed"
    })
}

/// `POST /v1/orders/{id}/refuse`: an admin of the order's merchant refuses a paid order
/// no rider has taken. It is closed as staff would close it.
#[utoipa::path(post, path = "/orders/{id}/refuse", operation_id = "refuse_order", tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The order")),
    request_body = CloseOrder,
    responses(
        (status = 200, description = "Refused: the order, `closed`, with `close_reason` and `closed_by`", body = Order),
        (status = 403, description = "`not_merchant_admin`: the consumer, the rider or staff tried", body = crate::error::Body),
        (status = 404, description = "`not_found`: no such order, or the caller may not see it", body = crate::error::Body),
        (status = 409, description = "`order_not_closable`: not paid yet, a rider has taken it, delivered, or closed", body = crate::error::Body),
        (status = 422, description = "`invalid_reason`, or `invalid_body`", body = crate::error::Body),
    ))]
pub async fn refuse(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<CloseOrder>,
) -> Result<Json<Order>, ApiError> {
    let order = visible(&state, &caller, id).await?;
    if crate::store::merchants::is_admin(state.db(), order.merchant_id, caller.id).await?
        != Some(true)
    {
        return Err(ApiError::forbidden(
            "not_merchant_admin",
            "only an admin of the order's merchant refuses it",
        ));
    }
    let reason = close_reason(&body)?;
    closed(
        flows::close(&state, id, Closer::MerchantAdmin(caller.id), &reason).await?,
        |status| match status {
            OrderStatus::Dispatched | OrderStatus::PickedUp => {
                "a rider has taken it: ask platform staff to close it"
            }
            _ => "only a paid order no rider has taken can be refused",
        },
    )
}

/// The receipts, with only the recipients in `users`; receipts left with none dropped.
fn only_to(receipts: Vec<Receipt>, users: &[UserId]) -> Vec<Receipt> {
    receipts
        .into_iter()
        .filter_map(|mut r| {
            r.recipients.retain(|p| users.contains(&p.user_id));
            (!r.recipients.is_empty()).then_some(r)
        })
        .collect()
}

/// `GET /v1/orders/{id}/notifications`: the receipts of the order's notifications, for
/// its merchant's admins (those addressed to the merchant's admins only) and platform
/// staff (all; 404 for anyone else).
#[utoipa::path(get, path = "/orders/{id}/notifications", operation_id = "order_receipts", tag = "orders", security(("bearer" = []), ("service_key" = ["read"])),
    params(("id" = i64, Path, description = "The order")),
    responses((status = 200, description = "The receipts of the order's notifications: for the merchant's admins, only those addressed to them", body = OrderReceipts)))]
pub async fn receipts(
    State(state): State<AppState>,
    reader: Reader,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<OrderReceipts>, ApiError> {
    let caller = match reader {
        Reader::Key(key) => {
            key.require(Scope::Read)?;
            None
        }
        Reader::User(caller) => Some(caller).filter(|c| !c.has(Role::Platform)),
    };
    let order = orders::get(state.db(), id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    // Staff and `read` keys see everything; anyone else must be the merchant's admin.
    let staff = caller.is_none();
    let admins = match &caller {
        None => Vec::new(),
        Some(_) => crate::store::merchants::admins(state.db(), order.merchant_id).await?,
    };
    if caller.is_some_and(|c| !admins.contains(&c.id)) {
        return Err(ApiError::not_found());
    }
    let mut notifications = crate::store::receipts::of_order(state.db(), id).await?;
    // A merchant sees what was sent to its own admins, nothing of the riders offered
    // the order or of staff notices; staff see everything.
    if !staff {
        notifications = only_to(notifications, &admins);
    }
    Ok(Json(OrderReceipts {
        order_id: id,
        notifications,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(l: &[(i64, i32)]) -> Vec<NewItem> {
        l.iter()
            .map(|&(product_id, quantity)| NewItem {
                product_id,
                quantity,
            })
            .collect()
    }

    #[test]
    fn repeated_lines_are_merged_before_the_per_product_cap() {
        assert_eq!(
            merged_lines(&lines(&[(1, 2), (2, 1), (1, 3)])).unwrap(),
            vec![(1, 5), (2, 1)]
        );
        assert!(merged_lines(&lines(&[(1, 999)])).is_ok());
        let fifty = vec![(7, 999); 50];
        assert!(
            merged_lines(&lines(&fifty)).is_err(),
            "50 x 999 of one product"
        );
        assert!(merged_lines(&lines(&[(1, 500), (1, 500)])).is_err());
        assert!(merged_lines(&lines(&[(1, 0)])).is_err());
        assert!(merged_lines(&lines(&[(1, i32::MAX), (1, i32::MAX)])).is_err());
    }

    #[test]
    fn an_order_has_a_total_cap() {
        assert!(merged_lines(&lines(&[(1, 999), (2, 999)])).is_ok());
        assert!(merged_lines(&lines(&[(1, 999), (2, 999), (3, 3)])).is_err());
    }
}
