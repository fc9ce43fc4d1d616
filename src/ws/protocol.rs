//! The socket protocol of SPEC §2.1: every message, both ways, is a JSON text frame
//! `{"type", "data", "timestamp"}`.
//!
//! Client frames are parsed by [`parse`], a pure function: any input yields a message or
//! a [`ProtocolError`] to answer with, never a panic (a property test holds it to that).
//! Server frames are all built in [`crate::engine::wire`], with the notification's.

use serde::Deserialize;
use serde_json::value::RawValue;

/// What a client may send.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Ack {
        message_id: String,
    },
    Ping,
    Pong,
    Location {
        lat: f64,
        lng: f64,
    },
    /// Protocol 2: a fresh token of the same user, to live past the current one.
    Auth {
        token: String,
    },
}

/// Why a client frame was refused; sent back as an `error` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: &'static str,
    pub message: String,
}

impl ProtocolError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Longest `message_id` accepted in an `ack` (ids the server makes are far shorter).
const MAX_MESSAGE_ID: usize = 128;

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct AckData {
    message_id: String,
}

#[derive(Deserialize)]
struct AuthData {
    token: String,
}

/// Longest token accepted in an `auth` (the server's are a few hundred bytes).
const MAX_TOKEN: usize = 2048;

#[derive(Deserialize)]
struct LocationData {
    lat: f64,
    lng: f64,
}

fn data<'a, T: Deserialize<'a>>(kind: &str, raw: Option<&'a RawValue>) -> Result<T, ProtocolError> {
    let raw =
        raw.ok_or_else(|| ProtocolError::new("invalid_data", format!("{kind} needs data")))?;
    serde_json::from_str(raw.get())
        .map_err(|e| ProtocolError::new("invalid_data", format!("{kind}: {e}")))
}

/// Parses one client text frame.
pub fn parse(text: &str) -> Result<ClientMessage, ProtocolError> {
    let incoming: Incoming<'_> = serde_json::from_str(text).map_err(|_| {
        ProtocolError::new("bad_json", "expected a JSON object with a string \"type\"")
    })?;
    match &*incoming.kind {
        "ack" => {
            let AckData { message_id } = data("ack", incoming.data)?;
            if message_id.is_empty() || message_id.len() > MAX_MESSAGE_ID {
                return Err(ProtocolError::new("invalid_data", "ack: bad message_id"));
            }
            Ok(ClientMessage::Ack { message_id })
        }
        "auth" => {
            let AuthData { token } = data("auth", incoming.data)?;
            if token.is_empty() || token.len() > MAX_TOKEN {
                return Err(ProtocolError::new("invalid_data", "auth: bad token"));
            }
            Ok(ClientMessage::Auth { token })
        }
        "ping" => Ok(ClientMessage::Ping),
        "pong" => Ok(ClientMessage::Pong),
        "location" => {
            let LocationData { lat, lng } = data("location", incoming.data)?;
            if !crate::domain::valid_position(lat, lng) {
                return Err(ProtocolError::new(
                    "invalid_data",
                    "location: lat must be within ±90 and lng within ±180",
                ));
            }
            Ok(ClientMessage::Location { lat, lng })
        }
        _ => Err(ProtocolError::new(
            "unknown_type",
            "type must be ack, ping, pong, location or auth",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_client_message_parses() {
        assert_eq!(
            parse(r#"{"type":"ack","data":{"message_id":"m-1"}}"#),
            Ok(ClientMessage::Ack {
                message_id: "m-1".into()
            })
        );
        assert_eq!(parse(r#"{"type":"ping"}"#), Ok(ClientMessage::Ping));
        assert_eq!(
            parse(r#"{"type":"ping","data":{"x":1}}"#),
            Ok(ClientMessage::Ping)
        );
        assert_eq!(
            parse(r#"{"type":"pong","data":{}}"#),
            Ok(ClientMessage::Pong)
        );
        assert_eq!(
            parse(r#"{"type":"location","data":{"lat":31.2,"lng":121.5},"timestamp":"x"}"#),
            Ok(ClientMessage::Location {
                lat: 31.2,
                lng: 121.5
            })
        );
    }

    #[test]
    fn bad_frames_get_their_error_code() {
        let code = |s: &str| parse(s).unwrap_err().code;
        assert_eq!(code("not json"), "bad_json");
        assert_eq!(code("[1,2]"), "bad_json");
        assert_eq!(code(r#"{"data":{}}"#), "bad_json");
        assert_eq!(code(r#"{"type":7}"#), "bad_json");
        assert_eq!(code(r#"{"type":"subscribe"}"#), "unknown_type");
        assert_eq!(code(r#"{"type":"ack"}"#), "invalid_data");
        assert_eq!(code(r#"{"type":"ack","data":{}}"#), "invalid_data");
        assert_eq!(
            code(r#"{"type":"ack","data":{"message_id":""}}"#),
            "invalid_data"
        );
        assert_eq!(
            code(r#"{"type":"ack","data":{"message_id":5}}"#),
            "invalid_data"
        );
        assert_eq!(
            code(r#"{"type":"location","data":{"lat":91,"lng":0}}"#),
            "invalid_data"
        );
        assert_eq!(
            code(r#"{"type":"location","data":{"lat":"x","lng":0}}"#),
            "invalid_data"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,300}") {
            let _ = parse(&s);
        }

        #[test]
        fn arbitrary_json_shapes_never_panic(
            kind in prop_oneof![Just("ack".to_owned()), Just("ping".to_owned()), Just("location".to_owned()), ".{0,10}"],
            data in prop_oneof![
                Just(String::new()),
                Just(",\"data\":null".to_owned()),
                any::<f64>().prop_map(|f| format!(",\"data\":{{\"lat\":{f},\"lng\":{f}}}")),
                ".{0,40}".prop_map(|s| format!(",\"data\":{{\"message_id\":{}}}", serde_json::json!(s))),
                ".{0,40}".prop_map(|s| format!(",\"data\":{s}")),
            ],
        ) {
            let frame = format!("{{\"type\":{}{}}}", serde_json::json!(kind), data);
            match parse(&frame) {
                Ok(_) => {}
                Err(e) => prop_assert!(!e.code.is_empty() && !e.message.is_empty()),
            }
        }
    }
}
