//! The outbox relay: publishes every notification a business change wrote into the
//! outbox, on whichever replica gets to it first.
//!
//! - **Claim**: a batch of due rows, `FOR UPDATE SKIP LOCKED`, in one transaction, so
//!   relays on several replicas share the work and never hold the same row.
//! - **Resolve**: who gets it (a merchant's admins, staff, the riders near the order's
//!   merchant, the riders recommended an order) is decided here, once, and kept on the
//!   row, so a retry sends to the same people. A Redis error while matching riders
//!   delays the row; it never drops it.
//! - **Publish** into each recipient's inbox under the row's message id. Inbox writes
//!   are idempotent per id, so a row published again (the relay died before its
//!   transaction committed) delivers nothing twice.
//! - **Retry** with backoff while Redis is unavailable; the batch stops at the first
//!   such error. A row that can never be published (unreadable) is marked failed with
//!   its reason, and counted; a row whose ttl passed is dropped as expired.
//! - **Wake-up**: at once after a commit on this replica ([`AppState::wake_relay`]), on
//!   PostgreSQL `NOTIFY locallife_outbox` from any replica ([`listen`]), and by polling
//!   every [`POLL`] as the safety net.
//! - **Bounded** (SPEC §11, overload): the backlog waits in PostgreSQL, never in memory.
//!   A replica's relay holds one claimed batch of at most [`BATCH`] rows at a time and
//!   publishes it row after row, so however many rows wait, its memory and its share
//!   of Redis stay those of one batch; wake-ups coalesce (one pending at most). Under
//!   overload the backlog shows as `locallife_outbox_pending` and
//!   `locallife_outbox_oldest_seconds`, and drains once the load falls.

use std::time::Duration;

use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use crate::domain::{OrderStatus, UserId};
use crate::engine::{EngineError, MsgId};
use crate::notify::{self, Kind, Notification};
use crate::state::AppState;
use crate::store::outbox::{self, Audience, Row};
use crate::store::receipts::{self, Mark, Update};
use crate::store::{merchants, offers, orders, riders, users, StoreError};

/// Rows claimed per transaction.
pub const BATCH: i64 = 100;
/// How often the relay looks without being woken.
pub const POLL: Duration = Duration::from_millis(500);
/// Finished rows are kept this long (receipts, disputes), then pruned.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Riders recommended per order at most (SPEC §3).
pub const MAX_RECOMMENDED: usize = 20;
/// The channel the outbox trigger notifies.
pub const CHANNEL: &str = "locallife_outbox";

/// Why a row was not published this time.
#[derive(Debug, thiserror::Error)]
enum RowError {
    /// Redis: retried with backoff, and the batch stops.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// PostgreSQL: the whole batch rolls back and is tried again.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Not yet possible (the rider index is being rebuilt): retried soon.
    #[error("{0}")]
    NotYet(&'static str),
    /// Never possible: marked failed.
    #[error("{0}")]
    Poison(&'static str),
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub claimed: usize,
    pub published: usize,
    pub failed: usize,
    pub expired: usize,
    /// Redis refused: the caller waits before the next pass.
    pub engine_down: bool,
}

/// The delay before a row's next attempt: 100 ms doubling to 10 s.
fn backoff(attempts: i32) -> Duration {
    let shift = attempts.clamp(0, 7) as u32;
    (Duration::from_millis(100) * 2u32.pow(shift)).min(Duration::from_secs(10))
}

/// The relay's loop, until cancelled.
pub async fn run(state: AppState, cancel: CancellationToken) {
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut pause = Duration::from_millis(100);
    loop {
        tokio::select! {
            _ = state.relay_wakeup().notified() => {}
            _ = poll.tick() => {}
            _ = cancel.cancelled() => return,
        }
        loop {
            match relay_once(&state).await {
                Ok(pass) if pass.engine_down => {
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = cancel.cancelled() => return,
                    }
                    pause = (pause * 2).min(Duration::from_secs(2));
                    break;
                }
                Ok(pass) => {
                    pause = Duration::from_millis(100);
                    if pass.claimed < BATCH as usize {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay pass failed; retrying");
                    break;
                }
            }
        }
    }
}

/// One pass: claims a batch, publishes what it can, records the outcome, commits.
pub async fn relay_once(state: &AppState) -> Result<Pass, StoreError> {
    let mut client = state.db().get().await?;
    let tx = client.transaction().await?;
    let rows = outbox::claim(&tx, BATCH).await?;
    let mut pass = Pass {
        claimed: rows.len(),
        ..Pass::default()
    };
    for row in &rows {
        match publish(state, &tx, row).await {
            Ok(Published::Sent) => {
                outbox::mark_done(&tx, row.id).await?;
                pass.published += 1;
            }
            Ok(Published::Expired) => {
                outbox::mark_done(&tx, row.id).await?;
                metrics::counter!("locallife_outbox_expired_total").increment(1);
                pass.expired += 1;
            }
            Err(RowError::Engine(e)) => {
                outbox::mark_retry(&tx, row.id, backoff(row.attempts), &e.to_string()).await?;
                metrics::counter!("locallife_outbox_retries_total").increment(1);
                pass.engine_down = true;
                break;
            }
            Err(RowError::NotYet(why)) => {
                outbox::mark_retry(&tx, row.id, Duration::from_millis(200), why).await?;
            }
            Err(RowError::Poison(why)) => {
                tracing::error!(row = row.id, event = %row.event, reason = why, "outbox row cannot be published");
                outbox::mark_failed(&tx, row.id, why).await?;
                metrics::counter!("locallife_outbox_failed_total").increment(1);
                pass.failed += 1;
            }
            Err(RowError::Store(e)) => return Err(e),
        }
    }
    tx.commit().await?;
    Ok(pass)
}

enum Published {
    Sent,
    Expired,
}

async fn publish(
    state: &AppState,
    tx: &deadpool_postgres::Transaction<'_>,
    row: &Row,
) -> Result<Published, RowError> {
    let ttl = Duration::from_millis(u64::try_from(row.ttl_ms).unwrap_or(0));
    let notification = Notification::from_outbox(&row.event, &row.payload, ttl)
        .ok_or(RowError::Poison("unreadable event or payload"))?;
    let audience = row
        .audience
        .as_ref()
        .ok_or(RowError::Poison("unknown audience"))?;
    let id: MsgId = row
        .message_id
        .parse()
        .map_err(|_| RowError::Poison("malformed message id"))?;
    let expires_ms = notification.expires_ms(id);
    if crate::time::unix_ms() >= expires_ms {
        return Ok(Published::Expired);
    }
    if let Audience::RidersNearOrder(order) | Audience::RecommendedRiders(order) = audience {
        if !outbox::try_lock_order(tx, *order).await? {
            return Err(RowError::NotYet("the order's offer is being published"));
        }
    }
    let sends = match &row.recipients {
        Some(users) => personalise(state, audience, users, &notification).await?,
        None => {
            let sends = resolve(state, audience, &notification).await?;
            let users: Vec<UserId> = sends.iter().map(|(u, _)| *u).collect();
            outbox::set_recipients(tx, row.id, &users).await?;
            sends
        }
    };
    let rows: Vec<Update> = sends
        .iter()
        .filter_map(|(user, _)| notification.pending_receipt(id, *user))
        .collect();
    if !rows.is_empty() {
        receipts::write(tx, &rows).await?;
    }
    let engine = state.engine();
    if let Audience::RecommendedRiders(order) = audience {
        withdraw_offer(state, *order).await?;
    }
    let results = join_all(
        sends
            .iter()
            .map(|(user, n)| notify::to_user_as(&**engine, *user, id, n)),
    )
    .await;
    for result in results {
        result?;
    }
    let lag_ms = crate::time::unix_ms().saturating_sub(row.created_ms.max(0) as u64);
    metrics::histogram!("locallife_outbox_lag_seconds").record(lag_ms as f64 / 1000.0);
    Ok(Published::Sent)
}

/// Offers are withdrawn (SPEC §3): the order's `order.recommend` leaves the inbox of
/// every rider it was offered to (the one who has the order too), so one who connects
/// later never sees a stale offer; those connected get `order.taken`.
async fn withdraw_offer(state: &AppState, order: i64) -> Result<(), RowError> {
    let Some(offer) = outbox::message_id_for_order(state.db(), order, Kind::OrderRecommend.event())
        .await?
        .and_then(|id| id.parse::<MsgId>().ok())
    else {
        return Ok(());
    };
    let riders = offers::recommended(state.db(), order).await?;
    let engine = state.engine();
    let results = join_all(
        riders
            .iter()
            .map(|(rider, _)| engine.withdraw(*rider, offer)),
    )
    .await;
    for result in results {
        result?;
    }
    metrics::counter!("locallife_offers_withdrawn_total").increment(riders.len() as u64);
    for (rider, _) in &riders {
        state.receipts().record(Mark::Withdrawn, offer, *rider);
    }
    Ok(())
}

/// Who gets the row's notification, each with the notification as they get it.
async fn resolve(
    state: &AppState,
    audience: &Audience,
    n: &Notification,
) -> Result<Vec<(UserId, Notification)>, RowError> {
    let users = match audience {
        Audience::Users(users) => users.clone(),
        Audience::MerchantAdmins(merchant) => merchants::admins(state.db(), *merchant).await?,
        Audience::PlatformStaff => users::platform_staff(state.db()).await?,
        Audience::RecommendedRiders(order) => {
            let holder = orders::get(state.db(), *order)
                .await?
                .and_then(|o| o.rider_id);
            offers::recommended(state.db(), *order)
                .await?
                .into_iter()
                .map(|(rider, _)| rider)
                .filter(|rider| Some(rider.0) != holder)
                .collect()
        }
        Audience::RidersNearOrder(order) => {
            let matched = match_riders(state, *order).await?;
            return Ok(with_merchant(state, n)
                .await?
                .map(|n| {
                    matched
                        .into_iter()
                        .map(|(rider, d)| (rider, n.clone().with("distance_m", d.round())))
                        .collect()
                })
                .unwrap_or_default());
        }
    };
    let n = with_merchant(state, n).await?.unwrap_or_else(|| n.clone());
    Ok(users.into_iter().map(|u| (u, n.clone())).collect())
}

/// The same recipients as a previous attempt, with the notification as each gets it.
async fn personalise(
    state: &AppState,
    audience: &Audience,
    users: &[UserId],
    n: &Notification,
) -> Result<Vec<(UserId, Notification)>, RowError> {
    let n = with_merchant(state, n).await?.unwrap_or_else(|| n.clone());
    if let Audience::RidersNearOrder(order) = audience {
        let distances = offers::recommended(state.db(), *order).await?;
        return Ok(users
            .iter()
            .map(|u| {
                let d = distances
                    .iter()
                    .find(|(r, _)| r == u)
                    .map_or(0.0, |(_, d)| *d);
                (*u, n.clone().with("distance_m", d.round()))
            })
            .collect());
    }
    Ok(users.iter().map(|u| (*u, n.clone())).collect())
}

/// Recommendations and dispatches name the merchant: filled in when sent. `None` when
/// the notification has no merchant to name, or the merchant is gone.
async fn with_merchant(
    state: &AppState,
    n: &Notification,
) -> Result<Option<Notification>, RowError> {
    if !matches!(n.kind, Kind::OrderRecommend | Kind::OrderDispatched) {
        return Ok(None);
    }
    let Some(merchant) = n.fields.get("merchant_id").and_then(|v| v.as_i64()) else {
        return Ok(None);
    };
    let name = merchants::get(state.db(), merchant)
        .await?
        .map(|m| m.name)
        .unwrap_or_default();
    Ok(Some(n.clone().with("merchant_name", name)))
}

/// The online approved riders nearest the order's merchant (at most
/// [`MAX_RECOMMENDED`], within `RIDER_MATCH_RADIUS_M`), recorded as the order's
/// recommended riders. None once the order is no longer waiting for a rider.
async fn match_riders(state: &AppState, order: i64) -> Result<Vec<(UserId, f64)>, RowError> {
    let Some(order) = orders::get(state.db(), order).await? else {
        return Ok(Vec::new());
    };
    if order.status != OrderStatus::Paid {
        return Ok(Vec::new());
    }
    let Some(merchant) = merchants::get(state.db(), order.merchant_id).await? else {
        return Ok(Vec::new());
    };
    if !state.engine().geo_ready().await? {
        return Err(RowError::NotYet("the rider index is being rebuilt"));
    }
    let radius = f64::from(state.config().rider_match_radius_m);
    // Ask the geo index for more than needed: it may lag behind who is online.
    let near = state
        .engine()
        .geo_near(merchant.lat, merchant.lng, radius, MAX_RECOMMENDED * 2)
        .await?;
    let ids: Vec<i64> = near.iter().map(|(u, _)| u.0).collect();
    let online = riders::online_among(state.db(), &ids).await?;
    let chosen: Vec<(UserId, f64)> = near
        .into_iter()
        .filter(|(u, _)| online.contains(&u.0))
        .take(MAX_RECOMMENDED)
        .collect();
    offers::record_recommendations(state.db(), order.id, &chosen).await?;
    Ok(chosen)
}

/// Forwards PostgreSQL `NOTIFY locallife_outbox` (sent when any replica commits outbox
/// rows) to this replica's relay, over a connection of its own; reconnects with
/// backoff. Polling covers the gaps.
pub async fn listen(state: AppState, cancel: CancellationToken) {
    let mut pause = Duration::from_millis(200);
    while !cancel.is_cancelled() {
        match crate::store::connect_one(&state.config().database).await {
            Ok((client, mut connection)) => {
                use futures::StreamExt;
                pause = Duration::from_millis(200);
                // Polling the connection drives it: LISTEN below, and notifications.
                let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                let statement = format!("LISTEN {CHANNEL}");
                let listen = client.batch_execute(&statement);
                let mut listen = std::pin::pin!(listen);
                let mut listening = false;
                loop {
                    tokio::select! {
                        done = &mut listen, if !listening => {
                            if done.is_err() {
                                break;
                            }
                            listening = true;
                            // Anything committed while not listening is found now.
                            state.wake_relay();
                        }
                        message = messages.next() => match message {
                            Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => {
                                state.wake_relay()
                            }
                            Some(Ok(_)) => {}
                            Some(Err(_)) | None => break,
                        },
                        _ = cancel.cancelled() => return,
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "outbox listener cannot connect; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = cancel.cancelled() => return,
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Reports the backlog (`locallife_outbox_pending`, `locallife_outbox_oldest_seconds`)
/// every few seconds and prunes finished rows past [`RETENTION`] hourly.
pub async fn upkeep(state: AppState, cancel: CancellationToken) {
    let mut report = tokio::time::interval(Duration::from_secs(2));
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = report.tick() => {}
            _ = cancel.cancelled() => return,
        }
        if let Ok((pending, oldest)) = outbox::backlog(state.db()).await {
            metrics::gauge!("locallife_outbox_pending").set(pending as f64);
            metrics::gauge!("locallife_outbox_oldest_seconds").set(oldest);
        }
        if last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
            last_prune = Some(tokio::time::Instant::now());
            match outbox::prune(state.db(), RETENTION).await {
                Ok(n) if n > 0 => tracing::info!(rows = n, "pruned finished outbox rows"),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "outbox prune failed"),
            }
            // Receipts are kept at least 7 days (SPEC §3).
            if let Err(e) = receipts::prune(state.db(), 8).await {
                tracing::debug!(error = %e, "receipts prune failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_ten_seconds() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(7), Duration::from_secs(10));
        assert_eq!(backoff(1000), Duration::from_secs(10));
        assert_eq!(backoff(-1), Duration::from_millis(100));
    }
}
