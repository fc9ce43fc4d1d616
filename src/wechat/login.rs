//! `code2Session`: exchanges a mini-program login code for the user's openid.
//!
//! WeChat answers JSON with `Content-Type: text/plain`, so the body is parsed as JSON
//! whatever its content type. A missing `errcode` (or 0) is success; an empty `openid`
//! is not. The `session_key` in the answer is never kept, logged or returned.

use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::config::WechatConfig;

/// How long login waits for WeChat before answering 502: a mini-program user is
/// watching a spinner.
pub const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// 40029 (invalid code), 40163 (code already used).
    #[error("the login code is invalid or already used")]
    CodeInvalid,
    /// 40226: a blocked user.
    #[error("the WeChat user is blocked")]
    UserBlocked,
    /// 45011: WeChat's per-user rate limit.
    #[error("WeChat rate limit reached")]
    RateLimited,
    /// -1 (busy), any other code, a timeout, a transport error or an unreadable answer.
    #[error("WeChat is unavailable: {0}")]
    Unavailable(String),
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    openid: Option<String>,
    #[serde(default)]
    errcode: Option<i64>,
}

/// A `code2Session` client for one appid. Cheap to clone.
#[derive(Clone)]
pub struct WechatLogin {
    http: reqwest::Client,
    config: WechatConfig,
}

impl WechatLogin {
    pub fn new(config: WechatConfig) -> Self {
        Self {
            http: super::http_client(TIMEOUT),
            config,
        }
    }

    /// The openid behind a login `code`.
    #[tracing::instrument(skip_all)]
    pub async fn code2session(&self, code: &str) -> Result<String, LoginError> {
        let request = self
            .http
            .get(super::endpoint(
                &self.config.api_base,
                "/sns/jscode2session",
            ))
            .query(&[
                ("appid", self.config.appid.as_str()),
                ("secret", self.config.secret.expose_secret()),
                ("js_code", code),
                ("grant_type", "authorization_code"),
            ]);
        let body = super::answer(request)
            .await
            .map_err(LoginError::Unavailable)?;
        interpret(&body)
    }
}

/// The longest openid taken: WeChat's are 28 characters.
const OPENID_MAX: usize = 128;

/// What a `code2Session` answer body says: the openid, or why there is none.
pub fn interpret(body: &[u8]) -> Result<String, LoginError> {
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|_| LoginError::Unavailable("answer is not JSON".into()))?;
    match answer.errcode {
        None | Some(0) => match answer.openid {
            Some(openid)
                if !openid.is_empty()
                    && openid.len() <= OPENID_MAX
                    && openid.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Ok(openid)
            }
            Some(_) => Err(LoginError::Unavailable("malformed openid".into())),
            None => Err(LoginError::Unavailable("answer has no openid".into())),
        },
        Some(40029 | 40163) => Err(LoginError::CodeInvalid),
        Some(40226) => Err(LoginError::UserBlocked),
        Some(45011) => Err(LoginError::RateLimited),
        Some(code) => Err(LoginError::Unavailable(format!("errcode {code}"))),
    }
}
