//! `loadgen personal`: personal notifications published on another replica, at full
//! speed or a fixed rate, singly or in batches; counts the acked deliveries and their
//! latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::clients::{connect_all, load_users, Common, Tally};
use crate::figures::{percentile, wait_until};
use crate::publish::{publish, publish_batch};

#[derive(clap::Args)]
pub struct Args {
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
}

pub async fn run(
    Args {
        common,
        publish: base,
        duration_secs,
        rate,
        publishers,
        batch,
    }: Args,
) -> anyhow::Result<Value> {
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
    Ok(json!({
        "published": published,
        "publish_failed": failed.load(Ordering::Relaxed),
        "delivered_unique": unique,
        "delivered_total": tally.received.load(Ordering::Relaxed),
        "acked_per_s": unique as f64 / elapsed,
        "latency_p50_ms": percentile(&lat, 0.50),
        "latency_p99_ms": percentile(&lat, 0.99),
        "lost": published.saturating_sub(unique),
    }))
}
