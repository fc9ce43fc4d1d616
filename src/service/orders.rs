//! Orders from creation to delivery, and the notifications each step sends.

use std::collections::BTreeMap;

use chrono::Utc;

use super::riders::{self as rider_flows, RiderError};
use super::send_to;
use crate::domain::UserId;
use crate::notify::{Kind, Notification};
use crate::state::AppState;
use crate::store::orders::{
    self, Address, CreateError, LowStock, Order, PaymentOutcome, Transition,
};
use crate::store::{merchants, riders, users, StoreError};
use crate::wechat::pay::PayParams;

/// Riders recommended per order at most (SPEC §3).
pub const MAX_RECOMMENDED: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("rider_id must be an approved rider")]
    RiderNotApproved,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error(transparent)]
    Create(#[from] CreateError),
    #[error("WeChat Pay prepay failed: {0}")]
    Prepay(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An order `merchant_id`-`out_trade_no` unique enough: `LL` + unix ms + 6 random hex.
fn out_trade_no() -> String {
    format!(
        "LL{}{:06x}",
        crate::time::unix_ms(),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// Creates an order, reserving stock; with WeChat Pay configured, prepays it.
pub async fn create(
    state: &AppState,
    consumer: UserId,
    merchant: i64,
    items: &[(i64, i32)],
    address: &Address,
) -> Result<(Order, Option<PayParams>), OrderError> {
    let mut merged: BTreeMap<i64, i32> = BTreeMap::new();
    for (product, quantity) in items {
        let q = merged.entry(*product).or_default();
        *q = q.saturating_add(*quantity);
    }
    let items: Vec<(i64, i32)> = merged.into_iter().collect();
    let deadline = Utc::now()
        + chrono::Duration::from_std(state.config().payment_timeout)
            .unwrap_or(chrono::Duration::minutes(15));
    let (order, low) = orders::create(
        state.db(),
        consumer,
        merchant,
        &items,
        address,
        deadline,
        &out_trade_no(),
    )
    .await?;
    notify_low_stock(state, merchant, low).await;

    let Some(payer) = state.payer() else {
        return Ok((order, None));
    };
    let openid = users::openid(state.db(), consumer)
        .await?
        .unwrap_or_default();
    let description = format!("LocalLife order {}", order.id);
    match payer
        .prepay(
            &order.out_trade_no,
            &description,
            order.total_fen,
            &openid,
            deadline,
        )
        .await
    {
        Ok(params) => Ok((order, Some(params))),
        Err(e) => {
            // The order cannot be paid: close it and give its stock back now rather
            // than at the deadline.
            orders::close_now(state.db(), order.id).await?;
            Err(OrderError::Prepay(e.to_string()))
        }
    }
}

async fn notify_low_stock(state: &AppState, merchant: i64, low: Vec<LowStock>) {
    if low.is_empty() {
        return;
    }
    let admins = match merchants::admins(state.db(), merchant).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "cannot load merchant admins for a low-stock alert");
            return;
        }
    };
    for p in low {
        let n = Notification::new(
            Kind::InventoryLow,
            "库存预警",
            format!("{} 库存仅剩 {}", p.name, p.stock),
        )
        .with("merchant_id", merchant)
        .with("product_id", p.product_id)
        .with("product_name", p.name.clone())
        .with("stock", p.stock)
        .with("low_stock_threshold", p.threshold);
        send_to(state, admins.clone(), n);
    }
}

/// After a verified payment notification: what the outcome sends.
pub async fn on_payment(state: &AppState, outcome: &PaymentOutcome) -> Result<(), StoreError> {
    match outcome {
        PaymentOutcome::Applied(order) => {
            let admins = merchants::admins(state.db(), order.merchant_id).await?;
            let n = Notification::new(
                Kind::OrderPaid,
                "新订单通知",
                "您有新的已支付订单，请及时处理",
            )
            .with("order_id", order.id)
            .with("out_trade_no", order.out_trade_no.clone())
            .with("merchant_id", order.merchant_id)
            .with("total_fen", order.total_fen);
            send_to(state, admins, n);
            recommend(state, order).await?;
        }
        PaymentOutcome::Late(order) => state.alerts().raise(
            "late_payment",
            format!("order {} was paid after it was closed; refund it", order.id),
        ),
        PaymentOutcome::Conflict(order) => state.alerts().raise(
            "duplicate_payment",
            format!(
                "order {} was paid by a second transaction; refund one",
                order.id
            ),
        ),
        _ => {}
    }
    Ok(())
}

/// Recommends a paid order to the nearest online approved riders.
async fn recommend(state: &AppState, order: &Order) -> Result<(), StoreError> {
    let Some(merchant) = merchants::get(state.db(), order.merchant_id).await? else {
        return Ok(());
    };
    let radius = f64::from(state.config().rider_match_radius_m);
    // Ask the geo index for more than needed: it may lag behind who is online.
    let near = match state
        .hub()
        .engine()
        .geo_near(merchant.lat, merchant.lng, radius, MAX_RECOMMENDED * 2)
        .await
    {
        Ok(near) => near,
        Err(e) => {
            tracing::warn!(error = %e, "cannot match riders; the platform can dispatch by hand");
            return Ok(());
        }
    };
    let ids: Vec<i64> = near.iter().map(|(u, _)| u.0).collect();
    let online = riders::online_among(state.db(), &ids).await?;
    let chosen: Vec<(UserId, f64)> = near
        .into_iter()
        .filter(|(u, _)| online.contains(&u.0))
        .take(MAX_RECOMMENDED)
        .collect();
    orders::record_recommendations(state.db(), order.id, &chosen).await?;
    for (rider, distance) in chosen {
        let n = Notification::new(Kind::OrderRecommend, "新订单推荐", "您有新的推荐订单")
            .with("order_id", order.id)
            .with("merchant_id", merchant.id)
            .with("merchant_name", merchant.name.clone())
            .with("distance_m", distance.round())
            .with("total_fen", order.total_fen);
        send_to(state, vec![rider], n);
    }
    Ok(())
}

/// A rider accepts, or the platform dispatches: assigns the order and tells the others.
pub async fn assign(
    state: &AppState,
    order_id: i64,
    rider: UserId,
    by_platform: bool,
) -> Result<Transition, StoreError> {
    let t = orders::assign(state.db(), order_id, rider).await?;
    if let Transition::Done(order) = &t {
        let others: Vec<UserId> = orders::recommended(state.db(), order.id)
            .await?
            .into_iter()
            .filter(|r| *r != rider)
            .collect();
        let taken = Notification::new(Kind::OrderTaken, "订单已被接走", "该订单已由其他骑手接单")
            .with("order_id", order.id);
        send_to(state, others, taken);
        if by_platform {
            let merchant = merchants::get(state.db(), order.merchant_id).await?;
            let n = Notification::new(Kind::OrderDispatched, "派单通知", "平台为您指派了新订单")
                .with("order_id", order.id)
                .with("merchant_id", order.merchant_id)
                .with(
                    "merchant_name",
                    merchant.map(|m| m.name).unwrap_or_default(),
                )
                .with("address", order.address.detail.clone());
            send_to(state, vec![rider], n);
        }
    }
    Ok(t)
}

/// The consumer urges a paid order: its merchant's admins hear of it.
pub async fn urged(state: &AppState, order: &Order) -> Result<(), StoreError> {
    let admins = merchants::admins(state.db(), order.merchant_id).await?;
    let n = Notification::new(Kind::OrderUrged, "催单", "顾客正在催单，请尽快处理")
        .with("order_id", order.id)
        .with("merchant_id", order.merchant_id);
    send_to(state, admins, n);
    Ok(())
}

/// A rider takes a paid order: only an approved rider who is online.
pub async fn accept(
    state: &AppState,
    order_id: i64,
    rider: UserId,
) -> Result<Transition, RiderError> {
    rider_flows::require_online(state, rider).await?;
    Ok(assign(state, order_id, rider, false).await?)
}

/// Platform staff give a paid order to an approved rider (online or not).
pub async fn dispatch(
    state: &AppState,
    order_id: i64,
    rider: UserId,
) -> Result<Transition, DispatchError> {
    match riders::state(state.db(), rider).await? {
        Some(s) if s.approved => {}
        _ => return Err(DispatchError::RiderNotApproved),
    }
    Ok(assign(state, order_id, rider, true).await?)
}

/// The assigned rider picked the order up at the merchant.
pub async fn pick_up(
    state: &AppState,
    order_id: i64,
    rider: UserId,
) -> Result<Transition, StoreError> {
    orders::pick_up(state.db(), order_id, rider).await
}

/// The assigned rider delivered it.
pub async fn deliver(
    state: &AppState,
    order_id: i64,
    rider: UserId,
) -> Result<Transition, StoreError> {
    orders::deliver(state.db(), order_id, rider).await
}
