//! Service keys (SPEC §10): what a back-office service presents instead of a person's
//! token. A key is `llk_<id>_<secret>`: the id finds its row, the secret (32 random
//! bytes, base64url) proves it. Only the SHA-256 of the secret is stored, and it is
//! compared in constant time; the secret is shown once, when the key is made, and
//! never logged (this type's `Debug` hides it).

use std::fmt;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix every key begins with, so a key is told from a token at a glance.
pub const PREFIX: &str = "llk_";
/// Random bytes in a secret.
const SECRET_BYTES: usize = 32;

/// A key as presented: its id and secret.
pub struct Presented {
    pub id: i64,
    secret: String,
}

impl fmt::Debug for Presented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presented")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Whether `credential` is a service key (rather than an access token).
pub fn is_key(credential: &str) -> bool {
    credential.starts_with(PREFIX)
}

/// Parses `llk_<id>_<secret>`; `None` for anything else.
pub fn parse(credential: &str) -> Option<Presented> {
    let rest = credential.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id: i64 = id.parse().ok().filter(|id| *id > 0)?;
    let valid = secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then(|| Presented {
        id,
        secret: secret.to_owned(),
    })
}

impl Presented {
    /// Whether the secret is the one whose SHA-256 is `stored` (constant time).
    pub fn matches(&self, stored: &[u8]) -> bool {
        let digest = Sha256::digest(self.secret.as_bytes());
        digest[..].ct_eq(stored).into()
    }
}

/// A new secret, and the SHA-256 to store.
pub fn new_secret() -> (String, Vec<u8>) {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let digest = Sha256::digest(secret.as_bytes()).to_vec();
    (secret, digest)
}

/// The whole key, as shown once to whoever made it.
pub fn format(id: i64, secret: &str) -> String {
    format!("{PREFIX}{id}_{secret}")
}

/// How long a replica trusts what it read of a key: a revocation reaches every replica
/// within this (SPEC §10: 5 s), without a query per request.
pub const CACHE_FOR: std::time::Duration = std::time::Duration::from_secs(2);
/// How often a key's `last_used_at` is written, at most, per replica.
pub const TOUCH_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// Keys a replica remembers; past this the memory starts over.
const CACHED_KEYS: usize = 10_000;

/// What a replica last read of each key it was shown, and when it last wrote its use.
#[derive(Default)]
pub struct KeyCache {
    entries: std::sync::Mutex<std::collections::HashMap<i64, Cached>>,
}

struct Cached {
    read_at: std::time::Instant,
    /// `None`: no such key.
    record: Option<std::sync::Arc<crate::store::keys::KeyRecord>>,
    touched_at: Option<std::time::Instant>,
}

impl KeyCache {
    /// Key `id` as read less than [`CACHE_FOR`] ago: `Some(None)` for a key known not to
    /// exist, `None` when it must be read again.
    pub fn get(&self, id: i64) -> Option<Option<std::sync::Arc<crate::store::keys::KeyRecord>>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(&id)
            .filter(|c| c.read_at.elapsed() < CACHE_FOR)
            .map(|c| c.record.clone())
    }

    /// Remembers what was just read of key `id`.
    pub fn put(&self, id: i64, record: Option<crate::store::keys::KeyRecord>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHED_KEYS && !entries.contains_key(&id) {
            entries.clear();
        }
        let touched_at = entries.get(&id).and_then(|c| c.touched_at);
        entries.insert(
            id,
            Cached {
                read_at: std::time::Instant::now(),
                record: record.map(std::sync::Arc::new),
                touched_at,
            },
        );
    }

    /// Forgets key `id` (revoked here: refused at once on this replica).
    pub fn forget(&self, id: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(&id);
    }

    /// Whether key `id`'s use should be written now (at most every [`TOUCH_EVERY`]);
    /// if so, counts it as written.
    pub fn due_for_touch(&self, id: i64) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let Some(c) = entries.get_mut(&id) else {
            return false;
        };
        if c.touched_at.is_some_and(|t| t.elapsed() < TOUCH_EVERY) {
            return false;
        }
        c.touched_at = Some(std::time::Instant::now());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_parses_and_matches_only_its_own_hash() {
        let (secret, hash) = new_secret();
        assert_eq!(secret.len(), 43);
        let key = format(7, &secret);
        assert!(is_key(&key));
        let presented = parse(&key).unwrap();
        assert_eq!(presented.id, 7);
        assert!(presented.matches(&hash));
        let (_, other) = new_secret();
        assert!(!presented.matches(&other));
        assert!(!presented.matches(&hash[..31]));
        assert!(!format!("{presented:?}").contains(&secret));
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        let (secret, _) = new_secret();
        for bad in [
            "llk_".to_owned(),
            "llk_7".to_owned(),
            format!("llk_0_{secret}"),
            format!("llk_-1_{secret}"),
            format!("llk_x_{secret}"),
            format!("llk_7_{}", &secret[1..]),
            format!("llk_7_{secret}x"),
            format!("llk_7_{}!", &secret[1..]),
            format!("LLK_7_{secret}"),
        ] {
            assert!(parse(&bad).is_none(), "{bad}");
        }
    }
}
