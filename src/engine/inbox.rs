//! Inbox types shared by both engines: message ids, entries and bounds. (The frame an
//! entry holds is built in [`super::wire`].)
//!
//! A message id is `<unix ms>-<n>`, chosen once when a notification is decided (the
//! outbox row is written, or the platform API accepts it): the same for every
//! recipient and every redelivery, at most 41 characters, and ordered by decision time.
//! `n` always has 20 digits (so ids of one millisecond sort as text as they do as
//! numbers): a random 28-bit prefix per process and a per-process counter, unique
//! across replicas unless two draw the same prefix (about 1 in 2^28) and then meet on
//! the same millisecond and counter. Inbox writes are idempotent per id: a
//! second write of an id that is waiting, or was acked in the last [`DONE_KEEP_MS`],
//! changes nothing and publishes nothing.

use std::fmt;
use std::str::FromStr;

use axum::extract::ws::Utf8Bytes;

/// How many notifications a user's inbox keeps; older ones are dropped (and counted).
pub const INBOX_MAX: usize = 1000;

/// An inbox key untouched this long is deleted by Redis: longer than the usual longest
/// notification ttl (24 h), so only expired entries can go with it. A longer ttl
/// (`ttl_s` of a platform notice, up to 7 days) keeps it longer: [`keep_inbox_ms`].
pub const INBOX_IDLE_MS: u64 = 25 * 3600 * 1000;

/// How long an inbox must be kept after a write of a notification expiring at
/// `expires_ms`: at least [`INBOX_IDLE_MS`], and an hour past that expiry. A write never
/// shortens what an earlier one asked for.
pub fn keep_inbox_ms(now_ms: u64, expires_ms: u64) -> u64 {
    INBOX_IDLE_MS.max(expires_ms.saturating_sub(now_ms) + 3600 * 1000)
}

/// How long at least an acked (or withdrawn) id is remembered after its ack, so that a
/// late or repeated write of it (a relay retried after a crash, a retried API call under
/// its 24 h Idempotency-Key) delivers nothing again, unless pushed out by [`DONE_MAX`]
/// newer ones.
pub const DONE_KEEP_MS: u64 = INBOX_IDLE_MS;
/// About this many acked ids are remembered per user, the newest (Redis trims the set
/// that holds them to this plus [`INBOX_MAX`] on one ack in 8 and about hourly, so it
/// may hold more in between).
pub const DONE_MAX: usize = 10 * INBOX_MAX;

/// Whether an inbox write added the notification, or found it there (or acked) already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    New,
    Duplicate,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgId {
    pub ms: u64,
    pub seq: u64,
}

impl MsgId {
    /// A fresh id, decided now; later than every id this process decided before in the
    /// same millisecond.
    pub fn generate() -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::sync::OnceLock;
        static PREFIX: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let prefix = *PREFIX.get_or_init(|| rand::random::<u64>() & 0x0fff_ffff);
        let count = u64::from(COUNTER.fetch_add(1, Ordering::Relaxed));
        Self {
            ms: crate::time::unix_ms(),
            seq: 10_000_000_000_000_000_000 + ((prefix << 32) | count),
        }
    }
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
    fn generated_ids_sort_the_same_as_text_and_as_numbers() {
        let ids: Vec<MsgId> = (0..1000).map(|_| MsgId::generate()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(pair[0].to_string() < pair[1].to_string() || pair[0].ms < pair[1].ms);
            assert_eq!(pair[1].to_string().parse::<MsgId>(), Ok(pair[1]));
        }
        assert!(ids.iter().all(|id| id.seq.to_string().len() == 20));
    }

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
