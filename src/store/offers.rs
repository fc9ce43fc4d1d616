//! Offers of a paid order to riders: the riders it was recommended to, with their
//! distance, which decide who hears it is taken or closed.

use super::StoreError;
use crate::domain::UserId;

type Pool = deadpool_postgres::Pool;

/// Records that `order` was offered to each of `riders`, at their distance in metres;
/// an offer made before is kept.
pub async fn record_recommendations(
    db: &Pool,
    order: i64,
    riders: &[(UserId, f64)],
) -> Result<(), StoreError> {
    let client = db.get().await?;
    for (rider, distance) in riders {
        client
            .execute(
                "INSERT INTO order_recommendations (order_id, rider_id, distance_m)
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&order, &rider.0, distance],
            )
            .await?;
    }
    Ok(())
}

/// The riders recommended `order`, nearest first, with their distance in metres.
pub async fn recommended(db: &Pool, order: i64) -> Result<Vec<(UserId, f64)>, StoreError> {
    let client = db.get().await?;
    Ok(client
        .query(
            "SELECT rider_id, distance_m FROM order_recommendations WHERE order_id = $1
             ORDER BY distance_m",
            &[&order],
        )
        .await?
        .iter()
        .map(|r| (UserId(r.get(0)), r.get(1)))
        .collect())
}
