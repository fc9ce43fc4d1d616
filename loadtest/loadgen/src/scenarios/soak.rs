//! `loadgen soak`: steady mixed load on several replicas for a fixed time, for
//! `loadtest/soak.sh`. Riders and merchant admins keep sockets that come and go (each
//! connects to any replica, receives and acks for a while, disconnects, and comes back
//! a moment later); platform notifications are published at a steady rate through any
//! replica; consumers place orders that are paid through WeChat Pay notifications
//! signed with the keys `loadgen rig pay-keys` wrote (sent again, the same transaction
//! signed afresh, as WeChat Pay does, until one is answered 2xx or `--pay-retry-secs`
//! pass). Prints the totals so far on stderr every 10 s (the script's samples read the
//! last line) and its figures on stdout at the end. With `--answers FILE`, every answer
//! is also a line of that file ([`crate::answers`]), for the figures of a fault
//! (`loadtest/chaos/pg.sh`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use locallife::client::PaySimulator;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::answers::{Entry, Recorder, ADMITTED};
use crate::clients::Proto;
use crate::users::{User, Users};

/// Where the seeded riders and merchants are; orders are delivered there.
const SHOP: (f64, f64) = (31.2304, 121.4737);
/// Requests of one kind in flight at most: beyond, a tick is skipped (and counted).
const IN_FLIGHT: usize = 64;

#[derive(clap::Args)]
pub struct Args {
    /// host:port of each replica (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    servers: Vec<SocketAddr>,
    /// The users file `loadgen seed --consumers` wrote.
    #[arg(long)]
    users: PathBuf,
    /// How long the load runs.
    #[arg(long)]
    seconds: u64,
    /// Platform notifications per second, each to one rider.
    #[arg(long, default_value_t = 20)]
    rate: u64,
    /// Orders placed and paid per second.
    #[arg(long, default_value_t = 1.0)]
    orders_per_s: f64,
    /// The directory `loadgen rig pay-keys` wrote.
    #[arg(long)]
    pay_keys: PathBuf,
    /// A socket stays between these many seconds (drawn uniformly) before it leaves.
    #[arg(long, default_value_t = 5)]
    hold_min_s: u64,
    #[arg(long, default_value_t = 60)]
    hold_max_s: u64,
    /// How long a payment notification is sent again (every 500 ms) until it is
    /// answered 2xx; then it counts as a pay failure.
    #[arg(long, default_value_t = 5)]
    pay_retry_secs: u64,
    /// The consumer pays (WeChat Pay notifies) after a delay drawn from 0 to this many
    /// ms after the order was placed: payments then also arrive while orders cannot be
    /// placed.
    #[arg(long, default_value_t = 0)]
    pay_delay_max_ms: u64,
    /// Write every answer (webhook, send, socket connect, order) to this file, one JSON
    /// line each.
    #[arg(long)]
    answers: Option<PathBuf>,
}

/// What the run did, counted as it goes.
#[derive(Default)]
struct Totals {
    connects: AtomicU64,
    connect_failures: AtomicU64,
    received: AtomicU64,
    acked: AtomicU64,
    published: AtomicU64,
    publish_failures: AtomicU64,
    skipped: AtomicU64,
    orders: AtomicU64,
    order_failures: AtomicU64,
    paid: AtomicU64,
    pay_failures: AtomicU64,
}

impl Totals {
    fn json(&self, seconds: f64) -> Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "seconds": (seconds * 10.0).round() / 10.0,
            "connects": get(&self.connects),
            "connect_failures": get(&self.connect_failures),
            "received": get(&self.received),
            "acked": get(&self.acked),
            "published": get(&self.published),
            "publish_failures": get(&self.publish_failures),
            "skipped": get(&self.skipped),
            "orders": get(&self.orders),
            "order_failures": get(&self.order_failures),
            "paid": get(&self.paid),
            "pay_failures": get(&self.pay_failures),
        })
    }
}

fn add(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A number drawn uniformly from `low..=high`.
fn draw(low: u64, high: u64) -> u64 {
    low + rand::random::<u64>() % (high.saturating_sub(low) + 1)
}

fn pick<T: Copy>(items: &[T]) -> T {
    items[rand::random::<usize>() % items.len()]
}

pub async fn run(args: Args) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(&args.users).context("cannot read --users")?;
    let users: Users = serde_json::from_str(&text).context("--users is not a users file")?;
    anyhow::ensure!(
        !users.riders.is_empty() && !users.consumers.is_empty() && !users.products.is_empty(),
        "the users file needs riders, consumers and products (loadgen seed --consumers)"
    );
    let wechat = Arc::new(PaySimulator::read(&args.pay_keys)?);
    let totals = Arc::new(Totals::default());
    let answers = Arc::new(Recorder::create(args.answers.as_deref())?);
    let pay = (
        args.pay_delay_max_ms,
        Duration::from_secs(args.pay_retry_secs),
    );
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let hold = (
        args.hold_min_s * 1000,
        args.hold_max_s.max(args.hold_min_s) * 1000,
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;

    let mut sockets = JoinSet::new();
    let holders = users
        .riders
        .iter()
        .cloned()
        .chain(users.merchants.iter().map(|m| User {
            user_id: m.user_id,
            token: m.token.clone(),
        }));
    for user in holders {
        sockets.spawn(socket(
            args.servers.clone(),
            user,
            totals.clone(),
            answers.clone(),
            until,
            hold,
        ));
    }
    let riders: Vec<i64> = users.riders.iter().map(|r| r.user_id).collect();
    let publishing = tokio::spawn(publisher(
        http.clone(),
        args.servers.clone(),
        users.platform.clone(),
        riders,
        args.rate,
        until,
        totals.clone(),
        answers.clone(),
    ));
    let ordering = tokio::spawn(orderer(
        http,
        args.servers.clone(),
        users.consumers.clone(),
        users.products.clone(),
        wechat,
        args.orders_per_s,
        pay,
        until,
        totals.clone(),
        answers.clone(),
    ));
    let mut progress = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(10),
        Duration::from_secs(10),
    );
    while Instant::now() < until {
        tokio::select! {
            _ = progress.tick() => eprintln!("{}", totals.json(started.elapsed().as_secs_f64())),
            _ = tokio::time::sleep_until(until.into()) => {}
        }
    }
    publishing.await?;
    ordering.await?;
    while sockets.join_next().await.is_some() {}
    answers.flush()?;
    Ok(totals.json(started.elapsed().as_secs_f64()))
}

/// One user's sockets, one after another until `until`: connect to any replica, stay
/// for a drawn time receiving and acking, leave, pause a moment.
async fn socket(
    servers: Vec<SocketAddr>,
    user: User,
    totals: Arc<Totals>,
    answers: Arc<Recorder>,
    until: Instant,
    hold_ms: (u64, u64),
) {
    // Spread the first connects over a few seconds.
    tokio::time::sleep(Duration::from_millis(draw(0, 3000))).await;
    while Instant::now() < until {
        let server = pick(&servers);
        let leave = (Instant::now() + Duration::from_millis(draw(hold_ms.0, hold_ms.1))).min(until);
        let url = format!("ws://{server}/v1/ws?token={}&protocol=2", user.token);
        match tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(url),
        )
        .await
        {
            Ok(Ok((ws, _))) => session(ws, leave, &totals, &answers).await,
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(refused))) => {
                answers.record(Entry::Connect, refused.status().as_u16(), None);
                add(&totals.connect_failures);
            }
            _ => {
                answers.record(Entry::Connect, 0, None);
                add(&totals.connect_failures);
            }
        }
        tokio::time::sleep(Duration::from_millis(draw(200, 3000))).await;
    }
}

/// The status a refusal's close code stands for (SPEC §2.2): what a protocol-2 client
/// is told instead of an HTTP answer.
fn refusal_status(code: u16) -> u16 {
    match code {
        1013 => 503,
        4001 => 401,
        4003 => 403,
        4029 => 429,
        other => other,
    }
}

/// Waits for `welcome` (a socket refused under protocol 2 is upgraded and closed at
/// once, with a close code instead of an HTTP status); then receives and acks until
/// `leave`, and closes the socket (or until the server does).
async fn session(
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    leave: Instant,
    totals: &Totals,
    answers: &Recorder,
) {
    let (mut tx, mut rx) = ws.split();
    let first = tokio::time::timeout(Duration::from_secs(10), rx.next()).await;
    match first {
        Ok(Some(Ok(Message::Text(_)))) => {
            answers.record(Entry::Connect, ADMITTED, None);
            add(&totals.connects);
        }
        Ok(Some(Ok(Message::Close(Some(frame))))) => {
            answers.record(Entry::Connect, refusal_status(u16::from(frame.code)), None);
            add(&totals.connect_failures);
            return;
        }
        _ => {
            answers.record(Entry::Connect, 0, None);
            add(&totals.connect_failures);
            return;
        }
    }
    let leaving = tokio::time::sleep_until(leave.into());
    tokio::pin!(leaving);
    loop {
        tokio::select! {
            _ = &mut leaving => break,
            frame = rx.next() => {
                let Some(Ok(frame)) = frame else { return };
                let Message::Text(text) = frame else { continue };
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if v["type"] != "notification" {
                    continue;
                }
                add(&totals.received);
                let d = &v["data"];
                if d["requires_ack"] == true {
                    let ack = json!({"type": "ack", "data": {"message_id": d["message_id"]}});
                    if tx.send(Message::text(ack.to_string())).await.is_err() {
                        return;
                    }
                    add(&totals.acked);
                }
            }
        }
    }
    // A clean close: the close frame, then the server's answer (a second at most).
    let _ = tx.send(Message::Close(None)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(_)) = rx.next().await {}
    })
    .await;
}

/// Platform notifications at `rate` a second, each to a rider drawn at random, through
/// a replica drawn at random.
#[allow(clippy::too_many_arguments)]
async fn publisher(
    http: reqwest::Client,
    servers: Vec<SocketAddr>,
    platform: String,
    riders: Vec<i64>,
    rate: u64,
    until: Instant,
    totals: Arc<Totals>,
    answers: Arc<Recorder>,
) {
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut k = 0u64;
    while Instant::now() < until {
        tick.tick().await;
        k += 1;
        let Ok(permit) = gate.clone().try_acquire_owned() else {
            add(&totals.skipped);
            continue;
        };
        let (http, platform, totals, answers) = (
            http.clone(),
            platform.clone(),
            totals.clone(),
            answers.clone(),
        );
        let base = format!("http://{}", pick(&servers));
        let rider = pick(&riders);
        tasks.spawn(async move {
            let label = format!("soak-{k}");
            let status = crate::publish::publish_answer(
                &http,
                Proto::Locallife,
                &base,
                &platform,
                Some(rider),
                &label,
            )
            .await;
            answers.record(Entry::Send, status.unwrap_or(0), None);
            let ok = status.is_some_and(|s| (200..300).contains(&s));
            add(if ok {
                &totals.published
            } else {
                &totals.publish_failures
            });
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// Orders at `per_s` a second: a consumer drawn at random orders one item of a product
/// drawn at random, and WeChat Pay notifies its payment.
#[allow(clippy::too_many_arguments)]
async fn orderer(
    http: reqwest::Client,
    servers: Vec<SocketAddr>,
    consumers: Vec<User>,
    products: Vec<crate::users::Product>,
    wechat: Arc<PaySimulator>,
    per_s: f64,
    (pay_delay_max_ms, pay_retry): (u64, Duration),
    until: Instant,
    totals: Arc<Totals>,
    answers: Arc<Recorder>,
) {
    if per_s <= 0.0 {
        return;
    }
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_s));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while Instant::now() < until {
        tick.tick().await;
        let Ok(permit) = gate.clone().try_acquire_owned() else {
            add(&totals.skipped);
            continue;
        };
        let consumer = consumers[rand::random::<usize>() % consumers.len()].clone();
        let product = products[rand::random::<usize>() % products.len()].clone();
        let (http, servers, wechat, totals, answers) = (
            http.clone(),
            servers.clone(),
            wechat.clone(),
            totals.clone(),
            answers.clone(),
        );
        tasks.spawn(async move {
            let payer = Payer {
                http: &http,
                servers: &servers,
                wechat: &wechat,
                delay_max_ms: pay_delay_max_ms,
                retry: pay_retry,
                totals: &totals,
                answers: &answers,
            };
            order(&payer, &consumer, &product).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// What pays an order: the replicas, WeChat Pay's keys, when the consumer pays, how
/// long a notification is sent again, and where the answers are counted.
struct Payer<'a> {
    http: &'a reqwest::Client,
    servers: &'a [SocketAddr],
    wechat: &'a PaySimulator,
    delay_max_ms: u64,
    retry: Duration,
    totals: &'a Totals,
    answers: &'a Recorder,
}

async fn order(payer: &Payer<'_>, consumer: &User, product: &crate::users::Product) {
    let Payer {
        http,
        servers,
        wechat,
        totals,
        answers,
        ..
    } = *payer;
    let body = json!({"merchant_id": product.merchant_id,
        "items": [{"product_id": product.product_id, "quantity": 1}],
        "address": {"lat": SHOP.0, "lng": SHOP.1, "detail": "1号楼"}});
    let created = http
        .post(format!("http://{}/v1/orders", pick(servers)))
        .bearer_auth(&consumer.token)
        .json(&body)
        .send()
        .await;
    let status = created.as_ref().map_or(0, |r| r.status().as_u16());
    answers.record(Entry::Order, status, None);
    let order: Value = match created {
        Ok(r) if status == 201 => r.json().await.unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let (Some(out_trade_no), Some(total)) =
        (order["out_trade_no"].as_str(), order["total_fen"].as_i64())
    else {
        add(&totals.order_failures);
        return;
    };
    add(&totals.orders);
    tokio::time::sleep(Duration::from_millis(draw(0, payer.delay_max_ms))).await;
    // WeChat Pay sends the same transaction again, signed afresh, until it gets a 2xx:
    // a retry of a payment the service recorded but could not confirm is a repeat.
    let transaction_id = PaySimulator::transaction_id();
    let give_up = Instant::now() + payer.retry;
    loop {
        let (headers, body) = wechat.notification(out_trade_no, &transaction_id, total);
        let mut req = http
            .post(format!(
                "http://{}/v1/webhooks/wechat-pay/notify",
                pick(servers)
            ))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let status = req.send().await.map_or(0, |r| r.status().as_u16());
        if (200..300).contains(&status) {
            answers.record(Entry::Webhook, status, Some(out_trade_no));
            add(&totals.paid);
            return;
        }
        answers.record(Entry::Webhook, status, None);
        if Instant::now() >= give_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    add(&totals.pay_failures);
}
