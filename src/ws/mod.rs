//! `GET /v1/ws`: admission (SPEC §2), then the socket session.
//!
//! Everything that can refuse a socket is decided before the upgrade: draining (503),
//! token (401), roles from the database (403), the per-user socket limit across
//! replicas (429). Protocol 1 gets it as plain HTTP with a JSON body; protocol 2 (which
//! a mini-program could not read) as an upgrade closed at once with 1013/4001/4003/4029
//! and that body as the reason. An admitted connection is upgraded with buffers sized
//! for small JSON messages.

mod commands;
mod lease;
pub mod protocol;
mod rate;
mod replay;
pub mod session;

pub use lease::Lease;

use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::auth::{token_from, TokenSource};
use crate::domain::{Approval, Role};
use crate::engine::Place;
use crate::error::ApiError;
use crate::hub::{Protocol, RoleSet, Socket, LEASE, LEASE_OVERDUE};
use crate::state::AppState;
use crate::store::users::AdmissionFacts;

/// tungstenite zero-fills its read buffer and keeps it for the socket's life, so it is
/// the lever on idle memory; frames up to `WS_MAX_FRAME` still fit (it grows to read).
/// Client messages are small (an ack is ~70 B, a ping 15 B); a bigger frame (an `auth`
/// with its token) takes more reads. 128 B against 256: about 4 MB less at 19,000 idle
/// sockets (loadtest/scale.sh 19000, SCALE_PER_REPLICA=19000).
const READ_BUFFER: usize = 128;
/// When a user holding the most sockets allowed may try again: a place frees when one
/// of their sockets closes, or its lease runs out after a crash.
const FULL_RETRY_AFTER_S: u64 = 5;

/// Why a user may not open a socket (403 codes of SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    RiderNotApproved,
    /// Suspended by platform staff: distinct from an application not (yet) approved.
    RiderSuspended,
    RiderOffline,
    NotMerchantAdmin,
    /// The user administers no approved merchant, and one platform staff suspended.
    MerchantSuspended,
    RoleNotAllowed,
}

impl Denied {
    pub fn code(self) -> &'static str {
        match self {
            Denied::RiderNotApproved => "rider_not_approved",
            Denied::RiderSuspended => "rider_suspended",
            Denied::RiderOffline => "rider_offline",
            Denied::NotMerchantAdmin => "not_merchant_admin",
            Denied::MerchantSuspended => "merchant_suspended",
            Denied::RoleNotAllowed => "role_not_allowed",
        }
    }

    /// Short enough that the protocol-2 close reason keeps it (123 bytes with the code).
    fn message(self) -> &'static str {
        match self {
            Denied::RiderNotApproved => "the rider is not approved by the platform",
            Denied::RiderSuspended => "the rider is suspended by the platform",
            Denied::RiderOffline => "the rider is offline: POST /v1/rider/online first",
            Denied::NotMerchantAdmin => "not an admin of an approved merchant",
            Denied::MerchantSuspended => "the merchant is suspended by the platform",
            Denied::RoleNotAllowed => "only riders, merchants and platform staff may connect",
        }
    }
}

/// The admission table of SPEC §2. A user with several roles gets every role that
/// passes; with none, the most specific refusal.
pub fn admit(facts: &AdmissionFacts) -> Result<RoleSet, Denied> {
    let mut roles = RoleSet::default();
    if facts.rider_status == Some(Approval::Approved) && facts.rider_online {
        roles.insert(Role::Rider);
    }
    if facts.admin_of_approved_merchant {
        roles.insert(Role::Merchant);
    }
    if facts.roles.contains(&Role::Platform) {
        roles.insert(Role::Platform);
    }
    if !roles.is_empty() {
        return Ok(roles);
    }
    match facts.rider_status {
        Some(Approval::Approved) => return Err(Denied::RiderOffline),
        Some(Approval::Suspended) => return Err(Denied::RiderSuspended),
        Some(_) => return Err(Denied::RiderNotApproved),
        None => {}
    }
    if facts.admin_of_suspended_merchant {
        return Err(Denied::MerchantSuspended);
    }
    if facts.roles.contains(&Role::Merchant) || facts.merchant_admin {
        return Err(Denied::NotMerchantAdmin);
    }
    if facts.roles.contains(&Role::Rider) {
        return Err(Denied::RiderNotApproved);
    }
    Err(Denied::RoleNotAllowed)
}

#[tracing::instrument(skip_all)]
/// The WebSocket endpoint (described in AsyncAPI 3, `docs/asyncapi.yaml`). The token
/// comes as `?token=` (mini-programs cannot set headers on a socket) or as a bearer
/// header. A refusal is an HTTP error, or with `protocol=2` an accepted upgrade closed
/// at once with the matching close code.
#[utoipa::path(get, path = "/ws", tag = "websocket", security(("bearer" = [])),
    params(
        ("token" = Option<String>, Query, description = "The access token, when not in the Authorization header"),
        ("protocol" = Option<String>, Query, description = "`1` (default) or `2`"),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "`websocket_required` (not an upgrade request) or `unsupported_protocol`", body = crate::error::Body),
        (status = 403, description = "No role that may hold a socket (`not_socket_role`, …)", body = crate::error::Body),
        (status = 429, description = "`too_many_sockets`", body = crate::error::Body),
    ))]
pub async fn connect(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let protocol = protocol_of(&uri);
    match admit_socket(&state, &headers, &uri).await {
        Ok((socket, lease)) => match upgrade {
            Ok(upgrade) => {
                metrics::counter!("locallife_ws_connects_total", "result" => "accepted")
                    .increment(1);
                let max = state.config().ws.max_frame;
                upgrade
                    .read_buffer_size(READ_BUFFER)
                    .write_buffer_size(0)
                    .max_message_size(max)
                    .max_frame_size(max)
                    .on_upgrade(move |ws| async move {
                        // A task of its own: the upgrade's task (hyper's upgrade
                        // future plus axum's wrapper, ~1.7 KB) ends here instead of
                        // living as long as the socket. Tracked: a drain waits for it.
                        let sessions = state.sessions().clone();
                        sessions.spawn_quiet(session::run(ws, state, socket, lease));
                    })
            }
            Err(_) => ApiError::bad_request(
                "websocket_required",
                "this endpoint takes WebSocket upgrade requests",
            )
            .into_response(),
        },
        Err(e) => {
            metrics::counter!("locallife_ws_connects_total", "result" => e.code.to_string())
                .increment(1);
            match (protocol, upgrade, refusal_close_code(e.status)) {
                (Ok(Protocol::V2), Ok(upgrade), Some(code)) => upgrade
                    .on_upgrade(move |ws| refuse(ws, code, e))
                    .into_response(),
                _ => e.into_response(),
            }
        }
    }
}

/// The close code that stands for a refused handshake's status, for protocol 2 (SPEC §2):
/// a mini-program cannot read the status of a refused upgrade, only a close code.
fn refusal_close_code(status: StatusCode) -> Option<u16> {
    match status {
        StatusCode::UNAUTHORIZED => Some(4001),
        StatusCode::FORBIDDEN => Some(4003),
        StatusCode::TOO_MANY_REQUESTS => Some(4029),
        StatusCode::SERVICE_UNAVAILABLE => Some(1013),
        _ => None,
    }
}

/// A close reason is at most 123 bytes (RFC 6455 §5.5): the error's JSON body, without
/// its message when that does not fit.
fn refusal_reason(e: &ApiError) -> String {
    let full = serde_json::to_string(&e.body()).unwrap_or_default();
    if full.len() <= 123 {
        return full;
    }
    let mut short = serde_json::json!({ "code": e.code });
    if let Some(s) = e.retry_after_s {
        short["retry_after_s"] = s.into();
    }
    let short = short.to_string();
    if short.len() <= 123 {
        short
    } else {
        String::new()
    }
}

/// Completes a refused protocol-2 upgrade only to close it at once with `code` and the
/// error as the reason.
async fn refuse(mut ws: axum::extract::ws::WebSocket, code: u16, e: ApiError) {
    let frame = axum::extract::ws::CloseFrame {
        code,
        reason: refusal_reason(&e).into(),
    };
    session::send_close(&mut ws, frame).await;
}

/// `?protocol=`: absent or `1` is protocol 1 (the seed's clients), `2` the SDK's.
pub fn protocol_of(uri: &Uri) -> Result<Protocol, ApiError> {
    let asked = uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "protocol")
            .map(|(_, v)| v.into_owned())
    });
    match asked.as_deref() {
        None | Some("1") => Ok(Protocol::V1),
        Some("2") => Ok(Protocol::V2),
        Some(_) => Err(ApiError::bad_request(
            "unsupported_protocol",
            "protocol must be 1 or 2",
        )),
    }
}

async fn admit_socket(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(Arc<Socket>, Lease), ApiError> {
    if state.is_draining() {
        return Err(ApiError::unavailable(
            "draining",
            "this replica is shutting down; reconnect",
        ));
    }
    let protocol = protocol_of(uri)?;
    let token =
        token_from(headers, uri, TokenSource::HeaderOrQuery).ok_or_else(ApiError::unauthorized)?;
    // Before any database work: a token known to be logged out, then the user's
    // connect rate on this replica (a token always refused, or a reconnect loop, costs
    // no query once over it).
    let limits = state.limits();
    let (user, claims, facts) = limits
        .check_token(
            state.tokens(),
            &token,
            ApiError::unauthorized,
            |user, claims| {
                limits.check_connect(user, claims).map_err(|wait| {
                    metrics::counter!("locallife_rate_limited_total", "kind" => "connect")
                        .increment(1);
                    ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "connect_rate_limited",
                        "too many connection attempts; wait a few seconds",
                    )
                    .retry_after(wait.max(1))
                })
            },
            |user| async move {
                let facts = state.admissions().facts(user).await?;
                Ok(facts.map(|f| {
                    let epoch = f.tokens;
                    (f, epoch)
                }))
            },
        )
        .await?;
    let roles = admit(&facts).map_err(|d| ApiError::forbidden(d.code(), d.message()))?;

    let hub = state.hub();
    let (seq, conn_id) = hub.next_id();
    let now = crate::time::unix_ms();
    let lease_until = now + LEASE.as_millis() as u64;
    // A lease ending before this was not renewed for LEASE_OVERDUE.
    let overdue_before = lease_until - LEASE_OVERDUE.as_millis() as u64;
    let max = state.config().ws.max_sockets_per_user;
    let took = hub
        .engine()
        .acquire_socket(user, &conn_id, max, lease_until, overdue_before)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot take a socket place");
            ApiError::unavailable("engine_unavailable", "try again shortly")
        })?;
    match took {
        Place::Taken => {}
        Place::Full => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_sockets",
                format!("at most {max} sockets per user"),
            )
            .retry_after(FULL_RETRY_AFTER_S))
        }
        Place::RateLimited => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "connect_rate_limited",
                "too many connection attempts; wait a few seconds",
            )
            .retry_after(crate::engine::CONNECT_WINDOW_MS / 1000))
        }
    }
    let lease = Lease::new(hub.clone(), user, conn_id.clone());
    let socket = Arc::new(Socket::new(
        seq,
        conn_id,
        user,
        roles,
        protocol,
        claims.exp,
        hub.now_ms(),
    ));
    Ok((socket, lease))
}

/// Users whose admission one query re-checks.
const RECHECK_BATCH: usize = 500;

/// Every `WS_ADMISSION_RECHECK`, the admission of this replica's sockets is read again
/// from the database, in batches of users (one query per batch, never one per socket):
/// a role the user no longer passes is taken from their sockets (a socket left with no
/// role closes with 4003), and the sockets of a user who no longer exists close with
/// 4003. Changes made through the API are pushed at once; this catches every other way
/// (SQL, the CLI without Redis, a lost message).
pub async fn recheck_admission(state: AppState, cancel: tokio_util::sync::CancellationToken) {
    let every = state
        .config()
        .ws
        .admission_recheck
        .max(std::time::Duration::from_secs(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return,
        }
        let hub = state.hub();
        let users = hub.local_users();
        for batch in users.chunks(RECHECK_BATCH) {
            let facts = match crate::store::users::admission_many(state.db(), batch).await {
                Ok(facts) => facts,
                Err(e) => {
                    tracing::warn!(error = %e, "admission re-check skipped");
                    break;
                }
            };
            for user in batch {
                let admitted = facts.get(user).and_then(|f| admit(f).ok());
                for socket in hub.user_sockets(*user) {
                    let Some(admitted) = admitted else {
                        socket.close(crate::hub::Close {
                            code: 4003,
                            reason: "no longer admitted",
                        });
                        continue;
                    };
                    for role in socket.current_roles().iter() {
                        if !admitted.contains(role) {
                            hub.revoke_socket(&socket, role);
                        }
                    }
                }
            }
        }
        metrics::counter!("locallife_admission_rechecks_total").increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> AdmissionFacts {
        AdmissionFacts::default()
    }

    #[test]
    fn the_admission_table() {
        let mut f = facts();
        f.roles = vec![Role::Consumer];
        assert_eq!(admit(&f), Err(Denied::RoleNotAllowed));

        let mut f = facts();
        f.rider_status = Some(Approval::Pending);
        assert_eq!(admit(&f), Err(Denied::RiderNotApproved));
        f.rider_status = Some(Approval::Approved);
        assert_eq!(admit(&f), Err(Denied::RiderOffline));
        f.rider_online = true;
        assert_eq!(admit(&f).map(|r| r.contains(Role::Rider)), Ok(true));
        f.rider_status = Some(Approval::Suspended);
        f.rider_online = false;
        assert_eq!(admit(&f), Err(Denied::RiderSuspended));
        f.rider_status = Some(Approval::Rejected);
        assert_eq!(admit(&f), Err(Denied::RiderNotApproved));

        let mut f = facts();
        f.roles = vec![Role::Merchant];
        assert_eq!(admit(&f), Err(Denied::NotMerchantAdmin));
        f.merchant_admin = true;
        assert_eq!(admit(&f), Err(Denied::NotMerchantAdmin));
        f.admin_of_suspended_merchant = true;
        assert_eq!(admit(&f), Err(Denied::MerchantSuspended));
        f.admin_of_approved_merchant = true;
        assert_eq!(admit(&f).map(|r| r.contains(Role::Merchant)), Ok(true));

        let mut f = facts();
        f.roles = vec![Role::Platform];
        assert_eq!(admit(&f).map(|r| r.contains(Role::Platform)), Ok(true));
    }

    /// A protocol-2 client reads the refusal from the close reason: each fits whole.
    #[test]
    fn every_refusal_fits_a_close_reason_with_its_message() {
        for d in [
            Denied::RiderNotApproved,
            Denied::RiderSuspended,
            Denied::RiderOffline,
            Denied::NotMerchantAdmin,
            Denied::MerchantSuspended,
            Denied::RoleNotAllowed,
        ] {
            let reason = refusal_reason(&ApiError::forbidden(d.code(), d.message()));
            let body: serde_json::Value = serde_json::from_str(&reason).unwrap();
            assert_eq!(body["code"], d.code());
            assert_eq!(body["message"], d.message());
        }
    }

    #[test]
    fn several_roles_get_every_role_that_passes() {
        let f = AdmissionFacts {
            roles: vec![Role::Platform, Role::Merchant, Role::Rider],
            rider_status: Some(Approval::Approved),
            rider_online: false,
            merchant_admin: true,
            admin_of_approved_merchant: true,
            admin_of_suspended_merchant: true,
            tokens: Default::default(),
        };
        let roles = admit(&f).unwrap();
        assert!(roles.contains(Role::Platform) && roles.contains(Role::Merchant));
        assert!(
            !roles.contains(Role::Rider),
            "an offline rider role does not pass"
        );
    }
}
