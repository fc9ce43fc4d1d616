//! WeChat Pay, faked with real cryptography: a platform key pair (WeChat Pay's, which
//! signs notifications), a merchant key pair (ours, which signs requests), an APIv3 key;
//! a local server for JSAPI prepay that checks our request signatures; and notifications
//! built as WeChat Pay builds them. Signing and encryption here use AWS-LC and the AES-GCM
//! crate directly, not the service's code (ring), so the two are checked against each
//! other.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    KeyPair as _, RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use locallife::wechat::rsa_keys::PemKeyPair;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde_json::{json, Value};

pub const MCHID: &str = "1900000109";
pub const APIV3_KEY: &str = "apiv3-key-0123456789abcdefghijkl";
pub const PLATFORM_KEY_ID: &str = "PUB_KEY_ID_0114232134912410000";
pub const MERCHANT_SERIAL: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";

/// A 2048-bit RSA key pair that signs and verifies RSA-SHA256 (PKCS#1 v1.5) with AWS-LC.
struct Key {
    pair: RsaKeyPair,
    pem: PemKeyPair,
}

impl Key {
    fn generate() -> Key {
        let pem = PemKeyPair::generate().unwrap();
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.private.as_bytes()).unwrap();
        let pair = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
        Key { pair, pem }
    }

    /// The base64 signature of `message`.
    fn sign(&self, message: &[u8]) -> String {
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .unwrap();
        B64.encode(signature)
    }

    /// Whether `signature_b64` is this key's signature of `message`.
    fn verify(&self, message: &[u8], signature_b64: &str) -> bool {
        let Ok(signature) = B64.decode(signature_b64) else {
            return false;
        };
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, self.pair.public_key().as_ref())
            .verify(message, &signature)
            .is_ok()
    }
}

struct Keys {
    platform: Key,
    merchant: Key,
    dir: PathBuf,
}

/// Where this test process keeps its key files: under cargo's temporary directory for
/// tests (inside `target/`, not the system's), named by process. The directories of
/// processes that are gone are removed here, so runs leave nothing behind that grows.
fn key_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("pay-keys-")) else {
                continue;
            };
            if !std::path::Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    root.join(format!("pay-keys-{}", std::process::id()))
}

/// Generated once per test run: 2048-bit keys take a moment.
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let platform = Key::generate();
        let merchant = Key::generate();
        let dir = key_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("wechatpay_public.pem"), &platform.pem.public).unwrap();
        std::fs::write(dir.join("merchant_private.pem"), &merchant.pem.private).unwrap();
        Keys {
            platform,
            merchant,
            dir,
        }
    })
}

/// How the fake answers the next prepay request (tests of answer verification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Answer {
    /// Signed with the platform key, as WeChat Pay answers.
    #[default]
    Signed,
    /// No `Wechatpay-*` headers at all, with an attacker's `prepay_id`.
    Unsigned,
    /// Signed with some other key under the right key id.
    OtherKey,
    /// Signed, then the `prepay_id` changed in transit.
    Tampered,
    /// Signed at a timestamp an hour old (a replay).
    Stale,
    /// A streamed body of this many bytes, without a length.
    Huge(usize),
}

#[derive(Default)]
struct Seen {
    prepays: Vec<Value>,
    rejected: usize,
    next: Option<Answer>,
    streamed: usize,
}

#[derive(Clone)]
pub struct FakePay {
    pub base: String,
    seen: Arc<Mutex<Seen>>,
}

impl FakePay {
    pub async fn start() -> FakePay {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let app = Router::new()
            .route("/v3/pay/transactions/jsapi", post(jsapi))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakePay {
            base: format!("http://{addr}"),
            seen,
        }
    }

    /// The settings that make the service use this fake and these keys.
    pub fn env(&self, env: &mut HashMap<String, String>) {
        let k = keys();
        for (key, value) in [
            ("WECHATPAY_MCHID", MCHID.to_owned()),
            ("WECHATPAY_APIV3_KEY", APIV3_KEY.to_owned()),
            ("WECHATPAY_PUBLIC_KEY_ID", PLATFORM_KEY_ID.to_owned()),
            (
                "WECHATPAY_PUBLIC_KEY_FILE",
                k.dir.join("wechatpay_public.pem").display().to_string(),
            ),
            (
                "WECHATPAY_MERCHANT_PRIVATE_KEY_FILE",
                k.dir.join("merchant_private.pem").display().to_string(),
            ),
            ("WECHATPAY_MERCHANT_SERIAL", MERCHANT_SERIAL.to_owned()),
            ("WECHATPAY_API_BASE", self.base.clone()),
            (
                "WECHATPAY_NOTIFY_URL",
                "https://api.example.com/v1/webhooks/wechat-pay/notify".to_owned(),
            ),
        ] {
            env.insert(key.into(), value);
        }
    }

    pub fn prepays(&self) -> Vec<Value> {
        self.seen.lock().unwrap().prepays.clone()
    }

    pub fn rejected(&self) -> usize {
        self.seen.lock().unwrap().rejected
    }

    /// Answers the next prepay request this way.
    pub fn answer_next(&self, answer: Answer) {
        self.seen.lock().unwrap().next = Some(answer);
    }

    /// Bytes of [`Answer::Huge`] bodies the client has taken so far.
    pub fn streamed(&self) -> usize {
        self.seen.lock().unwrap().streamed
    }
}

/// Signs an API answer as WeChat Pay does: the four `Wechatpay-*` headers over
/// `timestamp\nnonce\nbody\n`.
fn signed_answer(key: &Key, timestamp: i64, body: &str) -> Vec<(&'static str, String)> {
    let nonce = format!("{:032x}", rand::random::<u128>());
    let message = format!("{timestamp}\n{nonce}\n{body}\n");
    let signature = key.sign(message.as_bytes());
    vec![
        ("Wechatpay-Timestamp", timestamp.to_string()),
        ("Wechatpay-Nonce", nonce),
        ("Wechatpay-Signature", signature),
        ("Wechatpay-Serial", PLATFORM_KEY_ID.to_owned()),
    ]
}

/// Some other 2048-bit key, made once.
fn other_key() -> &'static Key {
    static OTHER: OnceLock<Key> = OnceLock::new();
    OTHER.get_or_init(Key::generate)
}

/// Checks `paySign` of `wx.requestPayment` parameters with the merchant's public key.
pub fn pay_sign_is_valid(appid: &str, payment: &Value) -> bool {
    let message = format!(
        "{appid}\n{}\n{}\n{}\n",
        payment["timeStamp"].as_str().unwrap_or_default(),
        payment["nonceStr"].as_str().unwrap_or_default(),
        payment["package"].as_str().unwrap_or_default()
    );
    keys().merchant.verify(
        message.as_bytes(),
        payment["paySign"].as_str().unwrap_or_default(),
    )
}

/// JSAPI prepay: answers a prepay id to a correctly signed request, itself signed with
/// the platform key (or spoilt as [`FakePay::answer_next`] asked).
async fn jsapi(
    State(seen): State<Arc<Mutex<Seen>>>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let fields: HashMap<&str, &str> = auth
        .strip_prefix("WECHATPAY2-SHA256-RSA2048 ")
        .unwrap_or_default()
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k, v.trim_matches('"')))
        .collect();
    let message = format!(
        "POST\n/v3/pay/transactions/jsapi\n{}\n{}\n{}\n",
        fields.get("timestamp").copied().unwrap_or_default(),
        fields.get("nonce_str").copied().unwrap_or_default(),
        body
    );
    let signed = keys().merchant.verify(
        message.as_bytes(),
        fields.get("signature").copied().unwrap_or_default(),
    );
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let now = chrono::Utc::now().timestamp();
    if !signed
        || fields.get("mchid") != Some(&MCHID)
        || fields.get("serial_no") != Some(&MERCHANT_SERIAL)
        || request["mchid"] != MCHID
    {
        seen.lock().unwrap().rejected += 1;
        let body = json!({"code": "SIGN_ERROR", "message": "bad signature"}).to_string();
        return answer(
            StatusCode::UNAUTHORIZED,
            signed_answer(&keys().platform, now, &body),
            body,
        );
    }
    let mode = {
        let mut seen = seen.lock().unwrap();
        seen.prepays.push(request);
        seen.next.take().unwrap_or_default()
    };
    let body = json!({ "prepay_id": format!("wx{:028x}", rand::random::<u128>()) }).to_string();
    let platform = &keys().platform;
    match mode {
        Answer::Signed => answer(StatusCode::OK, signed_answer(platform, now, &body), body),
        Answer::Unsigned => answer(
            StatusCode::OK,
            vec![],
            json!({"prepay_id": "wxATTACKERCONTROLLED"}).to_string(),
        ),
        Answer::OtherKey => answer(StatusCode::OK, signed_answer(other_key(), now, &body), body),
        Answer::Tampered => answer(
            StatusCode::OK,
            signed_answer(platform, now, &body),
            json!({"prepay_id": "wxATTACKERCONTROLLED"}).to_string(),
        ),
        Answer::Stale => answer(
            StatusCode::OK,
            signed_answer(platform, now - 3600, &body),
            body,
        ),
        Answer::Huge(total) => {
            const CHUNK: usize = 64 * 1024;
            let chunks = futures::stream::iter((0..total.div_ceil(CHUNK)).map(move |_| {
                seen.lock().unwrap().streamed += CHUNK;
                Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; CHUNK]))
            }));
            let mut response = axum::response::Response::new(axum::body::Body::from_stream(chunks));
            for (name, value) in signed_answer(platform, now, &body) {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
    }
}

fn answer(
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: String,
) -> axum::response::Response {
    let mut response = (status, [("content-type", "application/json")], body).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// A payment notification as WeChat Pay sends it: headers and raw body.
pub struct Notification {
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// The decrypted transaction of a successful payment of `total_fen` for `out_trade_no`.
pub fn transaction(out_trade_no: &str, total_fen: i64) -> Value {
    json!({
        "mchid": MCHID,
        "appid": crate::support::fake_wechat::APPID,
        "out_trade_no": out_trade_no,
        "transaction_id": format!("4200{:024}", rand::random::<u64>()),
        "trade_type": "JSAPI",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "bank_type": "CMC",
        "success_time": "2026-11-24T16:00:00+08:00",
        "payer": {"openid": "o-consumer"},
        "amount": {"total": total_fen, "payer_total": total_fen, "currency": "CNY", "payer_currency": "CNY"},
    })
}

/// Encrypts `transaction` and signs the notification with the platform key at `timestamp`.
pub fn notification_at(transaction: &Value, timestamp: i64) -> Notification {
    let nonce: String = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
    let aad = "transaction";
    let cipher = Aes256Gcm::new_from_slice(APIV3_KEY.as_bytes()).unwrap();
    let nonce_bytes: [u8; 12] = nonce.as_bytes().try_into().unwrap();
    let ct = cipher
        .encrypt(
            &Nonce::from(nonce_bytes),
            Payload {
                msg: transaction.to_string().as_bytes(),
                aad: aad.as_bytes(),
            },
        )
        .unwrap();
    let body = json!({
        "id": format!("EV-{:x}", rand::random::<u64>()),
        "create_time": "2026-11-24T16:00:00+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": {
            "original_type": "transaction",
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": B64.encode(ct),
            "associated_data": aad,
            "nonce": nonce,
        }
    })
    .to_string();
    let sig_nonce = format!("{:032x}", rand::random::<u128>());
    let message = format!("{timestamp}\n{sig_nonce}\n{body}\n");
    let signature = keys().platform.sign(message.as_bytes());
    Notification {
        headers: vec![
            ("Wechatpay-Timestamp", timestamp.to_string()),
            ("Wechatpay-Nonce", sig_nonce),
            ("Wechatpay-Signature", signature),
            ("Wechatpay-Serial", PLATFORM_KEY_ID.to_owned()),
        ],
        body,
    }
}

pub fn notification(transaction: &Value) -> Notification {
    notification_at(transaction, chrono::Utc::now().timestamp())
}

/// A signature by a key WeChat Pay does not hold.
pub fn forged(transaction: &Value) -> Notification {
    let mut n = notification(transaction);
    let ts = &n.headers[0].1;
    let nonce = &n.headers[1].1;
    let message = format!("{ts}\n{nonce}\n{}\n", n.body);
    n.headers[2].1 = other_key().sign(message.as_bytes());
    n
}
