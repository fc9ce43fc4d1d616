//! One log line per request, and the answer to a panic.
//!
//! Why a route template and not the URI: the URI of `/v1/ws?token=...` holds an access
//! token, and ids in paths would make log search and metrics high-cardinality. Headers
//! and bodies are never logged.

use std::any::Any;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

pub async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "<unmatched>".to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed().as_secs_f64();
    let latency_ms = elapsed * 1000.0;
    metrics::counter!(
        "locallife_http_requests_total",
        "method" => method.to_string(),
        "route" => route.clone(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!(
        "locallife_http_request_duration_seconds",
        "method" => method.to_string(),
        "route" => route.clone()
    )
    .record(elapsed);
    if status >= 500 {
        tracing::warn!(%method, route, status, latency_ms, "request");
    } else {
        tracing::info!(%method, route, status, latency_ms, "request");
    }
    response
}

/// A handler panicked: log that it did (not the payload, which could hold input) and
/// answer an opaque 500.
pub fn panic_response(_payload: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "internal error",
    )
    .into_response()
}
