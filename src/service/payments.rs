//! WeChat Pay notifications, from the verified body to the paid order and its
//! announcements. The webhook handler only reads headers and maps the outcome.
//!
//! Repeats are normal (WeChat Pay retries until it gets a success) and succeed with no
//! side effect. The body and the decrypted transaction are never logged.

use std::time::Duration;

use crate::notify::alerts::system_error;
use crate::notify::{Kind, Notification};
use crate::state::AppState;
use crate::store::outbox::{self, Audience, NewRow};
use crate::store::payments::{self, PaymentOutcome, PaymentRecord};
use crate::store::StoreError;
use crate::wechat::pay::{NotifyError, NotifyHeaders};

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// Our configuration lacks the verification key: staff are alerted.
    #[error("WeChat Pay notifications are not configured")]
    NotConfigured,
    #[error("verification failed: {0}")]
    Refused(NotifyError),
    #[error("notification for another merchant id")]
    WrongMchid,
    #[error("notification for another appid")]
    WrongAppid,
    #[error("unknown out_trade_no")]
    UnknownOrder,
    #[error("amount mismatch")]
    AmountMismatch,
    /// Not recorded: WeChat Pay must retry.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Verifies, decrypts and records one notification; `Ok` once the payment is recorded
/// (or was before, or is authentic but not a success).
pub async fn on_notification(
    state: &AppState,
    signed: &NotifyHeaders<'_>,
    body: &[u8],
) -> Result<(), PaymentError> {
    let Some(verifier) = state.pay_verifier() else {
        // A configuration fault, not the caller's: staff must hear of it, once it is
        // more than one (anonymous) request.
        metrics::counter!("locallife_webhook_refused_total", "reason" => "not_configured")
            .increment(1);
        // WeChat Pay retries a notification about 15 s, 15 s, 30 s, 3 min apart: a real
        // payment gets to 5 within ten minutes, one stray request does not.
        state.alerts().raise_if_sustained(
            "wechatpay_not_configured",
            "WeChat Pay notifications keep arriving but their verification key is not configured",
            5,
            Duration::from_secs(600),
        );
        return Err(PaymentError::NotConfigured);
    };
    let now = chrono::Utc::now().timestamp();
    let tx = match verifier.open(signed, body, now) {
        Ok(tx) => tx,
        Err(e) => {
            metrics::counter!("locallife_webhook_refused_total", "reason" => refusal_label(&e))
                .increment(1);
            tracing::warn!(reason = %e, "payment notification refused");
            // Anyone can send junk: staff hear only of a sustained rate of unknown key
            // ids (WeChat Pay rotated its key, or ours is stale), never of one request.
            if e == NotifyError::UnknownSerial {
                state.alerts().raise_if_sustained(
                    "wechatpay_unknown_serial",
                    "payment notifications keep arriving signed with an unknown WeChat Pay key id",
                    20,
                    Duration::from_secs(60),
                );
            }
            return Err(PaymentError::Refused(e));
        }
    };
    if tx.mchid != verifier.mchid {
        tracing::warn!("payment notification for another merchant id refused");
        return Err(PaymentError::WrongMchid);
    }
    // Our mini-program's payments only: the appid inside the signed, encrypted resource.
    if let Some(wechat) = &state.config().wechat {
        if tx.appid != wechat.appid {
            tracing::warn!("payment notification for another appid refused");
            return Err(PaymentError::WrongAppid);
        }
    }
    if tx.trade_state != "SUCCESS" {
        // Authentic but not a success (closed, refunded...): nothing to do.
        return Ok(());
    }
    let success_time = tx
        .success_time
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    let record = PaymentRecord {
        transaction_id: &tx.transaction_id,
        out_trade_no: &tx.out_trade_no,
        mchid: &tx.mchid,
        amount_total_fen: tx.amount.total,
        trade_state: &tx.trade_state,
        success_time,
    };
    // The notifications the payment decides commit with it: once this answers, they
    // are durable even if this replica dies and Redis is down.
    let outcome = record_payment(state, &record).await.inspect_err(
        |e| tracing::warn!(error = %e, "payment not recorded; WeChat Pay will retry"),
    )?;
    match &outcome {
        PaymentOutcome::UnknownOrder => return Err(PaymentError::UnknownOrder),
        PaymentOutcome::AmountMismatch => {
            tracing::warn!("payment notification with a wrong amount refused");
            return Err(PaymentError::AmountMismatch);
        }
        _ => {}
    }
    state.wake_relay();
    Ok(())
}

/// Records the payment and, in the same transaction, the outbox rows its outcome
/// decides ([`after_payment`]): the store reads and writes, this decides. Only a
/// payment that was recorded commits; any other outcome wrote nothing.
async fn record_payment(
    state: &AppState,
    record: &PaymentRecord<'_>,
) -> Result<PaymentOutcome, StoreError> {
    let mut client = state.db().get().await?;
    let tx = client.transaction().await?;
    let outcome = payments::record_payment(&tx, record).await?;
    if outcome.recorded() {
        outbox::insert(&tx, &after_payment(&outcome)).await?;
        tx.commit().await?;
    }
    Ok(outcome)
}

/// What a recorded payment decides: `order.paid` to the merchant's admins and the
/// riders' recommendation for a newly paid order; an alert to staff for a payment
/// that came too late or twice. Written with the payment, in its transaction.
pub fn after_payment(outcome: &PaymentOutcome) -> Vec<NewRow> {
    match outcome {
        PaymentOutcome::Applied(order) => vec![
            Notification::new(
                Kind::OrderPaid,
                "新订单通知",
                "您有新的已支付订单，请及时处理",
            )
            .with("order_id", order.id)
            .with("out_trade_no", order.out_trade_no.clone())
            .with("merchant_id", order.merchant_id)
            .with("total_fen", order.total_fen)
            .outbox(Audience::MerchantAdmins(order.merchant_id), Some(order.id)),
            // Matched and filled in by the relay (merchant name, distance per rider).
            Notification::new(Kind::OrderRecommend, "新订单推荐", "您有新的推荐订单")
                .with("order_id", order.id)
                .with("merchant_id", order.merchant_id)
                .with("total_fen", order.total_fen)
                .outbox(Audience::RidersNearOrder(order.id), Some(order.id)),
        ],
        PaymentOutcome::Late(order) => vec![system_alert(
            "late_payment",
            format!("order {} was paid after it was closed; refund it", order.id),
            order.id,
        )],
        PaymentOutcome::Conflict(order) => vec![system_alert(
            "duplicate_payment",
            format!(
                "order {} was paid by a second transaction; refund one",
                order.id
            ),
            order.id,
        )],
        _ => Vec::new(),
    }
}

/// An alert to staff about `order_id`, sent once the payment's transaction commits.
fn system_alert(kind: &'static str, detail: String, order_id: i64) -> NewRow {
    system_error(kind, detail)
        .with("order_id", order_id)
        .outbox(Audience::PlatformStaff, Some(order_id))
}

fn refusal_label(e: &NotifyError) -> &'static str {
    match e {
        NotifyError::MissingHeader(_) => "missing_header",
        NotifyError::UnknownSerial => "unknown_serial",
        NotifyError::BadSignature => "bad_signature",
        NotifyError::Stale => "stale",
        NotifyError::Malformed => "malformed",
        NotifyError::Undecryptable => "undecryptable",
    }
}
