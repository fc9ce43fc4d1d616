//! An inbox entry as Redis holds it, and its version ([`VERSION`]): a stream entry of
//! fields `n` (the [`value`], `<expires_ms> <tail>`, as release 0.3 kept it in its
//! frames hash), `v` (the entry's version) and, for an entry written out of order,
//! `id` (the message id). The Lua scripts (`engine::redis::scripts`) write and read
//! those fields by these names; [`parse`] reads an entry the read script returned.

use crate::engine::inbox::{InboxEntry, MsgId};

/// The version of the inbox entry this release writes (field `v`; an entry without it
/// is version 1). The read script leaves an entry of a higher version where it is, as a
/// newer release wrote it (after a rollback, that release reads it again when it
/// returns), delivers nothing of it and counts it in
/// `locallife_wire_newer_skipped_total{format="inbox"}`. Release 0.3 never reads the
/// stream: its inboxes were sorted sets, which this release moves into the stream.
pub const VERSION: u8 = 1;

/// The entry's value (field `n`): the expiry in unix ms, a space, and the frame's tail
/// ([`super::tail`]).
pub fn value(expires_ms: u64, tail: &str) -> String {
    format!("{expires_ms} {tail}")
}

/// The entry of message `id` with value `value` ([`value`]), or `None` when either is
/// not of that form.
pub fn parse(id: &str, value: &str) -> Option<InboxEntry> {
    let id = id.parse::<MsgId>().ok()?;
    let (exp, tail) = value.split_once(' ')?;
    let expires_ms = exp.parse::<u64>().ok()?;
    Some(InboxEntry {
        id,
        expires_ms,
        frame: super::frame(id, tail),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::wire::events::tests::msg_id;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn entries_round_trip(id in msg_id(), expires_ms in any::<u64>(), tail in ".*") {
            let entry = parse(&id.to_string(), &value(expires_ms, &tail));
            prop_assert_eq!(
                entry,
                Some(InboxEntry { id, expires_ms, frame: super::super::frame(id, &tail) })
            );
        }
    }

    #[test]
    fn foreign_entries_are_refused() {
        assert_eq!(parse("1-1", "5"), None);
        assert_eq!(parse("1-1", "x {}"), None);
        assert_eq!(parse("1", "5 {}"), None);
    }
}
