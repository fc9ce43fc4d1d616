//! Riders: application, approval, online state, position. Suspension is in
//! [`super::suspensions`].

use super::suspensions::Approve;
use super::StoreError;
use crate::domain::{Approval, Role, UserId};

type Pool = deadpool_postgres::Pool;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RiderState {
    pub approved: bool,
    /// Suspended by platform staff (not approved, until reinstated).
    pub suspended: bool,
    pub online: bool,
}

/// Applies; `false` when this user has applied already.
pub async fn apply(db: &Pool, user: UserId, name: &str, phone: &str) -> Result<bool, StoreError> {
    let client = db.get().await?;
    let n = client
        .execute(
            "INSERT INTO riders (user_id, name, phone) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO NOTHING",
            &[&user.0, &name, &phone],
        )
        .await?;
    Ok(n == 1)
}

pub async fn state(db: &Pool, user: UserId) -> Result<Option<RiderState>, StoreError> {
    let client = db.get().await?;
    Ok(client
        .query_opt(
            "SELECT status, online FROM riders WHERE user_id = $1",
            &[&user.0],
        )
        .await?
        .map(|r| {
            let status: Approval = r.get(0);
            RiderState {
                approved: status == Approval::Approved,
                suspended: status == Approval::Suspended,
                online: r.get(1),
            }
        }))
}

/// Approves an application (pending, rejected, or approved already) and grants the
/// rider role. A suspended rider is not approved so: they are reinstated.
/// `by`: the member of staff, or `None` for a service key.
pub async fn approve(db: &Pool, user: UserId, by: Option<UserId>) -> Result<Approve, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await?;
    let n = tx
        .execute(
            "UPDATE riders SET status = 'approved', approved_at = COALESCE(approved_at, now()),
                    approved_by = $2, updated_at = now()
             WHERE user_id = $1 AND status <> 'suspended'",
            &[&user.0, &by.map(|u| u.0)],
        )
        .await?;
    if n == 0 {
        let exists = tx
            .query_opt("SELECT 1 FROM riders WHERE user_id = $1", &[&user.0])
            .await?
            .is_some();
        return Ok(if exists {
            Approve::Suspended
        } else {
            Approve::NotFound
        });
    }
    tx.execute(
        "INSERT INTO user_roles (user_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&user.0, &Role::Rider.as_str()],
    )
    .await?;
    tx.commit().await?;
    Ok(Approve::Done)
}

/// Goes online at a position; `None` when the user is not an approved rider.
pub async fn go_online(
    db: &Pool,
    user: UserId,
    lat: f64,
    lng: f64,
) -> Result<Option<()>, StoreError> {
    let client = db.get().await?;
    let n = client
        .execute(
            "UPDATE riders SET online = true, last_lat = $2, last_lng = $3,
                    location_updated_at = now(), online_changed_at = now(), updated_at = now()
             WHERE user_id = $1 AND status = 'approved'",
            &[&user.0, &lat, &lng],
        )
        .await?;
    Ok((n == 1).then_some(()))
}

/// Goes offline; `false` when the user is not a rider.
pub async fn go_offline(db: &Pool, user: UserId) -> Result<bool, StoreError> {
    let client = db.get().await?;
    let n = client
        .execute(
            "UPDATE riders SET online = false, online_changed_at = now(), updated_at = now()
             WHERE user_id = $1",
            &[&user.0],
        )
        .await?;
    Ok(n == 1)
}

/// Updates an online rider's position; `false` when the rider is not online.
pub async fn set_location(db: &Pool, user: UserId, lat: f64, lng: f64) -> Result<bool, StoreError> {
    let client = db.get().await?;
    let n = client
        .execute(
            "UPDATE riders SET last_lat = $2, last_lng = $3, location_updated_at = now()
             WHERE user_id = $1 AND online",
            &[&user.0, &lat, &lng],
        )
        .await?;
    Ok(n == 1)
}

/// Of `candidates`, those that are approved and online now (the geo index may lag).
pub async fn online_among(db: &Pool, candidates: &[i64]) -> Result<Vec<i64>, StoreError> {
    let client = db.get().await?;
    Ok(client
        .query(
            "SELECT user_id FROM riders WHERE user_id = ANY($1) AND status = 'approved' AND online",
            &[&candidates],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Every online rider with a position: to rebuild the geo index at start-up.
pub async fn online_positions(db: &Pool) -> Result<Vec<(UserId, f64, f64)>, StoreError> {
    let client = db.get().await?;
    Ok(client
        .query(
            "SELECT user_id, last_lat, last_lng FROM riders WHERE online AND status = 'approved'",
            &[],
        )
        .await?
        .iter()
        .map(|r| (UserId(r.get(0)), r.get(1), r.get(2)))
        .collect())
}
