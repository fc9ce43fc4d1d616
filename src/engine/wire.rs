//! The one wire format of a notification: the text frame a socket sends, and the
//! payloads that cross replicas on pub/sub. Every other module (the publisher, both
//! engines, the Redis scripts, the hub) builds and reads them through here.
//!
//! **The frame.** `{"type":"notification","data":{"message_id":"<id>",...},"timestamp":…}`
//! is [`HEAD`] + id + tail. The tail (everything after the id, [`tail`]) is serialised
//! once by the publisher, before the inbox has assigned the id, and is what an inbox
//! stores; [`frame`] splices an id in.
//!
//! **Pub/sub payloads** ([`Event`]), one byte of kind then its body:
//! - `M` + frame: a live-only message (announcements, events that need no ack);
//! - `N` + id + ` ` + expiry (unix ms) + `\n` + frame: an inbox notification, tracked
//!   until acked;
//! - `A` + id: that notification was acked, stop redelivering it;
//! - `C` + close code (2 bytes, big-endian) + reason: close the user's sockets.
//!
//! Ids are decided before anything is written, so the engines' scripts receive finished
//! payloads and build nothing themselves.

use axum::extract::ws::Utf8Bytes;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};

use super::inbox::MsgId;

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

/// What crosses replicas on a user's or role's channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Message(Utf8Bytes),
    Notify {
        id: MsgId,
        expires_ms: u64,
        frame: Utf8Bytes,
    },
    Acked(MsgId),
    Close {
        code: u16,
        reason: String,
    },
    /// The user is no longer admitted through this role: their sockets drop it, and a
    /// socket left with no role closes with 4003.
    Revoke(crate::domain::Role),
}

impl Event {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            Event::Message(text) => {
                b.put_u8(b'M');
                b.put_slice(text.as_bytes());
            }
            Event::Notify {
                id,
                expires_ms,
                frame,
            } => {
                b.put_slice(format!("N{id} {expires_ms}\n").as_bytes());
                b.put_slice(frame.as_bytes());
            }
            Event::Acked(id) => b.put_slice(format!("A{id}").as_bytes()),
            Event::Close { code, reason } => {
                b.put_u8(b'C');
                b.put_u16(*code);
                b.put_slice(reason.as_bytes());
            }
            Event::Revoke(role) => {
                b.put_u8(b'R');
                b.put_slice(role.as_str().as_bytes());
            }
        }
        b.freeze()
    }

    /// `None` for anything this version did not write.
    pub fn decode(payload: Bytes) -> Option<Event> {
        match payload.first()? {
            b'M' => Utf8Bytes::try_from(payload.slice(1..))
                .ok()
                .map(Event::Message),
            b'N' => {
                let newline = payload.iter().position(|b| *b == b'\n')?;
                let header = std::str::from_utf8(&payload[1..newline]).ok()?;
                let (id, expires) = header.split_once(' ')?;
                Some(Event::Notify {
                    id: id.parse().ok()?,
                    expires_ms: expires.parse().ok()?,
                    frame: Utf8Bytes::try_from(payload.slice(newline + 1..)).ok()?,
                })
            }
            b'A' => std::str::from_utf8(&payload[1..])
                .ok()?
                .parse()
                .ok()
                .map(Event::Acked),
            b'R' => std::str::from_utf8(&payload[1..])
                .ok()?
                .parse()
                .ok()
                .map(Event::Revoke),
            b'C' if payload.len() >= 3 => Some(Event::Close {
                code: u16::from_be_bytes([payload[1], payload[2]]),
                reason: String::from_utf8_lossy(&payload[3..]).into_owned(),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msg_id() -> impl Strategy<Value = MsgId> {
        (any::<u64>(), any::<u64>()).prop_map(|(ms, seq)| MsgId { ms, seq })
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            ".*".prop_map(|t| Event::Message(Utf8Bytes::from(t))),
            (msg_id(), any::<u64>(), ".*").prop_map(|(id, expires_ms, f)| Event::Notify {
                id,
                expires_ms,
                frame: Utf8Bytes::from(f),
            }),
            msg_id().prop_map(Event::Acked),
            (any::<u16>(), ".*").prop_map(|(code, reason)| Event::Close { code, reason }),
            proptest::sample::select(crate::domain::Role::ALL.to_vec()).prop_map(Event::Revoke),
        ]
    }

    proptest! {
        #[test]
        fn every_event_round_trips(e in event()) {
            prop_assert_eq!(Event::decode(e.encode()), Some(e));
        }

        /// A notification's frame carries its id and every field, and survives the
        /// `N` event unchanged: one format, whoever writes it.
        #[test]
        fn frames_carry_every_field_through_the_notify_event(
            id in msg_id(),
            expires_ms in any::<u64>(),
            fields in proptest::collection::btree_map("[a-z_]{1,8}", ".{0,20}", 0..5),
            timestamp in ".{0,30}",
        ) {
            let data: Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k, Value::from(v))).collect();
            let tail = tail(&data, &timestamp);
            let event = Event::Notify { id, expires_ms, frame: frame(id, &tail) };
            let Some(Event::Notify { frame: f, .. }) = Event::decode(event.encode()) else {
                return Err(TestCaseError::fail("not a notify event"));
            };
            let v: Value = serde_json::from_str(&f).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&v["type"], "notification");
            let id_text = id.to_string();
            prop_assert_eq!(v["data"]["message_id"].as_str(), Some(id_text.as_str()));
            prop_assert_eq!(v["timestamp"].as_str(), Some(timestamp.as_str()));
            for (k, val) in &data {
                prop_assert_eq!(&v["data"][k], val);
            }
        }
    }

    #[test]
    fn foreign_payloads_are_refused() {
        assert_eq!(Event::decode(Bytes::from_static(b"")), None);
        assert_eq!(Event::decode(Bytes::from_static(b"X123")), None);
        assert_eq!(Event::decode(Bytes::from_static(b"C\x0f")), None);
        assert_eq!(Event::decode(Bytes::from_static(b"M\xff\xfe")), None);
        assert_eq!(Event::decode(Bytes::from_static(b"N1-0 5")), None);
        assert_eq!(Event::decode(Bytes::from_static(b"Nx-0 5\n{}")), None);
        assert_eq!(Event::decode(Bytes::from_static(b"A1")), None);
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
