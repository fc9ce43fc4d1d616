//! The wire formats: every text frame a socket sends ([`frames`]: a notification's,
//! and `welcome`, `pong`, `auth_ok`, `error`), and the payloads that cross replicas on
//! pub/sub ([`events`]). Every other module (the publisher, both engines, the Redis
//! scripts, the hub, the socket session) builds and reads them through here.
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
//! - `C` + close code (2 bytes, big-endian) + reason: close the user's sockets;
//! - `R` + role: the user is no longer admitted through that role.
//!
//! Ids are decided before anything is written, so the engines' scripts receive finished
//! payloads and build nothing themselves.
//!
//! **Versions.** Both formats that outlive a process carry a version, so that replicas
//! of two releases share Redis during a rolling upgrade (SPEC §11): a pub/sub payload
//! ([`events::VERSION`]: version 1 unmarked, as release 0.3 reads it, or a first byte
//! below `0x20` naming the version) and an inbox entry ([`entry`]: field `v`). What a
//! newer release wrote in a version this one does not know is skipped and counted
//! (`locallife_wire_newer_skipped_total`), never misread.

pub mod entry;
pub mod events;
pub mod frames;

pub use events::Event;
pub use frames::{auth_ok, error, frame, pong, tail, welcome, Welcome, HEAD};

#[cfg(test)]
mod tests {
    use super::events::tests::msg_id;
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    proptest! {
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
}
