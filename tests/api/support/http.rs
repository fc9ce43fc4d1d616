//! HTTP answers as tests read them: the status and the JSON body, and the one error
//! shape of every refusal.

use serde_json::Value;

/// Sends `req` with an optional bearer token; the status and the JSON body.
pub async fn send(mut req: reqwest::RequestBuilder, token: Option<&str>) -> (u16, Value) {
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    into_parts(req.send().await.unwrap()).await
}

pub async fn into_parts(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("body is not JSON: {text:?}"))
    };
    (status, body)
}

/// Asserts an error answer: the status and `{"code", "message"}` with that code.
#[track_caller]
pub fn assert_error(answer: &(u16, Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "unexpected status, body {}", answer.1);
    assert_eq!(answer.1["code"], code, "unexpected body {}", answer.1);
    assert!(
        answer.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error without a message: {}",
        answer.1
    );
}
