//! Platform staff endpoints (role `platform`).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::caller::Caller;
use super::json::ApiJson;
use super::path::ApiPath;
use crate::domain::{Role, UserId};
use crate::error::ApiError;
use crate::hub::{CENSUS_STALE, SOCKET_ROLES};
use crate::notify::{Kind, Notification};
use crate::service::notifications::{self as send, Idempotency};
use crate::service::orders as flows;
use crate::state::AppState;
use crate::store;
use crate::store::orders::{Order, Transition};

const MAX_TITLE: usize = 100;
/// The longest `Idempotency-Key` accepted.
const MAX_KEY: usize = 255;

/// The request's `Idempotency-Key`, if any, bound to `caller` and to the request itself
/// (`route` and the parsed body): the same key with another body is refused (422).
fn idempotency(
    headers: &HeaderMap,
    caller: &Caller,
    route: &str,
    body: &impl Serialize,
) -> Result<Option<Idempotency>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                format!("Idempotency-Key must be 1 to {MAX_KEY} visible ASCII characters"),
            )
        })?;
    let mut what = route.as_bytes().to_vec();
    what.push(b'\n');
    // Serialising a parsed body cannot fail; object keys come out sorted.
    what.extend(serde_json::to_vec(body).unwrap_or_default());
    Ok(Some(Idempotency::new(caller.id, key, &what)))
}
const MAX_CONTENT: usize = 2000;
const MAX_DATA: usize = 4096;

#[derive(Deserialize, Serialize)]
pub struct SendNotification {
    user_id: Option<i64>,
    role: Option<Role>,
    title: String,
    content: String,
    #[serde(default)]
    data: Option<Map<String, Value>>,
    /// How long a user's notification stays deliverable (SPEC §4), in seconds.
    #[serde(default)]
    ttl_s: Option<u64>,
}

/// The longest `ttl_s`: 7 days, as long as receipts are kept.
const MAX_TTL_S: u64 = 7 * 24 * 3600;

/// Checks the text fields; returns the notification without its target.
fn parse(body: &SendNotification, kind: Kind) -> Result<Notification, ApiError> {
    let title = body.title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE {
        return Err(ApiError::unprocessable(
            "invalid_title",
            format!("title must be 1 to {MAX_TITLE} characters"),
        ));
    }
    if body.content.chars().count() > MAX_CONTENT {
        return Err(ApiError::unprocessable(
            "invalid_content",
            format!("content must be at most {MAX_CONTENT} characters"),
        ));
    }
    let mut n = Notification::new(kind, title, body.content.clone());
    if let Some(data) = &body.data {
        if serde_json::to_vec(data).map_or(true, |v| v.len() > MAX_DATA) {
            return Err(ApiError::unprocessable(
                "invalid_data",
                format!("data must be a JSON object of at most {MAX_DATA} bytes"),
            ));
        }
        n.fields = data.clone();
    }
    match (body.ttl_s, kind) {
        (None, _) => {}
        (Some(ttl @ 1..=MAX_TTL_S), Kind::PlatformNotice) => {
            n = n.with_ttl(std::time::Duration::from_secs(ttl));
        }
        (Some(_), Kind::PlatformNotice) => {
            return Err(ApiError::unprocessable(
                "invalid_ttl",
                format!("ttl_s must be 1 to {MAX_TTL_S}"),
            ))
        }
        (Some(_), _) => {
            return Err(ApiError::unprocessable(
                "invalid_ttl",
                "ttl_s applies to a notification to a user (announcements are live only)",
            ))
        }
    }
    Ok(n)
}

/// `POST /v1/platform/notifications`: to one user (kept until acked) or to every
/// connected socket of a role (an announcement, live only).
pub async fn send_notification(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SendNotification>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Role::Platform)?;
    let once = idempotency(&headers, &caller, "notifications", &body)?;
    let message_id = match (body.user_id, body.role) {
        (Some(user), None) => {
            let n = parse(&body, Kind::PlatformNotice)?;
            send::to_user(&state, UserId(user), &n, once.as_ref()).await?
        }
        (None, Some(role)) if SOCKET_ROLES.contains(&role) => {
            let n = parse(&body, Kind::Announcement)?;
            send::to_role(&state, role, &n, once.as_ref()).await?
        }
        (None, Some(_)) => {
            return Err(ApiError::unprocessable(
                "invalid_role",
                "role must be rider, merchant or platform (consumers hold no sockets)",
            ))
        }
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_target",
                "give exactly one of user_id and role",
            ))
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "message_id": message_id })),
    ))
}

/// Most notifications one batch may carry.
pub const MAX_BATCH: usize = 1000;

#[derive(Deserialize, Serialize)]
pub struct SendBatch {
    notifications: Vec<SendNotification>,
}

/// `POST /v1/platform/notifications/batch`: up to [`MAX_BATCH`] personal notifications
/// in one request, each exactly as `POST /v1/platform/notifications` with a `user_id`.
/// One authorisation, one database query for the recipients and one round of Redis
/// commands for the lot, where single requests pay all of that per notification.
///
/// The batch is checked whole before anything is sent: an invalid item (422, its index
/// in the message) or an unknown user (404, the ids listed) sends nothing. 202
/// `{"message_ids"}` in the order given. If Redis fails part-way, 503 with
/// `message_ids` holding `null` for each notification that was not sent.
pub async fn send_batch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SendBatch>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Role::Platform)?;
    let once = idempotency(&headers, &caller, "notifications/batch", &body)?;
    let items = &body.notifications;
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(ApiError::unprocessable(
            "invalid_batch",
            format!("notifications must hold 1 to {MAX_BATCH} items"),
        ));
    }
    let mut batch = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let (Some(user), None) = (item.user_id, item.role) else {
            return Err(ApiError::unprocessable(
                "invalid_target",
                format!("notifications[{i}]: give a user_id (announcements are not batched)"),
            ));
        };
        let n = parse(item, Kind::PlatformNotice).map_err(|e| ApiError {
            message: format!("notifications[{i}]: {}", e.message).into(),
            ..e
        })?;
        batch.push((UserId(user), n));
    }
    let message_ids = send::batch(&state, &batch, once.as_ref()).await?;
    let failed = message_ids.iter().filter(|id| id.is_none()).count();
    if failed == 0 {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "message_ids": message_ids })),
        ));
    }
    metrics::counter!("locallife_redis_errors_total").increment(1);
    tracing::warn!(
        failed,
        of = message_ids.len(),
        "a notification batch was partly sent"
    );
    Ok((
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({
            "code": "engine_unavailable",
            "message": format!("Redis did not answer for {failed} of {} notifications (null in message_ids) and their outcome is unknown; retry the batch with the same Idempotency-Key, which never delivers twice", message_ids.len()),
            "message_ids": message_ids,
        })),
    ))
}

/// `GET /v1/platform/connections`: sockets by role, across replicas and per replica.
pub async fn connections(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Platform)?;
    let hub = state.hub();
    let fresh_after = crate::time::unix_ms().saturating_sub(CENSUS_STALE.as_millis() as u64);
    let mut replicas = state.engine().censuses(fresh_after).await?;
    // This replica's own figures are read now rather than from its last report.
    replicas.retain(|r| *r.replica_id != **hub.replica_id());
    replicas.push(crate::engine::ReplicaCensus {
        replica_id: hub.replica_id().to_string(),
        census: hub.census(),
        reported_at_ms: crate::time::unix_ms(),
    });
    replicas.sort_by(|a, b| a.replica_id.cmp(&b.replica_id));
    let mut total = crate::engine::Census::default();
    for r in &replicas {
        total.sockets += r.census.sockets;
        for (role, n) in &r.census.by_role {
            *total.by_role.entry(role.clone()).or_default() += n;
        }
    }
    Ok(Json(json!({
        "replica_id": hub.replica_id().as_ref(),
        "total": total,
        "replicas": replicas,
    })))
}

/// `POST /v1/platform/riders/{user_id}/approve`.
pub async fn approve_rider(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Platform)?;
    if !store::riders::approve(state.db(), UserId(user), caller.id).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no rider application",
        ));
    }
    Ok(Json(json!({ "user_id": user, "status": "approved" })))
}

/// `POST /v1/platform/riders/{user_id}/suspend`: no longer approved, offline; within
/// seconds every socket admitted as that rider drops the role (closes with 4003 when it
/// had no other).
pub async fn suspend_rider(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Platform)?;
    if !crate::service::riders::suspend(&state, UserId(user)).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no rider application",
        ));
    }
    Ok(Json(json!({ "user_id": user, "status": "suspended" })))
}

/// `POST /v1/platform/merchants/{id}/suspend`: no longer approved; each of its admins
/// who administers no other approved merchant loses the merchant role on their sockets.
pub async fn suspend_merchant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Platform)?;
    let Some(admins) = store::merchants::suspend(state.db(), id).await? else {
        return Err(ApiError::not_found());
    };
    for admin in admins {
        let still = store::users::admission(state.db(), admin)
            .await?
            .is_some_and(|f| f.admin_of_approved_merchant);
        if !still {
            crate::notify::revoke_role(&**state.engine(), admin, Role::Merchant)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "suspend: the sockets could not be told");
                    ApiError::unavailable(
                        "engine_unavailable",
                        "suspended; sockets close at the next re-check",
                    )
                })?;
        }
    }
    Ok(Json(json!({ "id": id, "status": "suspended" })))
}

/// `POST /v1/platform/merchants/{id}/approve`.
pub async fn approve_merchant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Platform)?;
    if !store::merchants::approve(state.db(), id, caller.id).await? {
        return Err(ApiError::not_found());
    }
    Ok(Json(json!({ "id": id, "status": "approved" })))
}

#[derive(Deserialize)]
pub struct Dispatch {
    rider_id: i64,
}

/// `POST /v1/platform/orders/{id}/dispatch`.
pub async fn dispatch(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(order): ApiPath<i64>,
    ApiJson(body): ApiJson<Dispatch>,
) -> Result<Json<Order>, ApiError> {
    caller.require(Role::Platform)?;
    match flows::dispatch(&state, order, UserId(body.rider_id)).await? {
        Transition::Done(o) => Ok(Json(*o)),
        Transition::NotFound => Err(ApiError::not_found()),
        Transition::Refused(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "order_not_dispatchable",
            format!("the order is {status}; only a paid order waiting for a rider is dispatched"),
        )),
    }
}

#[derive(Deserialize, Serialize)]
pub struct Command {
    title: String,
    content: String,
    #[serde(default)]
    data: Option<Map<String, Value>>,
}

/// `POST /v1/platform/riders/{user_id}/commands`.
pub async fn rider_command(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<i64>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Command>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Role::Platform)?;
    let once = idempotency(&headers, &caller, &format!("riders/{user}/commands"), &body)?;
    let as_notification = SendNotification {
        user_id: Some(user),
        role: None,
        title: body.title,
        content: body.content,
        data: body.data,
        ttl_s: None,
    };
    let n = parse(&as_notification, Kind::RiderCommand)?;
    let message_id = send::rider_command(&state, UserId(user), &n, once.as_ref()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "message_id": message_id })),
    ))
}

/// `GET /v1/platform/notifications/{message_id}`: the notification's receipt, per
/// recipient (`pending`, `delivered`, `acked`, `expired`, `withdrawn`).
pub async fn receipt(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(message_id): ApiPath<String>,
) -> Result<Json<store::receipts::Receipt>, ApiError> {
    caller.require(Role::Platform)?;
    if message_id.len() > 64 {
        return Err(ApiError::not_found());
    }
    store::receipts::of_message(state.db(), &message_id)
        .await?
        .map(Json)
        .ok_or_else(ApiError::not_found)
}
