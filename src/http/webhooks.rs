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

use super::openapi::{PayFailure, PayNotification};

use crate::service::payments::{self, PaymentError};
use crate::state::AppState;
use crate::wechat::pay::NotifyHeaders;

/// WeChat Pay's payment notification: verified (signature, key id, ±300 s), decrypted,
/// checked against the order, and the order marked paid exactly once. Repeats are
/// answered 204 with no side effect.
#[utoipa::path(post, path = "/webhooks/wechat-pay/notify", tag = "webhooks",
    params(
        ("Wechatpay-Timestamp" = String, Header, description = "Unix seconds; refused more than 300 s from now"),
        ("Wechatpay-Nonce" = String, Header, description = "The signature's nonce"),
        ("Wechatpay-Signature" = String, Header, description = "Base64 RSA-SHA256 (PKCS#1 v1.5) over `timestamp\\nnonce\\nbody\\n`"),
        ("Wechatpay-Serial" = String, Header, description = "The id of the WeChat Pay public key that signed"),
    ),
    request_body(content = PayNotification, content_type = "application/json"),
    responses(
        (status = 204, description = "Accepted (or a repeat: no side effect)"),
        (status = 400, description = "`wrong mchid`, `wrong appid`, `unknown out_trade_no`, `amount mismatch`", body = PayFailure),
        (status = 401, description = "`verification failed`: signature, key id, timestamp or decryption", body = PayFailure),
        (status = 404, description = "`not configured`: this deployment takes no WeChat Pay notifications", body = PayFailure),
        (status = 413, description = "`body too large`: over 64 KiB", body = PayFailure),
        (status = 429, description = "Rate limited", body = crate::error::Body),
        (status = 503, description = "`try again`: the database is unavailable; WeChat Pay retries", body = PayFailure),
    ))]
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
                Json(PayFailure {
                    code: "FAIL",
                    message,
                }),
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
        // Nothing here to take a notification: as if the route did not exist.
        PaymentError::NotConfigured => (StatusCode::NOT_FOUND, "not configured"),
        PaymentError::Refused(_) => (StatusCode::UNAUTHORIZED, "verification failed"),
        PaymentError::WrongMchid => (StatusCode::BAD_REQUEST, "wrong mchid"),
        PaymentError::WrongAppid => (StatusCode::BAD_REQUEST, "wrong appid"),
        PaymentError::UnknownOrder => (StatusCode::BAD_REQUEST, "unknown out_trade_no"),
        PaymentError::AmountMismatch => (StatusCode::BAD_REQUEST, "amount mismatch"),
        PaymentError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "try again"),
    };
    (
        status,
        Json(PayFailure {
            code: "FAIL",
            message,
        }),
    )
        .into_response()
}
