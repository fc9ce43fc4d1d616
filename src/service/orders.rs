//! Orders from creation to delivery, and the notifications each step decides. Every
//! notification is an outbox row written in the step's own transaction
//! ([`crate::store::outbox`]); the relay ([`super::relay`]) sends it.

use std::collections::BTreeMap;

use chrono::Utc;

use super::riders::{self as rider_flows, RiderError};
use crate::domain::{OrderStatus, Reason, UserId};
use crate::notify::{Kind, Notification};
use crate::state::AppState;
use crate::store::orders::{
    self, Address, Closer, CreateError, LowStock, NewOrder, Order, Transition, UrgeOutcome,
};
use crate::store::outbox::{Audience, NewRow};
use crate::store::{riders, users, StoreError};
use crate::wechat::pay::PayParams;

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
    let new = NewOrder {
        consumer,
        merchant,
        items: &items,
        address,
        pay_deadline: deadline,
        out_trade_no: &out_trade_no(),
        unpaid_max: state.config().orders_unpaid_max,
    };
    let (order, _low) = orders::create(state.db(), &new, |_, low| low_stock(merchant, low)).await?;
    state.wake_relay();

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

/// `inventory.low` to the merchant's admins, for each product this order brought to
/// or below its threshold.
fn low_stock(merchant: i64, low: &[LowStock]) -> Vec<NewRow> {
    low.iter()
        .map(|p| {
            Notification::new(
                Kind::InventoryLow,
                "库存预警",
                format!("{} 库存仅剩 {}", p.name, p.stock),
            )
            .with("merchant_id", merchant)
            .with("product_id", p.product_id)
            .with("product_name", p.name.clone())
            .with("stock", p.stock)
            .with("low_stock_threshold", p.threshold)
            .outbox(Audience::MerchantAdmins(merchant), None)
        })
        .collect()
}

/// A rider accepts, or the platform dispatches: assigns the order; the other
/// recommended riders hear it is taken, and a dispatched rider hears of it.
pub async fn assign(
    state: &AppState,
    order_id: i64,
    rider: UserId,
    by_platform: bool,
) -> Result<Transition, StoreError> {
    let t = orders::assign(state.db(), order_id, rider, |order| {
        let mut rows =
            vec![
                Notification::new(Kind::OrderTaken, "订单已被接走", "该订单已由其他骑手接单")
                    .with("order_id", order.id)
                    .outbox(Audience::RecommendedRiders(order.id), Some(order.id)),
            ];
        if by_platform {
            // The merchant's name is filled in by the relay.
            rows.push(
                Notification::new(Kind::OrderDispatched, "派单通知", "平台为您指派了新订单")
                    .with("order_id", order.id)
                    .with("merchant_id", order.merchant_id)
                    .with("address", order.address.detail.clone())
                    .outbox(Audience::Users(vec![rider]), Some(order.id)),
            );
        }
        rows
    })
    .await?;
    if matches!(t, Transition::Done(_)) {
        state.wake_relay();
    }
    Ok(t)
}

/// The consumer urges a paid order: its merchant's admins hear of it.
pub async fn urge(
    state: &AppState,
    order_id: i64,
    consumer: UserId,
) -> Result<UrgeOutcome, StoreError> {
    let outcome = orders::urge(state.db(), order_id, consumer, |merchant| {
        vec![
            Notification::new(Kind::OrderUrged, "催单", "顾客正在催单，请尽快处理")
                .with("order_id", order_id)
                .with("merchant_id", merchant)
                .outbox(Audience::MerchantAdmins(merchant), Some(order_id)),
        ]
    })
    .await?;
    if outcome == UrgeOutcome::Urged {
        state.wake_relay();
    }
    Ok(outcome)
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

/// What staff may close: any paid order not yet delivered. With a rider on it, the
/// rider is told; once picked up, the goods have left the shop and no stock returns.
const STAFF_CLOSES: &[OrderStatus] = &[
    OrderStatus::Paid,
    OrderStatus::Dispatched,
    OrderStatus::PickedUp,
];

/// What the merchant may refuse: a paid order no rider has taken yet.
const MERCHANT_REFUSES: &[OrderStatus] = &[OrderStatus::Paid];

/// What `closer` may close: staff (people or keys) any paid order not yet delivered,
/// the merchant's admins one no rider has taken.
pub fn closable_by(closer: Closer) -> &'static [OrderStatus] {
    match closer {
        Closer::Staff(_) | Closer::Key(_) => STAFF_CLOSES,
        Closer::MerchantAdmin(_) => MERCHANT_REFUSES,
    }
}

/// Closes a paid order that will not be delivered (SPEC §4): platform staff close it,
/// or an admin of its merchant refuses it (the caller has checked that they are one),
/// if [`closable_by`] the closer. With what that decides, in the same transaction: a
/// paid order's offers are withdrawn as when a rider takes it (the relay removes its
/// `order.recommend` from every recommended rider's inbox and sends them `order.taken`);
/// a rider who has the order hears it is closed.
pub async fn close(
    state: &AppState,
    order_id: i64,
    closer: Closer,
    reason: &Reason,
) -> Result<Transition, StoreError> {
    let reason = reason.as_str();
    let from = closable_by(closer);
    let t = orders::close(
        state.db(),
        order_id,
        closer,
        reason,
        from,
        |order, before| after_close(order, before, reason),
    )
    .await?;
    if matches!(t, Transition::Done(_)) {
        state.wake_relay();
    }
    Ok(t)
}

/// The notifications closing `order` (which was `before`) decides.
fn after_close(order: &Order, before: OrderStatus, reason: &str) -> Vec<NewRow> {
    match (before, order.rider_id) {
        (OrderStatus::Paid, _) => {
            vec![
                Notification::new(Kind::OrderTaken, "订单已取消", "该订单已关闭，无需再接单")
                    .with("order_id", order.id)
                    .outbox(Audience::RecommendedRiders(order.id), Some(order.id)),
            ]
        }
        (_, Some(rider)) => vec![Notification::new(
            Kind::RiderCommand,
            "订单已关闭",
            format!("订单 {} 已由平台关闭：{reason}", order.id),
        )
        .with("order_id", order.id)
        .with("reason", reason)
        .outbox(Audience::Users(vec![UserId(rider)]), Some(order.id))],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_merchant_refuses_only_what_staff_could_close() {
        assert!(MERCHANT_REFUSES.iter().all(|s| STAFF_CLOSES.contains(s)));
        for s in [
            OrderStatus::PendingPayment,
            OrderStatus::Delivered,
            OrderStatus::Closed,
        ] {
            assert!(!STAFF_CLOSES.contains(&s), "{s}");
        }
    }
}
