//! Receipts: per notification and recipient, `pending`, `delivered`, `acked`, `expired`
//! or `withdrawn` (SPEC §3). Written in merged batches, append-only: each batch inserts
//! what it learned as one row of arrays per second its message ids begin with, and
//! reads merge a recipient's parts (the earliest time of each mark wins), so no write
//! waits on or rewrites another, and the database handles one row per batch, not one
//! per part (`migrations/V6__receipt_batches.sql`).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;

use super::StoreError;
use crate::domain::UserId;

type Pool = deadpool_postgres::Pool;

/// What happened to a message for a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Delivered,
    Acked,
    Withdrawn,
}

/// What is known of one recipient's receipt: the notification's own columns (from
/// its pending row), a mark, or both. Writes fill in what is missing; the first value
/// of each column stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub message_id: String,
    pub user: UserId,
    pub event: Option<String>,
    pub order_id: Option<i64>,
    pub created_ms: Option<i64>,
    pub expires_ms: Option<i64>,
    pub delivered_ms: Option<i64>,
    pub acked_ms: Option<i64>,
    pub withdrawn_ms: Option<i64>,
}

impl Update {
    /// A pending receipt: the notification `message_id` (of `event`, about `order_id`,
    /// created and expiring at these unix ms) was sent to `user`.
    pub fn pending(
        message_id: String,
        user: UserId,
        event: &str,
        order_id: Option<i64>,
        created_ms: i64,
        expires_ms: i64,
    ) -> Self {
        Self {
            event: Some(event.to_owned()),
            order_id,
            created_ms: Some(created_ms),
            expires_ms: Some(expires_ms),
            ..Self::bare(message_id, user)
        }
    }

    /// `kind` happened to `message_id` for `user` at `at_ms`. An ack implies delivery.
    pub fn mark(kind: Mark, message_id: String, user: UserId, at_ms: i64) -> Self {
        let mut u = Self::bare(message_id, user);
        match kind {
            Mark::Delivered => u.delivered_ms = Some(at_ms),
            Mark::Acked => {
                u.delivered_ms = Some(at_ms);
                u.acked_ms = Some(at_ms);
            }
            Mark::Withdrawn => u.withdrawn_ms = Some(at_ms),
        }
        u
    }

    fn bare(message_id: String, user: UserId) -> Self {
        Self {
            message_id,
            user,
            event: None,
            order_id: None,
            created_ms: None,
            expires_ms: None,
            delivered_ms: None,
            acked_ms: None,
            withdrawn_ms: None,
        }
    }

    /// Fills what `self` lacks from `later` (same message and recipient).
    pub fn merge(&mut self, later: Update) {
        fn fill<T>(a: &mut Option<T>, b: Option<T>) {
            if a.is_none() {
                *a = b;
            }
        }
        fill(&mut self.event, later.event);
        fill(&mut self.order_id, later.order_id);
        fill(&mut self.created_ms, later.created_ms);
        fill(&mut self.expires_ms, later.expires_ms);
        fill(&mut self.delivered_ms, later.delivered_ms);
        fill(&mut self.acked_ms, later.acked_ms);
        fill(&mut self.withdrawn_ms, later.withdrawn_ms);
    }
}

/// Merges `updates` per message and recipient (one statement cannot touch a row twice),
/// ordered by message and recipient; of each column the first value queued stays.
pub fn merged(updates: impl IntoIterator<Item = Update>) -> Vec<Update> {
    let mut updates: Vec<Update> = updates.into_iter().collect();
    // Stable: within one recipient's updates, the order they were queued in.
    updates
        .sort_by(|a, b| (a.message_id.as_str(), a.user.0).cmp(&(b.message_id.as_str(), b.user.0)));
    let mut out: Vec<Update> = Vec::with_capacity(updates.len());
    for u in updates {
        match out.last_mut() {
            Some(last) if last.message_id == u.message_id && last.user == u.user => last.merge(u),
            _ => out.push(u),
        }
    }
    out
}

/// The second a message id begins with (ids are `<unix ms>-<n>`): where its parts are
/// filed. An id of another shape files under 0.
pub fn bucket_of(message_id: &str) -> i64 {
    message_id
        .split_once('-')
        .and_then(|(ms, _)| ms.parse::<i64>().ok())
        .map_or(0, |ms| ms.div_euclid(1000))
}

/// Appends `rows` (merged, best: one per message and recipient) as one batch row per
/// second their ids begin with; how many parts it wrote.
pub async fn write<C: GenericClient>(c: &C, rows: &[Update]) -> Result<u64, StoreError> {
    write_sent(c, rows, None).await
}

/// [`write`], the rows naming who sent them through the platform API (`sent_by`, the
/// JSON of SPEC §10's `sent_by`).
pub async fn write_sent<C: GenericClient>(
    c: &C,
    rows: &[Update],
    sent_by: Option<&str>,
) -> Result<u64, StoreError> {
    let mut buckets: std::collections::BTreeMap<i64, Vec<&Update>> = Default::default();
    for r in rows {
        buckets.entry(bucket_of(&r.message_id)).or_default().push(r);
    }
    for (bucket, rows) in &buckets {
        let ids: Vec<&str> = rows.iter().map(|r| r.message_id.as_str()).collect();
        let users: Vec<i64> = rows.iter().map(|r| r.user.0).collect();
        let events: Vec<Option<&str>> = rows.iter().map(|r| r.event.as_deref()).collect();
        let orders: Vec<Option<i64>> = rows.iter().map(|r| r.order_id).collect();
        let column = |f: fn(&Update) -> Option<i64>| {
            rows.iter()
                .map(|r| f(r).and_then(DateTime::<Utc>::from_timestamp_millis))
                .collect::<Vec<_>>()
        };
        c.execute(
            "INSERT INTO receipt_batches (bucket, message_ids, user_ids, events, order_ids,
                 created_at, expires_at, delivered_at, acked_at, withdrawn_at, sent_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                bucket,
                &ids,
                &users,
                &events,
                &orders,
                &column(|r| r.created_ms),
                &column(|r| r.expires_ms),
                &column(|r| r.delivered_ms),
                &column(|r| r.acked_ms),
                &column(|r| r.withdrawn_ms),
                &sent_by,
            ],
        )
        .await?;
    }
    // The way to an order's receipts: from the pending parts that name an order.
    let (order_ids, message_ids): (Vec<i64>, Vec<&str>) = rows
        .iter()
        .filter_map(|r| Some((r.order_id?, r.message_id.as_str())))
        .unzip();
    if !order_ids.is_empty() {
        c.execute(
            "INSERT INTO receipt_orders (order_id, message_id)
             SELECT * FROM unnest($1::bigint[], $2::text[]) ON CONFLICT DO NOTHING",
            &[&order_ids, &message_ids],
        )
        .await?;
    }
    Ok(rows.len() as u64)
}

/// One recipient's receipt, as answered.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Recipient {
    pub user_id: UserId,
    /// `pending`, `delivered`, `acked`, `expired` or `withdrawn` (SPEC §3).
    #[schema(value_type = String, example = "acked")]
    pub state: &'static str,
    pub delivered_at: Option<DateTime<Utc>>,
    pub acked_at: Option<DateTime<Utc>>,
    /// When a WeChat subscription message was sent in its stead (SPEC §9); absent
    /// when none was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushed_at: Option<DateTime<Utc>>,
}

/// A notification's receipt.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Receipt {
    pub message_id: String,
    pub event: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Who sent it through the platform API (SPEC §10): `{"key": id, "name"}` for a
    /// service key, `{"user_id"}` for a member of staff; absent for the service's own
    /// notifications (payments, urges, dispatch, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub sent_by: Option<serde_json::Value>,
    pub recipients: Vec<Recipient>,
}

/// The parts of the messages in `$1` (ids), filed under the seconds in `$2`, merged
/// per recipient: the notification's columns (from its pending part) and the earliest
/// time of each mark.
/// With each recipient's `pushed_at`: when a subscription message stood in for it
/// (SPEC §9). Ordered by the caller with `ORDER BY` on `g.m`, `g.u`, `g.c`.
const MERGED: &str = "SELECT g.m, g.u, g.e, g.c, g.x, g.d, g.a, g.w, p.pushed_at, g.s
                      FROM (SELECT m, u, max(e) AS e, min(c) AS c, max(x) AS x,
                                   min(d) AS d, min(a) AS a, min(w) AS w, max(b.sent_by) AS s
                            FROM receipt_batches b,
                                 unnest(b.message_ids, b.user_ids, b.events, b.created_at,
                                        b.expires_at, b.delivered_at, b.acked_at, b.withdrawn_at)
                                   AS t(m, u, e, c, x, d, a, w)
                            WHERE b.bucket = ANY($2) AND t.m = ANY($1)
                            GROUP BY m, u) g
                      LEFT JOIN subscription_pushes p
                        ON p.message_id = g.m AND p.user_id = g.u AND p.state = 'sent'";

fn group(rows: &[tokio_postgres::Row]) -> Vec<Receipt> {
    let now = Utc::now();
    let mut out: Vec<Receipt> = Vec::new();
    for r in rows {
        // Marks whose notification's own row has not been written yet: not shown.
        let (Some(event), Some(created_at), Some(expires_at)) = (
            r.get::<_, Option<String>>(2),
            r.get::<_, Option<DateTime<Utc>>>(3),
            r.get::<_, Option<DateTime<Utc>>>(4),
        ) else {
            continue;
        };
        let message_id: String = r.get(0);
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
            pushed_at: r.get(8),
        };
        let sent_by = r
            .get::<_, Option<String>>(9)
            .and_then(|s| serde_json::from_str(&s).ok());
        match out.last_mut() {
            Some(last) if last.message_id == message_id => {
                last.recipients.push(recipient);
                if last.sent_by.is_none() {
                    last.sent_by = sent_by;
                }
            }
            _ => out.push(Receipt {
                message_id,
                event,
                created_at,
                expires_at,
                sent_by,
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
            &format!("{MERGED} ORDER BY g.u"),
            &[&vec![message_id], &vec![bucket_of(message_id)]],
        )
        .await?;
    Ok(group(&rows).into_iter().next())
}

/// The receipts of an order's notifications, oldest first.
pub async fn of_order(db: &Pool, order: i64) -> Result<Vec<Receipt>, StoreError> {
    let client = db.get().await?;
    let ids: Vec<String> = client
        .query(
            "SELECT message_id FROM receipt_orders WHERE order_id = $1",
            &[&order],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut buckets: Vec<i64> = ids.iter().map(|id| bucket_of(id)).collect();
    buckets.sort_unstable();
    buckets.dedup();
    let rows = client
        .query(
            &format!("{MERGED} ORDER BY g.c, g.m, g.u"),
            &[&ids, &buckets],
        )
        .await?;
    Ok(group(&rows))
}

/// Deletes receipts older than `days` days (by their ids' time); how many batches.
pub async fn prune(db: &Pool, days: i32) -> Result<u64, StoreError> {
    let cutoff_ms = crate::time::unix_ms().saturating_sub(days as u64 * 86_400_000);
    let client = db.get().await?;
    // A message id begins with its notification's unix ms (13 digits until the year
    // 2286), so ids sort by time as text.
    client
        .execute(
            "DELETE FROM receipt_orders WHERE message_id < $1",
            &[&cutoff_ms.to_string()],
        )
        .await?;
    // The subscription-message fallbacks go with the receipts that show them.
    client
        .execute(
            "DELETE FROM subscription_pushes WHERE message_id < $1",
            &[&cutoff_ms.to_string()],
        )
        .await?;
    Ok(client
        .execute(
            "DELETE FROM receipt_batches WHERE bucket < $1",
            &[&((cutoff_ms / 1000) as i64)],
        )
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_the_first_of_each_column_and_one_row_per_recipient() {
        let (a, b) = (UserId(1), UserId(2));
        let rows = merged([
            Update::mark(Mark::Delivered, "m".into(), a, 10),
            Update::pending("m".into(), a, "order.new", Some(7), 5, 99),
            Update::mark(Mark::Acked, "m".into(), a, 20),
            Update::mark(Mark::Acked, "m".into(), b, 30),
            Update::mark(Mark::Delivered, "m".into(), b, 40),
        ]);
        assert_eq!(rows.len(), 2);
        let first = &rows[0];
        assert_eq!(first.user, a);
        assert_eq!(first.event.as_deref(), Some("order.new"));
        assert_eq!((first.created_ms, first.expires_ms), (Some(5), Some(99)));
        assert_eq!((first.delivered_ms, first.acked_ms), (Some(10), Some(20)));
        // An ack implies delivery, at the ack's time when nothing earlier said so.
        assert_eq!(
            (rows[1].delivered_ms, rows[1].acked_ms),
            (Some(30), Some(30))
        );
        assert_eq!(rows[1].event, None);
    }
}
