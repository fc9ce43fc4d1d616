//! One socket's life after the upgrade: attach to the hub, `welcome`, then a single
//! task that both writes what the hub queues and reads what the client sends. What the
//! client's messages do is [`super::commands`]; the rate limits [`super::rate`]; the
//! inbox sent after `welcome` [`super::replay`].
//!
//! One task per socket, no split: a second task, the split lock and a channel between
//! them cost ~3 KB per idle socket. Heavy one-off work (token, admission queries)
//! happened before the upgrade, so it is not part of this long-lived future.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::SinkExt;

use super::commands;
use super::lease::Lease;
use super::protocol::{self, ClientMessage, ProtocolError};
use super::rate::RateLimit;
use super::replay;
use crate::engine::wire;
use crate::hub::{Close, Socket, Work};
use crate::state::AppState;

/// A write that cannot finish in this long means the client stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the client's answer to our close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Bad frames in a row before the client is closed for abuse (1008).
const MAX_STRIKES: u8 = 10;

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
        Ok(()) => Box::pin(replay::pending(state, socket)).await,
        Err(e) => {
            tracing::warn!(error = %e, "socket could not be attached");
            Err(INTERNAL)
        }
    };
    let close = match attached {
        Ok(inbox) => {
            let welcome = wire::welcome(wire::Welcome {
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
        // Publish (the inbox id's clock) to the moment the frame is on the socket: the
        // notification's `written` stage, recorded once (SPEC's delivery latency).
        let now = crate::time::unix_ms();
        let histogram = metrics::histogram!("locallife_delivery_latency_seconds");
        for published in live {
            histogram.record(now.saturating_sub(published) as f64 / 1000.0);
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
    let mut rate = RateLimit::messages();
    let mut ack_rate = RateLimit::acks();
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
                    // Confirmations: an ack, or the Pong that answers our Ping.
                    Outcome::Message(ClientMessage::Ack { .. }) | Outcome::Pong(_) => {
                        Some(&mut ack_rate)
                    }
                    // The client's Pings count too: a Ping flood costs a Pong each.
                    Outcome::Message(_) | Outcome::Refuse(_) | Outcome::Nothing => {
                        Some(&mut rate)
                    }
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
                        let reply = match Box::pin(commands::handle(state, socket, message)).await {
                            Ok(reply) => reply,
                            Err(e) => Some(("error", wire::error(e.code, &e.message))),
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
                        Box::pin(send(ws, Message::Text(wire::error(e.code, &e.message).into()))).await.ok()?;
                    }
                    Outcome::Close(close) => return Some(close),
                    Outcome::Pong(payload) => {
                        Box::pin(commands::pong(state, socket, &payload)).await;
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
