//! `POST /v1/webhooks/wechat-pay/notify`: WeChat Pay API v3 payment notifications.
//!
//! Success is 204 with no body; failure is 4xx/5xx with `{"code": "FAIL", "message"}`,
//! which makes WeChat Pay retry. Repeats are normal and answered 204 with no side
//! effect. The body and the decrypted transaction are never logged.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::app::AppState;
use crate::service::orders as flows;
use crate::store::orders::{self, PaymentOutcome, PaymentRecord};
use crate::wechat::pay::{NotifyError, NotifyHeaders};

fn fail(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "code": "FAIL", "message": message }))).into_response()
}

#[tracing::instrument(skip_all)]
pub async fn wechat_pay_notify(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(verifier) = state.pay_verifier() else {
        // A configuration fault, not the caller's: staff must hear of it.
        state.alerts().raise(
            "wechatpay_not_configured",
            "a WeChat Pay notification arrived but its verification key is not configured",
        );
        return fail(StatusCode::INTERNAL_SERVER_ERROR, "not configured");
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = NotifyHeaders {
        timestamp: header("Wechatpay-Timestamp"),
        nonce: header("Wechatpay-Nonce"),
        signature: header("Wechatpay-Signature"),
        serial: header("Wechatpay-Serial"),
    };
    let now = chrono::Utc::now().timestamp();
    let tx = match verifier.open(&signed, &body, now) {
        Ok(tx) => tx,
        Err(e) => {
            metrics::counter!("locallife_webhook_refused_total", "reason" => refusal_label(&e))
                .increment(1);
            tracing::warn!(reason = %e, "payment notification refused");
            if e == NotifyError::UnknownSerial {
                // WeChat Pay rotated its key, or ours is stale: configuration again.
                state.alerts().raise(
                    "wechatpay_unknown_serial",
                    "a payment notification was signed with an unknown WeChat Pay key id",
                );
            }
            return fail(StatusCode::UNAUTHORIZED, "verification failed");
        }
    };
    if tx.mchid != verifier.mchid {
        tracing::warn!("payment notification for another merchant id refused");
        return fail(StatusCode::BAD_REQUEST, "wrong mchid");
    }
    if tx.trade_state != "SUCCESS" {
        // Authentic but not a success (closed, refunded...): nothing to do.
        return StatusCode::NO_CONTENT.into_response();
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
    let outcome = match orders::record_payment(state.db(), &record).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "payment not recorded; WeChat Pay will retry");
            return fail(StatusCode::SERVICE_UNAVAILABLE, "try again");
        }
    };
    match &outcome {
        PaymentOutcome::UnknownOrder => {
            return fail(StatusCode::BAD_REQUEST, "unknown out_trade_no")
        }
        PaymentOutcome::AmountMismatch => {
            tracing::warn!("payment notification with a wrong amount refused");
            return fail(StatusCode::BAD_REQUEST, "amount mismatch");
        }
        _ => {}
    }
    if let Err(e) = flows::on_payment(&state, &outcome).await {
        // Recorded and paid; only the announcements failed. Say so to staff.
        tracing::warn!(error = %e, "after-payment notifications failed");
        state.alerts().raise(
            "after_payment_failed",
            "a paid order's notifications could not be sent",
        );
    }
    StatusCode::NO_CONTENT.into_response()
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
