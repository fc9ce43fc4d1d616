//! The benchmark's floor (issue 33): the smallest correct fan-out a Rust engineer would
//! write for "one write per socket per message", so the benchmark can say how far a
//! system is from what this kernel and these libraries cost at the least.
//!
//! - tokio + tungstenite: one task per socket, holding the socket itself (no split, no
//!   queue of its own) and a receiver of one `tokio::sync::broadcast` channel;
//! - one shared frame: a publish serializes the notification once, and every socket
//!   writes the same bytes (`Utf8Bytes` clones are reference counts);
//! - no Redis, no database, no authentication, no acks, no inbox: nothing a real
//!   service needs beyond the write itself.
//!
//! It speaks just enough of locallife's protocol for `loadgen broadcast --proto
//! locallife`: `GET /v1/ws?...` upgrades (any token) and sends `welcome`;
//! `POST /v1/platform/notifications` with a role broadcast's body sends one
//! `notification` frame to every socket and answers 202; `GET /readyz` answers 200.
//! Listens on LISTEN_ADDR (default 127.0.0.1:8080); SIGTERM or SIGINT stops it.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Frames a slow socket may fall behind by before it skips (it is told nothing: the
/// floor measures writes, not delivery guarantees).
const BACKLOG: usize = 1024;
/// As locallife's socket read buffer.
const READ_BUFFER: usize = 128;

struct Floor {
    frames: broadcast::Sender<Message>,
    published: AtomicU64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let listener = TcpListener::bind(&addr).await?;
    let floor = Arc::new(Floor {
        frames: broadcast::channel(BACKLOG).0,
        published: AtomicU64::new(0),
    });
    eprintln!("floor: listening on {}", listener.local_addr()?);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                // A failed accept (out of files) is waited out, not fatal.
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, floor.clone()));
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    eprintln!(
        "floor: stopping after {} publishes",
        floor.published.load(Ordering::Relaxed)
    );
    Ok(())
}

/// One connection: a WebSocket upgrade goes to tungstenite on the bare TCP stream;
/// anything else is a plain HTTP request for hyper.
async fn connection(stream: TcpStream, floor: Arc<Floor>) {
    const UPGRADE: &[u8] = b"GET /v1/ws";
    let mut head = [0u8; UPGRADE.len()];
    let mut seen = 0;
    for _ in 0..100 {
        match stream.peek(&mut head).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen = n,
        }
        if seen == head.len() || !UPGRADE.starts_with(&head[..seen]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    if head[..seen] == *UPGRADE {
        let frames = floor.frames.subscribe();
        socket(stream, frames).await;
    } else {
        let service = hyper::service::service_fn(move |req| http(req, floor.clone()));
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }
}

/// One socket's task: writes each published frame, reads (and so answers pings, and
/// notices the close).
async fn socket(stream: TcpStream, mut frames: broadcast::Receiver<Message>) {
    // tungstenite zero-fills its whole read buffer on every read attempt (128 KiB by
    // default: two thirds of this process's CPU went to memset). The floor takes the
    // same buffer sizes as locallife (src/ws/mod.rs), so that what differs is the rest.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let welcome = json!({"type": "welcome", "data": {"protocol": 2}}).to_string();
    if ws.send(Message::text(welcome)).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Ok(frame) => {
                    if ws.send(frame).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            read = ws.next() => match read {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn http(
    req: Request<hyper::body::Incoming>,
    floor: Arc<Floor>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let answer = |status: StatusCode, body: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = status;
        Ok(response)
    };
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/readyz") | ("GET", "/healthz") => answer(StatusCode::OK, "ready"),
        ("POST", "/v1/platform/notifications") => {
            let Ok(body) = req.into_body().collect().await else {
                return answer(StatusCode::BAD_REQUEST, "unreadable body");
            };
            let Ok(notice) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
                return answer(StatusCode::UNPROCESSABLE_ENTITY, "not JSON");
            };
            let n = floor.published.fetch_add(1, Ordering::Relaxed);
            // The frame a role broadcast makes, serialized once for every socket.
            let frame = json!({
                "type": "notification",
                "data": {
                    "message_id": format!("floor-{n}"),
                    "event": "platform.notice",
                    "title": notice["title"],
                    "content": notice["content"],
                    "data": notice["data"],
                    "requires_ack": false,
                    "timestamp": "1970-01-01T00:00:00Z",
                },
            })
            .to_string();
            // No socket yet is no error: there is no one to tell.
            let _ = floor.frames.send(Message::Text(Utf8Bytes::from(frame)));
            answer(StatusCode::ACCEPTED, "{}")
        }
        _ => answer(StatusCode::NOT_FOUND, "not found"),
    }
}
