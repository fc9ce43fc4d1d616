//! `loadgen`: many real WebSocket clients against locallife or the Socket.IO peer, for
//! the benchmarks `loadtest/bench.sh` runs. One process stays under the open-file limit
//! (run several, with different `--src` addresses, for more sockets); every scenario
//! prints one JSON object of figures on stdout.
//!
//! Protocols: `locallife` (`/v1/ws?token=`, `welcome`, `notification`, `ack`) and
//! `socketio` (Engine.IO 4 over a raw WebSocket: `0{..}` open, `40{auth}` connect,
//! `42["notification",{..}]`, `42["ack",{"id":..}]`, `2`/`3` heartbeat).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Proto {
    Locallife,
    Socketio,
}

#[derive(Args, Clone)]
struct Common {
    #[arg(long, value_enum)]
    proto: Proto,
    /// host:port of the server the clients connect to.
    #[arg(long)]
    server: SocketAddr,
    /// The users file `loadgen seed` wrote (Socket.IO: user ids only are used).
    #[arg(long)]
    users: std::path::PathBuf,
    /// First user (index in the file) and how many.
    #[arg(long, default_value_t = 0)]
    from: usize,
    #[arg(long)]
    count: usize,
    /// Source addresses to spread connections over (comma-separated).
    #[arg(long, default_value = "127.0.0.1")]
    src: String,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Create approved online riders and a platform user; write their tokens.
    Seed {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[arg(long, env = "JWT_SECRET")]
        jwt_secret: String,
        #[arg(long)]
        riders: usize,
        /// Approved merchants, each with one admin (for the merchant flow).
        #[arg(long, default_value_t = 20)]
        merchants: usize,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Open sockets, report the connect rate, hold them idle.
    Connect {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 10)]
        hold_secs: u64,
    },
    /// Publish personal notifications on another replica; count acked deliveries.
    Personal {
        #[command(flatten)]
        common: Common,
        /// Base URL of the replica that publishes (http://host:port).
        #[arg(long)]
        publish: String,
        #[arg(long, default_value_t = 5)]
        duration_secs: u64,
        /// Notifications per second; 0 publishes as fast as `publishers` allow.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 64)]
        publishers: usize,
        /// Notifications per publish request (1: the single-notification endpoint;
        /// more: the batch endpoint, `/publish-batch` on the peer).
        #[arg(long, default_value_t = 1)]
        batch: usize,
    },
    /// One role announcement to every socket, several rounds.
    Broadcast {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        publish: String,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// Unacked notifications, a killed replica, reconnect elsewhere, redelivery.
    Storm {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        publish: String,
        /// The replica to kill (SIGKILL) once every socket holds an unacked notification.
        #[arg(long, required_unless_present = "go_file")]
        kill_pid: Option<u32>,
        /// For a storm spread over several processes: instead of killing, print
        /// `{"event":"ready"}` once every socket holds its notification, then wait for
        /// this file to appear; it holds the kill's time (unix microseconds), written by
        /// whoever killed the replica.
        #[arg(long)]
        go_file: Option<std::path::PathBuf>,
        /// Where clients reconnect.
        #[arg(long)]
        fallback: SocketAddr,
    },
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Users {
    platform: String,
    riders: Vec<User>,
    #[serde(default)]
    merchants: Vec<MerchantAdmin>,
}

#[derive(serde::Deserialize, serde::Serialize, Clone)]
struct MerchantAdmin {
    user_id: i64,
    merchant_id: i64,
    token: String,
}

#[derive(serde::Deserialize, serde::Serialize, Clone)]
struct User {
    user_id: i64,
    token: String,
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// What the clients of one process saw.
#[derive(Default)]
struct Tally {
    connected: AtomicUsize,
    received: AtomicU64,
    closed: AtomicUsize,
    latencies_us: Mutex<Vec<u64>>,
    ids: Mutex<HashSet<String>>,
    /// Per round of a broadcast: how many sockets have it.
    round_hits: Mutex<std::collections::HashMap<String, usize>>,
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
/// unless `ack_from` says to hold the first one back. Returns when the socket ends.
async fn serve(mut ws: Ws, proto: Proto, tally: Arc<Tally>, mut hold_first: bool) {
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
            tally
                .latencies_us
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(now.saturating_sub(sent));
        }
        *tally
            .round_hits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.clone())
            .or_default() += 1;
        tally
            .ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        if hold_first {
            hold_first = false;
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

fn load_users(common: &Common) -> anyhow::Result<(String, Vec<User>)> {
    let text = std::fs::read_to_string(&common.users).context("cannot read --users")?;
    let users: Users = serde_json::from_str(&text).context("--users is not a users file")?;
    let end = (common.from + common.count).min(users.riders.len());
    anyhow::ensure!(common.from < end, "not enough users in the file");
    Ok((users.platform, users.riders[common.from..end].to_vec()))
}

/// Opens every client; returns the seconds it took.
async fn connect_all(
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
            let ws = open(&common, server, src, &user).await;
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
    for t in tasks {
        if !matches!(t.await, Ok(Ok(()))) {
            failed += 1;
        }
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} sockets failed to connect",
        users.len()
    );
    Ok(started.elapsed().as_secs_f64())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Publishes one notification to `user` (or a role broadcast when `user` is None).
async fn publish(
    http: &reqwest::Client,
    proto: Proto,
    base: &str,
    platform: &str,
    user: Option<i64>,
    id: &str,
) -> bool {
    let sent_at = now_us();
    let req = match (proto, user) {
        (Proto::Locallife, Some(u)) => http
            .post(format!("{base}/v1/platform/notifications"))
            .bearer_auth(platform)
            .json(&json!({"user_id": u, "title": "bench", "content": id, "data": {"sent_at": sent_at}})),
        (Proto::Locallife, None) => http
            .post(format!("{base}/v1/platform/notifications"))
            .bearer_auth(platform)
            .json(&json!({"role": "rider", "title": "bench", "content": id, "data": {"sent_at": sent_at, "round": id}})),
        (Proto::Socketio, Some(u)) => http
            .post(format!("{base}/publish"))
            .json(&json!({"user": u.to_string(), "id": id, "sent_at": sent_at})),
        (Proto::Socketio, None) => http
            .post(format!("{base}/broadcast"))
            .json(&json!({"role": "rider", "id": id, "sent_at": sent_at})),
    };
    matches!(req.send().await, Ok(r) if r.status().is_success())
}

/// Publishes one notification to each of `users` in one request (the batch endpoint).
async fn publish_batch(
    http: &reqwest::Client,
    proto: Proto,
    base: &str,
    platform: &str,
    users: &[(i64, String)],
) -> bool {
    let sent_at = now_us();
    let req = match proto {
        Proto::Locallife => {
            let items: Vec<Value> = users
                .iter()
                .map(|(u, id)| json!({"user_id": u, "title": "bench", "content": id, "data": {"sent_at": sent_at}}))
                .collect();
            http.post(format!("{base}/v1/platform/notifications/batch"))
                .bearer_auth(platform)
                .json(&json!({ "notifications": items }))
        }
        Proto::Socketio => {
            let items: Vec<Value> = users
                .iter()
                .map(|(u, id)| json!({"user": u.to_string(), "id": id, "sent_at": sent_at}))
                .collect();
            http.post(format!("{base}/publish-batch"))
                .json(&json!({ "items": items }))
        }
    };
    matches!(req.send().await, Ok(r) if r.status().is_success())
}

async fn wait_until(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    done()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let out = match cli.command {
        Command::Seed {
            database_url,
            jwt_secret,
            riders,
            merchants,
            out,
        } => seed(&database_url, &jwt_secret, riders, merchants, &out).await?,
        Command::Connect { common, hold_secs } => {
            let (_, users) = load_users(&common)?;
            let tally = Arc::new(Tally::default());
            let secs = connect_all(&common, common.server, &users, &tally, false).await?;
            println!("{}", json!({"event": "connected", "sockets": users.len()}));
            tokio::time::sleep(Duration::from_secs(hold_secs)).await;
            json!({
                "sockets": users.len(),
                "connect_s": secs,
                "connect_rate_per_s": users.len() as f64 / secs,
                "closed_while_idle": tally.closed.load(Ordering::Relaxed),
            })
        }
        Command::Personal {
            common,
            publish: base,
            duration_secs,
            rate,
            publishers,
            batch,
        } => {
            let batch = batch.max(1) as u64;
            let (platform, users) = load_users(&common)?;
            let tally = Arc::new(Tally::default());
            connect_all(&common, common.server, &users, &tally, false).await?;
            // The measured part starts here (bench.sh samples server CPU on this line).
            println!("{}", json!({"event": "connected", "sockets": users.len()}));
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(publishers)
                .build()?;
            let published = Arc::new(AtomicU64::new(0));
            let failed = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            let stop = started + Duration::from_secs(duration_secs);
            let next = Arc::new(AtomicU64::new(0));
            let mut workers = Vec::new();
            for _ in 0..publishers {
                let (http, base, platform, users) =
                    (http.clone(), base.clone(), platform.clone(), users.clone());
                let (published, failed, next) = (published.clone(), failed.clone(), next.clone());
                let proto = common.proto;
                workers.push(tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(batch, Ordering::Relaxed);
                        if rate > 0 {
                            let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
                            tokio::time::sleep_until(due.into()).await;
                        }
                        if Instant::now() >= stop {
                            return;
                        }
                        let ok = if batch == 1 {
                            let user = &users[n as usize % users.len()];
                            publish(
                                &http,
                                proto,
                                &base,
                                &platform,
                                Some(user.user_id),
                                &format!("p{n}"),
                            )
                            .await
                        } else {
                            let items: Vec<(i64, String)> = (n..n + batch)
                                .map(|k| (users[k as usize % users.len()].user_id, format!("p{k}")))
                                .collect();
                            publish_batch(&http, proto, &base, &platform, &items).await
                        };
                        if ok {
                            published.fetch_add(batch, Ordering::Relaxed);
                        } else {
                            failed.fetch_add(batch, Ordering::Relaxed);
                        }
                    }
                }));
            }
            for w in workers {
                let _ = w.await;
            }
            let published = published.load(Ordering::Relaxed);
            wait_until(Duration::from_secs(10), || {
                tally
                    .ids
                    .lock()
                    .map(|ids| ids.len() as u64 >= published)
                    .unwrap_or(true)
            })
            .await;
            let elapsed = started.elapsed().as_secs_f64();
            let unique = tally.ids.lock().map(|ids| ids.len() as u64).unwrap_or(0);
            let mut lat = tally
                .latencies_us
                .lock()
                .map(|l| l.clone())
                .unwrap_or_default();
            lat.sort_unstable();
            json!({
                "published": published,
                "publish_failed": failed.load(Ordering::Relaxed),
                "delivered_unique": unique,
                "delivered_total": tally.received.load(Ordering::Relaxed),
                "acked_per_s": unique as f64 / elapsed,
                "latency_p50_ms": percentile(&lat, 0.50),
                "latency_p99_ms": percentile(&lat, 0.99),
                "lost": published.saturating_sub(unique),
            })
        }
        Command::Broadcast {
            common,
            publish: base,
            rounds,
        } => {
            let (platform, users) = load_users(&common)?;
            let tally = Arc::new(Tally::default());
            connect_all(&common, common.server, &users, &tally, false).await?;
            println!("{}", json!({"event": "connected", "sockets": users.len()}));
            let http = reqwest::Client::new();
            let mut total = Duration::ZERO;
            let mut complete = 0;
            for round in 0..rounds {
                let id = format!("b{round}-{}", now_us());
                let started = Instant::now();
                anyhow::ensure!(
                    publish(&http, common.proto, &base, &platform, None, &id).await,
                    "broadcast refused"
                );
                // Announcements carry their round in `content` (ours) or `id` (theirs).
                let done = wait_until(Duration::from_secs(30), || {
                    let hits = tally.round_hits.lock().unwrap_or_else(|e| e.into_inner());
                    hits.iter()
                        .filter(|(k, _)| common.proto == Proto::Socketio && **k == id)
                        .map(|(_, v)| *v)
                        .sum::<usize>()
                        >= users.len()
                        || tally.received.load(Ordering::Relaxed) as usize
                            >= users.len() * (round + 1)
                })
                .await;
                total += started.elapsed();
                if done {
                    complete += 1;
                }
            }
            json!({
                "sockets": users.len(),
                "rounds": rounds,
                "rounds_complete": complete,
                "broadcast_deliveries_per_s": (users.len() * rounds) as f64 / total.as_secs_f64(),
                "deliveries": tally.received.load(Ordering::Relaxed),
            })
        }
        Command::Storm {
            common,
            publish: base,
            kill_pid,
            go_file,
            fallback,
        } => {
            let (platform, users) = load_users(&common)?;
            let tally = Arc::new(Tally::default());
            connect_all(&common, common.server, &users, &tally, true).await?;
            let http = reqwest::Client::new();
            let gate = Arc::new(Semaphore::new(64));
            let mut sends = Vec::new();
            for (i, user) in users.iter().enumerate() {
                let permit = gate.clone().acquire_owned().await?;
                let (http, base, platform, uid) =
                    (http.clone(), base.clone(), platform.clone(), user.user_id);
                let proto = common.proto;
                sends.push(tokio::spawn(async move {
                    let ok =
                        publish(&http, proto, &base, &platform, Some(uid), &format!("s{i}")).await;
                    drop(permit);
                    ok
                }));
            }
            let mut published = 0u64;
            for s in sends {
                if matches!(s.await, Ok(true)) {
                    published += 1;
                }
            }
            // Every socket holds its notification, unacked.
            wait_until(Duration::from_secs(30), || {
                tally.received.load(Ordering::Relaxed) >= published
            })
            .await;
            let before: HashSet<String> = tally.ids.lock().map(|i| i.clone()).unwrap_or_default();
            let killed = match (kill_pid, go_file) {
                (Some(pid), _) => {
                    let killed = Instant::now();
                    std::process::Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status()
                        .context("kill")?;
                    killed
                }
                (None, Some(go)) => {
                    println!("{}", json!({"event": "ready", "unacked": published}));
                    let killed_us = loop {
                        if let Some(us) = std::fs::read_to_string(&go)
                            .ok()
                            .and_then(|t| t.trim().parse::<u64>().ok())
                        {
                            break us;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    };
                    let ago = Duration::from_micros(now_us().saturating_sub(killed_us));
                    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
                }
                (None, None) => anyhow::bail!("give --kill-pid or --go-file"),
            };
            wait_until(Duration::from_secs(30), || {
                tally.closed.load(Ordering::Relaxed) >= users.len()
            })
            .await;
            // Everyone reconnects to the fallback at once: the storm.
            let again = Arc::new(Tally::default());
            let reconnect = connect_all(&common, fallback, &users, &again, false).await;
            let reconnect_s = killed.elapsed().as_secs_f64();
            let reconnected = again.connected.load(Ordering::Relaxed);
            let redelivered = |t: &Tally| {
                t.ids
                    .lock()
                    .map(|ids| ids.intersection(&before).count())
                    .unwrap_or(0)
            };
            wait_until(Duration::from_secs(30), || {
                redelivered(&again) >= before.len()
            })
            .await;
            let storm_s = killed.elapsed().as_secs_f64();
            let redelivered = redelivered(&again) as u64;
            json!({
                "sockets": users.len(),
                "reconnected": reconnected,
                "reconnect_error": reconnect.err().map(|e| e.to_string()),
                "unacked_before": before.len(),
                "redelivered": redelivered,
                "reconnect_s": reconnect_s,
                "reconnect_storm_s": storm_s,
                "lost": (before.len() as u64).saturating_sub(redelivered),
            })
        }
    };
    println!("{out}");
    Ok(())
}

/// Creates `riders` approved online riders (near one point) and a platform user in one
/// round of SQL, and writes `{platform, riders: [{user_id, token}]}`.
async fn seed(
    database_url: &str,
    jwt_secret: &str,
    riders: usize,
    merchants: usize,
    out: &std::path::Path,
) -> anyhow::Result<Value> {
    let (client, conn) = tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let run = format!("{:x}", rand::random::<u32>());
    let platform: i64 = client
        .query_one(
            "WITH u AS (INSERT INTO users (openid) VALUES ($1) RETURNING id)
             INSERT INTO user_roles (user_id, role) SELECT id, 'platform' FROM u RETURNING user_id",
            &[&format!("bench-platform-{run}")],
        )
        .await?
        .get(0);
    let ids: Vec<i64> = client
        .query(
            "WITH u AS (
                INSERT INTO users (openid)
                SELECT 'bench-' || $1::text || '-' || g FROM generate_series(1, $2::int) g
                RETURNING id
             ), r AS (INSERT INTO user_roles (user_id, role) SELECT id, 'rider' FROM u)
             INSERT INTO riders (user_id, name, phone, status, approved_at, online, last_lat, last_lng)
             SELECT id, 'bench', '13800000000', 'approved', now(), true, 31.2304, 121.4737 FROM u
             RETURNING user_id",
            &[&run, &(riders as i32)],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let admins: Vec<(i64, i64)> = client
        .query(
            "WITH u AS (
                INSERT INTO users (openid)
                SELECT 'bench-m-' || $1::text || '-' || g FROM generate_series(1, $2::int) g
                RETURNING id
             ), r AS (INSERT INTO user_roles (user_id, role) SELECT id, 'merchant' FROM u),
             m AS (
                INSERT INTO merchants (name, address, lat, lng, status, approved_at, created_by)
                SELECT 'bench shop', 'bench', 31.2304, 121.4737, 'approved', now(), id FROM u
                RETURNING id, created_by
             )
             INSERT INTO merchant_admins (merchant_id, user_id) SELECT id, created_by FROM m
             RETURNING user_id, merchant_id",
            &[&run, &(merchants as i32)],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let tokens = locallife::auth::Tokens::new(&locallife::config::JwtConfig {
        secret: secrecy::SecretString::from(jwt_secret.to_owned()),
        issuer: std::env::var("JWT_ISSUER").unwrap_or_else(|_| "locallife".into()),
        audience: std::env::var("JWT_AUDIENCE").unwrap_or_else(|_| "locallife".into()),
        access_token_ttl: Duration::from_secs(6 * 3600),
    });
    let users = Users {
        platform: tokens.mint(locallife::domain::UserId(platform)).token,
        riders: ids
            .iter()
            .map(|id| User {
                user_id: *id,
                token: tokens.mint(locallife::domain::UserId(*id)).token,
            })
            .collect(),
        merchants: admins
            .iter()
            .map(|(user, merchant)| MerchantAdmin {
                user_id: *user,
                merchant_id: *merchant,
                token: tokens.mint(locallife::domain::UserId(*user)).token,
            })
            .collect(),
    };
    std::fs::write(out, serde_json::to_vec(&users)?)?;
    Ok(json!({"riders": ids.len(), "merchants": admins.len(), "platform_user": platform}))
}
