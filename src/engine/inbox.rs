//! Inbox types shared by both engines: message ids and the frame layout that lets a
//! notification be serialised once yet carry the id its inbox assigned.
//!
//! A message id is the inbox stream's entry id, `<unix ms>-<seq>`: unique per user,
//! ordered by publish time, and directly what `XDEL` takes on ack. The frame is
//! [`HEAD`] + id + tail, where the tail (everything after the id) is serialised by the
//! publisher and stored in the stream; the engine splices the id in.

use std::fmt;
use std::str::FromStr;

use axum::extract::ws::Utf8Bytes;

/// The start of every notification frame, up to the message id.
pub const HEAD: &str = r#"{"type":"notification","data":{"message_id":""#;

/// How many notifications a user's inbox keeps; older ones are dropped (and counted).
pub const INBOX_MAX: usize = 1000;

/// An inbox key untouched this long is deleted by Redis: longer than the longest
/// notification ttl (24 h), so only expired entries can go with it.
pub const INBOX_IDLE_MS: u64 = 25 * 3600 * 1000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgId {
    pub ms: u64,
    pub seq: u64,
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a message id")]
pub struct BadMsgId;

impl FromStr for MsgId {
    type Err = BadMsgId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ms, seq) = s.split_once('-').ok_or(BadMsgId)?;
        let digits =
            |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return Err(BadMsgId);
        }
        Ok(MsgId {
            ms: ms.parse().map_err(|_| BadMsgId)?,
            seq: seq.parse().map_err(|_| BadMsgId)?,
        })
    }
}

/// The whole frame for `id`.
pub fn frame(id: MsgId, tail: &str) -> Utf8Bytes {
    Utf8Bytes::from(format!("{HEAD}{id}{tail}"))
}

/// One notification waiting in an inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    pub id: MsgId,
    /// Unix ms after which it must not be delivered.
    pub expires_ms: u64,
    pub frame: Utf8Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_order() {
        let a: MsgId = "1732451234567-0".parse().unwrap();
        let b: MsgId = "1732451234567-12".parse().unwrap();
        assert!(a < b);
        assert_eq!(b.to_string(), "1732451234567-12");
        for bad in [
            "",
            "1",
            "-1",
            "1-",
            "a-1",
            "1-1-1",
            "1 -1",
            "99999999999999999999999-0",
        ] {
            assert!(bad.parse::<MsgId>().is_err(), "{bad}");
        }
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
