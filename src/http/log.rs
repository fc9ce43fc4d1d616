//! One log line per request, and the answer to a panic.
//!
//! Why a route template and not the URI: the URI of `/v1/ws?token=...` holds an access
//! token, and ids in paths would make log search and metrics high-cardinality. Headers
//! and bodies are never logged.

use std::any::Any;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

pub async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "<unmatched>".to_owned());
    let response = next.run(request).await;
    let status = response.status();
    let elapsed = started.elapsed().as_secs_f64();
    let latency_ms = elapsed * 1000.0;
    metrics::counter!(
        "locallife_http_requests_total",
        "method" => method,
        "route" => route.clone(),
        "status" => status_class(status)
    )
    .increment(1);
    metrics::histogram!(
        "locallife_http_request_duration_seconds",
        "method" => method,
        "route" => route.clone()
    )
    .record(elapsed);
    let status = status.as_u16();
    if status >= 500 {
        tracing::warn!(method, route, status, latency_ms, "request");
    } else {
        tracing::info!(method, route, status, latency_ms, "request");
    }
    response
}

/// The method as a label: one of the standard methods, or `other` for any token a
/// client made up (SPEC §4: label values come from fixed sets, so no request can add a
/// metrics series).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The status as a label: its class, `1xx` to `5xx`.
pub fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// A handler panicked: log that it did (not the payload, which could hold input) and
/// answer an opaque 500.
pub fn panic_response(_payload: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "internal error",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        for m in ["GET", "POST", "PATCH", "DELETE"] {
            assert_eq!(method_label(&m.parse().unwrap()), m);
        }
        let made_up: Method = "X".repeat(1000).parse().unwrap();
        assert_eq!(method_label(&made_up), "other");
        assert_eq!(method_label(&"get".parse().unwrap()), "other");
    }

    #[test]
    fn statuses_are_labelled_by_class() {
        assert_eq!(status_class(StatusCode::OK), "2xx");
        assert_eq!(status_class(StatusCode::METHOD_NOT_ALLOWED), "4xx");
        assert_eq!(status_class(StatusCode::from_u16(599).unwrap()), "5xx");
    }
}
