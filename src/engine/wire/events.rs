//! The payloads that cross replicas on pub/sub ([`Event`]): one byte of kind, then its
//! body (the list is in [`super`]), and their version ([`VERSION`]): a payload of a
//! newer release's format is skipped and counted, never misread.

use axum::extract::ws::Utf8Bytes;
use bytes::{BufMut, Bytes, BytesMut};

use crate::engine::inbox::MsgId;

/// The version of the pub/sub format this release writes. Version 1 is written
/// unmarked (its first byte is a kind letter), as release 0.3 wrote it and reads it, so
/// both releases read each other during a rolling upgrade. A payload whose first byte
/// is below [`MARK_BELOW`] is marked: that byte is its version, and the rest is that
/// version's body. `1` + a version-1 payload is read like the unmarked one (a later
/// release may write the mark once 0.3 is out of every roll); a higher version is a
/// newer release's, which this one cannot read: [`Event::decode`] skips it and counts
/// it in `locallife_wire_newer_skipped_total{format="event"}`. (Release 0.3 skips a
/// marked payload too: no kind of its own starts with such a byte.)
pub const VERSION: u8 = 1;

/// First bytes below this mark a version ([`VERSION`]); every kind letter is above it.
pub const MARK_BELOW: u8 = 0x20;

/// Why a payload was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    /// Marked with a version above [`VERSION`]: a newer release's event.
    Newer(u8),
    /// Not an event of any version this release knows.
    Foreign,
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
    /// The payload of version 1, unmarked: what release 0.3 reads ([`VERSION`]).
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

    /// `None` for anything this version did not write; a newer release's event is
    /// counted too (`locallife_wire_newer_skipped_total{format="event"}`).
    pub fn decode(payload: Bytes) -> Option<Event> {
        match Self::read(payload) {
            Ok(event) => Some(event),
            Err(Unread::Newer(_)) => {
                metrics::counter!("locallife_wire_newer_skipped_total", "format" => "event")
                    .increment(1);
                None
            }
            Err(Unread::Foreign) => {
                // Once per replica: a stranger's payloads on our channels would repeat.
                static ONCE: std::sync::Once = std::sync::Once::new();
                ONCE.call_once(|| tracing::warn!("ignored an undecodable pub/sub payload"));
                None
            }
        }
    }

    /// The event in `payload`, unmarked or marked with a version ([`VERSION`]), or why
    /// it is none.
    pub fn read(payload: Bytes) -> Result<Event, Unread> {
        match payload.first() {
            Some(&v) if v < MARK_BELOW && v > VERSION => Err(Unread::Newer(v)),
            Some(&VERSION) => Self::decode_v1(payload.slice(1..)).ok_or(Unread::Foreign),
            _ => Self::decode_v1(payload).ok_or(Unread::Foreign),
        }
    }

    /// A version-1 payload, unmarked.
    fn decode_v1(payload: Bytes) -> Option<Event> {
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

        /// What this release writes is what release 0.3 reads: `decode_v1` is 0.3's
        /// parser, unchanged, and the payload carries no mark.
        #[test]
        fn every_event_is_written_as_release_0_3_reads_it(e in event()) {
            let payload = e.encode();
            prop_assert!(payload[0] >= MARK_BELOW);
            prop_assert_eq!(Event::decode_v1(payload), Some(e));
        }

        /// Version 1 marked reads as unmarked; a newer version is skipped whatever
        /// follows it, even a body that version 1 would read.
        #[test]
        fn the_version_mark_is_read_and_newer_versions_are_skipped(
            e in event(),
            newer in (VERSION + 1)..MARK_BELOW,
            rest in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let marked = [&[VERSION][..], &e.encode()].concat();
            prop_assert_eq!(Event::read(Bytes::from(marked)), Ok(e.clone()));
            let newer_event = [&[newer][..], &e.encode()].concat();
            prop_assert_eq!(Event::read(Bytes::from(newer_event)), Err(Unread::Newer(newer)));
            let newer_bytes = [&[newer][..], &rest].concat();
            prop_assert_eq!(Event::decode(Bytes::from(newer_bytes)), None);
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
        assert_eq!(
            Event::read(Bytes::from_static(b"\x00M{}")),
            Err(Unread::Foreign)
        );
        assert_eq!(
            Event::read(Bytes::from_static(b"\x01\x01M{}")),
            Err(Unread::Foreign)
        );
        assert_eq!(
            Event::read(Bytes::from_static(b"\x01")),
            Err(Unread::Foreign)
        );
        assert_eq!(
            Event::read(Bytes::from_static(b"\x02")),
            Err(Unread::Newer(2))
        );
    }
}
