//! The acks this replica applied to its own sockets already, so that the `Acked` event
//! the engine publishes for them (for the other replicas) is not applied here again.

use std::collections::{HashSet, VecDeque};

use crate::domain::UserId;
use crate::engine::MsgId;

/// Acks applied here lately whose `Acked` event may still come back, at most: the
/// oldest is forgotten first (an event that comes back after that is applied again,
/// which changes nothing).
const LOCAL_ACKS: usize = 4096;

/// Acks this replica's sockets made and applied to its own sockets already: the engine
/// publishes them for the other replicas, and the copy this replica receives is skipped.
/// Bounded: most are never echoed (the engine skips the publish for a user with one
/// socket).
#[derive(Default)]
pub(super) struct LocalAcks {
    ids: HashSet<(UserId, MsgId)>,
    order: VecDeque<(UserId, MsgId)>,
}

impl LocalAcks {
    pub(super) fn remember(&mut self, user: UserId, id: MsgId) {
        if !self.ids.insert((user, id)) {
            return;
        }
        if self.order.len() >= LOCAL_ACKS {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        self.order.push_back((user, id));
    }

    /// Whether `id` of `user` was applied here already (then forgotten: an ack is
    /// published at most once). Its place in `order` goes when it comes round: no scan.
    pub(super) fn take(&mut self, user: UserId, id: MsgId) -> bool {
        self.ids.remove(&(user, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_applied_here_skips_its_echo_once_and_the_memory_is_bounded() {
        let mut local = LocalAcks::default();
        let id = |seq| MsgId { ms: 1, seq };
        local.remember(UserId(1), id(1));
        assert!(
            local.take(UserId(1), id(1)),
            "the echo of a local ack is skipped"
        );
        assert!(!local.take(UserId(1), id(1)), "once");
        assert!(
            !local.take(UserId(2), id(2)),
            "an ack made elsewhere is applied"
        );
        for seq in 0..(LOCAL_ACKS as u64 + 10) {
            local.remember(UserId(1), id(seq));
        }
        assert!(local.ids.len() <= LOCAL_ACKS && local.order.len() <= LOCAL_ACKS);
        assert!(
            !local.take(UserId(1), id(0)),
            "the oldest is forgotten first"
        );
        assert!(local.take(UserId(1), id(LOCAL_ACKS as u64 + 9)));
    }
}
