//! Every Redis key and channel name, built here and nowhere else.
//!
//! Layout (prefix `ll` by default, `REDIS_KEY_PREFIX`):
//!
//! | name | type | what |
//! |---|---|---|
//! | `ll:{u:42}:live` | channel | live events for user 42 (a shard channel on a Redis Cluster) |
//! | `ll:{u:42}:stream` | stream | user 42's inbox: one entry per unacked notification, in the order written (field `n`: `<expiry ms> <frame tail>`; the entry id is the message id, or, for one written after a later-decided one, field `id` holds it); bounded, expires when idle |
//! | `ll:{u:42}:ids` | sorted set | ids user 42 acked or had withdrawn, scored by that time (ms), kept a day: a late write of one delivers nothing; the entry ids of out-of-order entries (scored `ms × 1024 + seq`); `~keep`, the keys' expiry |
//! | `ll:{u:42}:inbox`, `:msgs`, `:done` | sorted set, hash, sorted set | the inbox of release 0.3 (pending ids, their frames, acked ids): read, moved into the stream and deleted by this release |
//! | `ll:{u:42}:sockets` | sorted set | user 42's open sockets on all replicas, scored by lease expiry (ms) |
//! | `ll:{u:42}:connects` | counter | user 42's connect attempts in the current rate window |
//! | `ll:role:rider` | channel | announcements to every connected rider (likewise merchant, platform) |
//! | `ll:riders:geo` | geo set | online riders' positions, for matching, and the member `ready` while it is whole |
//! | `ll:replicas` | hash | per-replica socket counts, for `/v1/platform/connections` |
//! | `ll:canary:<nonce>` | channel | one replica's pub/sub canary, to itself, every second |
//! | `ll:idem:7:<sha256>`, `ll:idem:k3:<sha256>` | string | user 7's (or service key 3's) `Idempotency-Key` (hashed): the request's fingerprint and answer, for 24 h |
//!
//! Why the `{u:42}` hash tag: in Redis Cluster every key of one user then lives in one
//! slot, so the multi-key scripts a user's delivery needs stay legal, and the user's
//! shard channel (same tag) lives on the shard of their inbox: the script that writes
//! the inbox publishes there too.

use crate::domain::{Role, UserId};

/// Where a published payload goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    User(UserId),
    Role(Role),
}

/// An `Idempotency-Key` of one caller, as stored: the caller and a hash of the key (a
/// client's key is arbitrary text; the stored name is not).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    /// Whose keys these are: a user (`7`) or a service key (`k7`).
    pub caller: String,
    pub key_sha256: String,
}

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis Cluster slot of every key of `user` (they share the `{u:ID}` tag).
    pub fn slot(&self, user: UserId) -> u16 {
        fred::types::cluster::ClusterRouting::hash_key(format!("{{u:{}}}", user.0).as_bytes())
    }

    pub fn channel(&self, target: Target) -> String {
        match target {
            Target::User(u) => format!("{}:{{u:{}}}:live", self.prefix, u.0),
            Target::Role(r) => format!("{}:role:{}", self.prefix, r.as_str()),
        }
    }

    /// The inverse of [`Keys::channel`]; `None` for a name this prefix never builds.
    pub fn parse_channel(&self, channel: &str) -> Option<Target> {
        let rest = channel.strip_prefix(&self.prefix)?.strip_prefix(':')?;
        if let Some(role) = rest.strip_prefix("role:") {
            return role.parse().ok().map(Target::Role);
        }
        let id = rest.strip_prefix("{u:")?.strip_suffix("}:live")?;
        id.parse().ok().map(|id| Target::User(UserId(id)))
    }

    /// The inbox's keys: the stream of unacked notifications, and the ids set (acked and
    /// withdrawn ids, out-of-order entries, the keys' expiry).
    pub fn inbox(&self, user: UserId) -> [String; 2] {
        let base = format!("{}:{{u:{}}}", self.prefix, user.0);
        [format!("{base}:stream"), format!("{base}:ids")]
    }

    /// The inbox's keys in release 0.3's layout (pending ids, their frames, recently
    /// acked ids), read and moved into [`Keys::inbox`] where they still exist.
    pub fn old_inbox(&self, user: UserId) -> [String; 3] {
        let base = format!("{}:{{u:{}}}", self.prefix, user.0);
        [
            format!("{base}:inbox"),
            format!("{base}:msgs"),
            format!("{base}:done"),
        ]
    }

    pub fn user_sockets(&self, user: UserId) -> String {
        format!("{}:{{u:{}}}:sockets", self.prefix, user.0)
    }

    pub fn user_connects(&self, user: UserId) -> String {
        format!("{}:{{u:{}}}:connects", self.prefix, user.0)
    }

    pub fn idempotency(&self, key: &IdempotencyKey) -> String {
        format!("{}:idem:{}:{}", self.prefix, key.caller, key.key_sha256)
    }

    /// A value every replica shares ([`super::Shared::shared_get`]).
    pub fn shared(&self, key: &str) -> String {
        format!("{}:shared:{key}", self.prefix)
    }

    pub fn riders_geo(&self) -> String {
        format!("{}:riders:geo", self.prefix)
    }

    pub fn replicas(&self) -> String {
        format!("{}:replicas", self.prefix)
    }

    /// The pub/sub canary channel of one replica (`nonce`: its own random name).
    pub fn canary(&self, nonce: &str) -> String {
        format!("{}:canary:{nonce}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_round_trip() {
        let keys = Keys::new("t-1");
        for target in [
            Target::User(UserId(42)),
            Target::User(UserId(i64::MAX)),
            Target::Role(Role::Rider),
            Target::Role(Role::Platform),
        ] {
            assert_eq!(keys.parse_channel(&keys.channel(target)), Some(target));
        }
        assert_eq!(keys.channel(Target::User(UserId(7))), "t-1:{u:7}:live");
        assert_eq!(keys.user_sockets(UserId(7)), "t-1:{u:7}:sockets");
    }

    #[test]
    fn every_key_and_channel_of_a_user_is_in_its_slot() {
        use fred::types::cluster::ClusterRouting;
        let keys = Keys::new("ll");
        for user in [UserId(1), UserId(7), UserId(123_456)] {
            let slot = keys.slot(user);
            let [stream, ids] = keys.inbox(user);
            let [pending, frames, done] = keys.old_inbox(user);
            for name in [
                stream,
                ids,
                pending,
                frames,
                done,
                keys.user_sockets(user),
                keys.channel(Target::User(user)),
            ] {
                assert_eq!(ClusterRouting::hash_key(name.as_bytes()), slot, "{name}");
            }
        }
        // What Redis answers to CLUSTER KEYSLOT "{u:7}".
        assert_eq!(keys.slot(UserId(7)), 7954);
    }

    #[test]
    fn foreign_names_do_not_parse() {
        let keys = Keys::new("ll");
        for name in [
            "other:{u:1}:live",
            "ll:{u:x}:live",
            "ll:{u:1}:sockets",
            "ll:role:admin",
            "llx:role:rider",
            "ll",
        ] {
            assert_eq!(keys.parse_channel(name), None, "{name}");
        }
    }
}
