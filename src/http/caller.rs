//! The [`Caller`] extractor: authentication in a handler's signature.
//!
//! [`Caller`] verifies the bearer token and loads the caller's roles from the database
//! on every request, so a handler that takes a `Caller` cannot run unauthenticated, and
//! what the caller may do is always decided by current data (SPEC §4).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::auth::{token_from, TokenSource};
use crate::domain::{Role, UserId};
use crate::error::ApiError;
use crate::state::AppState;
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

/// Verifies the token and loads the user's roles. A token for a user that no longer
/// exists is as good as no token.
pub async fn authenticate(state: &AppState, token: Option<String>) -> Result<Caller, ApiError> {
    authenticate_on(state, token, false).await
}

/// [`authenticate`], the user's request rate checked first (before any database work)
/// against the back-office quota or the ordinary one.
pub async fn authenticate_on(
    state: &AppState,
    token: Option<String>,
    back_office: bool,
) -> Result<Caller, ApiError> {
    let token = token.ok_or_else(ApiError::unauthorized)?;
    let (id, claims) = state
        .tokens()
        .verify(&token)
        .map_err(|_| ApiError::unauthorized())?;
    // A token known to be logged out is refused before it can spend its user's quota
    // (a stolen, logged-out token cannot lock its owner out).
    if state.limits().known_revoked(id, &claims) {
        return Err(ApiError::unauthorized());
    }
    if let Err(wait) = state.limits().check_user(id, &claims, back_office) {
        return Err(super::limits::too_many(wait, "user"));
    }
    let (roles, tokens) = store::users::roles(state.db(), id)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    // Refused by a logout of the user (read with the roles, no extra query).
    if claims.revoked_by(&tokens) {
        state.limits().remember_revoked(id, tokens);
        return Err(ApiError::unauthorized());
    }
    Ok(Caller { id, roles })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate_on(
            state,
            token_from(&parts.headers, &parts.uri, TokenSource::Header),
            super::limits::back_office(super::limits::full_path(&parts.extensions, &parts.uri)),
        )
        .await
    }
}
