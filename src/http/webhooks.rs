//! `POST /v1/webhooks/wechat-pay/notify`: WeChat Pay API v3 payment notifications
//! (the flow is [`crate::service::payments`]).
//!
//! Success is 204 with no body; failure is 4xx/5xx with `{"code": "FAIL", "message"}`,
//! which makes WeChat Pay retry. Repeats are normal and answered 204 with no side
//! effect. The body is never logged.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::service::payments::{self, PaymentError};
use crate::state::AppState;
use crate::wechat::pay::NotifyHeaders;

#[tracing::instrument(skip_all)]
pub async fn wechat_pay_notify(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        // Oversize (or unreadable): still WeChat Pay's shape, so it is understood.
        Err(e) => {
            let message = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "body too large"
            } else {
                "unreadable body"
            };
            return (
                e.status(),
                Json(json!({ "code": "FAIL", "message": message })),
            )
                .into_response();
        }
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = NotifyHeaders {
        timestamp: header("Wechatpay-Timestamp"),
        nonce: header("Wechatpay-Nonce"),
        signature: header("Wechatpay-Signature"),
        serial: header("Wechatpay-Serial"),
    };
    match payments::on_notification(&state, &signed, &body).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => fail(&e),
    }
}

/// WeChat Pay's failure shape; any failure makes it retry.
fn fail(e: &PaymentError) -> Response {
    let (status, message) = match e {
        PaymentError::NotConfigured => (StatusCode::INTERNAL_SERVER_ERROR, "not configured"),
        PaymentError::Refused(_) => (StatusCode::UNAUTHORIZED, "verification failed"),
        PaymentError::WrongMchid => (StatusCode::BAD_REQUEST, "wrong mchid"),
        PaymentError::WrongAppid => (StatusCode::BAD_REQUEST, "wrong appid"),
        PaymentError::UnknownOrder => (StatusCode::BAD_REQUEST, "unknown out_trade_no"),
        PaymentError::AmountMismatch => (StatusCode::BAD_REQUEST, "amount mismatch"),
        PaymentError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "try again"),
    };
    (status, Json(json!({ "code": "FAIL", "message": message }))).into_response()
}
