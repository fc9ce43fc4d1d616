//! The clients: which server and users a scenario takes (`Common`, the options every
//! scenario shares), opening a socket until the server says it is live, reading its
//! frames (heartbeats, notifications, acks), and what they all saw (`Tally`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use futures::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::figures::now_us;
use crate::users::{User, Users};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Proto {
    Locallife,
    Socketio,
}

#[derive(Args, Clone)]
pub struct Common {
    #[arg(long, value_enum)]
    pub proto: Proto,
    /// host:port of the server the clients connect to.
    #[arg(long)]
    pub server: SocketAddr,
    /// The users file `loadgen seed` wrote (Socket.IO: user ids only are used).
    #[arg(long)]
    pub users: std::path::PathBuf,
    /// First user (index in the file) and how many.
    #[arg(long, default_value_t = 0)]
    pub from: usize,
    #[arg(long)]
    pub count: usize,
    /// Source addresses to spread connections over (comma-separated).
    #[arg(long, default_value = "127.0.0.1")]
    pub src: String,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Seconds a socket keeps trying to open (a refused or failed attempt waits 100 to
    /// 500 ms, as a client's reconnect does), for a server that is restarting; 0 tries
    /// once.
    #[arg(long, default_value_t = 0)]
    pub retry_secs: u64,
}

/// What the clients of one process saw.
#[derive(Default)]
pub struct Tally {
    pub connected: AtomicUsize,
    pub received: AtomicU64,
    pub closed: AtomicUsize,
    pub latencies_us: Mutex<Vec<u64>>,
    /// Each notification's publish time and latency, in µs: latency by when it was
    /// published (the phases of `overload`).
    pub sent_latency_us: Mutex<Vec<(u64, u64)>>,
    pub ids: Mutex<HashSet<String>>,
    /// Per round of a broadcast: how many sockets have it.
    pub round_hits: Mutex<std::collections::HashMap<String, usize>>,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn open(
    common: &Common,
    server: SocketAddr,
    src: std::net::IpAddr,
    user: &User,
) -> anyhow::Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(src, 0))?;
    let tcp = socket.connect(server).await?;
    tcp.set_nodelay(true)?;
    let url = match common.proto {
        // Protocol 2: this client acks (as the SDK does).
        Proto::Locallife => format!("ws://{server}/v1/ws?token={}&protocol=2", user.token),
        Proto::Socketio => format!("ws://{server}/socket.io/?EIO=4&transport=websocket"),
    };
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await?;
    // Wait for the server to say the socket is live.
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .context("no welcome")?
            .context("closed before welcome")??;
        let Message::Text(text) = frame else { continue };
        match common.proto {
            Proto::Locallife if text.contains("\"welcome\"") => return Ok(ws),
            Proto::Socketio if text.starts_with('0') => {
                let auth = json!({"user": user.user_id.to_string(), "role": "rider"});
                ws.send(Message::text(format!("40{auth}"))).await?;
            }
            Proto::Socketio if text.starts_with("40") => return Ok(ws),
            _ => {}
        }
    }
}

/// Reads a client's frames: answers heartbeats, records notifications, acks them
/// unless `hold_first` says to hold the first one back (never acked on this socket,
/// nor its redeliveries). Returns when the socket ends.
async fn serve(mut ws: Ws, proto: Proto, tally: Arc<Tally>, hold_first: bool) {
    let mut held: Option<String> = None;
    while let Some(Ok(frame)) = ws.next().await {
        let Message::Text(text) = frame else { continue };
        let (id, sent_at, ack) = match proto {
            Proto::Locallife => {
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if v["type"] != "notification" {
                    continue;
                }
                let d = &v["data"];
                // Message ids are unique per user; the publisher's label (in
                // `content`) is unique across the run.
                let id = d["content"].as_str().unwrap_or_default().to_owned();
                let ack = (d["requires_ack"] == true).then(|| {
                    json!({"type": "ack", "data": {"message_id": d["message_id"]}}).to_string()
                });
                (id, d["sent_at"].as_u64(), ack)
            }
            Proto::Socketio => {
                if text.as_str() == "2" {
                    let _ = ws.send(Message::text("3")).await;
                    continue;
                }
                let Some(body) = text.strip_prefix("42") else {
                    continue;
                };
                let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                if v[0] != "notification" {
                    continue;
                }
                let d = &v[1];
                let id = d["id"].as_str().unwrap_or_default().to_owned();
                let ack = Some(format!("42{}", json!(["ack", {"id": id}])));
                (id, d["sent_at"].as_u64(), ack)
            }
        };
        let now = now_us();
        tally.received.fetch_add(1, Ordering::Relaxed);
        if let Some(sent) = sent_at {
            let latency = now.saturating_sub(sent);
            tally
                .latencies_us
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(latency);
            tally
                .sent_latency_us
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((sent, latency));
        }
        *tally
            .round_hits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.clone())
            .or_default() += 1;
        let first = hold_first && held.is_none();
        // A redelivery of the held one (after WS_ACK_TIMEOUT) is held too.
        let hold = first || held.as_ref() == Some(&id);
        if first {
            held = Some(id.clone());
        }
        tally
            .ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        if hold {
            continue;
        }
        if let Some(ack) = ack {
            if ws.send(Message::text(ack)).await.is_err() {
                break;
            }
        }
    }
    tally.closed.fetch_add(1, Ordering::Relaxed);
}

pub fn load_users(common: &Common) -> anyhow::Result<(String, Vec<User>)> {
    let text = std::fs::read_to_string(&common.users).context("cannot read --users")?;
    let users: Users = serde_json::from_str(&text).context("--users is not a users file")?;
    let end = (common.from + common.count).min(users.riders.len());
    anyhow::ensure!(common.from < end, "not enough users in the file");
    Ok((users.platform, users.riders[common.from..end].to_vec()))
}

/// Opens every client; returns the seconds it took.
pub async fn connect_all(
    common: &Common,
    server: SocketAddr,
    users: &[User],
    tally: &Arc<Tally>,
    hold_first: bool,
) -> anyhow::Result<f64> {
    let srcs: Vec<std::net::IpAddr> = common
        .src
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()
        .context("--src")?;
    let gate = Arc::new(Semaphore::new(common.concurrency));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, user) in users.iter().cloned().enumerate() {
        let permit = gate.clone().acquire_owned().await?;
        let (common, tally, src) = (common.clone(), tally.clone(), srcs[i % srcs.len()]);
        tasks.push(tokio::spawn(async move {
            let until = Instant::now() + Duration::from_secs(common.retry_secs);
            let ws = loop {
                match open(&common, server, src, &user).await {
                    Err(_) if Instant::now() < until => {
                        let wait = rand::thread_rng().gen_range(100..500);
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                    }
                    done => break done,
                }
            };
            drop(permit);
            match ws {
                Ok(ws) => {
                    tally.connected.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(serve(ws, common.proto, tally, hold_first));
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }));
    }
    let mut failed = 0;
    // What went wrong, by kind (the first words of each error, with a count).
    let mut why: std::collections::BTreeMap<String, usize> = Default::default();
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failed += 1;
                *why.entry(format!("{e:#}").chars().take(120).collect())
                    .or_default() += 1;
            }
            Err(e) => {
                failed += 1;
                *why.entry(e.to_string()).or_default() += 1;
            }
        }
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} sockets failed to connect: {why:?}",
        users.len()
    );
    Ok(started.elapsed().as_secs_f64())
}
