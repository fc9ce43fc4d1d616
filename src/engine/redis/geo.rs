//! The rider index: online riders' positions in one GEO set, and the member that marks
//! the set whole.

use fred::prelude::*;

use super::connect::unavailable;
use super::RedisEngine;
use crate::engine::EngineError;

/// A member of the rider index that is no rider: present while the index is whole. It
/// sits at 0°, 0° and is not a number, so no search returns it as a rider.
pub(super) const GEO_READY: &str = "ready";

impl RedisEngine {
    /// Puts `member` into the rider index at `lat`, `lng`.
    pub(super) async fn geo_add(
        &self,
        member: Value,
        lat: f64,
        lng: f64,
    ) -> Result<(), EngineError> {
        let value = fred::types::geo::GeoValue {
            coordinates: fred::types::geo::GeoPosition {
                longitude: lng,
                latitude: lat,
            },
            member,
        };
        self.commands
            .geoadd::<i64, _, _>(self.keys.riders_geo(), None, false, value)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}
