//! Platform sends (SPEC §4, §10): a notification to one user or an announcement to a
//! role, a batch of them, an instruction to a rider (`rider.command`), each under an
//! optional `Idempotency-Key`; and the receipt of what was sent. A send this replica
//! has no room for is refused 503 `overloaded` with `Retry-After` before anything is
//! written (SPEC §11; the bound is the service's, [`send`]).

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::{Role, Scope, UserId};
use crate::error::ApiError;
use crate::http::caller::Staff;
use crate::http::json::ApiJson;
use crate::http::openapi::{BatchPartial, MessageId, MessageIds};
use crate::http::path::ApiPath;
use crate::hub::SOCKET_ROLES;
use crate::notify::{Kind, Notification};
use crate::service::notifications::{self as send, Idempotency};
use crate::state::AppState;
use crate::store;

/// A send's first check: 503 `overloaded` at once when this replica publishes all it
/// may already, before the caller is authenticated (a database query) and the body is
/// read; nothing else is queued in front of a refusal.
pub struct Room;

impl FromRequestParts<AppState> for Room {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        send::has_room(state)?;
        Ok(Room)
    }
}

const MAX_TITLE: usize = 100;
/// The longest `Idempotency-Key` accepted.
const MAX_KEY: usize = 255;

/// 1 to [`MAX_KEY`] bytes of visible ASCII: no spaces, tabs or control characters.
fn valid_idempotency_key(key: &str) -> bool {
    (1..=MAX_KEY).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// The request's `Idempotency-Key`, if any, bound to `caller` and to the request itself
/// (`route` and the parsed body): the same key with another body is refused (422).
fn idempotency(
    headers: &HeaderMap,
    staff: &Staff,
    route: &str,
    body: &impl Serialize,
) -> Result<Option<Idempotency>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| valid_idempotency_key(k))
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
    Ok(Some(Idempotency::new(
        &staff.idempotency_space(),
        key,
        &what,
    )))
}
const MAX_CONTENT: usize = 2000;
const MAX_DATA: usize = 4096;

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"user_id": 42, "title": "系统维护", "content": "今晚 23:00 维护 10 分钟", "data": {"level": "info"}, "ttl_s": 3600}))]
pub struct SendNotification {
    /// To this user (`platform.notice`, kept until acked); give this or `role`.
    user_id: Option<i64>,
    /// To every connected socket of this role (`announcement`, live only): `rider`,
    /// `merchant` or `platform`.
    role: Option<Role>,
    /// 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    title: String,
    /// At most 2,000 characters.
    #[schema(max_length = 2000)]
    content: String,
    /// Extra fields, at most 4,096 bytes of JSON.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    data: Option<Map<String, Value>>,
    /// How long a user's notification stays deliverable, in seconds (default 86400).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 604800)]
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
#[utoipa::path(post, path = "/platform/notifications", tag = "platform", security(("bearer" = []), ("service_key" = ["notify"])),
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters (no spaces): a repeat within 24 h answers the same message_id and sends nothing again")),
    request_body = SendNotification,
    responses(
        (status = 202, description = "Sent", body = MessageId),
        (status = 400, description = "`invalid_idempotency_key`, or the body is not JSON", body = crate::error::Body),
        (status = 403, description = "`forbidden`: requires the platform role; `missing_scope`: a service key without `notify`", body = crate::error::Body),
        (status = 404, description = "`user_not_found`", body = crate::error::Body),
        (status = 422, description = "`invalid_target`, `invalid_role`, `invalid_title`, `invalid_content`, `invalid_data`, `invalid_ttl`, `idempotency_key_reused` or `invalid_body`", body = crate::error::Body),
        (status = 503, description = "`overloaded`: this replica is publishing `PUBLISH_MAX_IN_FLIGHT` notifications already; nothing was sent, retry after `Retry-After` seconds. Or `database_unavailable`/`engine_unavailable`", body = crate::error::Body,
            headers(("Retry-After" = u64, description = "Seconds to wait, with `overloaded`"))),
    ))]
pub async fn send_notification(
    State(state): State<AppState>,
    _room: Room,
    staff: Staff,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SendNotification>,
) -> Result<(StatusCode, Json<MessageId>), ApiError> {
    staff.require(Scope::Notify)?;
    let once = idempotency(&headers, &staff, "notifications", &body)?;
    let message_id = match (body.user_id, body.role) {
        (Some(user), None) => {
            let n = parse(&body, Kind::PlatformNotice)?;
            send::to_user(&state, UserId(user), &n, once.as_ref(), &staff.sent_by()).await?
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
    Ok((StatusCode::ACCEPTED, Json(MessageId { message_id })))
}

/// Most notifications one batch may carry.
pub const MAX_BATCH: usize = 1000;

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
pub struct SendBatch {
    /// 1 to 1,000 notifications, each with a `user_id`.
    #[schema(min_items = 1, max_items = 1000)]
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
#[utoipa::path(post, path = "/platform/notifications/batch", tag = "platform", security(("bearer" = []), ("service_key" = ["notify"])),
    params(("Idempotency-Key" = Option<String>, Header, description = "As for a single notification")),
    request_body = SendBatch,
    responses(
        (status = 202, description = "All sent", body = MessageIds),
        (status = 400, description = "`invalid_idempotency_key`, or the body is not JSON", body = crate::error::Body),
        (status = 403, description = "`forbidden`: requires the platform role; `missing_scope`: a service key without `notify`", body = crate::error::Body),
        (status = 404, description = "`user_not_found`: the unknown ids are listed; nothing was sent", body = crate::error::Body),
        (status = 422, description = "`invalid_batch`, or an invalid item (its index in the message); nothing was sent", body = crate::error::Body),
        (status = 503, description = "Part sent: `null` in `message_ids` for each notification whose outcome is unknown (or, with nothing sent and no `message_ids`: `database_unavailable`/`engine_unavailable`, or `overloaded` with `Retry-After` when this replica is publishing `PUBLISH_MAX_IN_FLIGHT` notifications already; a batch counts each item)", body = BatchPartial,
            headers(("Retry-After" = u64, description = "Seconds to wait, with `overloaded`"))),
    ))]
pub async fn send_batch(
    State(state): State<AppState>,
    _room: Room,
    staff: Staff,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SendBatch>,
) -> Result<Response, ApiError> {
    staff.require(Scope::Notify)?;
    let once = idempotency(&headers, &staff, "notifications/batch", &body)?;
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
    let message_ids = send::batch(&state, &batch, once.as_ref(), &staff.sent_by()).await?;
    let failed = message_ids.iter().filter(|id| id.is_none()).count();
    if failed == 0 {
        return Ok((StatusCode::ACCEPTED, Json(MessageIds { message_ids })).into_response());
    }
    metrics::counter!("locallife_redis_errors_total").increment(1);
    tracing::warn!(
        failed,
        of = message_ids.len(),
        "a notification batch was partly sent"
    );
    Ok((
        StatusCode::SERVICE_UNAVAILABLE,
        Json(BatchPartial {
            code: "engine_unavailable",
            message: format!("Redis did not answer for {failed} of {} notifications (null in message_ids) and their outcome is unknown; retry the batch with the same Idempotency-Key, which never delivers twice", message_ids.len()),
            message_ids,
        }),
    )
        .into_response())
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"title": "请前往新店取餐", "content": "人民广场店", "data": {"order_id": 1001}}))]
pub struct Command {
    #[schema(min_length = 1, max_length = 100)]
    title: String,
    #[schema(max_length = 2000)]
    content: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    data: Option<Map<String, Value>>,
}

/// Sends a rider an instruction (`rider.command`, kept until acked).
#[utoipa::path(post, path = "/platform/riders/{user_id}/commands", tag = "platform", security(("bearer" = []), ("service_key" = ["notify"])),
    params(("user_id" = i64, Path, description = "The rider (a user id)"),
        ("Idempotency-Key" = Option<String>, Header, description = "As for a notification")),
    request_body = Command,
    responses(
        (status = 202, description = "Sent: the rider gets `rider.command`", body = MessageId),
        (status = 400, description = "`invalid_idempotency_key`, or the body is not JSON", body = crate::error::Body),
        (status = 403, description = "`forbidden`: requires the platform role; `missing_scope`: a service key without `notify`", body = crate::error::Body),
        (status = 404, description = "`not_found`: no approved rider", body = crate::error::Body),
        (status = 503, description = "`overloaded`: this replica is publishing `PUBLISH_MAX_IN_FLIGHT` notifications already; nothing was sent, retry after `Retry-After` seconds. Or `database_unavailable`/`engine_unavailable`", body = crate::error::Body,
            headers(("Retry-After" = u64, description = "Seconds to wait, with `overloaded`"))),
    ))]
pub async fn rider_command(
    State(state): State<AppState>,
    _room: Room,
    staff: Staff,
    ApiPath(user): ApiPath<i64>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Command>,
) -> Result<(StatusCode, Json<MessageId>), ApiError> {
    staff.require(Scope::Notify)?;
    let once = idempotency(&headers, &staff, &format!("riders/{user}/commands"), &body)?;
    let as_notification = SendNotification {
        user_id: Some(user),
        role: None,
        title: body.title,
        content: body.content,
        data: body.data,
        ttl_s: None,
    };
    let n = parse(&as_notification, Kind::RiderCommand)?;
    let message_id =
        send::rider_command(&state, UserId(user), &n, once.as_ref(), &staff.sent_by()).await?;
    Ok((StatusCode::ACCEPTED, Json(MessageId { message_id })))
}

/// `GET /v1/platform/notifications/{message_id}`: the notification's receipt, per
/// recipient (`pending`, `delivered`, `acked`, `expired`, `withdrawn`).
#[utoipa::path(get, path = "/platform/notifications/{message_id}", operation_id = "notification_receipt", tag = "platform", security(("bearer" = []), ("service_key" = ["read"])),
    params(("message_id" = String, Path, description = "From the answer to the send")),
    responses(
        (status = 200, description = "The receipt", body = store::receipts::Receipt),
        (status = 403, description = "`forbidden`: requires the platform role; `missing_scope`: a service key without `read`", body = crate::error::Body),
    ))]
pub async fn receipt(
    State(state): State<AppState>,
    staff: Staff,
    ApiPath(message_id): ApiPath<String>,
) -> Result<Json<store::receipts::Receipt>, ApiError> {
    staff.require(Scope::Read)?;
    if message_id.len() > 64 || !message_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::not_found());
    }
    store::receipts::of_message(state.db(), &message_id)
        .await?
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_visible_ascii_of_1_to_255_bytes() {
        assert!(valid_idempotency_key("order-42:paid"));
        assert!(valid_idempotency_key(&"k".repeat(255)));
        for bad in ["", "a b", "a\tb", "key\u{7f}", "ключ"] {
            assert!(!valid_idempotency_key(bad), "{bad:?} is refused");
        }
        assert!(!valid_idempotency_key(&"k".repeat(256)));
    }
}
