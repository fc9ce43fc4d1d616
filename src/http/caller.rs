//! Extractors that put authentication in a handler's signature.
//!
//! [`Caller`] verifies the bearer token and loads the caller's roles from the database
//! on every request, so a handler that takes a `Caller` cannot run unauthenticated, and
//! what the caller may do is always decided by current data (SPEC §4).

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri};

use crate::app::AppState;
use crate::domain::{Role, UserId};
use crate::error::ApiError;
use crate::store;

/// An authenticated user and their current roles.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: UserId,
    pub roles: Vec<Role>,
}

impl Caller {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// 403 unless the caller has `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.has(role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "forbidden",
                format!("requires the {role} role"),
            ))
        }
    }
}

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

/// Verifies the token and loads the user's roles. A token for a user that no longer
/// exists is as good as no token.
pub async fn authenticate(state: &AppState, token: Option<String>) -> Result<Caller, ApiError> {
    let token = token.ok_or_else(ApiError::unauthorized)?;
    let (id, _claims) = state
        .tokens()
        .verify(&token)
        .map_err(|_| ApiError::unauthorized())?;
    let roles = store::users::roles(state.db(), id)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    Ok(Caller { id, roles })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(
            state,
            token_from(&parts.headers, &parts.uri, TokenSource::Header),
        )
        .await
    }
}
