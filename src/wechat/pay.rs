//! WeChat Pay API v3: verifying and decrypting payment notifications, and JSAPI prepay.
//!
//! Notifications (SPEC §4): the RSA-SHA256 (PKCS#1 v1.5) signature in
//! `Wechatpay-Signature` covers `timestamp\nnonce\nbody\n` over the raw body bytes and is
//! checked with the WeChat Pay public key whose id equals `Wechatpay-Serial`; a timestamp
//! more than 300 s from now is refused; `resource` is AES-256-GCM with the APIv3 key
//! (nonce = the 12 bytes of `resource.nonce`, AAD = `resource.associated_data`,
//! ciphertext = base64 of ct‖tag).
//!
//! Answers from WeChat Pay's API carry the same four headers, signed the same way over
//! their body, and are believed only when they verify.
//!
//! Requests to WeChat Pay carry `Authorization: WECHATPAY2-SHA256-RSA2048 ...`, a
//! signature with the merchant's private key over
//! `METHOD\nPATH\ntimestamp\nnonce\nbody\n`; the `wx.requestPayment` parameters carry
//! `paySign` over `appId\ntimeStamp\nnonceStr\npackage\n`.

use std::time::Duration;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::rsa_keys::{SigningKey, VerifyingKey};

use crate::config::WechatPayConfig;

/// Notifications whose timestamp is further than this from now are refused (replays).
pub const MAX_SKEW_SECS: i64 = 300;
const PREPAY_TIMEOUT: Duration = Duration::from_secs(5);
const JSAPI_PATH: &str = "/v3/pay/transactions/jsapi";

/// Why a notification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("unknown Wechatpay-Serial")]
    UnknownSerial,
    #[error("bad signature")]
    BadSignature,
    #[error("timestamp outside the allowed window")]
    Stale,
    #[error("malformed notification")]
    Malformed,
    #[error("resource cannot be decrypted")]
    Undecryptable,
}

/// The signed headers of a notification.
#[derive(Debug, Clone, Default)]
pub struct NotifyHeaders<'a> {
    pub timestamp: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub serial: Option<&'a str>,
}

#[derive(Deserialize)]
struct Envelope {
    resource: Resource,
}

#[derive(Deserialize)]
struct Resource {
    ciphertext: String,
    #[serde(default)]
    associated_data: String,
    nonce: String,
}

/// The decrypted `transaction` of a payment notification (the fields we use).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Transaction {
    pub mchid: String,
    #[serde(default)]
    pub appid: String,
    pub out_trade_no: String,
    pub transaction_id: String,
    pub trade_state: String,
    pub amount: Amount,
    #[serde(default)]
    pub success_time: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Amount {
    pub total: i64,
}

/// WeChat Pay's public key and its id (`WECHATPAY_PUBLIC_KEY_FILE`, `_ID`): what
/// notifications and API answers are signed with.
pub struct PlatformKey {
    id: String,
    key: VerifyingKey,
}

impl PlatformKey {
    pub fn new(id: impl Into<String>, key: VerifyingKey) -> Self {
        Self { id: id.into(), key }
    }

    /// `None` when either setting is missing; an error when the file does not parse.
    pub fn from_config(c: &WechatPayConfig) -> anyhow::Result<Option<Self>> {
        let (Some(key_file), Some(id)) = (&c.public_key_file, &c.public_key_id) else {
            return Ok(None);
        };
        let pem = read_file(key_file, "WECHATPAY_PUBLIC_KEY_FILE")?;
        let key = VerifyingKey::from_public_key_pem(pem.trim())
            .map_err(|e| anyhow::anyhow!("WECHATPAY_PUBLIC_KEY_FILE: {e}"))?;
        Ok(Some(Self {
            id: id.clone(),
            key,
        }))
    }

    /// Checks the four `Wechatpay-*` headers against `body`: our key id, a timestamp
    /// within [`MAX_SKEW_SECS`] of now, and the signature over
    /// `timestamp\nnonce\nbody\n`.
    pub fn check(
        &self,
        headers: &NotifyHeaders<'_>,
        body: &[u8],
        now_secs: i64,
    ) -> Result<(), NotifyError> {
        let timestamp = headers
            .timestamp
            .ok_or(NotifyError::MissingHeader("Wechatpay-Timestamp"))?;
        let nonce = headers
            .nonce
            .ok_or(NotifyError::MissingHeader("Wechatpay-Nonce"))?;
        let signature = headers
            .signature
            .ok_or(NotifyError::MissingHeader("Wechatpay-Signature"))?;
        let serial = headers
            .serial
            .ok_or(NotifyError::MissingHeader("Wechatpay-Serial"))?;
        if serial != self.id {
            return Err(NotifyError::UnknownSerial);
        }
        let ts: i64 = timestamp.parse().map_err(|_| NotifyError::Stale)?;
        if (now_secs - ts).abs() > MAX_SKEW_SECS {
            return Err(NotifyError::Stale);
        }
        let mut message = Vec::with_capacity(timestamp.len() + nonce.len() + body.len() + 3);
        message.extend_from_slice(timestamp.as_bytes());
        message.push(b'\n');
        message.extend_from_slice(nonce.as_bytes());
        message.push(b'\n');
        message.extend_from_slice(body);
        message.push(b'\n');
        if self.key.verify(&message, signature) {
            Ok(())
        } else {
            Err(NotifyError::BadSignature)
        }
    }
}

/// What is needed to verify notifications. All of it, or notifications cannot be
/// accepted (a configuration fault, raised as a system alert).
pub struct NotifyVerifier {
    pub mchid: String,
    platform: PlatformKey,
    apiv3_key: SecretString,
}

/// What is needed to create payments (JSAPI prepay).
pub struct Payer {
    mchid: String,
    appid: String,
    serial: String,
    signing: SigningKey,
    /// Answers are believed only when signed with it.
    platform: PlatformKey,
    api_base: url::Url,
    notify_url: url::Url,
    http: reqwest::Client,
}

/// The `wx.requestPayment` parameters (SPEC §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PayParams {
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    pub package: String,
    #[serde(rename = "signType")]
    pub sign_type: String,
    #[serde(rename = "paySign")]
    pub pay_sign: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepayError {
    #[error("WeChat Pay is unavailable: {0}")]
    Unavailable(String),
}

fn read_file(path: &std::path::Path, var: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{var}: cannot read {}: {e}", path.display()))
}

/// A random nonce of 32 alphanumerics, as WeChat's examples use.
pub fn nonce() -> String {
    use rand::distributions::Alphanumeric;
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

impl NotifyVerifier {
    pub fn new(mchid: impl Into<String>, platform: PlatformKey, apiv3_key: SecretString) -> Self {
        Self {
            mchid: mchid.into(),
            platform,
            apiv3_key,
        }
    }

    /// `None` when the settings are not all there; an error when they are there but
    /// unusable (a key file that does not parse).
    pub fn from_config(c: &WechatPayConfig) -> anyhow::Result<Option<Self>> {
        let (Some(mchid), Some(apiv3)) = (&c.mchid, &c.apiv3_key) else {
            return Ok(None);
        };
        let Some(platform) = PlatformKey::from_config(c)? else {
            return Ok(None);
        };
        Ok(Some(Self {
            mchid: mchid.clone(),
            platform,
            apiv3_key: apiv3.clone(),
        }))
    }

    /// Verifies the signature and the time window, then decrypts the transaction.
    pub fn open(
        &self,
        headers: &NotifyHeaders<'_>,
        body: &[u8],
        now_secs: i64,
    ) -> Result<Transaction, NotifyError> {
        self.platform.check(headers, body, now_secs)?;
        let envelope: Envelope =
            serde_json::from_slice(body).map_err(|_| NotifyError::Malformed)?;
        let plain = decrypt(
            self.apiv3_key.expose_secret().as_bytes(),
            &envelope.resource.nonce,
            &envelope.resource.associated_data,
            &envelope.resource.ciphertext,
        )?;
        serde_json::from_slice(&plain).map_err(|_| NotifyError::Malformed)
    }
}

/// AES-256-GCM decryption of a WeChat Pay `resource`.
pub fn decrypt(
    key: &[u8],
    nonce: &str,
    aad: &str,
    ciphertext_b64: &str,
) -> Result<Vec<u8>, NotifyError> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| NotifyError::Undecryptable)?;
    let nonce: [u8; 12] = nonce
        .as_bytes()
        .try_into()
        .map_err(|_| NotifyError::Undecryptable)?;
    let ct = B64
        .decode(ciphertext_b64)
        .map_err(|_| NotifyError::Undecryptable)?;
    cipher
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &ct,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| NotifyError::Undecryptable)
}

/// AES-256-GCM encryption as WeChat Pay does it (for tests and fakes).
pub fn encrypt(key: &[u8], nonce: &str, aad: &str, plaintext: &[u8]) -> String {
    let cipher = Aes256Gcm::new_from_slice(key).expect("a 32-byte key");
    let nonce: [u8; 12] = nonce.as_bytes().try_into().expect("a 12-byte nonce");
    let ct = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: aad.as_bytes(),
            },
        )
        .expect("encryption of a small payload");
    B64.encode(ct)
}

#[derive(Serialize)]
struct PrepayRequest<'a> {
    appid: &'a str,
    mchid: &'a str,
    description: &'a str,
    out_trade_no: &'a str,
    time_expire: String,
    notify_url: &'a str,
    amount: PrepayAmount,
    payer: PrepayPayer<'a>,
}

#[derive(Serialize)]
struct PrepayAmount {
    total: i64,
    currency: &'static str,
}

#[derive(Serialize)]
struct PrepayPayer<'a> {
    openid: &'a str,
}

#[derive(Deserialize)]
struct PrepayAnswer {
    prepay_id: String,
}

/// Whether `id` has the shape of a WeChat Pay `prepay_id`.
pub fn valid_prepay_id(id: &str) -> bool {
    id.len() <= 64
        && id.len() > 2
        && id.starts_with("wx")
        && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Payer {
    /// `None` unless every merchant credential and WeChat Pay's public key are
    /// configured (then orders carry no `payment`, SPEC §4).
    pub fn from_config(c: &WechatPayConfig, appid: Option<&str>) -> anyhow::Result<Option<Self>> {
        let (Some(mchid), Some(key_file), Some(serial), Some(notify_url), Some(appid)) = (
            &c.mchid,
            &c.merchant_private_key_file,
            &c.merchant_serial,
            &c.notify_url,
            appid,
        ) else {
            return Ok(None);
        };
        let Some(platform) = PlatformKey::from_config(c)? else {
            return Ok(None);
        };
        let pem = read_file(key_file, "WECHATPAY_MERCHANT_PRIVATE_KEY_FILE")?;
        let signing = SigningKey::from_pkcs8_pem(pem.trim())
            .map_err(|e| anyhow::anyhow!("WECHATPAY_MERCHANT_PRIVATE_KEY_FILE: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(PREPAY_TIMEOUT)
            .build()
            .map_err(|e| anyhow::anyhow!("HTTP client: {e}"))?;
        Ok(Some(Self {
            mchid: mchid.clone(),
            appid: appid.to_owned(),
            serial: serial.clone(),
            signing,
            platform,
            api_base: c.api_base.clone(),
            notify_url: notify_url.clone(),
            http,
        }))
    }

    /// The `Authorization` header for a request.
    pub fn authorization(
        &self,
        method: &str,
        path: &str,
        body: &str,
        timestamp: i64,
        nonce: &str,
    ) -> String {
        let message = format!("{method}\n{path}\n{timestamp}\n{nonce}\n{body}\n");
        let signature = self.signing.sign(message.as_bytes());
        format!(
            "WECHATPAY2-SHA256-RSA2048 mchid=\"{}\",nonce_str=\"{nonce}\",signature=\"{signature}\",timestamp=\"{timestamp}\",serial_no=\"{}\"",
            self.mchid, self.serial
        )
    }

    /// JSAPI prepay, then the signed `wx.requestPayment` parameters.
    #[tracing::instrument(skip_all)]
    pub async fn prepay(
        &self,
        out_trade_no: &str,
        description: &str,
        total_fen: i64,
        payer_openid: &str,
        expires: chrono::DateTime<chrono::Utc>,
    ) -> Result<PayParams, PrepayError> {
        let body = serde_json::to_string(&PrepayRequest {
            appid: &self.appid,
            mchid: &self.mchid,
            description,
            out_trade_no,
            time_expire: expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            notify_url: self.notify_url.as_str(),
            amount: PrepayAmount {
                total: total_fen,
                currency: "CNY",
            },
            payer: PrepayPayer {
                openid: payer_openid,
            },
        })
        .map_err(|e| PrepayError::Unavailable(e.to_string()))?;
        let timestamp = chrono::Utc::now().timestamp();
        let nonce = nonce();
        let mut url = self.api_base.clone();
        url.set_path(JSAPI_PATH);
        let response = self
            .http
            .post(url)
            .header(
                "Authorization",
                self.authorization("POST", JSAPI_PATH, &body, timestamp, &nonce),
            )
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                PrepayError::Unavailable(if e.is_timeout() {
                    "timed out".into()
                } else {
                    "request failed".into()
                })
            })?;
        if !response.status().is_success() {
            return Err(PrepayError::Unavailable(format!(
                "HTTP {}",
                response.status().as_u16()
            )));
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (timestamp, nonce, signature, serial) = (
            header("Wechatpay-Timestamp"),
            header("Wechatpay-Nonce"),
            header("Wechatpay-Signature"),
            header("Wechatpay-Serial"),
        );
        let body = super::read_capped(response)
            .await
            .map_err(|_| PrepayError::Unavailable("answer too large or cut short".into()))?;
        // Signed like a notification: anything else did not come from WeChat Pay.
        let signed = NotifyHeaders {
            timestamp: timestamp.as_deref(),
            nonce: nonce.as_deref(),
            signature: signature.as_deref(),
            serial: serial.as_deref(),
        };
        if let Err(err) = self
            .platform
            .check(&signed, &body, chrono::Utc::now().timestamp())
        {
            metrics::counter!("locallife_wechatpay_answers_refused_total").increment(1);
            tracing::warn!(reason = %err, "WeChat Pay answer failed verification; not trusted");
            return Err(PrepayError::Unavailable("unverified answer".into()));
        }
        let answer: PrepayAnswer = serde_json::from_slice(&body)
            .map_err(|_| PrepayError::Unavailable("unreadable answer".into()))?;
        // `wx` then letters and digits (WeChat's are 36 characters): anything else is
        // not passed on to the mini-program's wx.requestPayment.
        if !valid_prepay_id(&answer.prepay_id) {
            return Err(PrepayError::Unavailable("malformed prepay_id".into()));
        }
        Ok(self.pay_params(&answer.prepay_id))
    }

    /// The parameters `wx.requestPayment` takes, with `paySign`.
    pub fn pay_params(&self, prepay_id: &str) -> PayParams {
        let time_stamp = chrono::Utc::now().timestamp().to_string();
        let nonce_str = nonce();
        let package = format!("prepay_id={prepay_id}");
        let message = format!("{}\n{time_stamp}\n{nonce_str}\n{package}\n", self.appid);
        PayParams {
            pay_sign: self.signing.sign(message.as_bytes()),
            time_stamp,
            nonce_str,
            package,
            sign_type: "RSA".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepay_ids_have_wechats_shape() {
        assert!(valid_prepay_id("wx201410272009395522657a690389285100"));
        for bad in [
            "",
            "wx",
            "prepay",
            "wx12 34",
            "wx1\nx",
            &format!("wx{}", "1".repeat(80)),
        ] {
            assert!(!valid_prepay_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn gcm_round_trips_and_refuses_tampering() {
        let key = b"0123456789abcdef0123456789abcdef";
        let ct = encrypt(key, "nonce-12byte", "transaction", b"{\"a\":1}");
        assert_eq!(
            decrypt(key, "nonce-12byte", "transaction", &ct).unwrap(),
            b"{\"a\":1}"
        );
        assert_eq!(
            decrypt(key, "nonce-12byte", "other aad", &ct),
            Err(NotifyError::Undecryptable)
        );
        assert_eq!(
            decrypt(key, "nonce-12bytX", "transaction", &ct),
            Err(NotifyError::Undecryptable)
        );
        assert_eq!(
            decrypt(key, "short", "transaction", &ct),
            Err(NotifyError::Undecryptable)
        );
        let other = b"ffffffffffffffffffffffffffffffff";
        assert_eq!(
            decrypt(other, "nonce-12byte", "transaction", &ct),
            Err(NotifyError::Undecryptable)
        );
    }
}
