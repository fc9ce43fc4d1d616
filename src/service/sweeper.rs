//! Closes unpaid orders past their deadline, returns their stock, and alerts platform
//! staff once per order, however many replicas sweep (`FOR UPDATE SKIP LOCKED`).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::notify::{Kind, Notification};
use crate::state::AppState;
use crate::store::orders;
use crate::store::outbox::Audience;

const BATCH: i64 = 100;

/// How often to sweep: a tenth of the payment timeout, between 50 ms and 1 s.
pub fn period(payment_timeout: Duration) -> Duration {
    (payment_timeout / 10).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

pub async fn run(state: AppState, cancel: CancellationToken) {
    let mut interval = tokio::time::interval(period(state.config().payment_timeout));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = cancel.cancelled() => return,
        }
        if let Err(e) = sweep_once(&state).await {
            tracing::warn!(error = %e, "payment-timeout sweep failed; retrying");
        }
    }
}

/// One sweep: close everything due, in batches; each closed order's alert commits with
/// its closing.
pub async fn sweep_once(state: &AppState) -> Result<usize, crate::store::StoreError> {
    let mut total = 0;
    loop {
        let closed = orders::close_expired(state.db(), BATCH, |order| {
            vec![Notification::new(
                Kind::PaymentTimeout,
                "支付超时",
                format!("订单 {} 超时未支付，已关闭", order.id),
            )
            .with("order_id", order.id)
            .with("out_trade_no", order.out_trade_no.clone())
            .with("merchant_id", order.merchant_id)
            .with("total_fen", order.total_fen)
            .outbox(Audience::PlatformStaff, Some(order.id))]
        })
        .await?;
        total += closed.len();
        if !closed.is_empty() {
            state.wake_relay();
        }
        if (closed.len() as i64) < BATCH {
            return Ok(total);
        }
    }
}
