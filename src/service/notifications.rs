//! What platform staff send by hand: a notice to one user, a batch of them, an
//! announcement to a role, a command to a rider.

use crate::domain::{Role, UserId};
use crate::engine::EngineError;
use crate::notify::{self, Notification};
use crate::state::AppState;
use crate::store::{self, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no such user")]
    UnknownUser,
    #[error("no such users: {0:?}")]
    UnknownUsers(Vec<i64>),
    #[error("no approved rider")]
    UnknownRider,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// To one existing user, kept in their inbox until acked; the message id.
pub async fn to_user(
    state: &AppState,
    user: UserId,
    n: &Notification,
) -> Result<String, SendError> {
    if !store::users::exists(state.db(), user).await? {
        return Err(SendError::UnknownUser);
    }
    Ok(notify::to_user(&**state.engine(), user, n).await?)
}

/// To every connected socket of `role`, live only; the message id.
pub async fn to_role(state: &AppState, role: Role, n: &Notification) -> Result<String, SendError> {
    Ok(notify::to_role(&**state.engine(), role, n).await?)
}

/// Every notification of a batch, after checking that every recipient exists (one
/// query; an unknown one sends nothing). The message ids in order, `None` for each one
/// the engine did not take.
pub async fn batch(
    state: &AppState,
    batch: &[(UserId, Notification)],
) -> Result<Vec<Option<String>>, SendError> {
    let ids: Vec<UserId> = batch.iter().map(|(u, _)| *u).collect();
    let missing = store::users::missing(state.db(), &ids).await?;
    if !missing.is_empty() {
        return Err(SendError::UnknownUsers(missing));
    }
    let engine = state.engine();
    // Concurrent sends share the engine's connection and go out as one pipeline.
    let sent = futures::future::join_all(
        batch
            .iter()
            .map(|(user, n)| notify::to_user(&**engine, *user, n)),
    )
    .await;
    Ok(sent.into_iter().map(Result::ok).collect())
}

/// A `rider.command` to an approved rider; the message id.
pub async fn rider_command(
    state: &AppState,
    rider: UserId,
    n: &Notification,
) -> Result<String, SendError> {
    match store::riders::state(state.db(), rider).await? {
        Some(s) if s.approved => {}
        _ => return Err(SendError::UnknownRider),
    }
    Ok(notify::to_user(&**state.engine(), rider, n).await?)
}
