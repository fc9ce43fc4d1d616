//! Receipts: per notification and recipient, `pending`, `delivered`, `acked`, `expired`
//! or `withdrawn` (SPEC §3). Written when published, updated in batches.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;

use super::StoreError;
use crate::domain::UserId;

type Pool = deadpool_postgres::Pool;

/// One recipient's receipt, to write.
#[derive(Debug, Clone)]
pub struct NewReceipt<'a> {
    pub message_id: &'a str,
    pub user: UserId,
    pub event: &'a str,
    pub order_id: Option<i64>,
    pub created_ms: i64,
    pub expires_ms: i64,
}

/// Writes receipts (pending), once per message and recipient.
pub async fn insert<C: GenericClient>(c: &C, rows: &[NewReceipt<'_>]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.message_id).collect();
    let users: Vec<i64> = rows.iter().map(|r| r.user.0).collect();
    let events: Vec<&str> = rows.iter().map(|r| r.event).collect();
    let orders: Vec<Option<i64>> = rows.iter().map(|r| r.order_id).collect();
    let created: Vec<i64> = rows.iter().map(|r| r.created_ms).collect();
    let expires: Vec<i64> = rows.iter().map(|r| r.expires_ms).collect();
    c.execute(
        "INSERT INTO receipts (message_id, user_id, event, order_id, created_at, expires_at)
         SELECT m, u, e, o, to_timestamp(c / 1000.0), to_timestamp(x / 1000.0)
         FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[])
              AS t(m, u, e, o, c, x)
         ON CONFLICT DO NOTHING",
        &[&ids, &users, &events, &orders, &created, &expires],
    )
    .await?;
    Ok(())
}

/// What happened to a message for a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Delivered,
    Acked,
    Withdrawn,
}

/// Records a batch of `(message, recipient, unix ms)` of one kind. The first time
/// counts; an ack implies delivery.
pub async fn mark(
    db: &Pool,
    kind: Mark,
    batch: &[(String, UserId, i64)],
) -> Result<u64, StoreError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = batch.iter().map(|(m, _, _)| m.as_str()).collect();
    let users: Vec<i64> = batch.iter().map(|(_, u, _)| u.0).collect();
    let at: Vec<i64> = batch.iter().map(|(_, _, t)| *t).collect();
    let set = match kind {
        Mark::Delivered => "delivered_at = COALESCE(r.delivered_at, to_timestamp(t.a / 1000.0))",
        Mark::Acked => {
            "acked_at = COALESCE(r.acked_at, to_timestamp(t.a / 1000.0)),
             delivered_at = COALESCE(r.delivered_at, to_timestamp(t.a / 1000.0))"
        }
        Mark::Withdrawn => "withdrawn_at = COALESCE(r.withdrawn_at, to_timestamp(t.a / 1000.0))",
    };
    let client = db.get().await?;
    Ok(client
        .execute(
            &format!(
                "UPDATE receipts r SET {set}
                 FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS t(m, u, a)
                 WHERE r.message_id = t.m AND r.user_id = t.u"
            ),
            &[&ids, &users, &at],
        )
        .await?)
}

/// One recipient's receipt, as answered.
#[derive(Debug, Clone, Serialize)]
pub struct Recipient {
    pub user_id: UserId,
    pub state: &'static str,
    pub delivered_at: Option<DateTime<Utc>>,
    pub acked_at: Option<DateTime<Utc>>,
}

/// A notification's receipt.
#[derive(Debug, Clone, Serialize)]
pub struct Receipt {
    pub message_id: String,
    pub event: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub recipients: Vec<Recipient>,
}

const COLUMNS: &str =
    "message_id, user_id, event, created_at, expires_at, delivered_at, acked_at, withdrawn_at";

fn group(rows: &[tokio_postgres::Row]) -> Vec<Receipt> {
    let now = Utc::now();
    let mut out: Vec<Receipt> = Vec::new();
    for r in rows {
        let message_id: String = r.get(0);
        let expires_at: DateTime<Utc> = r.get(4);
        let delivered_at: Option<DateTime<Utc>> = r.get(5);
        let acked_at: Option<DateTime<Utc>> = r.get(6);
        let withdrawn_at: Option<DateTime<Utc>> = r.get(7);
        let state = match (acked_at, withdrawn_at, delivered_at) {
            (Some(_), _, _) => "acked",
            (None, Some(_), _) => "withdrawn",
            (None, None, Some(_)) => "delivered",
            _ if now >= expires_at => "expired",
            _ => "pending",
        };
        let recipient = Recipient {
            user_id: UserId(r.get(1)),
            state,
            delivered_at,
            acked_at,
        };
        match out.last_mut() {
            Some(last) if last.message_id == message_id => last.recipients.push(recipient),
            _ => out.push(Receipt {
                message_id,
                event: r.get(2),
                created_at: r.get(3),
                expires_at,
                recipients: vec![recipient],
            }),
        }
    }
    out
}

/// The receipt of `message_id`, if any recipient has one.
pub async fn of_message(db: &Pool, message_id: &str) -> Result<Option<Receipt>, StoreError> {
    let client = db.get().await?;
    let rows = client
        .query(
            &format!("SELECT {COLUMNS} FROM receipts WHERE message_id = $1 ORDER BY user_id"),
            &[&message_id],
        )
        .await?;
    Ok(group(&rows).into_iter().next())
}

/// The receipts of an order's notifications, oldest first.
pub async fn of_order(db: &Pool, order: i64) -> Result<Vec<Receipt>, StoreError> {
    let client = db.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM receipts WHERE order_id = $1
                 ORDER BY created_at, message_id, user_id"
            ),
            &[&order],
        )
        .await?;
    Ok(group(&rows))
}

/// Deletes receipts older than `days` days; how many.
pub async fn prune(db: &Pool, days: i32) -> Result<u64, StoreError> {
    let client = db.get().await?;
    Ok(client
        .execute(
            "DELETE FROM receipts WHERE created_at < now() - make_interval(days => $1)",
            &[&days],
        )
        .await?)
}
