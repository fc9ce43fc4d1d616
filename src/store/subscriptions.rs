//! WeChat subscription quota and the fallback's claims (SPEC §9,
//! `migrations/V9__subscriptions.sql`).
//!
//! Quota is spent race-free: a send first reserves one (`remaining - 1` where
//! `remaining > 0`), and gives it back when WeChat did not take the send. A claim is a
//! row keyed by (message, recipient), so however many replicas look, one sends.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use super::StoreError;
use crate::domain::UserId;

type Pool = deadpool_postgres::Pool;

/// The most sends one report may add: `wx.requestSubscribeMessage` answers one accept
/// per template per call.
pub const MAX_ACCEPTED: i32 = 1000;

/// The most distinct templates one user may hold a quota of: template ids are the
/// client's to choose, and no client may grow the database without bound.
pub const MAX_TEMPLATES_PER_USER: i64 = 50;

/// Adds `accepted` sends of `template` for `user`; the new remaining count, or `None`
/// when `template` would be the user's `MAX_TEMPLATES_PER_USER + 1`th (nothing stored).
/// The user's row is locked meanwhile, so concurrent reports cannot pass the cap.
pub async fn add(
    db: &Pool,
    user: UserId,
    template: &str,
    accepted: i32,
) -> Result<Option<i32>, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&user.0])
        .await?;
    let row = tx
        .query_opt(
            "INSERT INTO subscriptions (user_id, template_id, remaining)
             SELECT $1, $2, $3
             WHERE EXISTS (SELECT 1 FROM subscriptions WHERE user_id = $1 AND template_id = $2)
                OR (SELECT count(*) FROM subscriptions WHERE user_id = $1) < $4
             ON CONFLICT (user_id, template_id) DO UPDATE
                SET remaining = LEAST(subscriptions.remaining + EXCLUDED.remaining, 1000000),
                    updated_at = now()
             RETURNING remaining",
            &[&user.0, &template, &accepted, &MAX_TEMPLATES_PER_USER],
        )
        .await?;
    tx.commit().await?;
    Ok(row.map(|r| r.get(0)))
}

/// The user's remaining sends per template.
pub async fn list(db: &Pool, user: UserId) -> Result<Vec<(String, i32)>, StoreError> {
    let client = db.get().await?;
    Ok(client
        .query(
            "SELECT template_id, remaining FROM subscriptions WHERE user_id = $1
             ORDER BY template_id",
            &[&user.0],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Takes one send of `template` from `user`'s quota; `false` when none is left.
pub async fn reserve(db: &Pool, user: UserId, template: &str) -> Result<bool, StoreError> {
    let client = db.get().await?;
    Ok(client
        .execute(
            "UPDATE subscriptions SET remaining = remaining - 1, updated_at = now()
             WHERE user_id = $1 AND template_id = $2 AND remaining > 0",
            &[&user.0, &template],
        )
        .await?
        == 1)
}

/// Returns a reserved send that WeChat did not take.
pub async fn give_back(db: &Pool, user: UserId, template: &str) -> Result<(), StoreError> {
    let client = db.get().await?;
    client
        .execute(
            "UPDATE subscriptions SET remaining = remaining + 1, updated_at = now()
             WHERE user_id = $1 AND template_id = $2",
            &[&user.0, &template],
        )
        .await?;
    Ok(())
}

/// WeChat said the user has none left (43101): the count goes to 0.
pub async fn zero(db: &Pool, user: UserId, template: &str) -> Result<(), StoreError> {
    let client = db.get().await?;
    client
        .execute(
            "UPDATE subscriptions SET remaining = 0, updated_at = now()
             WHERE user_id = $1 AND template_id = $2",
            &[&user.0, &template],
        )
        .await?;
    Ok(())
}

/// A (notification, recipient) the fallback took up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub message_id: String,
    pub user: UserId,
    pub event: String,
    pub template_id: String,
    pub expires_at: DateTime<Utc>,
    pub attempts: i32,
    pub openid: String,
}

/// How many seconds of receipts one pass reads at most, and how far back the first
/// pass (or one after a long stop) looks.
const SCAN_SECONDS: i64 = 600;
const LOOK_BACK_SECONDS: i64 = 600;
/// The most new claims one pass takes; the cursor moves on only once a pass took fewer.
const CLAIMS_PER_PASS: i64 = 500;

/// One pass's claims: recipients of notifications filed in the seconds between the
/// cursor and `until_bucket` (inclusive) that are neither delivered, acked nor
/// withdrawn, unexpired, of an event in `templates` (event, template id), and that
/// have quota for its template; and claims whose retry is due. One replica scans at a
/// time (an advisory lock; the others skip the scan), and the claim rows make each
/// (notification, recipient) one replica's.
pub async fn claim_due(
    db: &Pool,
    templates: &[(String, String)],
    until_bucket: i64,
) -> Result<Vec<Claim>, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await?;
    // message, user, event, template, expiry, attempts
    type Row = (String, i64, String, String, DateTime<Utc>, i32);
    let row = |r: &tokio_postgres::Row| -> Row {
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))
    };
    let mut claimed: Vec<Row> = Vec::new();
    let scanner: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock(7403611)", &[])
        .await?
        .get(0);
    if scanner {
        let cursor: Option<i64> = tx
            .query_opt("SELECT bucket FROM subscription_cursor", &[])
            .await?
            .map(|r| r.get(0));
        let from = cursor
            .unwrap_or(until_bucket - LOOK_BACK_SECONDS)
            .max(until_bucket - LOOK_BACK_SECONDS);
        let to = until_bucket.min(from + SCAN_SECONDS);
        if to > from {
            let (events, ids): (Vec<&str>, Vec<&str>) = templates
                .iter()
                .map(|(e, t)| (e.as_str(), t.as_str()))
                .unzip();
            let rows = tx
                .query(
                    "WITH g AS (
                        SELECT m, u, max(e) AS e, min(c) AS c, max(x) AS x,
                               min(d) AS d, min(a) AS a, min(w) AS w
                        FROM receipt_batches b,
                             unnest(b.message_ids, b.user_ids, b.events, b.created_at,
                                    b.expires_at, b.delivered_at, b.acked_at, b.withdrawn_at)
                               AS t(m, u, e, c, x, d, a, w)
                        WHERE b.bucket > $1 AND b.bucket <= $2
                        GROUP BY m, u)
                     INSERT INTO subscription_pushes (message_id, user_id, event, template_id, expires_at)
                     SELECT g.m, g.u, g.e, tp.tpl, g.x
                     FROM g JOIN unnest($3::text[], $4::text[]) AS tp(ev, tpl) ON tp.ev = g.e
                     WHERE g.c IS NOT NULL AND g.d IS NULL AND g.a IS NULL AND g.w IS NULL
                       AND g.x > now()
                       AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = g.u
                                   AND s.template_id = tp.tpl AND s.remaining > 0)
                       AND NOT EXISTS (SELECT 1 FROM subscription_pushes p
                                       WHERE p.message_id = g.m AND p.user_id = g.u)
                     ORDER BY g.m
                     LIMIT $5
                     ON CONFLICT DO NOTHING
                     RETURNING message_id, user_id, event, template_id, expires_at, attempts",
                    &[&from, &to, &events, &ids, &CLAIMS_PER_PASS],
                )
                .await?;
            let complete = (rows.len() as i64) < CLAIMS_PER_PASS;
            claimed.extend(rows.iter().map(row));
            // A full pass leaves the cursor: the next one continues in the same seconds.
            let cursor = if complete { to } else { from };
            tx.execute(
                "INSERT INTO subscription_cursor (bucket) VALUES ($1)
                 ON CONFLICT (id) DO UPDATE SET bucket = EXCLUDED.bucket",
                &[&cursor],
            )
            .await?;
        }
    }
    let retries = tx
        .query(
            "UPDATE subscription_pushes p SET state = 'claimed', claimed_at = now()
             FROM (SELECT message_id, user_id FROM subscription_pushes
                   WHERE state = 'retry' AND next_attempt_at <= now()
                   ORDER BY next_attempt_at LIMIT 200 FOR UPDATE SKIP LOCKED) due
             WHERE p.message_id = due.message_id AND p.user_id = due.user_id
             RETURNING p.message_id, p.user_id, p.event, p.template_id, p.expires_at, p.attempts",
            &[],
        )
        .await?;
    claimed.extend(retries.iter().map(row));
    tx.commit().await?;
    // Oldest first (ids begin with their unix ms).
    claimed.sort_by(|a, b| a.0.cmp(&b.0));
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    let users: Vec<i64> = claimed.iter().map(|c| c.1).collect();
    let openids: std::collections::HashMap<i64, String> = client
        .query("SELECT id, openid FROM users WHERE id = ANY($1)", &[&users])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(claimed
        .into_iter()
        .filter_map(
            |(message_id, user, event, template_id, expires_at, attempts)| {
                Some(Claim {
                    openid: openids.get(&user)?.clone(),
                    message_id,
                    user: UserId(user),
                    event,
                    template_id,
                    expires_at,
                    attempts,
                })
            },
        )
        .collect())
}

/// How a claim ended, or when to try it again.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Sent,
    /// No longer pending (acked, expired or withdrawn since), or no quota left.
    Skipped(&'static str),
    /// 43101.
    Refused,
    Retry {
        at: DateTime<Utc>,
        error: String,
    },
    Failed(String),
}

pub async fn finish(db: &Pool, claim: &Claim, outcome: Outcome) -> Result<(), StoreError> {
    let client = db.get().await?;
    let (state, error, next, pushed): (&str, Option<String>, Option<DateTime<Utc>>, bool) =
        match outcome {
            Outcome::Sent => ("sent", None, None, true),
            Outcome::Skipped(why) => ("skipped", Some(why.to_owned()), None, false),
            Outcome::Refused => ("refused", Some("errcode 43101".into()), None, false),
            Outcome::Retry { at, error } => ("retry", Some(error), Some(at), false),
            Outcome::Failed(why) => ("failed", Some(why), None, false),
        };
    client
        .execute(
            "UPDATE subscription_pushes
             SET state = $3, last_error = $4, next_attempt_at = $5, attempts = attempts + 1,
                 pushed_at = CASE WHEN $6 THEN now() ELSE pushed_at END
             WHERE message_id = $1 AND user_id = $2",
            &[
                &claim.message_id,
                &claim.user.0,
                &state,
                &error,
                &next,
                &pushed,
            ],
        )
        .await?;
    Ok(())
}
