//! Every text frame the server sends on a socket (SPEC §2.1): `{"type", "data",
//! "timestamp"}`. A notification's is [`HEAD`] + id + [`tail`], spliced by [`frame`]; the
//! others (`welcome`, `pong`, `auth_ok`, `error`) are serialised whole by [`envelope`].

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::domain::{Role, UserId};
use crate::engine::inbox::MsgId;

/// The start of every notification frame, up to the message id.
pub const HEAD: &str = r#"{"type":"notification","data":{"message_id":""#;

/// The frame after the message id, from the `data` fields (without `message_id`) and
/// the RFC 3339 `timestamp`: `","event":...},"timestamp":"..."}`.
pub fn tail(data: &Map<String, Value>, timestamp: &str) -> String {
    // Serialising a map of JSON values cannot fail; its outer braces are dropped so the
    // fields follow `message_id` inside one object.
    let data = serde_json::to_string(data).unwrap_or_else(|_| "{}".into());
    let inner = data
        .strip_prefix('{')
        .and_then(|d| d.strip_suffix('}'))
        .unwrap_or("");
    let sep = if inner.is_empty() { "" } else { "," };
    let timestamp = serde_json::to_string(timestamp).unwrap_or_else(|_| "\"\"".into());
    format!("\"{sep}{inner}}},\"timestamp\":{timestamp}}}")
}

/// The whole frame for `id` (an inbox notification's, or a live message's: every
/// `message_id` is a [`MsgId`]).
pub fn frame(id: MsgId, tail: &str) -> Utf8Bytes {
    Utf8Bytes::from(format!("{HEAD}{id}{tail}"))
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: T,
    timestamp: String,
}

fn envelope<T: Serialize>(kind: &str, data: T) -> String {
    let envelope = Envelope {
        kind,
        data,
        timestamp: crate::time::rfc3339_now(),
    };
    // Serialising these plain structs cannot fail.
    serde_json::to_string(&envelope).unwrap_or_default()
}

/// `welcome`'s data: the first message on a socket.
#[derive(Serialize)]
pub struct Welcome<'a> {
    pub connection_id: &'a str,
    pub user_id: UserId,
    pub roles: Vec<Role>,
    pub ping_interval_s: u64,
    pub idle_timeout_s: u64,
    /// 1 or 2 (SPEC §2.3).
    pub protocol: u8,
    /// When the socket's token expires (RFC 3339 UTC): refresh before it.
    pub token_expires_at: String,
}

pub fn welcome(welcome: Welcome<'_>) -> String {
    envelope("welcome", welcome)
}

/// Protocol 2: the socket now lives until `expires_at` (RFC 3339 UTC).
pub fn auth_ok(expires_at: &str) -> String {
    envelope("auth_ok", serde_json::json!({ "expires_at": expires_at }))
}

/// The answer to a client `ping`.
pub fn pong() -> String {
    envelope("pong", serde_json::json!({}))
}

/// The answer to a bad client message (the socket stays open).
pub fn error(code: &str, message: &str) -> String {
    envelope(
        "error",
        serde_json::json!({ "code": code, "message": message }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_have_the_envelope() {
        let w: serde_json::Value = serde_json::from_str(&welcome(Welcome {
            connection_id: "r-1",
            user_id: UserId(3),
            roles: vec![Role::Rider],
            ping_interval_s: 54,
            idle_timeout_s: 60,
            protocol: 2,
            token_expires_at: "2026-01-01T00:00:00Z".into(),
        }))
        .unwrap();
        assert_eq!(w["type"], "welcome");
        assert_eq!(w["data"]["protocol"], 2);
        assert_eq!(w["data"]["token_expires_at"], "2026-01-01T00:00:00Z");
        assert_eq!(w["data"]["roles"], serde_json::json!(["rider"]));
        assert_eq!(w["data"]["ping_interval_s"], 54);
        let ts = w["timestamp"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with('Z'));
        let p: serde_json::Value = serde_json::from_str(&pong()).unwrap();
        assert_eq!(
            (p["type"].as_str(), &p["data"]),
            (Some("pong"), &serde_json::json!({}))
        );
    }

    #[test]
    fn frames_splice_the_id() {
        let f = frame(
            MsgId { ms: 5, seq: 1 },
            r#"","event":"x"},"timestamp":"t"}"#,
        );
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["data"]["message_id"], "5-1");
        assert_eq!(v["data"]["event"], "x");
    }
}
