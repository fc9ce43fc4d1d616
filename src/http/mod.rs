//! The HTTP surface: routes, and the layers every request passes through.
//!
//! Handlers stay thin: extract and authorise, parse into domain types, call the store
//! or a service, map the error. Everything a client can get wrong (unknown route, wrong
//! method, malformed body, a panic) is answered as JSON `{"code", "message"}`.

mod auth;
pub mod caller;
mod health;
mod json;
pub mod limits;
mod log;
mod merchants;
mod orders;
mod path;
mod platform;
mod riders;
pub mod server;
mod webhooks;

pub use caller::Caller;
pub use json::ApiJson;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// Request bodies are small JSON documents; anything larger is refused before parsing.
const BODY_LIMIT: usize = 64 * 1024;

/// An HTTP request that takes longer than this is answered 503 (WebSocket sessions are
/// not affected: the upgrade answers at once).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/auth/wechat-login", post(auth::wechat_login))
        .route("/auth/logout", post(auth::logout))
        .route("/me", get(auth::me))
        .route("/ws", get(crate::ws::connect))
        .route("/platform/notifications", post(platform::send_notification))
        .route("/platform/notifications/batch", post(platform::send_batch))
        .route(
            "/platform/notifications/{message_id}",
            get(platform::receipt),
        )
        .route("/platform/connections", get(platform::connections))
        .route(
            "/platform/riders/{user_id}/approve",
            post(platform::approve_rider),
        )
        .route(
            "/platform/riders/{user_id}/commands",
            post(platform::rider_command),
        )
        .route(
            "/platform/merchants/{id}/approve",
            post(platform::approve_merchant),
        )
        .route("/platform/orders/{id}/dispatch", post(platform::dispatch))
        .route(
            "/platform/riders/{user_id}/suspend",
            post(platform::suspend_rider),
        )
        .route(
            "/platform/merchants/{id}/suspend",
            post(platform::suspend_merchant),
        )
        .route("/rider/apply", post(riders::apply))
        .route("/rider/online", post(riders::online))
        .route("/rider/offline", post(riders::offline))
        .route("/rider/location", post(riders::location))
        .route("/rider/orders/{id}/accept", post(riders::accept))
        .route("/rider/orders/{id}/pickup", post(riders::pickup))
        .route("/rider/orders/{id}/deliver", post(riders::deliver))
        .route("/merchants", post(merchants::create))
        .route("/merchants/{id}/products", post(merchants::create_product))
        .route(
            "/merchants/{id}/products/{product_id}",
            patch(merchants::update_product),
        )
        .route("/orders", post(orders::create))
        .route("/orders/{id}", get(orders::get))
        .route("/orders/{id}/urge", post(orders::urge))
        .route("/orders/{id}/notifications", get(orders::receipts))
        .route(
            "/webhooks/wechat-pay/notify",
            post(webhooks::wechat_pay_notify),
        );

    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .nest(
            "/v1",
            api.layer(axum::middleware::from_fn_with_state(
                state.clone(),
                limits::by_address,
            )),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(CatchPanicLayer::custom(log::panic_response))
        .layer(axum::middleware::from_fn(log::log_request))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}
