//! WebSocket clients for tests: [`WsClient`] (tokio-tungstenite, answers Pings like a
//! browser) and [`RawClient`] (hand-rolled frames, never answers a Ping, like a
//! mini-program may not). `TestApp::ws` and its kin connect them.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for any one event before failing.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct WsClient {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The `welcome` message.
    pub welcome: Value,
}

/// A refused handshake: the HTTP status and JSON body.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: Value,
    /// For protocol 2, the close code the refusal came as (the upgrade completes and
    /// closes at once, SPEC §2); `None` for an HTTP answer.
    pub close_code: Option<u16>,
}

impl WsClient {
    pub async fn connect(
        request: tokio_tungstenite::tungstenite::handshake::client::Request,
    ) -> Result<WsClient, Refused> {
        match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("handshake timed out")
        {
            Ok((stream, _)) => {
                let mut client = WsClient {
                    stream,
                    welcome: Value::Null,
                };
                // A protocol-2 refusal: an upgrade closed at once, the HTTP status as a
                // close code and the error body as the reason. Told back as the status
                // it stands for, so tests assert one thing for both protocols.
                let first = tokio::time::timeout(WAIT, client.stream.next())
                    .await
                    .expect("no first message in time");
                let welcome: Value = match first {
                    Some(Ok(Message::Close(Some(frame)))) => {
                        let code = u16::from(frame.code);
                        let status = match code {
                            4001 => 401,
                            4003 => 403,
                            4029 => 429,
                            1013 => 503,
                            other => panic!("closed before welcome with {other}"),
                        };
                        let body = serde_json::from_str(&frame.reason)
                            .expect("the close reason is the JSON error body");
                        return Err(Refused {
                            status,
                            body,
                            close_code: Some(code),
                        });
                    }
                    Some(Ok(Message::Text(t))) => serde_json::from_str(&t).expect("text is JSON"),
                    other => panic!("expected welcome, got {other:?}"),
                };
                assert_eq!(welcome["type"], "welcome", "first message: {welcome}");
                client.welcome = welcome;
                Ok(client)
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp
                    .body()
                    .as_ref()
                    .map(|b| serde_json::from_slice(b).expect("refusal body is JSON"))
                    .unwrap_or(Value::Null);
                Err(Refused {
                    status,
                    body,
                    close_code: None,
                })
            }
            Err(e) => panic!("handshake failed: {e}"),
        }
    }

    /// The next text message as JSON (control frames are skipped; tungstenite answers Pings).
    pub async fn next_json(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("no message in time")
                .expect("socket ended")
                .expect("socket error");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).expect("text is JSON"),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    /// The next `notification` (skipping pongs and other messages).
    pub async fn next_notification(&mut self) -> Value {
        loop {
            let m = self.next_json().await;
            if m["type"] == "notification" {
                return m;
            }
        }
    }

    /// The next notification of `event`, skipping any other (pending ones from earlier
    /// steps, for instance).
    pub async fn next_event(&mut self, event: &str) -> Value {
        loop {
            let n = self.next_notification().await;
            if n["data"]["event"] == event {
                return n;
            }
        }
    }

    /// The next notification if one arrives within `within` (other messages skipped);
    /// `None` on timeout or when the socket ends.
    pub async fn notification_within(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??
                .ok()?;
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).ok()?;
                if v["type"] == "notification" {
                    return Some(v);
                }
            }
        }
    }

    /// Whether a text message arrives within `within`.
    pub async fn nothing_within(&mut self, within: Duration) -> bool {
        loop {
            match tokio::time::timeout(within, self.stream.next()).await {
                Err(_) => return true,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(_) => return false,
            }
        }
    }

    pub async fn send_json(&mut self, v: Value) {
        self.stream
            .send(Message::text(v.to_string()))
            .await
            .unwrap();
    }

    /// Acks a notification.
    pub async fn ack(&mut self, notification: &Value) {
        let id = notification["data"]["message_id"].clone();
        self.send_json(serde_json::json!({"type": "ack", "data": {"message_id": id}}))
            .await;
    }

    pub async fn send_text(&mut self, t: &str) {
        self.stream.send(Message::text(t.to_owned())).await.unwrap();
    }

    /// Sends an app-level ping and waits for the pong: proof the socket is alive and
    /// that everything sent before has been handled.
    pub async fn roundtrip(&mut self) {
        self.send_json(serde_json::json!({"type": "ping", "data": {}}))
            .await;
        loop {
            if self.next_json().await["type"] == "pong" {
                return;
            }
        }
    }

    /// Waits for the server's close frame; its code.
    pub async fn closed_with(&mut self) -> u16 {
        loop {
            match tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("no close in time")
            {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Close(None))) => return u16::from(CloseCode::Status),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("socket error before a close frame: {e}"),
                None => panic!("socket ended without a close frame"),
            }
        }
    }
}

/// A WebSocket client that speaks frames by hand and never answers Ping frames.
pub struct RawClient {
    tcp: TcpStream,
    buf: Vec<u8>,
}

/// One frame as received: opcode and payload.
#[derive(Debug)]
pub struct Frame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawClient {
    /// Connects to the replica at `address` (`http://host:port`) with `token`.
    pub async fn connect(address: &str, token: &str) -> RawClient {
        let addr = address.trim_start_matches("http://").to_owned();
        let mut tcp = TcpStream::connect(&addr).await.unwrap();
        let request = format!(
            "GET /v1/ws?token={token} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        let end = loop {
            let n = tokio::time::timeout(WAIT, tcp.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let mut client = RawClient {
            tcp,
            buf: buf[end..].to_vec(),
        };
        let welcome = client.next_frame().await.expect("welcome");
        assert_eq!(welcome.opcode, 1);
        client
    }

    /// Sends a masked text frame (clients must mask).
    pub async fn send_text(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        assert!(payload.len() < 126);
        frame.push(0x80 | payload.len() as u8);
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tcp.write_all(&frame).await.unwrap();
    }

    /// The next frame, or `None` when the connection ends.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, self.tcp.read(&mut chunk))
                .await
                .expect("no frame in time")
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Frames until a close frame; (its code, how many Pings came before it).
    pub async fn until_close(&mut self) -> (u16, usize) {
        let mut pings = 0;
        while let Some(frame) = self.next_frame().await {
            match frame.opcode {
                0x8 => {
                    let code = u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
                    return (code, pings);
                }
                0x9 => pings += 1,
                _ => {}
            }
        }
        panic!("connection ended without a close frame");
    }
}

fn parse_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let (len, mut at) = match buf[1] & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => return None,
        n => (n as usize, 2),
    };
    if buf[1] & 0x80 != 0 {
        at += 4; // servers do not mask, but be correct
    }
    if buf.len() < at + len {
        return None;
    }
    Some((
        Frame {
            opcode,
            payload: buf[at..at + len].to_vec(),
        },
        at + len,
    ))
}
