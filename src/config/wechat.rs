//! WeChat login (`WECHAT_APPID`, `WECHAT_SECRET`, `WECHAT_API_BASE`) and the
//! subscription-message fallback (`WECHAT_SUBSCRIBE_FILE`, `PUSH_FALLBACK_AFTER`), which
//! sends with the mini-program's access token and so needs the login settings.

use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;

use super::templates;
use super::vars::{ConfigError, Vars};

const DEFAULT_WECHAT_API_BASE: &str = "https://api.weixin.qq.com";

/// WeChat mini-program login (`code2Session`).
#[derive(Debug, Clone)]
pub struct WechatConfig {
    pub appid: String,
    pub secret: SecretString,
    pub api_base: url::Url,
}

/// The subscription-message fallback.
#[derive(Debug, Clone)]
pub struct SubscribeConfig {
    /// Read from `WECHAT_SUBSCRIBE_FILE` and checked at start-up.
    pub templates: templates::Templates,
    /// `PUSH_FALLBACK_AFTER` (default 30 s): how long a notification stays neither
    /// delivered nor acked before it falls back.
    pub fallback_after: Duration,
}

/// The WeChat login section: both of `WECHAT_APPID` and `WECHAT_SECRET`, or neither.
pub(super) fn login<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<Option<WechatConfig>, ConfigError> {
    match (vars.get("WECHAT_APPID"), vars.get("WECHAT_SECRET")) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::new(
            "WECHAT_SECRET",
            "is required when WECHAT_APPID is set",
        )),
        (None, Some(_)) => Err(ConfigError::new(
            "WECHAT_APPID",
            "is required when WECHAT_SECRET is set",
        )),
        (Some(appid), Some(secret)) => Ok(Some(WechatConfig {
            appid,
            secret: SecretString::from(secret),
            api_base: vars.url("WECHAT_API_BASE", DEFAULT_WECHAT_API_BASE)?,
        })),
    }
}

/// The subscription-message section: `None` without the file; `has_login` says whether
/// [`login`] found WeChat's settings.
pub(super) fn subscribe<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
    has_login: bool,
) -> Result<Option<SubscribeConfig>, ConfigError> {
    let Some(path) = vars.get("WECHAT_SUBSCRIBE_FILE") else {
        return Ok(None);
    };
    if !has_login {
        return Err(ConfigError::new(
            "WECHAT_SUBSCRIBE_FILE",
            "needs WECHAT_APPID and WECHAT_SECRET (the sends use the mini-program's access token)",
        ));
    }
    let templates = templates::Templates::load(Path::new(&path))
        .map_err(|why| ConfigError::new("WECHAT_SUBSCRIBE_FILE", why))?;
    let fallback_after = vars.duration("PUSH_FALLBACK_AFTER", Duration::from_secs(30))?;
    if fallback_after < Duration::from_secs(1) {
        return Err(ConfigError::new(
            "PUSH_FALLBACK_AFTER",
            "must be at least 1s",
        ));
    }
    Ok(Some(SubscribeConfig {
        templates,
        fallback_after,
    }))
}
