//! Domain types: values that are valid by construction once past the boundary.

mod role;
mod status;

pub use role::{Role, RoleParseError};
pub use status::{Approval, OrderStatus, StatusParseError};

/// A user's id: the `users.id` primary key, and the `sub` of their access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Whether `lat`, `lng` is a WGS-84 coordinate (NaN is not).
pub fn valid_position(lat: f64, lng: f64) -> bool {
    (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lng)
}
