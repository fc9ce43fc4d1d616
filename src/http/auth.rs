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

#[derive(Deserialize)]
pub struct LoginRequest {
    code: String,
}

#[derive(Serialize)]
pub struct LoginUser {
    id: UserId,
    roles: Vec<Role>,
}

#[derive(Serialize)]
pub struct LoginResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    user: LoginUser,
}

/// Login codes from `wx.login` are short printable strings; anything else never
/// reaches WeChat.
fn valid_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= 256 && code.chars().all(|c| c.is_ascii_graphic())
}

#[tracing::instrument(skip_all)]
pub async fn wechat_login(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    if !valid_code(&body.code) {
        return Err(ApiError::unprocessable(
            "invalid_code",
            "code must be the non-empty string from wx.login",
        ));
    }
    let wechat = state.wechat().ok_or_else(|| {
        ApiError::unavailable("wechat_not_configured", "WeChat login is not configured")
    })?;
    let openid = wechat.code2session(&body.code).await?;
    let user = store::users::login_by_openid(state.db(), &openid).await?;
    if user.created {
        tracing::info!(user_id = %user.id, "new user");
    }
    let minted = state.tokens().mint(user.id);
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

pub async fn me(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<store::users::Me>, ApiError> {
    Ok(Json(
        store::users::me(state.db(), caller.id, caller.roles).await?,
    ))
}
