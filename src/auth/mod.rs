//! Authentication: HS256 access tokens ([`jwt`]), service keys ([`keys`]) and where a
//! request carries one ([`bearer`]). The extractor that puts it in a handler's signature is
//! [`crate::http::caller`].

pub mod bearer;
pub mod jwt;
pub mod keys;

pub use bearer::{token_from, TokenSource};
pub use jwt::{Claims, TokenError, Tokens};
