//! Suspensions (SPEC §4): platform staff suspend an approved rider or merchant, and
//! reinstate it. Each is a change of the account's `status` and a row of its history
//! (`suspensions`: who, when, why), written in one transaction.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreError;
use crate::domain::{Approval, Reason, UserId};

type Pool = deadpool_postgres::Pool;

/// An account platform staff can suspend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Account {
    /// A rider, by their user id.
    Rider(UserId),
    Merchant(i64),
}

impl Account {
    fn id(self) -> i64 {
        match self {
            Account::Rider(user) => user.0,
            Account::Merchant(id) => id,
        }
    }

    /// The account's table, its key, and the history's column naming it.
    fn columns(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Account::Rider(_) => ("riders", "user_id", "rider_id"),
            Account::Merchant(_) => ("merchants", "id", "merchant_id"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SuspensionAction {
    Suspend,
    Reinstate,
}

impl SuspensionAction {
    fn as_str(self) -> &'static str {
        match self {
            SuspensionAction::Suspend => "suspend",
            SuspensionAction::Reinstate => "reinstate",
        }
    }
}

/// Who did it, as recorded: a member of platform staff (`{"user_id"}`) or a service key
/// (`{"key"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StaffMember {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<i64>,
}

/// Who makes a change: a member of staff, or a service key with the `admin` scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Staff(UserId),
    Key(i64),
}

impl Actor {
    fn columns(self) -> (Option<i64>, Option<i64>) {
        match self {
            Actor::Staff(user) => (Some(user.0), None),
            Actor::Key(key) => (None, Some(key)),
        }
    }
}

/// One row of an account's history, as platform staff read it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"action": "suspend", "by": {"user_id": 3},
    "at": "2026-11-24T19:23:02.101Z", "reason": "多次超时未送达"}))]
pub struct SuspensionEvent {
    pub action: SuspensionAction,
    /// `null` when that staff user (or key) no longer exists.
    pub by: Option<StaffMember>,
    pub at: DateTime<Utc>,
    /// What staff wrote, if anything (reinstatements have none).
    pub reason: Option<String>,
}

/// The standing suspension, as the suspended rider or merchant admin reads it on
/// `GET /v1/me`: when and why, not which member of staff.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"at": "2026-11-24T19:23:02.101Z", "reason": "多次超时未送达"}))]
pub struct SuspensionNotice {
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
}

/// A `suspensions` row (`action`, `staff_id`, `key_id`, `reason`, `created_at`).
fn event(row: &tokio_postgres::Row) -> SuspensionEvent {
    // The CHECK allows these two only.
    let action = match row.get::<_, &str>("action") {
        "suspend" => SuspensionAction::Suspend,
        _ => SuspensionAction::Reinstate,
    };
    SuspensionEvent {
        action,
        by: match (
            row.get::<_, Option<i64>>("staff_id"),
            row.get::<_, Option<i64>>("key_id"),
        ) {
            (None, None) => None,
            (user, key) => Some(StaffMember {
                user_id: user.map(UserId),
                key,
            }),
        },
        at: row.get("created_at"),
        reason: row.get("reason"),
    }
}

/// What an approval (`riders::approve`, `merchants::approve`) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approve {
    Done,
    NotFound,
    /// The account is suspended: only a reinstatement makes it approved again.
    Suspended,
}

/// What a suspension or a reinstatement did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The account changed; the row written.
    Done(SuspensionEvent),
    /// The account was in that state already: nothing written. With a suspension, the
    /// standing one.
    Unchanged(Option<SuspensionEvent>),
    /// The account is in a state this change does not start from.
    Refused(Approval),
    NotFound,
}

/// `approved` → `suspended` (a rider also goes offline), recorded with `staff` and
/// `reason`.
pub async fn suspend(
    db: &Pool,
    account: Account,
    by: Actor,
    reason: Option<&Reason>,
) -> Result<Outcome, StoreError> {
    change(db, account, SuspensionAction::Suspend, by, reason).await
}

/// `suspended` → `approved`, recorded with `staff`. A rider stays offline until they go
/// online again.
pub async fn reinstate(db: &Pool, account: Account, by: Actor) -> Result<Outcome, StoreError> {
    change(db, account, SuspensionAction::Reinstate, by, None).await
}

async fn change(
    db: &Pool,
    account: Account,
    action: SuspensionAction,
    by: Actor,
    reason: Option<&Reason>,
) -> Result<Outcome, StoreError> {
    let (staff_id, key_id) = by.columns();
    let (from, to) = match action {
        SuspensionAction::Suspend => (Approval::Approved, Approval::Suspended),
        SuspensionAction::Reinstate => (Approval::Suspended, Approval::Approved),
    };
    let (table, key, column) = account.columns();
    let mut client = db.get().await?;
    let tx = client.transaction().await?;
    // The row lock orders concurrent changes of one account: each sees the last one's
    // result, so a state is entered, and recorded, once.
    let status: Option<Approval> = tx
        .query_opt(
            &format!("SELECT status FROM {table} WHERE {key} = $1 FOR UPDATE"),
            &[&account.id()],
        )
        .await?
        .map(|r| r.get(0));
    let outcome = match status {
        None => Outcome::NotFound,
        Some(s) if s == to && action == SuspensionAction::Suspend => {
            Outcome::Unchanged(standing(&tx, account).await?)
        }
        Some(s) if s == to => Outcome::Unchanged(None),
        Some(s) if s != from => Outcome::Refused(s),
        Some(_) => {
            // A suspended rider is offline (the schema allows online only when approved).
            let offline = if matches!(account, Account::Rider(_)) {
                ", online = false, online_changed_at = now()"
            } else {
                ""
            };
            tx.execute(
                &format!(
                    "UPDATE {table} SET status = $2{offline}, updated_at = now() WHERE {key} = $1"
                ),
                &[&account.id(), &to.as_str()],
            )
            .await?;
            let row = tx
                .query_one(
                    &format!(
                        "INSERT INTO suspensions ({column}, action, staff_id, key_id, reason)
                         VALUES ($1, $2, $3, $4, $5)
                         RETURNING action, staff_id, key_id, reason, created_at"
                    ),
                    &[
                        &account.id(),
                        &action.as_str(),
                        &staff_id,
                        &key_id,
                        &reason.map(Reason::as_str),
                    ],
                )
                .await?;
            Outcome::Done(event(&row))
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// The newest `suspend` row of `account`: its standing suspension, when it is suspended.
async fn standing(
    tx: &deadpool_postgres::Transaction<'_>,
    account: Account,
) -> Result<Option<SuspensionEvent>, StoreError> {
    let (_, _, column) = account.columns();
    Ok(tx
        .query_opt(
            &format!(
                "SELECT action, staff_id, key_id, reason, created_at FROM suspensions
                 WHERE {column} = $1 AND action = 'suspend' ORDER BY id DESC LIMIT 1"
            ),
            &[&account.id()],
        )
        .await?
        .as_ref()
        .map(event))
}

/// An account's state and its history, newest first (at most [`HISTORY_MAX`] rows), or
/// `None` when there is no such account.
pub async fn history(
    db: &Pool,
    account: Account,
) -> Result<Option<(Approval, Vec<SuspensionEvent>)>, StoreError> {
    let (table, key, column) = account.columns();
    let client = db.get().await?;
    let Some(status) = client
        .query_opt(
            &format!("SELECT status FROM {table} WHERE {key} = $1"),
            &[&account.id()],
        )
        .await?
        .map(|r| r.get::<_, Approval>(0))
    else {
        return Ok(None);
    };
    let events = client
        .query(
            &format!(
                "SELECT action, staff_id, key_id, reason, created_at FROM suspensions
                 WHERE {column} = $1 ORDER BY id DESC LIMIT {HISTORY_MAX}"
            ),
            &[&account.id()],
        )
        .await?
        .iter()
        .map(event)
        .collect();
    Ok(Some((status, events)))
}

/// The most rows of history one read answers: an account suspended and reinstated more
/// often than this shows its latest.
pub const HISTORY_MAX: i64 = 100;
