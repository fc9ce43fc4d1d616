//! Domain types: values that are valid by construction once past the boundary.

mod kind;
mod reason;
mod role;
mod scope;
mod status;
mod token;

pub use kind::Kind;
pub use reason::{Reason, ReasonError};
pub use role::{Role, RoleParseError};
pub use scope::Scope;
pub use status::{Approval, OrderStatus, StatusParseError};
pub use token::TokenEpoch;

/// A user's id: the `users.id` primary key, and the `sub` of their access tokens.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct UserId(pub i64);

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The latitudes Redis' geo index can hold (Web Mercator): beyond them `GEOADD` fails,
/// so they are refused up front (422), whichever engine runs.
pub const MAX_LATITUDE: f64 = 85.05112878;

/// Whether `lat`, `lng` is a WGS-84 coordinate the rider index can hold (NaN is not).
pub fn valid_position(lat: f64, lng: f64) -> bool {
    (-MAX_LATITUDE..=MAX_LATITUDE).contains(&lat) && (-180.0..=180.0).contains(&lng)
}
