//! [`RiderIndex`] for [`RedisEngine`]: online riders' positions in one GEO set, and the
//! member that marks the set whole.

use async_trait::async_trait;
use fred::prelude::*;

use super::connect::unavailable;
use super::RedisEngine;
use crate::domain::UserId;
use crate::engine::{EngineError, RiderIndex};

/// A member of the rider index that is no rider: present while the index is whole. It
/// sits at 0°, 0° and is not a number, so no search returns it as a rider.
const GEO_READY: &str = "ready";

impl RedisEngine {
    /// Puts `member` into the rider index at `lat`, `lng`.
    async fn geo_add(&self, member: Value, lat: f64, lng: f64) -> Result<(), EngineError> {
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

#[async_trait]
impl RiderIndex for RedisEngine {
    async fn geo_set(&self, rider: UserId, lat: f64, lng: f64) -> Result<(), EngineError> {
        self.geo_add(Value::from(rider.0), lat, lng).await
    }

    async fn geo_ready(&self) -> Result<bool, EngineError> {
        let score: Option<f64> = self
            .commands
            .zscore(self.keys.riders_geo(), GEO_READY)
            .await
            .map_err(unavailable)?;
        Ok(score.is_some())
    }

    async fn geo_mark_ready(&self) -> Result<(), EngineError> {
        self.geo_add(Value::from(GEO_READY), 0.0, 0.0).await
    }

    async fn geo_remove(&self, rider: UserId) -> Result<(), EngineError> {
        self.commands
            .zrem::<i64, _, _>(self.keys.riders_geo(), rider.0)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn geo_near(
        &self,
        lat: f64,
        lng: f64,
        radius_m: f64,
        count: usize,
    ) -> Result<Vec<(UserId, f64)>, EngineError> {
        let found: Value = self
            .commands
            .geosearch(
                self.keys.riders_geo(),
                None,
                Some(fred::types::geo::GeoPosition {
                    longitude: lng,
                    latitude: lat,
                }),
                Some((radius_m, fred::types::geo::GeoUnit::Meters)),
                None,
                Some(fred::types::SortOrder::Asc),
                Some((count as u64, false)),
                false,
                true,
                false,
            )
            .await
            .map_err(unavailable)?;
        // WITHDIST answers [[member, distance], ...].
        let rows = found.into_array();
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let mut pair = row.into_array().into_iter();
                let member = pair.next()?.as_i64()?;
                let dist = pair.next()?.as_f64()?;
                Some((UserId(member), dist))
            })
            .collect())
    }
}
