//! The payloads that cross replicas on pub/sub ([`Event`]): one byte of kind, then its
//! body (the list is in [`super`]).

use axum::extract::ws::Utf8Bytes;
use bytes::{BufMut, Bytes, BytesMut};

use crate::engine::inbox::MsgId;

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
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn msg_id() -> impl Strategy<Value = MsgId> {
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
}
