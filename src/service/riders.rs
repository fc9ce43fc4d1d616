//! Riders: applying, going online and offline, moving. Called by the HTTP handlers
//! and by the socket's `location` message alike.

use crate::domain::{valid_position, UserId};
use crate::engine::EngineError;
use crate::notify;
use crate::state::AppState;
use crate::store::{riders, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RiderError {
    #[error("name must be 1 to 50 characters")]
    InvalidName,
    #[error("phone must be 5 to 20 digits")]
    InvalidPhone,
    #[error("lat must be within ±90 and lng within ±180")]
    InvalidPosition,
    #[error("this user has applied already")]
    AlreadyApplied,
    #[error("the rider is not approved by the platform")]
    NotApproved,
    /// Suspended by platform staff, until reinstated.
    #[error("the rider is suspended by the platform")]
    Suspended,
    /// Taking an order needs the rider online.
    #[error("the rider is offline")]
    Offline,
    /// A position is only recorded for an online rider.
    #[error("go online before sending a location")]
    LocationWhileOffline,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// A position as a client sent it, checked before anything is written.
pub fn check_position(lat: f64, lng: f64) -> Result<(), RiderError> {
    if valid_position(lat, lng) {
        Ok(())
    } else {
        Err(RiderError::InvalidPosition)
    }
}

/// Applies as a rider (pending until the platform approves).
pub async fn apply(
    state: &AppState,
    user: UserId,
    name: &str,
    phone: &str,
) -> Result<(), RiderError> {
    let name = name.trim();
    let phone = phone.trim();
    if name.is_empty() || name.chars().count() > 50 {
        return Err(RiderError::InvalidName);
    }
    if !(5..=20).contains(&phone.len()) || !phone.chars().all(|c| c.is_ascii_digit() || c == '+') {
        return Err(RiderError::InvalidPhone);
    }
    if !riders::apply(state.db(), user, name, phone).await? {
        return Err(RiderError::AlreadyApplied);
    }
    Ok(())
}

/// Online at a position: recorded in PostgreSQL, then in the geo index for matching.
pub async fn go_online(
    state: &AppState,
    rider: UserId,
    lat: f64,
    lng: f64,
) -> Result<(), RiderError> {
    check_position(lat, lng)?;
    if riders::go_online(state.db(), rider, lat, lng)
        .await?
        .is_none()
    {
        return Err(not_approved(state, rider).await?);
    }
    state.engine().geo_set(rider, lat, lng).await?;
    Ok(())
}

/// Why a rider who may not work is refused: suspended, or not (or not yet) approved.
async fn not_approved(state: &AppState, rider: UserId) -> Result<RiderError, RiderError> {
    Ok(match riders::state(state.db(), rider).await? {
        Some(s) if s.suspended => RiderError::Suspended,
        _ => RiderError::NotApproved,
    })
}

/// Offline: out of matching, and the rider role taken from the rider's sockets on every
/// replica (a socket with no other role closes with 4003).
pub async fn go_offline(state: &AppState, rider: UserId) -> Result<(), RiderError> {
    if !riders::go_offline(state.db(), rider).await? {
        return Err(RiderError::NotApproved);
    }
    let engine = state.engine();
    engine.geo_remove(rider).await?;
    notify::revoke_role(&**engine, rider, crate::domain::Role::Rider).await?;
    Ok(())
}

/// A new position of an online rider (`POST /v1/rider/location` and the socket's
/// `location` message).
pub async fn update_location(
    state: &AppState,
    rider: UserId,
    lat: f64,
    lng: f64,
) -> Result<(), RiderError> {
    check_position(lat, lng)?;
    if !riders::set_location(state.db(), rider, lat, lng).await? {
        return Err(match riders::state(state.db(), rider).await? {
            Some(s) if s.approved => RiderError::LocationWhileOffline,
            Some(s) if s.suspended => RiderError::Suspended,
            _ => RiderError::NotApproved,
        });
    }
    state.engine().geo_set(rider, lat, lng).await?;
    Ok(())
}

/// The rider must be approved and online to take orders.
pub async fn require_online(state: &AppState, rider: UserId) -> Result<(), RiderError> {
    match riders::state(state.db(), rider).await? {
        Some(s) if s.approved && s.online => Ok(()),
        Some(s) if s.approved => Err(RiderError::Offline),
        Some(s) if s.suspended => Err(RiderError::Suspended),
        _ => Err(RiderError::NotApproved),
    }
}

/// Puts every rider who is online in PostgreSQL into the engine's rider index, then
/// marks it whole.
pub async fn rebuild_geo_index(state: &AppState) -> Result<usize, RiderError> {
    let positions = riders::online_positions(state.db()).await?;
    let engine = state.engine();
    let results = futures::future::join_all(
        positions
            .iter()
            .map(|(rider, lat, lng)| engine.geo_set(*rider, *lat, *lng)),
    )
    .await;
    for r in results {
        r?;
    }
    engine.geo_mark_ready().await?;
    Ok(positions.len())
}

/// Keeps the rider index whole: whenever it is not (at start, after Redis lost its
/// data), it is refilled from PostgreSQL, retried until it takes. Matching waits for
/// it.
pub async fn keep_geo_index(state: AppState, cancel: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return,
        }
        if state.engine().geo_ready().await.unwrap_or(true) {
            continue;
        }
        match rebuild_geo_index(&state).await {
            Ok(n) => tracing::info!(riders = n, "rider index rebuilt"),
            Err(e) => tracing::warn!(error = %e, "cannot rebuild the rider index yet"),
        }
    }
}
