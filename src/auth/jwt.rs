//! Access tokens: HS256 JWTs carrying only the user id.
//!
//! Why so little in the token: SPEC §4 decides what a role may do from the database at
//! call time, so a token minted before an approval works after it and a revoked role
//! stops working at once. Roles in the token would be stale the moment they change.
//!
//! The algorithm is pinned to HS256 on both sides (no `alg` negotiation, so `none` or an
//! RSA/HMAC confusion cannot pass), and `exp`, `iss`, `aud` and `sub` are required and
//! checked, with at most 5 s of clock-skew leeway.
//!
//! Logout compares no clocks: a token carries its user's token epoch (`epoch`, read from
//! the database at login) and a logout moves the epoch on in the database, so replicas
//! whose clocks differ agree on which tokens it refused ([`Claims::revoked_by`]).

use std::time::Duration;
#[cfg(test)]
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::config::{JwtConfig, MAX_TTL};
use crate::domain::{TokenEpoch, UserId};

/// Clock-skew leeway allowed on `exp` (SPEC §2: at most 5 s).
pub const LEEWAY_SECS: u64 = 5;

/// How far ahead of the verifying replica's clock a token's issue time may be: it is the
/// minting replica's clock, and replicas' clocks differ. Five minutes, Kerberos' bound
/// for the same question; the lifetime cap still counts from the issue time.
pub const MAX_ISSUE_SKEW_SECS: u64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as a decimal string (RFC 7519 makes `sub` a string).
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    /// Not before (validated when present). No longer minted: equal to `iat`, it said
    /// nothing more, and made a token minted on a replica whose clock runs ahead
    /// unusable on one whose clock runs behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// When it was minted, in unix ms (the minting replica's clock): the token's own
    /// request quota is kept by it, and the previous release judges logouts by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_ms: Option<u64>,
    /// The user's token epoch when it was minted ([`TokenEpoch::epoch`]). Absent from
    /// tokens minted by the previous release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

impl Claims {
    /// When the token was minted (unix ms).
    pub fn issued_ms(&self) -> u64 {
        self.iat_ms.unwrap_or(self.iat.saturating_mul(1000))
    }

    /// Whether a logout of the user has refused this token, everywhere. A token with an
    /// epoch is refused once the user's epoch has moved past it: no clock is compared.
    /// A token without one (minted by the previous release, during a rolling upgrade)
    /// is judged as that release judged it: refused when minted before the last logout,
    /// its minting replica's clock against the database's.
    pub fn revoked_by(&self, user: &TokenEpoch) -> bool {
        match self.epoch {
            Some(epoch) => epoch < user.epoch,
            None => user
                .valid_from_ms
                .is_some_and(|from| self.issued_ms() < from),
        }
    }
}

/// Whom a token is minted for: the user and their current token epoch, read from the
/// database where the login reads the user ([`crate::store::users::token_epoch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject {
    pub user: UserId,
    pub epoch: u64,
}

impl From<UserId> for Subject {
    /// Epoch 0: a user who has never logged out. A token minted so for a user who has
    /// is refused (never wrongly accepted); mint those with their epoch.
    fn from(user: UserId) -> Self {
        Subject { user, epoch: 0 }
    }
}

/// Whether `claims` lives no longer than [`MAX_TTL`] (plus the leeway), whoever minted
/// it: issued no later than `now_s` (plus [`MAX_ISSUE_SKEW_SECS`]: the minting replica's
/// clock may run ahead of this one's), expiring at most `MAX_TTL` after it was issued,
/// its millisecond issue time within its issue second. A token signed with the key but a
/// century long is refused like a forged one.
fn lifetime_within_cap(claims: &Claims, now_s: u64) -> bool {
    let issued_in_time = claims.iat <= now_s.saturating_add(MAX_ISSUE_SKEW_SECS);
    let short_enough =
        claims.exp.saturating_sub(claims.iat) <= MAX_TTL.as_secs().saturating_add(LEEWAY_SECS);
    let ms_agrees = claims.iat_ms.is_none_or(|ms| ms / 1000 == claims.iat);
    issued_in_time && short_enough && ms_agrees
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token invalid")]
    Invalid,
}

/// Mints and verifies access tokens with the configured key. Cheap to clone.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// A freshly minted token and when it stops working.
#[derive(Debug, Clone)]
pub struct Minted {
    pub token: String,
    pub expires_in: Duration,
    pub expires_at: u64,
}

#[cfg(test)]
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Tokens {
    pub fn new(config: &JwtConfig) -> Self {
        let secret = config.secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            ttl: config.access_token_ttl,
        }
    }

    /// The configured lifetime of a token.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Mints a token for `subject` valid for the configured lifetime.
    pub fn mint(&self, subject: impl Into<Subject>) -> Minted {
        self.mint_with_ttl(subject, self.ttl)
    }

    /// Mints a token for `subject` valid for `ttl`.
    pub fn mint_with_ttl(&self, subject: impl Into<Subject>, ttl: Duration) -> Minted {
        let subject = subject.into();
        let ttl = ttl.min(MAX_TTL);
        let iat_ms = crate::time::unix_ms();
        let iat = iat_ms / 1000;
        let exp = iat.saturating_add(ttl.as_secs());
        let claims = Claims {
            sub: subject.user.0.to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat,
            exp,
            nbf: None,
            iat_ms: Some(iat_ms),
            epoch: Some(subject.epoch),
        };
        self.mint_claims(&claims, ttl)
    }

    fn mint_claims(&self, claims: &Claims, ttl: Duration) -> Minted {
        // Encoding HS256 claims made of strings and integers cannot fail; should the
        // library ever disagree, an empty token is refused by every verifier.
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .unwrap_or_default();
        Minted {
            token,
            expires_in: ttl,
            expires_at: claims.exp,
        }
    }

    /// Verifies a token and returns its user and claims.
    pub fn verify(&self, token: &str) -> Result<(UserId, Claims), TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let id: i64 = data.claims.sub.parse().map_err(|_| TokenError::Invalid)?;
        if id <= 0 || !lifetime_within_cap(&data.claims, crate::time::unix_ms() / 1000) {
            return Err(TokenError::Invalid);
        }
        Ok((UserId(id), data.claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn config(secret: &str) -> JwtConfig {
        JwtConfig {
            secret: SecretString::from(secret.to_owned()),
            issuer: "locallife".into(),
            audience: "locallife".into(),
            access_token_ttl: Duration::from_secs(600),
        }
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_token_longer_than_the_cap_is_refused_whoever_signed_it() {
        let t = Tokens::new(&config(KEY));
        let now = now_secs();
        let claims = |iat: u64, exp: u64, iat_ms: Option<u64>| Claims {
            sub: "42".into(),
            iss: "locallife".into(),
            aud: "locallife".into(),
            iat,
            exp,
            nbf: None,
            iat_ms,
            epoch: None,
        };
        let signed = |c: &Claims| t.mint_claims(c, Duration::ZERO).token;
        let century = claims(now, now + 100 * 365 * 86_400, None);
        assert_eq!(t.verify(&signed(&century)).err(), Some(TokenError::Invalid));
        let a_day = claims(now, now + MAX_TTL.as_secs(), Some(now * 1000 + 999));
        assert!(t.verify(&signed(&a_day)).is_ok());
        let future = claims(now + 3600, now + 7200, None);
        assert_eq!(t.verify(&signed(&future)).err(), Some(TokenError::Invalid));
        // A millisecond issue time far from the second: a way round a logout.
        let skewed = claims(now, now + 600, Some((now + 86_400) * 1000));
        assert_eq!(t.verify(&signed(&skewed)).err(), Some(TokenError::Invalid));
    }

    #[test]
    fn a_token_not_yet_valid_is_refused() {
        let t = Tokens::new(&config(KEY));
        let now = now_secs();
        let mut claims = Claims {
            sub: "42".into(),
            iss: "locallife".into(),
            aud: "locallife".into(),
            iat: now,
            exp: now + 600,
            nbf: Some(now + 60),
            iat_ms: None,
            epoch: None,
        };
        let early = t.mint_claims(&claims, Duration::from_secs(600));
        assert_eq!(t.verify(&early.token).unwrap_err(), TokenError::Invalid);
        claims.nbf = Some(now);
        let ok = t.mint_claims(&claims, Duration::from_secs(600));
        assert_eq!(t.verify(&ok.token).unwrap().1.issued_ms(), now * 1000);
    }

    #[test]
    fn a_minted_token_verifies() {
        let t = Tokens::new(&config(KEY));
        let minted = t.mint(UserId(42));
        let (user, claims) = t.verify(&minted.token).unwrap();
        assert_eq!(user, UserId(42));
        assert_eq!(claims.exp - claims.iat, 600);
        assert_eq!((claims.epoch, claims.nbf), (Some(0), None));
        let subject = Subject {
            user: UserId(42),
            epoch: 7,
        };
        let (_, claims) = t.verify(&t.mint(subject).token).unwrap();
        assert_eq!(claims.epoch, Some(7));
    }

    /// A token minted on a replica whose clock runs a minute ahead works on this one;
    /// an issue time further ahead than the skew allowed does not.
    #[test]
    fn an_issue_time_ahead_by_clock_skew_is_accepted() {
        let t = Tokens::new(&config(KEY));
        let now = now_secs();
        let claims = |iat: u64| Claims {
            sub: "42".into(),
            iss: "locallife".into(),
            aud: "locallife".into(),
            iat,
            exp: iat + 600,
            nbf: None,
            iat_ms: Some(iat * 1000 + 1),
            epoch: Some(0),
        };
        let signed = |c: &Claims| t.mint_claims(c, Duration::ZERO).token;
        assert!(t.verify(&signed(&claims(now + 60))).is_ok());
        assert_eq!(
            t.verify(&signed(&claims(now + MAX_ISSUE_SKEW_SECS + 10)))
                .err(),
            Some(TokenError::Invalid)
        );
    }

    #[test]
    fn a_logout_refuses_earlier_epochs_and_judges_epochless_tokens_by_time() {
        let claims = |epoch: Option<u64>, iat_ms: u64| Claims {
            sub: "1".into(),
            iss: "locallife".into(),
            aud: "locallife".into(),
            iat: iat_ms / 1000,
            exp: iat_ms / 1000 + 600,
            nbf: None,
            iat_ms: Some(iat_ms),
            epoch,
        };
        let never = TokenEpoch::default();
        let twice = TokenEpoch {
            epoch: 2,
            valid_from_ms: Some(5_000),
        };
        assert!(!claims(Some(0), 1_000).revoked_by(&never));
        assert!(
            claims(Some(1), 9_000).revoked_by(&twice),
            "an earlier epoch"
        );
        // No clock decides: minted "later" by a fast clock, refused all the same...
        assert!(claims(Some(1), 99_000).revoked_by(&twice));
        // ...and minted "earlier" by a slow clock, accepted all the same.
        assert!(!claims(Some(2), 1_000).revoked_by(&twice));
        // The previous release's tokens: by time, as that release judged them.
        assert!(claims(None, 4_999).revoked_by(&twice));
        assert!(!claims(None, 5_000).revoked_by(&twice));
        assert!(!claims(None, 1).revoked_by(&never));
    }

    #[test]
    fn wrong_key_issuer_or_audience_is_invalid() {
        let t = Tokens::new(&config(KEY));
        let other = Tokens::new(&config("ffffffffffffffffffffffffffffffff"));
        assert_eq!(
            other.verify(&t.mint(UserId(1)).token),
            Err(TokenError::Invalid)
        );

        let mut c = config(KEY);
        c.issuer = "someone-else".into();
        assert_eq!(
            t.verify(&Tokens::new(&c).mint(UserId(1)).token),
            Err(TokenError::Invalid)
        );

        let mut c = config(KEY);
        c.audience = "another-app".into();
        assert_eq!(
            t.verify(&Tokens::new(&c).mint(UserId(1)).token),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn expiry_has_five_seconds_of_leeway_and_no_more() {
        let t = Tokens::new(&config(KEY));
        let now = now_secs();
        let claims = |exp: u64| Claims {
            sub: "7".into(),
            iss: "locallife".into(),
            aud: "locallife".into(),
            iat: now - 100,
            exp,
            nbf: None,
            iat_ms: None,
            epoch: None,
        };
        let within = t.mint_claims(&claims(now - 2), Duration::ZERO);
        assert!(t.verify(&within.token).is_ok());
        let past = t.mint_claims(&claims(now - 30), Duration::ZERO);
        assert_eq!(t.verify(&past.token), Err(TokenError::Expired));
    }

    #[test]
    fn other_algorithms_and_garbage_are_refused() {
        let t = Tokens::new(&config(KEY));
        let claims = Claims {
            sub: "7".into(),
            iss: "locallife".into(),
            aud: "locallife".into(),
            iat: now_secs(),
            exp: now_secs() + 60,
            nbf: None,
            iat_ms: None,
            epoch: None,
        };
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(KEY.as_bytes()),
        )
        .unwrap();
        assert_eq!(t.verify(&hs512), Err(TokenError::Invalid));
        // alg "none": header {"alg":"none","typ":"JWT"}, no signature.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiI3In0.";
        assert_eq!(t.verify(none), Err(TokenError::Invalid));
        assert_eq!(t.verify(""), Err(TokenError::Invalid));
        assert_eq!(t.verify("a.b.c"), Err(TokenError::Invalid));
    }

    #[test]
    fn a_non_numeric_subject_is_invalid() {
        let t = Tokens::new(&config(KEY));
        let claims = Claims {
            sub: "alice".into(),
            iss: "locallife".into(),
            aud: "locallife".into(),
            iat: now_secs(),
            exp: now_secs() + 60,
            nbf: None,
            iat_ms: None,
            epoch: None,
        };
        let token = t.mint_claims(&claims, Duration::ZERO).token;
        assert_eq!(t.verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let t = Tokens::new(&config(KEY));
        assert!(!format!("{t:?}").contains(KEY));
    }
}
