//! What platform staff send by hand: a notice to one user, a batch of them, an
//! announcement to a role, a command to a rider.
//!
//! These are durable in Redis (the recipient's inbox) before the 202. When Redis does
//! not answer in time the outcome is unknown (the command may still run): the answer
//! says so, and a retry under the same `Idempotency-Key` reuses the message ids decided
//! the first time, so a late command and the retry are one notification (inbox writes
//! are idempotent per id).
//!
//! Admission (SPEC §11, overload): each send first takes a place per notification among
//! this replica's `PUBLISH_MAX_IN_FLIGHT`, held until its answer is decided, and is
//! refused at once ([`SendError::Overloaded`], 503 `overloaded` with `Retry-After`)
//! when there are not enough free or sends are over `PUBLISH_TARGET_LATENCY_MS`
//! ([`crate::limits::publishing`]): before the idempotency key is claimed, any inbox
//! written or any receipt, so a refused send leaves nothing behind and a retry is a
//! first attempt. Why refuse rather than wait: Redis and PostgreSQL take work at a
//! fixed rate, and a queue in front of them only adds its length to the latency of
//! everything accepted after it.

use sha2::{Digest, Sha256};

use crate::domain::{Role, UserId};
use crate::engine::{EngineError, IdempotencyKey, MsgId};
use crate::limits::publishing::Places;
use crate::notify::{self, Notification};
use crate::state::AppState;
use crate::store::receipts::Update;
use crate::store::{self, StoreError};

/// How long a key is remembered (SPEC §4: a repeat within 24 h).
pub const KEY_TTL_MS: u64 = 24 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no such user")]
    UnknownUser,
    #[error("no such users: {0:?}")]
    UnknownUsers(Vec<i64>),
    #[error("no approved rider")]
    UnknownRider,
    #[error("this Idempotency-Key was used for a different request")]
    KeyReused,
    /// This replica is publishing `PUBLISH_MAX_IN_FLIGHT` notifications already, or its
    /// sends are over `PUBLISH_TARGET_LATENCY_MS`; nothing was written.
    #[error("too many notifications being published")]
    Overloaded,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// A request's `Idempotency-Key`, and what makes two requests "the same".
#[derive(Debug, Clone)]
pub struct Idempotency {
    key: IdempotencyKey,
    fingerprint: String,
}

impl Idempotency {
    /// `key` as the client sent it, in `space` (a user's id, or `k` and a service
    /// key's id: their keys never meet), for the request `what` (method, path and body,
    /// as bytes that are equal exactly when the requests are).
    pub fn new(space: &str, key: &str, what: &[u8]) -> Self {
        Self {
            key: IdempotencyKey {
                caller: space.to_owned(),
                key_sha256: hex(&Sha256::digest(key.as_bytes())),
            },
            fingerprint: hex(&Sha256::digest(what)),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Places for `count` notifications among those this replica publishes at once, or
/// [`SendError::Overloaded`] without waiting (`crate::limits::publishing`). Held until
/// the send's answer is decided.
fn admit(state: &AppState, count: usize) -> Result<Places<'_>, SendError> {
    state.publishing().admit(count).ok_or_else(|| {
        metrics::counter!("locallife_publish_refused_total").increment(1);
        SendError::Overloaded
    })
}

/// [`SendError::Overloaded`] when a send would not be admitted now: the check a handler
/// makes before it authenticates the caller and reads the body, so that under overload
/// a refusal costs neither a database query nor parsing. [`admit`] still decides.
pub fn has_room(state: &AppState) -> Result<(), SendError> {
    if state.publishing().has_room() {
        return Ok(());
    }
    metrics::counter!("locallife_publish_refused_total").increment(1);
    Err(SendError::Overloaded)
}

/// The ids of a request's `count` notifications: fresh ones, or, for a repeat under the
/// same key, those decided the first time (and `true`).
async fn decide(
    state: &AppState,
    once: Option<&Idempotency>,
    count: usize,
) -> Result<(Vec<MsgId>, bool), SendError> {
    let proposed: Vec<MsgId> = (0..count).map(|_| MsgId::generate()).collect();
    let Some(once) = once else {
        return Ok((proposed, false));
    };
    let ids: Vec<String> = proposed.iter().map(MsgId::to_string).collect();
    let value = format!("{}\n{}", once.fingerprint, ids.join(","));
    let Some(existing) = state
        .engine()
        .claim_once(&once.key, &value, KEY_TTL_MS)
        .await?
    else {
        return Ok((proposed, false));
    };
    let (fingerprint, ids) = existing.split_once('\n').ok_or(SendError::KeyReused)?;
    if fingerprint != once.fingerprint {
        return Err(SendError::KeyReused);
    }
    let ids: Vec<MsgId> = ids
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| SendError::KeyReused)?;
    if ids.len() != count {
        return Err(SendError::KeyReused);
    }
    Ok((ids, true))
}

/// Writes the pending receipts of what was just sent (`(recipient, id, notification)`),
/// naming `sent_by`, before the 202 goes out (SPEC §3: a receipt exists once the
/// notification is accepted, on every replica): one statement for the request,
/// whatever the number of recipients. Should PostgreSQL fail, they are queued for the
/// next batch instead (the notification itself is in the inboxes already).
async fn receipts_for(
    state: &AppState,
    sent: &[(UserId, MsgId, &Notification)],
    sent_by: &serde_json::Value,
) {
    let rows: Vec<Update> = sent
        .iter()
        .filter_map(|(user, id, n)| n.pending_receipt(*id, *user))
        .collect();
    if rows.is_empty() {
        return;
    }
    let sent_by = sent_by.to_string();
    let written = async {
        let client = state.db().get().await?;
        store::receipts::write_sent(&client, &rows, Some(&sent_by)).await
    };
    if let Err(e) = written.await {
        tracing::warn!(error = %e, receipts = rows.len(), "pending receipts queued for later");
        for row in rows {
            state.receipts().queue(row);
        }
    }
}

/// To one existing user, kept in their inbox until acked; the message id.
pub async fn to_user(
    state: &AppState,
    user: UserId,
    n: &Notification,
    once: Option<&Idempotency>,
    sent_by: &serde_json::Value,
) -> Result<String, SendError> {
    let _place = admit(state, 1)?;
    if !state
        .known_users()
        .missing(state.db(), &[user])
        .await?
        .is_empty()
    {
        return Err(SendError::UnknownUser);
    }
    let (ids, _) = decide(state, once, 1).await?;
    notify::to_user_as(&**state.engine(), user, ids[0], n).await?;
    receipts_for(state, &[(user, ids[0], n)], sent_by).await;
    Ok(ids[0].to_string())
}

/// To every connected socket of `role`, live only; the message id. A repeat under the
/// same key sends nothing (a live message cannot be recognised as a copy).
pub async fn to_role(
    state: &AppState,
    role: Role,
    n: &Notification,
    once: Option<&Idempotency>,
) -> Result<String, SendError> {
    let _place = admit(state, 1)?;
    let (ids, repeat) = decide(state, once, 1).await?;
    let id = ids[0];
    if repeat {
        return Ok(id.to_string());
    }
    if let Err(e) = notify::to_role_as(&**state.engine(), role, id, n).await {
        if let Some(once) = once {
            // Let a retry send it (best effort: Redis may be the very thing failing).
            let _ = state.engine().release_once(&once.key).await;
        }
        return Err(e.into());
    }
    Ok(id.to_string())
}

/// Every notification of a batch, after checking that every recipient exists (one
/// query about those this replica has not seen yet; an unknown one sends nothing). The message ids in order, `None` for each one
/// whose outcome is unknown (the engine did not answer).
pub async fn batch(
    state: &AppState,
    batch: &[(UserId, Notification)],
    once: Option<&Idempotency>,
    sent_by: &serde_json::Value,
) -> Result<Vec<Option<String>>, SendError> {
    let _places = admit(state, batch.len())?;
    let users: Vec<UserId> = batch.iter().map(|(u, _)| *u).collect();
    let missing = state.known_users().missing(state.db(), &users).await?;
    if !missing.is_empty() {
        return Err(SendError::UnknownUsers(missing));
    }
    let (ids, _) = decide(state, once, batch.len()).await?;
    let engine = state.engine();
    // Concurrent sends share the engine's connection and go out as one pipeline.
    let sent = futures::future::join_all(
        batch
            .iter()
            .zip(&ids)
            .map(|((user, n), id)| notify::to_user_as(&**engine, *user, *id, n)),
    )
    .await;
    let delivered: Vec<(UserId, MsgId, &Notification)> = batch
        .iter()
        .zip(&ids)
        .zip(&sent)
        .filter(|(_, r)| r.is_ok())
        .map(|(((user, n), id), _)| (*user, *id, n))
        .collect();
    receipts_for(state, &delivered, sent_by).await;
    Ok(sent
        .into_iter()
        .zip(ids)
        .map(|(r, id)| r.ok().map(|_| id.to_string()))
        .collect())
}

/// A `rider.command` to an approved rider; the message id.
pub async fn rider_command(
    state: &AppState,
    rider: UserId,
    n: &Notification,
    once: Option<&Idempotency>,
    sent_by: &serde_json::Value,
) -> Result<String, SendError> {
    let _place = admit(state, 1)?;
    match store::riders::state(state.db(), rider).await? {
        Some(s) if s.approved => {}
        _ => return Err(SendError::UnknownRider),
    }
    let (ids, _) = decide(state, once, 1).await?;
    notify::to_user_as(&**state.engine(), rider, ids[0], n).await?;
    receipts_for(state, &[(rider, ids[0], n)], sent_by).await;
    Ok(ids[0].to_string())
}
