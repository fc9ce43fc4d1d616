//! Inbox types shared by both engines: message ids, entries and bounds. (The frame an
//! entry holds is built in [`super::wire`].)
//!
//! A message id is the inbox stream's entry id, `<unix ms>-<seq>`: unique per user,
//! ordered by publish time, and directly what `XDEL` takes on ack.

use std::fmt;
use std::str::FromStr;

use axum::extract::ws::Utf8Bytes;

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
}
