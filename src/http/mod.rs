//! The HTTP surface: routes, and the layers every request passes through.
//!
//! Handlers stay thin: extract and authorise, parse into domain types, call the store
//! or a service, map the error. Everything a client can get wrong (unknown route, wrong
//! method, malformed body, a panic) is answered as JSON `{"code", "message"}`.

mod auth;
pub mod caller;
mod console;
mod health;
pub(crate) mod json;
mod keys;
pub mod limits;
pub(crate) mod log;
mod merchants;
pub mod openapi;
pub(crate) mod orders;
mod path;
mod platform;
mod riders;
pub mod server;
mod subscriptions;
mod suspensions;
mod webhooks;

pub use caller::Caller;
pub use json::ApiJson;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::AppState;

/// Request bodies are small JSON documents; anything larger is refused before parsing.
const BODY_LIMIT: usize = 64 * 1024;

/// An HTTP request that takes longer than this is answered 503 (WebSocket sessions are
/// not affected: the upgrade answers at once).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The API's routes with their OpenAPI description, both from the handlers'
/// `#[utoipa::path]`s: a route cannot be added without its description.
fn routes() -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::new()
        .routes(routes!(auth::wechat_login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(subscriptions::report, subscriptions::list))
        .routes(routes!(crate::ws::connect))
        .merge(platform::routes())
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::revoke))
        .routes(routes!(orders::close))
        .routes(routes!(suspensions::suspend_rider))
        .routes(routes!(suspensions::reinstate_rider))
        .routes(routes!(suspensions::rider_suspensions))
        .routes(routes!(suspensions::suspend_merchant))
        .routes(routes!(suspensions::reinstate_merchant))
        .routes(routes!(suspensions::merchant_suspensions))
        .routes(routes!(riders::apply))
        .routes(routes!(riders::online))
        .routes(routes!(riders::offline))
        .routes(routes!(riders::location))
        .routes(routes!(riders::accept))
        .routes(routes!(riders::pickup))
        .routes(routes!(riders::deliver))
        .routes(routes!(merchants::create))
        .routes(routes!(merchants::create_product))
        .routes(routes!(merchants::update_product))
        .routes(routes!(orders::create))
        .routes(routes!(orders::get))
        .routes(routes!(orders::urge))
        .routes(routes!(orders::refuse))
        .routes(routes!(orders::receipts))
        .routes(routes!(webhooks::wechat_pay_notify));
    OpenApiRouter::with_openapi(openapi::Base::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .nest("/v1", api)
}

/// The OpenAPI 3.1 description of the whole HTTP API (`GET /openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::document(routes().split_for_parts().1)
}

pub fn router(state: AppState) -> Router {
    let (routes, doc) = routes().split_for_parts();
    let description = std::sync::Arc::new(openapi::to_json(&openapi::document(doc)));
    // The per-address limit covers `/v1` only; the operations routes stay unlimited.
    let routes = routes.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        limits::by_address,
    ));
    routes
        .route(
            "/openapi.json",
            get(move || {
                let description = description.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        description.as_str().to_owned(),
                    )
                }
            }),
        )
        .route("/console", get(console::index))
        .route("/console/console.js", get(console::script))
        .route("/console/console.css", get(console::style))
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
