//! Client-side tools in the binary: `locallife listen` (watch a user's socket) and
//! `locallife simulate-payment` (send a correctly signed WeChat Pay notification, for
//! demos and smoke tests against a deployment whose verification keys you hold).

use std::path::Path;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::wechat::pay;
use crate::wechat::rsa_keys::SigningKey;

/// Connects to `/v1/ws` and prints every message as one JSON line; acks notifications
/// that need it (unless `no_ack`); stops after `count` notifications if given.
pub async fn listen(
    url: &str,
    token: &str,
    count: Option<usize>,
    no_ack: bool,
) -> anyhow::Result<()> {
    let mut request = url
        .into_client_request()
        .context("--url must be a ws:// or wss:// URL")?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .context("the token is not a header value")?,
    );
    let (mut socket, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(ok) => ok,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            anyhow::bail!("refused: HTTP {} {body}", resp.status().as_u16());
        }
        Err(e) => return Err(e).context("cannot connect"),
    };
    let mut seen = 0;
    while let Some(frame) = socket.next().await {
        match frame.context("socket error")? {
            Message::Text(text) => {
                println!("{text}");
                let message: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if message["type"] == "notification" {
                    if message["data"]["requires_ack"] == true && !no_ack {
                        let ack = json!({"type": "ack", "data": {"message_id": message["data"]["message_id"]}});
                        socket.send(Message::text(ack.to_string())).await?;
                    }
                    seen += 1;
                    if count.is_some_and(|c| seen >= c) {
                        let _ = socket.close(None).await;
                        return Ok(());
                    }
                }
            }
            Message::Close(frame) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                eprintln!("closed by the server: {code} {reason}");
                return Ok(());
            }
            _ => {}
        }
    }
    Ok(())
}

/// The files `locallife demo` writes so that `simulate-payment` can play WeChat Pay.
pub struct PayKeys<'a>(pub &'a Path);

impl PayKeys<'_> {
    pub const PLATFORM_PRIVATE: &'static str = "wechatpay_platform_private.pem";
    pub const PLATFORM_PUBLIC: &'static str = "wechatpay_platform_public.pem";
    pub const APIV3_KEY: &'static str = "apiv3.key";
    pub const MCHID: &'static str = "mchid";
    pub const KEY_ID: &'static str = "public_key_id";
    /// The mini-program's appid, when the service has one: its payments name it.
    pub const APPID: &'static str = "appid";

    fn read(&self, name: &str) -> anyhow::Result<String> {
        let path = self.0.join(name);
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_owned())
            .with_context(|| format!("cannot read {}", path.display()))
    }
}

/// WeChat Pay's side, from the files `locallife demo` wrote: what signs and encrypts a
/// payment notification. `simulate-payment` and the load generator build theirs here.
pub struct PaySimulator {
    platform: SigningKey,
    apiv3: String,
    mchid: String,
    key_id: String,
    appid: Option<String>,
}

impl PaySimulator {
    /// Reads the keys in `dir` (see [`PayKeys`]).
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let keys = PayKeys(dir);
        Ok(Self {
            platform: SigningKey::from_pkcs8_pem(&keys.read(PayKeys::PLATFORM_PRIVATE)?)
                .context("the platform private key does not parse")?,
            apiv3: keys.read(PayKeys::APIV3_KEY)?,
            mchid: keys.read(PayKeys::MCHID)?,
            key_id: keys.read(PayKeys::KEY_ID)?,
            appid: keys.read(PayKeys::APPID).ok(),
        })
    }

    /// A fresh transaction id, as WeChat Pay's look.
    pub fn transaction_id() -> String {
        format!("4200{:024}", rand::random::<u64>())
    }

    /// A successful payment `transaction_id` of `total` fen for `out_trade_no`, as
    /// WeChat Pay notifies it: its headers (timestamp, nonce, signature, serial) and
    /// body. A retry of one payment carries the same transaction id, signed afresh.
    pub fn notification(
        &self,
        out_trade_no: &str,
        transaction_id: &str,
        total: i64,
    ) -> (Vec<(&'static str, String)>, String) {
        let mut transaction = json!({
            "mchid": self.mchid,
            "out_trade_no": out_trade_no,
            "transaction_id": transaction_id,
            "trade_type": "JSAPI",
            "trade_state": "SUCCESS",
            "success_time": chrono::Utc::now().to_rfc3339(),
            "amount": {"total": total, "payer_total": total, "currency": "CNY"},
        });
        if let Some(appid) = &self.appid {
            transaction["appid"] = Value::String(appid.clone());
        }
        let nonce = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let ciphertext = pay::encrypt(
            self.apiv3.as_bytes(),
            &nonce,
            "transaction",
            transaction.to_string().as_bytes(),
        );
        let body = json!({
            "id": format!("EV-{:x}", rand::random::<u64>()),
            "create_time": chrono::Utc::now().to_rfc3339(),
            "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS",
            "summary": "支付成功",
            "resource": {
                "original_type": "transaction",
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": ciphertext,
                "associated_data": "transaction",
                "nonce": nonce,
            }
        })
        .to_string();
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let sig_nonce = pay::nonce();
        let signature = self
            .platform
            .sign(format!("{timestamp}\n{sig_nonce}\n{body}\n").as_bytes());
        debug_assert!(B64.decode(&signature).is_ok());
        let headers = vec![
            ("Wechatpay-Timestamp", timestamp),
            ("Wechatpay-Nonce", sig_nonce),
            ("Wechatpay-Signature", signature),
            ("Wechatpay-Serial", self.key_id.clone()),
        ];
        (headers, body)
    }
}

/// Posts a payment notification for `order` (the JSON `POST /v1/orders` answered).
pub async fn simulate_payment(base_url: &str, keys_dir: &Path, order: &str) -> anyhow::Result<()> {
    let order: Value = serde_json::from_str(order).context("--order must be the order's JSON")?;
    let out_trade_no = order["out_trade_no"]
        .as_str()
        .context("the order has no out_trade_no")?;
    let total = order["total_fen"]
        .as_i64()
        .context("the order has no total_fen")?;
    let (headers, body) = PaySimulator::read(keys_dir)?.notification(
        out_trade_no,
        &PaySimulator::transaction_id(),
        total,
    );
    let url = format!(
        "{}/v1/webhooks/wechat-pay/notify",
        base_url.trim_end_matches('/')
    );
    let mut request = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!(
            "the service refused the notification: HTTP {} {text}",
            status.as_u16()
        );
    }
    println!("payment notification accepted (HTTP {})", status.as_u16());
    Ok(())
}
