//! Access tokens: HS256 JWTs carrying only the user id.
//!
//! Why so little in the token: SPEC §4 decides what a role may do from the database at
//! call time, so a token minted before an approval works after it and a revoked role
//! stops working at once. Roles in the token would be stale the moment they change.
//!
//! The algorithm is pinned to HS256 on both sides (no `alg` negotiation, so `none` or an
//! RSA/HMAC confusion cannot pass), and `exp`, `iss`, `aud` and `sub` are required and
//! checked, with at most 5 s of clock-skew leeway.

use std::time::Duration;
#[cfg(test)]
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::config::JwtConfig;
use crate::domain::UserId;

/// Clock-skew leeway allowed on `exp` (SPEC §2: at most 5 s).
pub const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as a decimal string (RFC 7519 makes `sub` a string).
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    /// Not before (validated when present; minted equal to `iat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// When it was minted, in unix ms: a logout refuses tokens minted before it, also
    /// within the same second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_ms: Option<u64>,
}

impl Claims {
    /// When the token was minted (unix ms).
    pub fn issued_ms(&self) -> u64 {
        self.iat_ms.unwrap_or(self.iat.saturating_mul(1000))
    }

    /// Whether the token was minted before the user's last logout (`tokens_valid_from`,
    /// unix ms): such a token is refused everywhere.
    pub fn revoked_by(&self, valid_from_ms: Option<u64>) -> bool {
        valid_from_ms.is_some_and(|from| self.issued_ms() < from)
    }
}

/// The longest lifetime a token may be minted with (`ACCESS_TOKEN_TTL`, `token --ttl`).
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// Whether `claims` lives no longer than [`MAX_TTL`] (plus the leeway), whoever minted
/// it: issued no later than `now_s` (plus the leeway), expiring at most `MAX_TTL` after
/// it was issued, its millisecond issue time within its issue second. A token signed
/// with the key but a century long is refused like a forged one.
fn lifetime_within_cap(claims: &Claims, now_s: u64) -> bool {
    let issued_in_time = claims.iat <= now_s.saturating_add(LEEWAY_SECS);
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

    /// Mints a token for `user` valid for the configured lifetime.
    pub fn mint(&self, user: UserId) -> Minted {
        self.mint_with_ttl(user, self.ttl)
    }

    /// Mints a token for `user` valid for `ttl`.
    pub fn mint_with_ttl(&self, user: UserId, ttl: Duration) -> Minted {
        let ttl = ttl.min(MAX_TTL);
        let iat_ms = crate::time::unix_ms();
        let iat = iat_ms / 1000;
        let exp = iat.saturating_add(ttl.as_secs());
        let claims = Claims {
            sub: user.0.to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat,
            exp,
            nbf: Some(iat),
            iat_ms: Some(iat_ms),
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
