//! The [`Caller`] extractor: authentication in a handler's signature.
//!
//! [`Caller`] verifies the bearer token and loads the caller's roles from the database
//! on every request, so a handler that takes a `Caller` cannot run unauthenticated, and
//! what the caller may do is always decided by current data (SPEC §4).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::auth::keys;
use crate::auth::{token_from, TokenSource};
use crate::domain::{Role, Scope, UserId};
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
    let (id, _, roles) = state
        .limits()
        .check_token(
            state.tokens(),
            &token,
            ApiError::unauthorized,
            |id, claims| {
                state
                    .limits()
                    .check_user(id, claims, back_office)
                    .map_err(|wait| super::limits::too_many(wait, "user"))
            },
            |id| async move { Ok(store::users::roles(state.db(), id).await?) },
        )
        .await?;
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

/// Who calls a platform route (SPEC §10): a member of staff, or a back-office service
/// with a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    User(UserId),
    Key { id: i64, name: String },
}

/// The caller of a platform route: staff (a user with the platform role, who may do
/// everything a key may), or a service key with its scopes. Any other user is 403
/// `forbidden`; a key that is unknown, malformed, expired or revoked is 401.
#[derive(Debug, Clone)]
pub struct Staff {
    pub principal: Principal,
    scopes: Vec<Scope>,
}

impl Staff {
    /// 403 `missing_scope` unless the caller may do what `scope` covers.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "missing_scope",
                format!("this key lacks the {scope} scope"),
            ))
        }
    }

    /// The staff member, if a person calls (not a key).
    pub fn user(&self) -> Option<UserId> {
        match self.principal {
            Principal::User(id) => Some(id),
            Principal::Key { .. } => None,
        }
    }

    /// Whose `Idempotency-Key`s these are: a user's (`7`) and a key's (`k7`) never meet.
    pub fn idempotency_space(&self) -> String {
        match &self.principal {
            Principal::User(id) => id.0.to_string(),
            Principal::Key { id, .. } => format!("k{id}"),
        }
    }

    /// The sender a receipt names: `{"key": id, "name"}` or `{"user_id"}`.
    pub fn sent_by(&self) -> serde_json::Value {
        match &self.principal {
            Principal::User(id) => serde_json::json!({ "user_id": id.0 }),
            Principal::Key { id, name } => serde_json::json!({ "key": id, "name": name }),
        }
    }
}

impl FromRequestParts<AppState> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let credential = token_from(&parts.headers, &parts.uri, TokenSource::Header);
        if let Some(credential) = credential.as_deref().filter(|c| keys::is_key(c)) {
            let presented = keys::parse(credential).ok_or_else(ApiError::unauthorized)?;
            // The key's own quota, before it is looked up.
            if let Err(wait) = state.limits().check_key(presented.id) {
                return Err(super::limits::too_many(wait, "key"));
            }
            let key = crate::service::keys::authenticate(state.db(), state.key_cache(), credential)
                .await?;
            return Ok(Staff {
                principal: Principal::Key {
                    id: key.id,
                    name: key.name.clone(),
                },
                scopes: key.scopes.clone(),
            });
        }
        let caller = authenticate_on(state, credential, true).await?;
        caller.require(Role::Platform)?;
        Ok(Staff {
            principal: Principal::User(caller.id),
            scopes: Scope::ALL.to_vec(),
        })
    }
}

/// The caller of a route that people and service keys may both read (an order's
/// receipts): a service key (its scopes to be checked), or a signed-in user.
pub enum Reader {
    Key(Staff),
    User(Caller),
}

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let is_key = token_from(&parts.headers, &parts.uri, TokenSource::Header)
            .is_some_and(|c| keys::is_key(&c));
        if is_key {
            Ok(Reader::Key(Staff::from_request_parts(parts, state).await?))
        } else {
            Ok(Reader::User(
                Caller::from_request_parts(parts, state).await?,
            ))
        }
    }
}
