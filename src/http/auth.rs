//! `POST /v1/auth/wechat-login` and `GET /v1/me`.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::caller::Caller;
use super::json::ApiJson;
use crate::domain::{Role, UserId};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store;

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"code": "0a3Xb21w3TnEq83eq63w3MxQN14Xb21w"}))]
pub struct LoginRequest {
    /// The code from `wx.login`: visible ASCII.
    #[schema(min_length = 1, max_length = 256)]
    code: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LoginUser {
    id: UserId,
    roles: Vec<Role>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    access_token: String,
    #[schema(example = "Bearer")]
    token_type: &'static str,
    /// Seconds until the token expires.
    expires_in: u64,
    user: LoginUser,
}

/// Login codes from `wx.login` are short printable strings; anything else never
/// reaches WeChat.
fn valid_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= 256 && code.chars().all(|c| c.is_ascii_graphic())
}

/// Signs in with a `wx.login` code: WeChat's `code2Session` names the user, who is
/// created (as a consumer) on first login.
#[utoipa::path(post, path = "/auth/wechat-login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = LoginResponse),
        (status = 401, description = "`wechat_code_invalid`: the code is invalid or used (WeChat 40029/40163)", body = crate::error::Body),
        (status = 403, description = "`wechat_user_blocked` (WeChat 40226)", body = crate::error::Body),
        (status = 429, description = "`rate_limited`: too many logins from this address (`HTTP_RATE_LOGIN`), or WeChat's own limit (45011)", body = crate::error::Body),
        (status = 502, description = "`wechat_unavailable`: WeChat failed or timed out", body = crate::error::Body),
        (status = 503, description = "`wechat_not_configured`, or the database is unavailable", body = crate::error::Body),
    ))]
#[tracing::instrument(skip_all)]
pub async fn wechat_login(
    State(state): State<AppState>,
    address: Option<axum::Extension<super::limits::ClientAddress>>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    if !valid_code(&body.code) {
        return Err(ApiError::unprocessable(
            "invalid_code",
            "code must be the non-empty string from wx.login",
        ));
    }
    // Every login calls WeChat, whose daily quota the whole app shares: an address gets
    // a small budget of its own, checked before the call.
    if let Some(axum::Extension(super::limits::ClientAddress(address))) = address {
        if let Err(wait) = state.limits().check_login(address) {
            return Err(super::limits::too_many(wait, "login"));
        }
    }
    let wechat = state.wechat().ok_or_else(|| {
        ApiError::unavailable("wechat_not_configured", "WeChat login is not configured")
    })?;
    let openid = wechat.code2session(&body.code).await?;
    let user = store::users::login_by_openid(state.db(), &openid).await?;
    if user.created {
        tracing::info!(user_id = %user.id, "new user");
    }
    let minted = state.tokens().mint(crate::auth::jwt::Subject {
        user: user.id,
        epoch: user.epoch,
    });
    Ok(Json(LoginResponse {
        access_token: minted.token,
        token_type: "Bearer",
        expires_in: minted.expires_in.as_secs(),
        user: LoginUser {
            id: user.id,
            roles: user.roles,
        },
    }))
}

/// The caller: roles, rider record, the merchants they administer.
#[utoipa::path(get, path = "/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "The caller", body = store::users::Me)))]
pub async fn me(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<store::users::Me>, ApiError> {
    Ok(Json(
        store::users::me(state.db(), caller.id, caller.roles).await?,
    ))
}

/// `POST /v1/auth/logout` → 204: every token of the caller minted before now is refused
/// from now on, on every replica (the check reads the user's row, as every request
/// does), and the caller's sockets close with 4001 wherever they are. "Before" is decided
/// by the user's token epoch in the database, never by comparing replicas' clocks.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "Logged out: older tokens are refused and the sockets close with 4001")))]
#[tracing::instrument(skip_all)]
pub async fn logout(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::http::StatusCode, ApiError> {
    if let Some(tokens) = store::users::log_out(state.db(), caller.id).await? {
        // This replica refuses the old tokens from now on without asking again.
        state.limits().remember_revoked(caller.id, tokens);
    }
    if let Err(e) =
        crate::notify::close_user(&**state.engine(), caller.id, 4001, "logged out").await
    {
        // The sockets still close at their token's expiry, and none can reconnect.
        tracing::warn!(error = %e, "logout: the sockets could not be told");
    }
    metrics::counter!("locallife_logouts_total").increment(1);
    Ok(axum::http::StatusCode::NO_CONTENT)
}
