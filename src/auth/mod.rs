//! Authentication: HS256 access tokens ([`jwt`]) and the extractors that make a handler
//! unable to forget them ([`extract`]).

pub mod extract;
pub mod jwt;

pub use extract::{Caller, TokenSource};
pub use jwt::{Claims, TokenError, Tokens};
