//! Suspending and reinstating riders and merchants (SPEC §4). The account's state and
//! its record are written in PostgreSQL first; then a suspension takes the role from the
//! account's sockets on every replica (a socket left with no role closes with 4003), and
//! a suspended rider leaves the matching index. A reinstated account connects again by
//! itself: nothing is pushed.

use crate::domain::{Approval, Reason, Role};
use crate::engine::EngineError;
use crate::notify;
use crate::state::AppState;
use crate::store::suspensions::{self, Account, Actor, Outcome, SuspensionEvent};
use crate::store::{merchants, users, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SuspensionError {
    #[error("no such account")]
    NotFound(Account),
    /// Only an approved account is suspended (an application is approved or rejected).
    #[error("only an approved account can be suspended; this one is {1}")]
    NotApproved(Account, Approval),
    /// Only a suspended account is reinstated (an application is approved instead).
    #[error("only a suspended account can be reinstated; this one is {1}")]
    NotSuspended(Account, Approval),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The state is written, but the sockets could not be told: they lose the role at
    /// the next admission re-check, or when the suspension is repeated.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Suspends an approved account, recorded with who did it (`by`) and `reason`, and takes the role
/// from its sockets everywhere. Suspending a suspended account changes nothing and
/// answers its standing suspension, but tells the sockets again: a repeat after a
/// failure to reach them completes the suspension. `None`: suspended without a record
/// (by other means than the API).
pub async fn suspend(
    state: &AppState,
    account: Account,
    by: Actor,
    reason: Option<&Reason>,
) -> Result<Option<SuspensionEvent>, SuspensionError> {
    let standing = match suspensions::suspend(state.db(), account, by, reason).await? {
        Outcome::Done(event) => Some(event),
        Outcome::Unchanged(standing) => standing,
        Outcome::Refused(status) => return Err(SuspensionError::NotApproved(account, status)),
        Outcome::NotFound => return Err(SuspensionError::NotFound(account)),
    };
    let engine = state.engine();
    match account {
        Account::Rider(rider) => {
            engine.geo_remove(rider).await?;
            notify::revoke_role(&**engine, rider, Role::Rider).await?;
        }
        Account::Merchant(merchant) => {
            // An admin of another approved merchant keeps the merchant role.
            for admin in merchants::admins(state.db(), merchant).await? {
                let still = users::admission(state.db(), admin)
                    .await?
                    .is_some_and(|f| f.admin_of_approved_merchant);
                if !still {
                    notify::revoke_role(&**engine, admin, Role::Merchant).await?;
                }
            }
        }
    }
    Ok(standing)
}

/// Reinstates a suspended account (`approved` again), recorded with `by`. An
/// approved account is left as it is. A rider stays offline until they go online.
pub async fn reinstate(
    state: &AppState,
    account: Account,
    by: Actor,
) -> Result<(), SuspensionError> {
    match suspensions::reinstate(state.db(), account, by).await? {
        Outcome::Done(_) | Outcome::Unchanged(_) => Ok(()),
        Outcome::Refused(status) => Err(SuspensionError::NotSuspended(account, status)),
        Outcome::NotFound => Err(SuspensionError::NotFound(account)),
    }
}

/// The account's state and its suspensions and reinstatements, newest first.
pub async fn history(
    state: &AppState,
    account: Account,
) -> Result<(Approval, Vec<SuspensionEvent>), SuspensionError> {
    suspensions::history(state.db(), account)
        .await?
        .ok_or(SuspensionError::NotFound(account))
}
