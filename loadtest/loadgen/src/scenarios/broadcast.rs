//! `loadgen broadcast`: one role announcement to every socket, several rounds; the
//! deliveries per second over all of them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::clients::{connect_all, load_users, Common, Proto, Tally};
use crate::figures::{now_us, wait_until};
use crate::publish::publish;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    #[arg(long)]
    publish: String,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

pub async fn run(
    Args {
        common,
        publish: base,
        rounds,
    }: Args,
) -> anyhow::Result<Value> {
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
                || tally.received.load(Ordering::Relaxed) as usize >= users.len() * (round + 1)
        })
        .await;
        total += started.elapsed();
        if done {
            complete += 1;
        }
    }
    Ok(json!({
        "sockets": users.len(),
        "rounds": rounds,
        "rounds_complete": complete,
        "broadcast_deliveries_per_s": (users.len() * rounds) as f64 / total.as_secs_f64(),
        "deliveries": tally.received.load(Ordering::Relaxed),
    }))
}
