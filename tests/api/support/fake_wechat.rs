//! A small local server speaking WeChat's `code2Session` protocol, as the real one does:
//! a code is issued for an openid (what `wx.login` does on the phone) and works once;
//! a reused code answers 40163, an unknown one 40029, a blocked user 40226; a wrong
//! appid or secret 40013/40125. Answers are JSON sent as `text/plain`, like WeChat's.
//! Tests can also force the next answer (busy, rate limit, HTTP 500, garbage, a stall).
//!
//! It also plays WeChat's subscription messages: `/cgi-bin/token` issues access tokens
//! (valid until [`FakeWechat::expire_tokens`]), and `/cgi-bin/message/subscribe/send`
//! checks the token (40001 when it is not a valid one), records each send, and answers
//! errcodes queued with [`FakeWechat::force_send`].
//!
//! The same file is the `fake_wechat` example that `scripts/dev.sh` runs for local
//! logins; there it issues codes on demand (`auto_issue`): an unknown code `alice` logs
//! in as openid `dev-alice`, once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;

pub const APPID: &str = "wx-test-appid";
pub const SECRET: &str = "wechat-test-app-secret";

/// An answer forced on the next call, whatever the code.
#[derive(Debug, Clone)]
pub enum Forced {
    Errcode(i64),
    /// `errcode: 0` with this openid (WeChat sometimes sends an explicit 0).
    ExplicitZero(String),
    /// Success shape with an empty openid.
    EmptyOpenid,
    Status(u16),
    Body(&'static str),
    Stall(Duration),
    /// A streamed answer of this many bytes, without a length; how many were actually
    /// taken by the client goes to [`FakeWechat::streamed`].
    Huge(usize),
}

#[derive(Default)]
struct Inner {
    codes: HashMap<String, String>,
    used: HashSet<String>,
    blocked: HashSet<String>,
    forced: VecDeque<Forced>,
    calls: usize,
    next_code: u64,
    auto_issue: bool,
    token_calls: usize,
    valid_tokens: HashSet<String>,
    sends: Vec<Sent>,
    forced_sends: VecDeque<i64>,
}

/// One `subscribe/send` call as the fake received it.
#[derive(Debug, Clone)]
#[allow(dead_code)]
pub struct Sent {
    pub access_token: String,
    pub body: serde_json::Value,
    /// What the fake answered.
    pub errcode: i64,
}

/// Bytes of a [`Forced::Huge`] answer the client has taken so far.
static STREAMED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[derive(Clone)]
pub struct FakeWechat {
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeWechat {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0", false).await
    }

    /// Listens on `addr`; with `auto_issue`, an unknown code is issued as it arrives.
    pub async fn start_on(addr: &str, auto_issue: bool) -> Self {
        Self::try_start_on(addr, auto_issue)
            .await
            .unwrap_or_else(|e| panic!("fake WeChat cannot listen on {addr}: {e}"))
    }

    /// As [`Self::start_on`], with the bind error returned.
    pub async fn try_start_on(addr: &str, auto_issue: bool) -> std::io::Result<Self> {
        let inner = Arc::new(Mutex::new(Inner {
            auto_issue,
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/sns/jscode2session", get(code2session))
            .route("/cgi-bin/token", get(access_token))
            .route(
                "/cgi-bin/message/subscribe/send",
                axum::routing::post(subscribe_send),
            )
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            base: format!("http://{addr}"),
            inner,
        })
    }

    /// What `wx.login` does: a fresh single-use code for this openid.
    pub fn issue_code(&self, openid: &str) -> String {
        let mut s = self.inner.lock().unwrap();
        s.next_code += 1;
        let code = format!("081{:06}code{}", s.next_code, openid.len());
        s.codes.insert(code.clone(), openid.to_owned());
        code
    }

    pub fn block(&self, openid: &str) {
        self.inner.lock().unwrap().blocked.insert(openid.to_owned());
    }

    pub fn force_next(&self, answer: Forced) {
        self.inner.lock().unwrap().forced.push_back(answer);
    }

    /// Bytes of [`Forced::Huge`] answers taken by clients (all fakes of the process).
    pub fn streamed(&self) -> usize {
        STREAMED.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn calls(&self) -> usize {
        self.inner.lock().unwrap().calls
    }

    /// Calls to `/cgi-bin/token`.
    #[allow(dead_code)]
    pub fn token_calls(&self) -> usize {
        self.inner.lock().unwrap().token_calls
    }

    /// Every `subscribe/send` call so far.
    #[allow(dead_code)]
    pub fn sends(&self) -> Vec<Sent> {
        self.inner.lock().unwrap().sends.clone()
    }

    /// The sends WeChat accepted.
    #[allow(dead_code)]
    pub fn accepted_sends(&self) -> Vec<Sent> {
        self.sends()
            .into_iter()
            .filter(|s| s.errcode == 0)
            .collect()
    }

    /// The next sends answer these errcodes, in order (after the token check).
    #[allow(dead_code)]
    pub fn force_send(&self, errcode: i64) {
        self.inner.lock().unwrap().forced_sends.push_back(errcode);
    }

    /// Every token issued so far stops working (as when WeChat rotates them).
    #[allow(dead_code)]
    pub fn expire_tokens(&self) {
        self.inner.lock().unwrap().valid_tokens.clear();
    }
}

async fn access_token(
    State(inner): State<Arc<Mutex<Inner>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut s = inner.lock().unwrap();
    s.token_calls += 1;
    if q.get("grant_type").map(String::as_str) != Some("client_credential") {
        return errcode(40002, "invalid grant_type");
    }
    if q.get("appid").map(String::as_str) != Some(APPID) {
        return errcode(40013, "invalid appid");
    }
    if q.get("secret").map(String::as_str) != Some(SECRET) {
        return errcode(40125, "invalid appsecret");
    }
    let token = format!("ACCESS_TOKEN_{}_{:x}", s.token_calls, rand::random::<u32>());
    s.valid_tokens.insert(token.clone());
    text_json(json!({ "access_token": token, "expires_in": 7200 }))
}

async fn subscribe_send(
    State(inner): State<Arc<Mutex<Inner>>>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let mut s = inner.lock().unwrap();
    let token = q.get("access_token").cloned().unwrap_or_default();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let code = if !s.valid_tokens.contains(&token) {
        40001
    } else if let Some(forced) = s.forced_sends.pop_front() {
        forced
    } else if body["touser"].as_str().is_none_or(str::is_empty)
        || body["template_id"].as_str().is_none_or(str::is_empty)
        || !body["data"].is_object()
    {
        47003
    } else {
        0
    };
    s.sends.push(Sent {
        access_token: token,
        body,
        errcode: code,
    });
    if code == 0 {
        if s.auto_issue {
            // The local fake (`scripts/dev.sh`): show what WeChat would have shown.
            let body = &s.sends[s.sends.len() - 1].body;
            eprintln!(
                "fake WeChat: subscription message {} to {}: page {}, data {}",
                body["template_id"], body["touser"], body["page"], body["data"]
            );
        }
        text_json(json!({ "errcode": 0, "errmsg": "ok", "msgid": s.sends.len() }))
    } else {
        errcode(code, "forced")
    }
}

fn text_json(value: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        value.to_string(),
    )
        .into_response()
}

fn errcode(code: i64, msg: &str) -> Response {
    text_json(json!({ "errcode": code, "errmsg": msg }))
}

async fn code2session(
    State(inner): State<Arc<Mutex<Inner>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let forced = {
        let mut s = inner.lock().unwrap();
        s.calls += 1;
        s.forced.pop_front()
    };
    if let Some(forced) = forced {
        return match forced {
            Forced::Errcode(c) => errcode(c, "forced"),
            Forced::ExplicitZero(openid) => text_json(
                json!({"errcode": 0, "errmsg": "ok", "openid": openid, "session_key": "sk"}),
            ),
            Forced::EmptyOpenid => text_json(json!({"openid": "", "session_key": "sk"})),
            Forced::Status(s) => StatusCode::from_u16(s).unwrap().into_response(),
            Forced::Body(b) => ([(header::CONTENT_TYPE, "text/plain")], b).into_response(),
            Forced::Stall(d) => {
                tokio::time::sleep(d).await;
                errcode(-1, "system busy")
            }
            Forced::Huge(total) => {
                const CHUNK: usize = 64 * 1024;
                let chunks = futures::stream::iter((0..total.div_ceil(CHUNK)).map(|_| {
                    STREAMED.fetch_add(CHUNK, std::sync::atomic::Ordering::Relaxed);
                    Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; CHUNK]))
                }));
                (
                    [(header::CONTENT_TYPE, "text/plain")],
                    axum::body::Body::from_stream(chunks),
                )
                    .into_response()
            }
        };
    }
    if q.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return errcode(40002, "invalid grant_type");
    }
    if q.get("appid").map(String::as_str) != Some(APPID) {
        return errcode(40013, "invalid appid");
    }
    if q.get("secret").map(String::as_str) != Some(SECRET) {
        return errcode(40125, "invalid appsecret");
    }
    let Some(code) = q.get("js_code") else {
        return errcode(41008, "missing code");
    };
    let mut s = inner.lock().unwrap();
    if s.auto_issue && !s.codes.contains_key(code) && !s.used.contains(code) {
        let openid = format!("dev-{code}");
        s.codes.insert(code.clone(), openid);
    }
    if s.used.contains(code) {
        return errcode(40163, "code been used");
    }
    let Some(openid) = s.codes.get(code).cloned() else {
        return errcode(40029, "invalid code");
    };
    s.used.insert(code.clone());
    if s.blocked.contains(&openid) {
        return errcode(40226, "high risk user");
    }
    // Like WeChat: no errcode at all on success, and a session_key the service must
    // never keep or log.
    text_json(json!({ "openid": openid, "session_key": "c2Vzc2lvbi1rZXktc2VjcmV0" }))
}
