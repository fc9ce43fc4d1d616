//! WeChat Pay API v3 (`WECHATPAY_*`): the merchant's keys, WeChat Pay's public key, and
//! where prepay is called and notifications are sent.

use std::path::PathBuf;

use secrecy::SecretString;

use super::vars::{parse_http_url, ConfigError, Vars};

const DEFAULT_WECHATPAY_API_BASE: &str = "https://api.mch.weixin.qq.com";

/// WeChat Pay API v3. Every field is optional on its own; the parts that need a set of
/// them check for the whole set where they are built.
#[derive(Debug, Clone)]
pub struct WechatPayConfig {
    pub mchid: Option<String>,
    pub apiv3_key: Option<SecretString>,
    pub public_key_file: Option<PathBuf>,
    pub public_key_id: Option<String>,
    pub merchant_private_key_file: Option<PathBuf>,
    pub merchant_serial: Option<String>,
    pub api_base: url::Url,
    pub notify_url: Option<url::Url>,
}

/// The WeChat Pay section.
pub(super) fn read<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<WechatPayConfig, ConfigError> {
    let apiv3_key = vars.get("WECHATPAY_APIV3_KEY");
    if let Some(key) = &apiv3_key {
        if key.len() != 32 {
            return Err(ConfigError::new(
                "WECHATPAY_APIV3_KEY",
                format!("must be exactly 32 bytes, got {}", key.len()),
            ));
        }
    }
    Ok(WechatPayConfig {
        mchid: vars.get("WECHATPAY_MCHID"),
        apiv3_key: apiv3_key.map(SecretString::from),
        public_key_file: vars.get("WECHATPAY_PUBLIC_KEY_FILE").map(PathBuf::from),
        public_key_id: vars.get("WECHATPAY_PUBLIC_KEY_ID"),
        merchant_private_key_file: vars
            .get("WECHATPAY_MERCHANT_PRIVATE_KEY_FILE")
            .map(PathBuf::from),
        merchant_serial: vars.get("WECHATPAY_MERCHANT_SERIAL"),
        api_base: vars.url("WECHATPAY_API_BASE", DEFAULT_WECHATPAY_API_BASE)?,
        notify_url: match vars.get("WECHATPAY_NOTIFY_URL") {
            None => None,
            Some(v) => Some(
                parse_http_url(&v)
                    .map_err(|reason| ConfigError::new("WECHATPAY_NOTIFY_URL", reason))?,
            ),
        },
    })
}
