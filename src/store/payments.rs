//! Payments: each verified WeChat Pay notification, recorded once, and what it did to
//! its order (paid it, or came too late or twice).

use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;

use super::orders::{load, Order, ORDER_COLUMNS};
use super::StoreError;
use crate::domain::OrderStatus;

/// A verified payment notification, as recorded.
#[derive(Debug, Clone)]
pub struct PaymentRecord<'a> {
    pub transaction_id: &'a str,
    pub out_trade_no: &'a str,
    pub mchid: &'a str,
    pub amount_total_fen: i64,
    pub trade_state: &'a str,
    pub success_time: Option<DateTime<Utc>>,
}

#[derive(Debug)]
pub enum PaymentOutcome {
    /// The order went from pending to paid: notify the merchant, recommend riders.
    Applied(Order),
    /// This transaction was recorded before: answer success, do nothing.
    Duplicate,
    /// Paid after the order was closed: recorded, the order stays closed; alert.
    Late(Order),
    /// Another transaction already paid this order: recorded; alert.
    Conflict(Order),
    /// No order with this `out_trade_no`.
    UnknownOrder,
    /// The amount differs from the order's total: refused, nothing recorded.
    AmountMismatch,
}

impl PaymentOutcome {
    /// Whether the payment was written (applied, late or conflicting): the caller's
    /// transaction then commits it. Otherwise nothing was, and it is dropped.
    pub fn recorded(&self) -> bool {
        matches!(
            self,
            PaymentOutcome::Applied(_) | PaymentOutcome::Late(_) | PaymentOutcome::Conflict(_)
        )
    }
}

/// What a new payment does to its order, decided by the order's status; kept in the
/// payment's `outcome` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// The order was waiting for it: now paid.
    Applied,
    /// The order was closed: it stays closed.
    Late,
    /// The order was paid already, by another transaction.
    Conflict,
}

impl Effect {
    fn of(status: OrderStatus) -> Self {
        match status {
            OrderStatus::PendingPayment => Effect::Applied,
            OrderStatus::Closed => Effect::Late,
            _ => Effect::Conflict,
        }
    }

    /// The `payments.outcome` value.
    fn column(self) -> &'static str {
        match self {
            Effect::Applied => "applied",
            Effect::Late => "late",
            Effect::Conflict => "mismatch",
        }
    }
}

/// Records a successful payment and marks the order paid, exactly once, in the
/// caller's transaction `tx`, which the caller commits when the outcome is
/// [`PaymentOutcome::recorded`] (with whatever that outcome decides) and drops
/// otherwise. The order's row is locked first, so copies of one notification arriving
/// at once are decided one after another.
pub async fn record_payment(
    tx: &deadpool_postgres::Transaction<'_>,
    p: &PaymentRecord<'_>,
) -> Result<PaymentOutcome, StoreError> {
    let Some(row) = tx
        .query_opt(
            &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE out_trade_no = $1 FOR UPDATE"),
            &[&p.out_trade_no],
        )
        .await?
    else {
        return Ok(PaymentOutcome::UnknownOrder);
    };
    let order_id: i64 = row.get("id");
    let total: i64 = row.get("total_fen");
    let status: OrderStatus = row.get("status");
    if total != p.amount_total_fen {
        return Ok(PaymentOutcome::AmountMismatch);
    }
    let seen = tx
        .query_opt(
            "SELECT 1 FROM payments WHERE transaction_id = $1",
            &[&p.transaction_id],
        )
        .await?;
    if seen.is_some() {
        return Ok(PaymentOutcome::Duplicate);
    }
    let effect = Effect::of(status);
    let inserted = tx
        .execute(
            "INSERT INTO payments (order_id, transaction_id, out_trade_no, mchid, amount_total_fen,
                trade_state, success_time, outcome)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (transaction_id) DO NOTHING",
            &[
                &order_id,
                &p.transaction_id,
                &p.out_trade_no,
                &p.mchid,
                &p.amount_total_fen,
                &p.trade_state,
                &p.success_time,
                &effect.column(),
            ],
        )
        .await;
    match inserted {
        Ok(0) => return Ok(PaymentOutcome::Duplicate),
        Ok(_) => {}
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            return Ok(PaymentOutcome::Duplicate)
        }
        Err(e) => return Err(e.into()),
    }
    Ok(match effect {
        Effect::Applied => {
            let row = tx
                .query_one(
                    &format!(
                        "UPDATE orders SET status = 'paid', paid_at = now(), updated_at = now()
                         WHERE id = $1 RETURNING {ORDER_COLUMNS}"
                    ),
                    &[&order_id],
                )
                .await?;
            PaymentOutcome::Applied(load(tx, &row).await?)
        }
        Effect::Late => PaymentOutcome::Late(load(tx, &row).await?),
        Effect::Conflict => PaymentOutcome::Conflict(load(tx, &row).await?),
    })
}
