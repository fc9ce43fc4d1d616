//! The subscription-message fallback (SPEC §9): a notification that needs an ack, whose
//! event has a template, and that is still neither delivered nor acked
//! `PUSH_FALLBACK_AFTER` after it was created, is sent once as a WeChat subscription
//! message to each such recipient who has quota for the template.
//!
//! No second source of truth: candidates come from the receipts (§3), the text from
//! the notification itself in the recipient's inbox (gone from there: acked, expired
//! or withdrawn, so nothing is sent), and quota from `subscriptions`. "Delivered"
//! counts on either protocol: a protocol-2 notification whose Pong came but whose ack
//! has not is still in the inbox, yet the app has it, so it is not pushed — checked at
//! the scan and again before each send (a retry can come long after the scan).
//!
//! A claim row per (notification, recipient) makes one replica the sender; a replica
//! that dies between its claim and the send sends nothing for it (at most once, never
//! twice).
//!
//! The access token is shared by every replica through the engine (Redis): fetched by
//! one replica at a time under a lock, kept until 5 minutes before it expires, dropped
//! and fetched again at once when WeChat answers 40001/42001 (and the send retried
//! once). It is never logged.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt as _;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use crate::config::SubscribeConfig;
use crate::engine::Engine;
use crate::state::AppState;
use crate::store::receipts;
use crate::store::subscriptions::{self, Claim, Outcome};
use crate::wechat::subscribe::{self, SendOutcome, SubscribeClient};

/// How often a replica looks for notifications to fall back.
const PERIOD: Duration = Duration::from_secs(1);
/// Sends in flight at once per replica (each waits up to 5 s for WeChat).
const CONCURRENT_SENDS: usize = 8;
/// Retries after other errors: 2 s, 4 s, … at most this long apart.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

const TOKEN_KEY: &str = "wechat:access_token";
const TOKEN_LOCK: &str = "wechat:access_token:refresh";
/// A token is dropped this long before WeChat's expiry, so it is never used stale.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// The mini-program's access token, shared by every replica.
pub struct AccessTokens {
    engine: Arc<dyn Engine>,
    client: SubscribeClient,
}

impl AccessTokens {
    pub fn new(engine: Arc<dyn Engine>, client: SubscribeClient) -> Self {
        Self { engine, client }
    }

    /// The current token: the shared one, or one this replica fetches while holding
    /// the refresh lock (the others wait for it).
    pub async fn get(&self) -> Result<String, String> {
        // The lock outlives a fetch that hangs until its timeout, then frees itself.
        let lock = subscribe::TIMEOUT * 2;
        let deadline = tokio::time::Instant::now() + lock;
        let e = |e: crate::engine::EngineError| e.to_string();
        loop {
            if let Some(token) = self.engine.shared_get(TOKEN_KEY).await.map_err(e)? {
                return Ok(token);
            }
            let locked = self
                .engine
                .shared_set(TOKEN_LOCK, "1", lock.as_millis() as u64, true)
                .await
                .map_err(e)?;
            if locked {
                let fetched = self.refresh().await;
                let _ = self.engine.shared_remove_if(TOKEN_LOCK, "1").await;
                return fetched;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err("another replica's token refresh did not finish".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fetches a token and shares it, until 5 minutes before it expires.
    async fn refresh(&self) -> Result<String, String> {
        let (token, lifetime) = self.client.fetch_token().await?;
        let keep = lifetime
            .saturating_sub(TOKEN_MARGIN)
            .max(Duration::from_secs(60));
        self.engine
            .shared_set(TOKEN_KEY, &token, keep.as_millis() as u64, false)
            .await
            .map_err(|e| e.to_string())?;
        metrics::counter!("locallife_wechat_token_refreshes_total").increment(1);
        Ok(token)
    }

    /// WeChat refused `token`: drop it (unless another replica already replaced it).
    pub async fn invalidate(&self, token: &str) {
        let _ = self.engine.shared_remove_if(TOKEN_KEY, token).await;
    }
}

/// The supervised task: a pass every second while the fallback is configured.
pub async fn run(state: AppState, cancel: CancellationToken) {
    let (Some(config), Some(wechat)) = (
        state.config().subscribe.clone(),
        state.config().wechat.clone(),
    ) else {
        return;
    };
    let client = SubscribeClient::new(wechat);
    let tokens = AccessTokens::new(state.engine().clone(), client.clone());
    let mut interval = tokio::time::interval(PERIOD);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = cancel.cancelled() => return,
        }
        if let Err(e) = pass(&state, &config, &client, &tokens).await {
            tracing::warn!(error = %e, "subscription fallback pass failed; retrying");
        }
    }
}

/// One pass: claim what is due, send each.
pub async fn pass(
    state: &AppState,
    config: &SubscribeConfig,
    client: &SubscribeClient,
    tokens: &AccessTokens,
) -> Result<(), crate::store::StoreError> {
    let pairs: Vec<(String, String)> = config
        .templates
        .pairs()
        .map(|(e, t)| (e.to_owned(), t.to_owned()))
        .collect();
    // The last whole second whose notifications are all at least the delay old.
    let now_ms = crate::time::unix_ms() as i64;
    let until = (now_ms - config.fallback_after.as_millis() as i64).div_euclid(1000) - 1;
    let claims = subscriptions::claim_due(state.db(), &pairs, until).await?;
    let sends = futures::stream::iter(claims.into_iter().map(|claim| async move {
        let outcome = send_one(state, config, client, tokens, &claim).await;
        (claim, outcome)
    }))
    .buffered(CONCURRENT_SENDS);
    futures::pin_mut!(sends);
    while let Some((claim, outcome)) = futures::StreamExt::next(&mut sends).await {
        let result = match &outcome {
            Outcome::Sent => "sent",
            Outcome::Skipped(_) => "skipped",
            Outcome::Refused => "refused",
            Outcome::Retry { .. } | Outcome::Failed(_) => "failed",
        };
        metrics::counter!("locallife_push_fallbacks_total",
            "event" => claim.event.clone(), "result" => result)
        .increment(1);
        // Not recorded (PostgreSQL just went away): the claim stays taken and is not
        // tried again, so a sent message is never sent twice.
        if let Err(e) = subscriptions::finish(state.db(), &claim, outcome).await {
            tracing::warn!(error = %e, event = %claim.event, "subscription fallback outcome not recorded");
        }
    }
    Ok(())
}

/// The notification's `data` as it sits in the recipient's inbox, if it still does.
async fn pending_fields(
    state: &AppState,
    claim: &Claim,
) -> Result<Option<Map<String, Value>>, String> {
    let entries = state
        .engine()
        .inbox(claim.user)
        .await
        .map_err(|e| e.to_string())?;
    for entry in entries {
        if entry.id.to_string() != claim.message_id {
            continue;
        }
        let frame: Value = serde_json::from_str(&entry.frame).map_err(|e| e.to_string())?;
        return Ok(match frame.get("data") {
            Some(Value::Object(data)) => Some(data.clone()),
            _ => None,
        });
    }
    Ok(None)
}

/// Whether the recipient's receipt shows the notification delivered or acked by now.
async fn delivered_since(
    state: &AppState,
    claim: &Claim,
) -> Result<bool, crate::store::StoreError> {
    let receipt = receipts::of_message(state.db(), &claim.message_id).await?;
    Ok(receipt
        .and_then(|r| r.recipients.into_iter().find(|p| p.user_id == claim.user))
        .is_some_and(|p| p.delivered_at.is_some() || p.acked_at.is_some()))
}

fn retry_or_fail(claim: &Claim, error: String) -> Outcome {
    let wait = Duration::from_secs(2u64.saturating_pow(claim.attempts as u32 + 1)).min(MAX_BACKOFF);
    let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
    if at >= claim.expires_at {
        Outcome::Failed(error)
    } else {
        Outcome::Retry { at, error }
    }
}

async fn send_one(
    state: &AppState,
    config: &SubscribeConfig,
    client: &SubscribeClient,
    tokens: &AccessTokens,
    claim: &Claim,
) -> Outcome {
    let Some(template) = config.templates.for_event(&claim.event) else {
        return Outcome::Skipped("no template");
    };
    let fields = match pending_fields(state, claim).await {
        Ok(Some(fields)) => fields,
        Ok(None) => return Outcome::Skipped("no longer pending"),
        Err(_) => return retry_or_fail(claim, "inbox unavailable".into()),
    };
    match delivered_since(state, claim).await {
        Ok(false) => {}
        Ok(true) => return Outcome::Skipped("delivered"),
        Err(_) => return retry_or_fail(claim, "database unavailable".into()),
    }
    match subscriptions::reserve(state.db(), claim.user, &claim.template_id).await {
        Ok(true) => {}
        Ok(false) => return Outcome::Skipped("no quota"),
        Err(_) => return retry_or_fail(claim, "database unavailable".into()),
    }
    let mut body = json!({
        "touser": claim.openid,
        "template_id": template.template_id,
        "data": subscribe::data(template, &fields),
        "miniprogram_state": "formal",
        "lang": "zh_CN",
    });
    if let Some(page) = &template.page {
        body["page"] = Value::String(subscribe::fill(page, &fields));
    }
    let mut outcome = SendOutcome::Failed("no access token".into());
    for _ in 0..2 {
        let token = match tokens.get().await {
            Ok(token) => token,
            Err(why) => {
                tracing::warn!(reason = %why, "WeChat access token unavailable");
                outcome = SendOutcome::Failed("no access token".into());
                break;
            }
        };
        outcome = client.send(&token, &body).await;
        if outcome != SendOutcome::TokenInvalid {
            break;
        }
        // 40001/42001: a fresh token at once, and the send once more.
        tokens.invalidate(&token).await;
    }
    match outcome {
        SendOutcome::Sent => Outcome::Sent,
        SendOutcome::Refused => {
            let _ = subscriptions::zero(state.db(), claim.user, &claim.template_id).await;
            Outcome::Refused
        }
        SendOutcome::TokenInvalid | SendOutcome::Failed(_) => {
            let _ = subscriptions::give_back(state.db(), claim.user, &claim.template_id).await;
            let why = match outcome {
                SendOutcome::Failed(why) => why,
                _ => "access token refused twice".to_owned(),
            };
            tracing::warn!(event = %claim.event, reason = %why, "subscription message not sent");
            retry_or_fail(claim, why)
        }
    }
}
