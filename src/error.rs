//! The one error type HTTP handlers return, its JSON shape `{"code", "message"}`, and
//! every mapping into it: each layer below (store, engine, WeChat, the business flows)
//! has its own error enum, and this file alone decides the status and code of each.
//!
//! Why a single struct rather than a variant per failure: every error the API answers is
//! a status, a stable snake_case `code` that clients switch on, and a human message. The
//! service layers have their own `thiserror` enums and map into this at the boundary.
//! Internal failures are logged here and answered as an opaque 500 or 503, so nothing
//! internal (SQL, hostnames, stack traces) reaches a client.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::engine::EngineError;
use crate::service::keys::KeyError;
use crate::service::notifications::SendError;
use crate::service::orders::{DispatchError, OrderError};
use crate::service::riders::RiderError;
use crate::service::suspensions::SuspensionError;
use crate::store::orders::CreateError;
use crate::store::suspensions::Account;
use crate::store::StoreError;
use crate::wechat::login::LoginError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub message: Cow<'static, str>,
    /// When to try again: the `Retry-After` header and `retry_after_s` in the body.
    pub retry_after_s: Option<u64>,
}

// The one error body: every HTTP answer and the socket's refusals carry it, and the
// OpenAPI document describes it (as `Error`) from this type. Its doc comments are that
// description.
/// Every error the API answers: a stable `code` that clients switch on, and a message
/// for people.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error, example = json!({"code": "not_found", "message": "no such resource"}))]
pub struct Body<'a> {
    /// snake_case, stable: `unauthorized`, `forbidden`, `not_found`, `malformed_json`,
    /// `invalid_body`, `rate_limited`, `engine_unavailable`, …
    pub code: &'a str,
    pub message: &'a str,
    /// With 429 (and some 503s): seconds to wait, as in `Retry-After`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// The same error, telling the client to try again after `seconds`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    /// The JSON body this error answers with.
    pub fn body(&self) -> Body<'_> {
        Body {
            code: &self.code,
            message: &self.message,
            retry_after_s: self.retry_after_s,
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid access token is required",
        )
    }

    pub fn forbidden(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// An unexpected failure: logged with its cause, answered without it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

/// Every `code` an HTTP error answer may carry: the OpenAPI document lists them as the
/// `Error` schema's enum (client generators switch on it), a test holds this list to the
/// codes the source writes, and in debug builds (the test suite) an answer with any
/// other code panics.
pub const CODES: &[&str] = &[
    "already_applied",
    "bad_body",
    "body_too_large",
    "connect_rate_limited",
    "database_unavailable",
    "draining",
    "engine_unavailable",
    "forbidden",
    "idempotency_key_reused",
    "insufficient_stock",
    "internal_error",
    "invalid_accepted",
    "invalid_address",
    "invalid_batch",
    "invalid_body",
    "invalid_code",
    "invalid_content",
    "invalid_data",
    "invalid_expires_in",
    "invalid_idempotency_key",
    "invalid_items",
    "invalid_limit",
    "invalid_name",
    "invalid_order_status",
    "invalid_phone",
    "invalid_position",
    "invalid_price",
    "invalid_query",
    "invalid_reason",
    "invalid_role",
    "invalid_scopes",
    "invalid_stock",
    "invalid_target",
    "invalid_template",
    "invalid_threshold",
    "invalid_title",
    "invalid_ttl",
    "malformed_json",
    "merchant_not_approved",
    "merchant_not_suspended",
    "merchant_suspended",
    "merchant_unavailable",
    "method_not_allowed",
    "missing_scope",
    "not_found",
    "not_merchant_admin",
    "not_order_consumer",
    "order_not_available",
    "order_not_closable",
    "order_not_dispatchable",
    "order_not_urgeable",
    "order_taken",
    "overloaded",
    "rate_limited",
    "rider_not_approved",
    "rider_not_suspended",
    "rider_offline",
    "rider_suspended",
    "role_not_allowed",
    "too_many_connections",
    "too_many_sockets",
    "too_many_templates",
    "too_many_unpaid_orders",
    "unauthorized",
    "unknown_template",
    "unsupported_media_type",
    "unsupported_protocol",
    "urge_too_frequent",
    "user_not_found",
    "websocket_required",
    "wechat_code_invalid",
    "wechat_not_configured",
    "wechat_rate_limited",
    "wechat_unavailable",
    "wechat_user_blocked",
    "wechatpay_not_configured",
    "wechatpay_unavailable",
];

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        debug_assert!(
            CODES.contains(&self.code.as_ref()),
            "error code {:?} is not in error::CODES",
            self.code
        );
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, s.into());
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                metrics::counter!("locallife_postgres_errors_total").increment(1);
                tracing::warn!(error = %cause, "database unavailable");
                Self::unavailable("database_unavailable", "the database is unavailable")
            }
            StoreError::Query(cause) => {
                metrics::counter!("locallife_postgres_errors_total").increment(1);
                Self::internal(cause)
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        metrics::counter!("locallife_redis_errors_total").increment(1);
        tracing::warn!(error = %e, "engine unavailable");
        ApiError::unavailable(
            "engine_unavailable",
            "Redis did not answer in time and the outcome is unknown; retry (a publish \
             retried with the same Idempotency-Key never delivers twice)",
        )
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::CodeInvalid => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "wechat_code_invalid",
                "the login code is invalid or was already used",
            ),
            LoginError::UserBlocked => {
                ApiError::forbidden("wechat_user_blocked", "this WeChat user is blocked")
            }
            LoginError::RateLimited => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "wechat_rate_limited",
                "too many login attempts, try again later",
            ),
            LoginError::Unavailable(why) => {
                tracing::warn!(reason = %why, "WeChat code2Session failed");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "wechat_unavailable",
                    "WeChat login is unavailable, try again",
                )
            }
        }
    }
}

impl From<OrderError> for ApiError {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::Create(CreateError::MerchantUnavailable) => ApiError::new(
                StatusCode::CONFLICT,
                "merchant_unavailable",
                "no such merchant, or it is not approved",
            ),
            OrderError::Create(CreateError::UnknownProduct(_)) => ApiError::unprocessable(
                "invalid_items",
                "every product must be this merchant's, and the total above zero",
            ),
            OrderError::Create(CreateError::InsufficientStock(p)) => ApiError::new(
                StatusCode::CONFLICT,
                "insufficient_stock",
                format!("not enough stock of product {p}; nothing was reserved"),
            ),
            OrderError::Create(CreateError::TooManyUnpaid(max)) => ApiError::new(
                StatusCode::CONFLICT,
                "too_many_unpaid_orders",
                format!("at most {max} unpaid orders at once: pay or wait for one to close"),
            ),
            OrderError::Create(CreateError::Store(e)) | OrderError::Store(e) => e.into(),
            OrderError::Prepay(why) => {
                tracing::warn!(reason = %why, "prepay failed");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "wechatpay_unavailable",
                    "WeChat Pay is unavailable; nothing was ordered, try again",
                )
            }
        }
    }
}

impl From<RiderError> for ApiError {
    fn from(e: RiderError) -> Self {
        let message = e.to_string();
        match e {
            RiderError::InvalidName => ApiError::unprocessable("invalid_name", message),
            RiderError::InvalidPhone => ApiError::unprocessable("invalid_phone", message),
            RiderError::InvalidPosition => ApiError::unprocessable("invalid_position", message),
            RiderError::AlreadyApplied => {
                ApiError::new(StatusCode::CONFLICT, "already_applied", message)
            }
            RiderError::NotApproved => ApiError::forbidden("rider_not_approved", message),
            RiderError::Suspended => ApiError::forbidden("rider_suspended", message),
            RiderError::Offline => ApiError::forbidden("rider_offline", message),
            RiderError::LocationWhileOffline => {
                ApiError::new(StatusCode::CONFLICT, "rider_offline", message)
            }
            RiderError::Store(e) => e.into(),
            RiderError::Engine(e) => e.into(),
        }
    }
}

impl From<DispatchError> for ApiError {
    fn from(e: DispatchError) -> Self {
        match e {
            DispatchError::RiderNotApproved => {
                ApiError::unprocessable("rider_not_approved", e.to_string())
            }
            DispatchError::Store(e) => e.into(),
        }
    }
}

impl From<SuspensionError> for ApiError {
    fn from(e: SuspensionError) -> Self {
        let message = e.to_string();
        let rider = |account: &Account| matches!(account, Account::Rider(_));
        match e {
            SuspensionError::NotFound(account) if rider(&account) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no rider application")
            }
            SuspensionError::NotFound(_) => ApiError::not_found(),
            SuspensionError::NotApproved(account, _) => ApiError::new(
                StatusCode::CONFLICT,
                if rider(&account) {
                    "rider_not_approved"
                } else {
                    "merchant_not_approved"
                },
                message,
            ),
            SuspensionError::NotSuspended(account, _) => ApiError::new(
                StatusCode::CONFLICT,
                if rider(&account) {
                    "rider_not_suspended"
                } else {
                    "merchant_not_suspended"
                },
                message,
            ),
            SuspensionError::Store(e) => e.into(),
            SuspensionError::Engine(e) => {
                metrics::counter!("locallife_redis_errors_total").increment(1);
                tracing::warn!(error = %e, "suspended, but the sockets could not be told");
                ApiError::unavailable(
                    "engine_unavailable",
                    "suspended; the sockets close at the next re-check, or repeat the request",
                )
            }
        }
    }
}

impl From<SendError> for ApiError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::UnknownUser => {
                ApiError::new(StatusCode::NOT_FOUND, "user_not_found", "no such user")
            }
            SendError::UnknownUsers(missing) => ApiError::new(
                StatusCode::NOT_FOUND,
                "user_not_found",
                format!("no such users: {missing:?}; nothing was sent"),
            ),
            SendError::KeyReused => ApiError::unprocessable(
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request",
            ),
            SendError::UnknownRider => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no approved rider")
            }
            SendError::Overloaded => ApiError::unavailable(
                "overloaded",
                "this replica is publishing as much as it can; nothing was sent, retry shortly",
            )
            .retry_after(1),
            SendError::Store(e) => e.into(),
            SendError::Engine(e) => e.into(),
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::InvalidName => ApiError::unprocessable("invalid_name", e.to_string()),
            KeyError::InvalidScopes => ApiError::unprocessable("invalid_scopes", e.to_string()),
            KeyError::InvalidLifetime => {
                ApiError::unprocessable("invalid_expires_in", e.to_string())
            }
            KeyError::Refused => ApiError::unauthorized(),
            KeyError::Store(e) => e.into(),
        }
    }
}
