//! What a client's messages do once parsed (SPEC §2.1): `ack`, `ping`, `pong`,
//! `location`, `auth`; and a Pong's proof of what was written before its Ping. An ack
//! and a protocol-1 Pong confirm through one path, [`confirm`].

use std::time::Duration;

use super::protocol::{ClientMessage, ProtocolError};
use crate::domain::Role;
use crate::engine::wire;
use crate::engine::MsgId;
use crate::hub::{Protocol, Socket};
use crate::state::AppState;
use crate::store::receipts::Mark;

/// Acts on a valid client message; the reply to send (its type, and the frame), if any.
pub(super) async fn handle(
    state: &AppState,
    socket: &Socket,
    message: ClientMessage,
) -> Result<Option<(&'static str, String)>, ProtocolError> {
    match message {
        ClientMessage::Ping => Ok(Some(("pong", wire::pong()))),
        ClientMessage::Pong => Ok(None),
        ClientMessage::Ack { message_id } => {
            // Every id the server sends is a message id: anything else was never sent.
            let Ok(id) = message_id.parse::<MsgId>() else {
                return Ok(None);
            };
            // Only an ack of what this socket was sent and still waits for is a receipt
            // (SPEC §3): an ack of a made-up id, or a repeat, stores nothing.
            if socket.acked(id) {
                crate::telemetry::stage(crate::telemetry::Stage::Confirmed, id.ms);
                state.receipts().record(Mark::Acked, id, socket.user);
            }
            metrics::counter!("locallife_acks_total").increment(1);
            metrics::counter!("locallife_confirmations_total", "protocol" => socket.protocol.label(), "kind" => "ack")
                .increment(1);
            confirm(state, socket, &[id]).await;
            Ok(None)
        }
        ClientMessage::Auth { .. } if socket.protocol != Protocol::V2 => Err(ProtocolError {
            code: "unsupported",
            message: "auth needs protocol 2 (?protocol=2)".into(),
        }),
        ClientMessage::Auth { token } => {
            // The socket still closes (4001) when its current token expires. A token
            // issued before the user's last logout is refused here as at admission.
            let (_, claims, ()) = state
                .limits()
                .check_token(
                    state.tokens(),
                    &token,
                    invalid_token,
                    |user, _| {
                        if user == socket.user {
                            Ok(())
                        } else {
                            Err(invalid_token())
                        }
                    },
                    |user| async move {
                        match crate::store::users::roles(state.db(), user).await {
                            Ok(found) => Ok(found.map(|(_, epoch)| ((), epoch))),
                            Err(_) => Err(ProtocolError {
                                code: "unavailable",
                                message: "cannot check the token now; try again".into(),
                            }),
                        }
                    },
                )
                .await?;
            let exp = socket.extend_token(claims.exp);
            Ok(Some(("auth_ok", wire::auth_ok(&crate::time::rfc3339(exp)))))
        }
        ClientMessage::Location { .. } if !socket.has_role(Role::Rider) => Err(ProtocolError {
            code: "not_rider",
            message: "only riders send location".into(),
        }),
        ClientMessage::Location { lat, lng } => {
            match crate::service::riders::update_location(state, socket.user, lat, lng).await {
                Ok(()) => Ok(None),
                Err(e) => Err(ProtocolError {
                    code: "location_refused",
                    // The client-facing message: never an internal cause.
                    message: crate::error::ApiError::from(e).message.into_owned(),
                }),
            }
        }
    }
}

/// An in-band `auth` whose token is not a valid one of this socket's user.
fn invalid_token() -> ProtocolError {
    ProtocolError {
        code: "invalid_token",
        message: "not a valid token of this user".into(),
    }
}

/// How long a protocol-1 socket keeps the ids a Pong confirmed: longer than their
/// queued acks take to reach the inbox (the engine gives up on a command after 2 s), so
/// an inbox replay meanwhile (after a lost subscription) cannot write them again.
const SETTLE: Duration = Duration::from_secs(5);

/// A Pong: what it proves delivered (written before its Ping) gets its receipt, on
/// either protocol; under protocol 1 it is confirmed as if acked.
pub(super) async fn pong(state: &AppState, socket: &Socket, payload: &[u8]) {
    let settled_ms = state.hub().now_ms() + SETTLE.as_millis() as u64;
    let delivered = socket.pong(payload, settled_ms);
    for id in &delivered {
        state.receipts().record(Mark::Delivered, *id, socket.user);
    }
    if socket.protocol != Protocol::V1 || delivered.is_empty() {
        return;
    }
    metrics::counter!("locallife_confirmations_total", "protocol" => "1", "kind" => "ping")
        .increment(delivered.len() as u64);
    let now = crate::time::unix_ms();
    for id in &delivered {
        crate::telemetry::stage_at(crate::telemetry::Stage::Confirmed, id.ms, now);
    }
    confirm(state, socket, &delivered).await;
}

/// The one path of a confirmation (an ack, or a Pong under protocol 1): the user's
/// other sockets here stop tracking it at once, and the inbox is told through the
/// engine's queue of acks, without waiting for the outcome (a wait only for room in the
/// queue), so it leaves on every replica. The session waits for the queue before its
/// close is answered, so a reconnect does not get them again. An ack that fails is
/// logged by the engine: the notification stays in the inbox for the next connect.
async fn confirm(state: &AppState, socket: &Socket, ids: &[MsgId]) {
    state.hub().acked_here(socket, ids);
    let engine = state.engine();
    for id in ids {
        engine.ack_soon(socket.user, *id).await;
    }
}
