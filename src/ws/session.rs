//! One socket's life after the upgrade: attach to the hub, `welcome`, then a single
//! task that both writes what the hub queues and reads what the client sends.
//!
//! One task per socket, no split: a second task, the split lock and a channel between
//! them cost ~3 KB per idle socket. Heavy one-off work (token, admission queries)
//! happened before the upgrade, so it is not part of this long-lived future.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::SinkExt;
use tokio::time::Instant;

use super::lease::Lease;
use super::protocol::{self, ClientMessage, ProtocolError};
use crate::domain::Role;
use crate::engine::MsgId;
use crate::hub::{Close, Outgoing, Protocol, Socket, Work};
use crate::state::AppState;
use crate::store::receipts::Mark;

/// A write that cannot finish in this long means the client stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the client's answer to our close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Bad frames in a row before the client is closed for abuse (1008).
const MAX_STRIKES: u8 = 10;
/// Client messages: a burst of this many, refilled at this rate per second.
const RATE_BURST: f32 = 30.0;
const RATE_PER_S: f32 = 10.0;
/// Acks have a bucket of their own: a client acks what the server sends, and a busy
/// merchant or rider may be sent far more than ten notifications a second.
const ACK_BURST: f32 = 1000.0;
const ACK_PER_S: f32 = 500.0;

const ABUSE: Close = Close {
    code: 1008,
    reason: "too many invalid messages",
};
const RATE_LIMITED: Close = Close {
    code: 1008,
    reason: "message rate limit exceeded",
};
const BINARY: Close = Close {
    code: 1003,
    reason: "binary frames are not accepted",
};
const TOO_BIG: Close = Close {
    code: 1009,
    reason: "frame too large",
};
const INTERNAL: Close = Close {
    code: 1011,
    reason: "internal error",
};
const TRY_LATER: Close = Close {
    code: 1013,
    reason: "try again later",
};

/// A token bucket: small enough to live in every socket's future.
struct RateLimit {
    tokens: f32,
    at: Instant,
    burst: f32,
    per_s: f32,
}

impl RateLimit {
    fn new() -> Self {
        Self::with(RATE_BURST, RATE_PER_S)
    }

    fn with(burst: f32, per_s: f32) -> Self {
        Self {
            tokens: burst,
            at: Instant::now(),
            burst,
            per_s,
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f32() * self.per_s;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What one client frame asks of the session.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Message(ClientMessage),
    /// Answer with an `error` message; the socket stays.
    Refuse(ProtocolError),
    /// Close the socket with this code.
    Close(Close),
    /// A Pong, with its payload: activity, and (protocol 1) a confirmation.
    Pong(axum::body::Bytes),
    /// Other control frames: activity, nothing else.
    Nothing,
    /// The client closed.
    Gone,
}

/// Classifies one received frame: a pure function, so it can be tested with any input.
pub fn classify(frame: Message) -> Outcome {
    match frame {
        Message::Text(text) => match protocol::parse(&text) {
            Ok(m) => Outcome::Message(m),
            Err(e) => Outcome::Refuse(e),
        },
        Message::Binary(_) => Outcome::Close(BINARY),
        Message::Pong(payload) => Outcome::Pong(payload),
        Message::Ping(_) => Outcome::Nothing,
        Message::Close(_) => Outcome::Gone,
    }
}

/// The socket's whole life, as the future of its own task.
///
/// Not an `async fn`: an async fn keeps a copy of its arguments beside the locals it
/// moves them into (424 B here, the `WebSocket` alone is 368 B), for the life of the
/// socket. An `async move` block that only borrows its captures keeps one copy.
pub fn run(
    ws: WebSocket,
    state: AppState,
    socket: Arc<Socket>,
    lease: Lease,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut ws = ws;
    let mut lease = Some(lease);
    async move { live(&mut ws, &state, &socket, &mut lease).await }
}

async fn live(
    ws: &mut WebSocket,
    state: &AppState,
    socket: &Arc<Socket>,
    lease: &mut Option<Lease>,
) {
    let hub = state.hub();
    // Subscribed first, then the inbox read, then `welcome`: whatever is published at
    // any moment around the connect is in the inbox read or arrives live after it
    // (copies are suppressed by id). Boxed: one-off work must not size the long-lived
    // socket future.
    let attached = match Box::pin(hub.attach(socket.clone())).await {
        Ok(()) => Box::pin(pending(state, socket)).await,
        Err(e) => {
            tracing::warn!(error = %e, "socket could not be attached");
            Err(INTERNAL)
        }
    };
    let close = match attached {
        Ok(inbox) => {
            let welcome = protocol::welcome(protocol::Welcome {
                connection_id: &socket.conn_id,
                user_id: socket.user,
                roles: socket.roles.iter().collect(),
                ping_interval_s: state.config().ws.ping_interval.as_secs(),
                idle_timeout_s: state.config().ws.idle_timeout.as_secs(),
                protocol: socket.protocol.number(),
                token_expires_at: crate::time::rfc3339(socket.token_exp()),
            });
            metrics::counter!("locallife_messages_sent_total", "type" => "welcome").increment(1);
            if Box::pin(send(ws, Message::Text(welcome.into())))
                .await
                .is_ok()
                && Box::pin(write(ws, state, socket, inbox)).await.is_ok()
            {
                let close = serve(ws, state, socket).await;
                // Acks go to Redis without the socket waiting: they are in the inbox
                // before the close is answered (a reconnect does not get them again).
                Box::pin(state.engine().acks_settled(socket.user)).await;
                close
            } else {
                None
            }
        }
        Err(close) => Some(close),
    };
    hub.detach(socket);
    drop(lease.take());
    if let Some(close) = close {
        Box::pin(close_with(ws, close)).await;
    }
}

/// Sends the close frame, then reads until the client answers (or gives up), so the
/// frame is not lost to a reset while unread input is pending.
async fn close_with(ws: &mut WebSocket, close: Close) {
    metrics::counter!("locallife_ws_server_closes_total", "code" => close.code.to_string())
        .increment(1);
    let frame = CloseFrame {
        code: close.code,
        reason: Utf8Bytes::from_static(close.reason),
    };
    send_close(ws, frame).await;
}

/// Sends `frame`, then reads until the client answers with its own (or gives up).
pub(super) async fn send_close(ws: &mut WebSocket, frame: CloseFrame) {
    if send(ws, Message::Close(Some(frame))).await.is_ok() {
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            while let Some(Ok(_)) = ws.recv().await {}
        })
        .await;
    }
}

async fn send(ws: &mut WebSocket, message: Message) -> Result<(), ()> {
    match tokio::time::timeout(WRITE_TIMEOUT, ws.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// What the user's inbox holds, oldest first, to send right after `welcome` and
/// before anything live. Live notifications that arrive meanwhile wait in the socket's
/// queue and are skipped as copies if the replay already sent them: no gap, and no
/// duplicate on this socket. An inbox that cannot be read closes the socket (1013)
/// before `welcome`: a welcomed socket has always been given its inbox.
async fn pending(state: &AppState, socket: &Socket) -> Result<Work, Close> {
    let entries = match state.engine().inbox(socket.user).await {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the inbox; the client will reconnect");
            return Err(TRY_LATER);
        }
    };
    let messages = entries
        .into_iter()
        .map(|e| Outgoing {
            frame: e.frame,
            tracked: Some(crate::hub::socket::Tracked {
                id: e.id,
                expires_ms: e.expires_ms,
                redelivery: false,
                replay: true,
            }),
        })
        .collect();
    Ok(Work {
        messages,
        ..Work::default()
    })
}

/// Writes queued work; `Err` when the client is gone or stopped reading.
async fn write(
    ws: &mut WebSocket,
    state: &AppState,
    socket: &Socket,
    work: Work,
) -> Result<(), ()> {
    let hub = state.hub();
    let ack_timeout = state.config().ws.ack_timeout.as_millis() as u64;
    let written = tokio::time::timeout(WRITE_TIMEOUT, async {
        let mut sent = 0u64;
        let mut live = Vec::new();
        for message in work.messages {
            if let Some(tracked) = message.tracked {
                let due = hub.now_ms() + ack_timeout;
                if !socket.begin_send(tracked, &message.frame, due) {
                    continue;
                }
                if !tracked.redelivery && !tracked.replay {
                    live.push(tracked.id.ms);
                }
            }
            ws.feed(Message::Text(message.frame)).await?;
            sent += 1;
        }
        // After the notifications: its Pong confirms them (protocol 1).
        if let Some(epoch) = socket.confirmation_ping(work.ping) {
            ws.feed(Message::Ping(epoch.to_be_bytes().to_vec().into()))
                .await?;
        }
        ws.flush().await?;
        // Publish (the inbox id's clock) to the moment the frame is on the socket.
        let now = crate::time::unix_ms();
        for published in live {
            metrics::histogram!("locallife_delivery_latency_seconds")
                .record(now.saturating_sub(published) as f64 / 1000.0);
            crate::telemetry::stage_at(crate::telemetry::Stage::Written, published, now);
        }
        if sent > 0 {
            metrics::counter!("locallife_messages_sent_total", "type" => "notification")
                .increment(sent);
        }
        Ok::<(), axum::Error>(())
    })
    .await;
    match written {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// The socket's main loop; returns the close to send, or `None` when the client is gone.
async fn serve(ws: &mut WebSocket, state: &AppState, socket: &Socket) -> Option<Close> {
    let hub = state.hub();
    let mut rate = RateLimit::new();
    let mut ack_rate = RateLimit::with(ACK_BURST, ACK_PER_S);
    let mut strikes: u8 = 0;
    loop {
        tokio::select! {
            work = socket.work() => {
                let close = work.close;
                Box::pin(write(ws, state, socket, work)).await.ok()?;
                if close.is_some() {
                    return close;
                }
            }
            frame = ws.recv() => {
                let frame = match frame {
                    Some(Ok(frame)) => frame,
                    Some(Err(e)) => {
                        return is_capacity_error(&e).then_some(TOO_BIG);
                    }
                    None => return None,
                };
                socket.touch(hub.now_ms());
                let outcome = classify(frame);
                let bucket = match &outcome {
                    Outcome::Message(ClientMessage::Ack { .. }) => Some(&mut ack_rate),
                    // Control frames count too: a Ping flood costs a Pong each.
                    Outcome::Message(_)
                    | Outcome::Refuse(_)
                    | Outcome::Pong(_)
                    | Outcome::Nothing => Some(&mut rate),
                    _ => None,
                };
                if bucket.is_some_and(|b| !b.allow()) {
                    return Some(RATE_LIMITED);
                }
                match outcome {
                    Outcome::Message(message) => {
                        strikes = 0;
                        // Boxed for the same reason: a location update holds a
                        // database future, only while it runs.
                        let reply = match Box::pin(handle(state, socket, message)).await {
                            Ok(reply) => reply,
                            Err(e) => Some(("error", protocol::error(&e))),
                        };
                        if let Some((kind, reply)) = reply {
                            metrics::counter!("locallife_messages_sent_total", "type" => kind).increment(1);
                            Box::pin(send(ws, Message::Text(reply.into()))).await.ok()?;
                        }
                    }
                    Outcome::Refuse(e) => {
                        strikes += 1;
                        if strikes >= MAX_STRIKES {
                            return Some(ABUSE);
                        }
                        metrics::counter!("locallife_messages_sent_total", "type" => "error").increment(1);
                        Box::pin(send(ws, Message::Text(protocol::error(&e).into()))).await.ok()?;
                    }
                    Outcome::Close(close) => return Some(close),
                    Outcome::Pong(payload) => {
                        let delivered = socket.pong(&payload);
                        for id in &delivered {
                            state.receipts().record(Mark::Delivered, *id, socket.user);
                        }
                        if socket.protocol == Protocol::V1 && !delivered.is_empty() {
                            Box::pin(confirm(state, socket, delivered)).await;
                        }
                    }
                    Outcome::Nothing => {}
                    Outcome::Gone => {
                        // The close frame tungstenite queued in answer (RFC 6455
                        // §5.5.1) goes out with a flush: the client sees its own code,
                        // not 1006.
                        let _ = tokio::time::timeout(CLOSE_LINGER, ws.flush()).await;
                        return None;
                    }
                }
            }
        }
    }
}

/// Acts on a valid client message; the reply to send (its type, and the frame), if any.
async fn handle(
    state: &AppState,
    socket: &Socket,
    message: ClientMessage,
) -> Result<Option<(&'static str, String)>, ProtocolError> {
    match message {
        ClientMessage::Ping => Ok(Some(("pong", protocol::pong()))),
        ClientMessage::Pong => Ok(None),
        ClientMessage::Ack { message_id } => {
            // Ids of live-only messages (announcements) are not inbox ids: nothing to do.
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
            state.engine().ack_soon(socket.user, id).await;
            Ok(None)
        }
        ClientMessage::Auth { .. } if socket.protocol != Protocol::V2 => Err(ProtocolError {
            code: "unsupported",
            message: "auth needs protocol 2 (?protocol=2)".into(),
        }),
        ClientMessage::Auth { token } => {
            // The socket still closes (4001) when its current token expires.
            let invalid = || ProtocolError {
                code: "invalid_token",
                message: "not a valid token of this user".into(),
            };
            let claims = match state.tokens().verify(&token) {
                Ok((user, claims)) if user == socket.user => claims,
                _ => return Err(invalid()),
            };
            // A token issued before the user's last logout is refused here as at
            // admission.
            match crate::store::users::roles(state.db(), socket.user).await {
                Ok(Some((_, tokens))) if !claims.revoked_by(&tokens) => {}
                Ok(_) => return Err(invalid()),
                Err(_) => {
                    return Err(ProtocolError {
                        code: "unavailable",
                        message: "cannot check the token now; try again".into(),
                    })
                }
            }
            let exp = socket.extend_token(claims.exp);
            Ok(Some((
                "auth_ok",
                protocol::auth_ok(&crate::time::rfc3339(exp)),
            )))
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

/// Notifications confirmed by a Pong leave the inbox as if acked (on every replica), in
/// one pipelined round of engine calls for the lot.
async fn confirm(state: &AppState, socket: &Socket, ids: Vec<MsgId>) {
    metrics::counter!("locallife_confirmations_total", "protocol" => "1", "kind" => "ping")
        .increment(ids.len() as u64);
    let now = crate::time::unix_ms();
    for id in &ids {
        crate::telemetry::stage_at(crate::telemetry::Stage::Confirmed, id.ms, now);
    }
    let engine = state.engine();
    let results =
        futures::future::join_all(ids.iter().map(|id| engine.ack(socket.user, *id))).await;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        // Still in the inbox: delivered again on the next connect, never on this socket.
        tracing::warn!(error = %e, "confirmation not recorded");
    }
    socket.forget(&ids);
}

fn is_capacity_error(e: &axum::Error) -> bool {
    use std::error::Error as _;
    let mut source = e.source();
    while let Some(err) = source {
        if let Some(ws) = err.downcast_ref::<tungstenite::Error>() {
            return matches!(ws, tungstenite::Error::Capacity(_));
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_map_to_outcomes() {
        assert_eq!(
            classify(Message::Text(r#"{"type":"ping"}"#.into())),
            Outcome::Message(ClientMessage::Ping)
        );
        assert!(matches!(
            classify(Message::Text("{".into())),
            Outcome::Refuse(_)
        ));
        assert_eq!(
            classify(Message::Binary(vec![1, 2].into())),
            Outcome::Close(BINARY)
        );
        assert_eq!(
            classify(Message::Ping(Default::default())),
            Outcome::Nothing
        );
        assert_eq!(classify(Message::Close(None)), Outcome::Gone);
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_allows_a_burst_then_refuses_until_refilled() {
        let mut r = RateLimit::new();
        let allowed = (0..100).filter(|_| r.allow()).count();
        assert_eq!(allowed, RATE_BURST as usize);
        tokio::time::advance(Duration::from_secs(1)).await;
        let refilled = (0..100).filter(|_| r.allow()).count();
        assert_eq!(refilled, RATE_PER_S as usize, "one second refills the rate");
        tokio::time::advance(Duration::from_secs(60)).await;
        let capped = (0..100).filter(|_| r.allow()).count();
        assert_eq!(capped, RATE_BURST as usize, "never more than the burst");
    }

    proptest! {
        /// Any frame a client can send gets a message, an error or a close: never a panic.
        #[test]
        fn arbitrary_frames_never_panic(
            text in proptest::option::of(".{0,200}"),
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let frame = match text {
                Some(t) => Message::Text(t.into()),
                None => Message::Binary(bytes.into()),
            };
            let is_text = matches!(frame, Message::Text(_));
            match classify(frame) {
                Outcome::Message(_) => prop_assert!(is_text),
                Outcome::Refuse(e) => prop_assert!(is_text && !e.code.is_empty()),
                Outcome::Close(c) => prop_assert!(!is_text && c.code == 1003),
                Outcome::Nothing | Outcome::Pong(_) | Outcome::Gone => prop_assert!(false, "data frames always get an answer"),
            }
        }
    }
}
