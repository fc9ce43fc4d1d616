//! The outbox table: notifications decided by a business change, written in that
//! change's transaction, published later by a relay (`service::relay`).
//!
//! The store knows rows, not notifications: an event name, a JSON payload, who gets
//! it. Claiming uses `FOR UPDATE SKIP LOCKED`, so relays on several replicas share the
//! work and never hold the same row.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use serde_json::Value;

use super::StoreError;
use crate::domain::UserId;

type Pool = deadpool_postgres::Pool;

/// Who gets a row's notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    Users(Vec<UserId>),
    /// Every admin of the merchant, as they are when the relay runs.
    MerchantAdmins(i64),
    PlatformStaff,
    /// The order's recommendation: online approved riders near its merchant, matched by
    /// the relay (and recorded as the order's recommended riders).
    RidersNearOrder(i64),
    /// The riders recommended this order, but the one who has it.
    RecommendedRiders(i64),
}

impl Audience {
    fn columns(&self) -> (&'static str, Option<i64>, Option<Vec<i64>>) {
        match self {
            Audience::Users(users) => ("users", None, Some(users.iter().map(|u| u.0).collect())),
            Audience::MerchantAdmins(m) => ("merchant_admins", Some(*m), None),
            Audience::PlatformStaff => ("platform_staff", None, None),
            Audience::RidersNearOrder(o) => ("riders_near_order", Some(*o), None),
            Audience::RecommendedRiders(o) => ("recommended_riders", Some(*o), None),
        }
    }

    fn from_columns(kind: &str, id: Option<i64>, recipients: &Option<Vec<i64>>) -> Option<Self> {
        Some(match kind {
            "users" => Audience::Users(recipients.as_ref()?.iter().map(|u| UserId(*u)).collect()),
            "merchant_admins" => Audience::MerchantAdmins(id?),
            "platform_staff" => Audience::PlatformStaff,
            "riders_near_order" => Audience::RidersNearOrder(id?),
            "recommended_riders" => Audience::RecommendedRiders(id?),
            _ => return None,
        })
    }
}

/// A row to write.
#[derive(Debug, Clone)]
pub struct NewRow {
    pub message_id: String,
    pub event: &'static str,
    pub audience: Audience,
    pub payload: Value,
    pub ttl: Duration,
    pub order_id: Option<i64>,
}

/// Writes `rows` with the caller's client: inside the caller's transaction, they commit
/// or roll back with the change that decided them.
pub async fn insert<C: GenericClient>(c: &C, rows: &[NewRow]) -> Result<(), StoreError> {
    for row in rows {
        let (kind, id, recipients) = row.audience.columns();
        let ttl_ms = i64::try_from(row.ttl.as_millis()).unwrap_or(i64::MAX);
        c.execute(
            "INSERT INTO outbox (message_id, event, audience, audience_id, recipients, payload,
                                 ttl_ms, order_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &row.message_id,
                &row.event,
                &kind,
                &id,
                &recipients,
                &row.payload,
                &ttl_ms,
                &row.order_id,
            ],
        )
        .await?;
    }
    Ok(())
}

/// A claimed row.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: i64,
    pub message_id: String,
    pub event: String,
    /// `None` when the stored audience cannot be read (a poison row).
    pub audience: Option<Audience>,
    /// Recipients resolved by an earlier attempt, if any.
    pub recipients: Option<Vec<UserId>>,
    pub payload: Value,
    pub ttl_ms: i64,
    pub attempts: i32,
    pub created_ms: i64,
}

/// Locks up to `limit` due rows, oldest first, skipping rows another relay holds. The
/// locks last as long as the caller's transaction.
pub async fn claim<C: GenericClient>(c: &C, limit: i64) -> Result<Vec<Row>, StoreError> {
    let rows = c
        .query(
            "SELECT id, message_id, event, audience, audience_id, recipients, payload, ttl_ms,
                    attempts, (extract(epoch FROM created_at) * 1000)::bigint
             FROM outbox
             WHERE state = 'pending' AND next_attempt_at <= now()
             ORDER BY next_attempt_at, id
             LIMIT $1
             FOR UPDATE SKIP LOCKED",
            &[&limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let recipients: Option<Vec<i64>> = r.get(5);
            let kind: String = r.get(3);
            Row {
                id: r.get(0),
                message_id: r.get(1),
                event: r.get(2),
                audience: Audience::from_columns(&kind, r.get(4), &recipients),
                recipients: recipients.map(|v| v.into_iter().map(UserId).collect()),
                payload: r.get(6),
                ttl_ms: r.get(7),
                attempts: r.get(8),
                created_ms: r.get(9),
            }
        })
        .collect())
}

/// Keeps the recipients the relay resolved, so a retry sends to the same people.
pub async fn set_recipients<C: GenericClient>(
    c: &C,
    id: i64,
    recipients: &[UserId],
) -> Result<(), StoreError> {
    let ids: Vec<i64> = recipients.iter().map(|u| u.0).collect();
    c.execute(
        "UPDATE outbox SET recipients = $2 WHERE id = $1",
        &[&id, &ids],
    )
    .await?;
    Ok(())
}

pub async fn mark_done<C: GenericClient>(c: &C, id: i64) -> Result<(), StoreError> {
    c.execute(
        "UPDATE outbox SET state = 'done', done_at = now(), attempts = attempts + 1 WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}

/// Leaves the row pending, due again after `delay`.
pub async fn mark_retry<C: GenericClient>(
    c: &C,
    id: i64,
    delay: Duration,
    error: &str,
) -> Result<(), StoreError> {
    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    c.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $3,
                next_attempt_at = now() + $2 * interval '1 millisecond'
         WHERE id = $1",
        &[&id, &(delay_ms as f64), &error],
    )
    .await?;
    Ok(())
}

/// A row that can never be published: kept, with the reason, out of the relay's way.
pub async fn mark_failed<C: GenericClient>(c: &C, id: i64, reason: &str) -> Result<(), StoreError> {
    c.execute(
        "UPDATE outbox SET state = 'failed', done_at = now(), last_error = $2,
                attempts = attempts + 1
         WHERE id = $1",
        &[&id, &reason],
    )
    .await?;
    Ok(())
}

/// Pending rows, and the age in seconds of the oldest (0 when none).
pub async fn backlog(db: &Pool) -> Result<(i64, f64), StoreError> {
    let client = db.get().await?;
    let row = client
        .query_one(
            "SELECT count(*), COALESCE(extract(epoch FROM now() - min(created_at)), 0)::float8
             FROM outbox WHERE state = 'pending'",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// The outbox as the console shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = OutboxStatus)]
pub struct Status {
    /// Rows not yet published.
    pub pending: i64,
    /// Age of the oldest pending row, in seconds (0 when none).
    pub oldest_pending_s: f64,
    /// Rows given up on (kept until pruned).
    pub failed: i64,
}

pub async fn status(db: &Pool) -> Result<Status, StoreError> {
    let client = db.get().await?;
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'pending'),
                    COALESCE(extract(epoch FROM now() - min(created_at)
                             FILTER (WHERE state = 'pending')), 0)::float8,
                    count(*) FILTER (WHERE state = 'failed')
             FROM outbox WHERE state <> 'done'",
            &[],
        )
        .await?;
    Ok(Status {
        pending: row.get(0),
        oldest_pending_s: row.get(1),
        failed: row.get(2),
    })
}

/// One `alert.*` notification, as the console lists it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AlertRow {
    pub message_id: String,
    #[schema(example = "alert.system_error")]
    pub event: String,
    pub title: String,
    pub content: String,
    /// The outbox row's state: `pending`, `done` (published) or `failed`.
    pub state: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The most recent `alert.*` notifications still in the outbox, newest first.
pub async fn recent_alerts(db: &Pool, limit: i64) -> Result<Vec<AlertRow>, StoreError> {
    let client = db.get().await?;
    let rows = client
        .query(
            "SELECT message_id, event, COALESCE(payload->>'title', ''),
                    COALESCE(payload->>'content', ''), state, created_at
             FROM outbox WHERE event LIKE 'alert.%'
             ORDER BY id DESC LIMIT $1",
            &[&limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AlertRow {
            message_id: r.get(0),
            event: r.get(1),
            title: r.get(2),
            content: r.get(3),
            state: r.get(4),
            created_at: r.get(5),
        })
        .collect())
}

/// Deletes rows finished (done or failed) more than `retention` ago; how many.
pub async fn prune(db: &Pool, retention: Duration) -> Result<u64, StoreError> {
    let client = db.get().await?;
    let secs = retention.as_secs_f64();
    Ok(client
        .execute(
            "DELETE FROM outbox WHERE state <> 'pending'
               AND done_at < now() - $1 * interval '1 second'",
            &[&secs],
        )
        .await?)
}

/// The state of the row of `message_id`, for tests and operators.
pub async fn state_of(db: &Pool, message_id: &str) -> Result<Option<String>, StoreError> {
    let client = db.get().await?;
    Ok(client
        .query_opt(
            "SELECT state FROM outbox WHERE message_id = $1",
            &[&message_id],
        )
        .await?
        .map(|r| r.get(0)))
}

/// The message id of the order's notification of `event` (its recommendation, say).
pub async fn message_id_for_order(
    db: &Pool,
    order: i64,
    event: &str,
) -> Result<Option<String>, StoreError> {
    let client = db.get().await?;
    Ok(client
        .query_opt(
            "SELECT message_id FROM outbox WHERE order_id = $1 AND event = $2
             ORDER BY id LIMIT 1",
            &[&order, &event],
        )
        .await?
        .map(|r| r.get(0)))
}

/// Takes the order's offer lock for the rest of the caller's transaction, if free: the
/// relay publishes an order's recommendation and its withdrawal one at a time, so a
/// withdrawal always sees every rider the order was offered to. `false` when another
/// relay holds it (try again shortly; never waiting, so two relays cannot deadlock).
pub async fn try_lock_order<C: GenericClient>(c: &C, order: i64) -> Result<bool, StoreError> {
    // The two-key form: 7 marks offer locks; the order id folded into 32 bits (a
    // collision only makes two orders take turns).
    let folded = (order.rem_euclid(i64::from(i32::MAX))) as i32;
    let row = c
        .query_one("SELECT pg_try_advisory_xact_lock(7, $1)", &[&folded])
        .await?;
    Ok(row.get(0))
}
