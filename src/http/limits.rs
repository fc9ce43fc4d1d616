//! The request rate limits of [`crate::limits`] as HTTP: the per-address check in
//! front of every `/v1` route, which routes count as back-office, and the 429 answer
//! with `Retry-After`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// The client address a request is counted as ([`crate::limits::address_key`]), set by
/// [`by_address`] for the handlers after it (the anonymous login's own budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

/// Whether `path` (the full one, `/v1/...`) is a back-office route.
pub fn back_office(path: &str) -> bool {
    path.starts_with("/v1/platform/") || path.starts_with("/v1/webhooks/")
}

/// The request's full path: inside the `/v1` router the URI has lost its prefix, the
/// original is kept in an extension.
pub fn full_path<'a>(extensions: &'a axum::http::Extensions, uri: &'a axum::http::Uri) -> &'a str {
    extensions
        .get::<axum::extract::OriginalUri>()
        .map_or(uri.path(), |original| original.0.path())
}

/// The 429 answer.
pub fn too_many(retry_after_s: u64, by: &'static str) -> ApiError {
    metrics::counter!("locallife_rate_limited_total", "kind" => by).increment(1);
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many requests; wait and try again",
    )
    .retry_after(retry_after_s.max(1))
}

/// The per-address limit, as a middleware in front of every `/v1` route but the socket
/// (the operations routes outside `/v1` are not limited).
pub async fn by_address(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = full_path(request.extensions(), request.uri());
    if path.starts_with("/v1/") {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip());
        if let Some(address) = state.limits().client_address(&request, peer) {
            if let Err(wait) = state.limits().check_address(address, back_office(path)) {
                return too_many(wait, "address").into_response();
            }
            let mut request = request;
            request.extensions_mut().insert(ClientAddress(address));
            return next.run(request).await;
        }
    }
    next.run(request).await
}
