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
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .build()
            // Building a client only fails when the TLS backend cannot initialise, a
            // broken build rather than a runtime condition.
            .expect("the HTTP client for WeChat must build");
        Self { http, config }
    }

    /// The openid behind a login `code`.
    #[tracing::instrument(skip_all)]
    pub async fn code2session(&self, code: &str) -> Result<String, LoginError> {
        let mut url = self.config.api_base.clone();
        url.set_path(&format!(
            "{}/sns/jscode2session",
            url.path().trim_end_matches('/')
        ));
        // Errors below are described without the URL: its query holds the app secret.
        let response = self
            .http
            .get(url)
            .query(&[
                ("appid", self.config.appid.as_str()),
                ("secret", self.config.secret.expose_secret()),
                ("js_code", code),
                ("grant_type", "authorization_code"),
            ])
            .send()
            .await
            .map_err(|e| {
                LoginError::Unavailable(if e.is_timeout() {
                    "timed out".into()
                } else {
                    "request failed".into()
                })
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(LoginError::Unavailable(format!("HTTP {}", status.as_u16())));
        }
        let body = super::read_capped(response).await.map_err(|e| {
            LoginError::Unavailable(match e {
                super::ReadError::TooLarge => "answer too large".into(),
                super::ReadError::Cut => "answer cut short".into(),
            })
        })?;
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
