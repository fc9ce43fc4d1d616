//! Where a request's access token comes from: the `Authorization` header, or the
//! `?token=` query of a socket. Parsing only; verifying is [`super::jwt`].

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Uri};

/// Where a request's token may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>` only: the HTTP API.
    Header,
    /// The header, or `?token=` (mini-programs cannot set headers on sockets): `/v1/ws`.
    HeaderOrQuery,
}

/// The raw token of a request, if any. Never logged.
pub fn token_from(headers: &HeaderMap, uri: &Uri, source: TokenSource) -> Option<String> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned())
            .filter(|t| !t.is_empty());
    }
    if source == TokenSource::HeaderOrQuery {
        let query = uri.query()?;
        return url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .filter(|t| !t.is_empty());
    }
    None
}
