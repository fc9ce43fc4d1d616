//! `loadgen overload`: SPEC §11's overload run against one publishing replica. Personal
//! notifications in batches, to sockets held on another replica, in four phases:
//!
//! 1. **capacity**: as fast as `--measure-publishers` requests allow, for
//!    `--measure-secs`; the notifications answered 202 per second are the capacity
//!    (or `--capacity` gives it and this phase is skipped);
//! 2. **unloaded**: half the capacity for `--measure-secs`: the latency every later
//!    phase is compared with (`unloaded_p99_ms`);
//! 3. **over**: twice the capacity for `--over-secs`, open loop (sends are due on a
//!    schedule, whatever the answers): what is accepted, its latency, what is refused
//!    (503 `overloaded` or 429);
//! 4. **under**: half the capacity again for `--under-secs`: how long until the
//!    latency of what is published is back within twice the unloaded p99
//!    (`recovered_s`: the first whole second of publish time whose p99 is).
//!
//! Latency is publish → received on the socket (as `personal` measures it). The resident
//! memory of `--rss-pid` processes (added up) is sampled every 250 ms.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::clients::{connect_all, load_users, Common, Tally};
use crate::figures::{now_us, percentile, wait_until};
use crate::publish::batch_answer;
use crate::users::User;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Base URL of the replica that publishes (http://host:port).
    #[arg(long)]
    publish: String,
    /// Notifications per publish request (the batch endpoint).
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Requests in flight at most during the paced phases (enough to offer twice the
    /// capacity without waiting for answers).
    #[arg(long, default_value_t = 512)]
    publishers: usize,
    /// Requests in flight while the capacity is measured (closed loop).
    #[arg(long, default_value_t = 64)]
    measure_publishers: usize,
    /// Notifications per second the replica carries; 0 measures it first.
    #[arg(long, default_value_t = 0)]
    capacity: u64,
    #[arg(long, default_value_t = 10)]
    measure_secs: u64,
    #[arg(long, default_value_t = 60)]
    over_secs: u64,
    #[arg(long, default_value_t = 30)]
    under_secs: u64,
    /// Processes whose resident memory is sampled (the replicas), comma-separated.
    #[arg(long, value_delimiter = ',')]
    rss_pid: Vec<u32>,
}

/// What the load generator shares between phases.
struct Rig {
    http: reqwest::Client,
    base: String,
    platform: String,
    users: Vec<User>,
    proto: crate::clients::Proto,
    batch: u64,
    /// The next notification's label, unique across the run.
    label: AtomicU64,
}

/// What one phase offered and got.
#[derive(Default)]
struct Phase {
    started_us: u64,
    ended_us: u64,
    secs: f64,
    offered: u64,
    accepted: u64,
    refused: u64,
    errors: u64,
    /// Request → 202, per accepted request, µs.
    answers_us: Vec<u64>,
}

/// Publishes at `rate` notifications per second (0: as fast as `publishers` requests
/// allow) for `secs`.
async fn drive(rig: &Arc<Rig>, rate: u64, secs: u64, publishers: usize) -> Phase {
    let counts = Arc::new([
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    ]);
    let answers = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let started_us = now_us();
    let stop = started + Duration::from_secs(secs);
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..publishers.max(1) {
        let (rig, counts, answers, next) =
            (rig.clone(), counts.clone(), answers.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(rig.batch, Ordering::Relaxed);
                if rate > 0 {
                    let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
                    if due >= stop {
                        return;
                    }
                    tokio::time::sleep_until(due.into()).await;
                }
                if Instant::now() >= stop {
                    return;
                }
                let first = rig.label.fetch_add(rig.batch, Ordering::Relaxed);
                let items: Vec<(i64, String)> = (first..first + rig.batch)
                    .map(|k| {
                        let user = &rig.users[k as usize % rig.users.len()];
                        (user.user_id, format!("o{k}"))
                    })
                    .collect();
                let asked = Instant::now();
                let status =
                    batch_answer(&rig.http, rig.proto, &rig.base, &rig.platform, &items).await;
                counts[0].fetch_add(rig.batch, Ordering::Relaxed);
                let outcome = match status {
                    Some(200..=299) => {
                        let us = asked.elapsed().as_micros() as u64;
                        answers.lock().unwrap_or_else(|e| e.into_inner()).push(us);
                        1
                    }
                    Some(429 | 503) => 2,
                    _ => 3,
                };
                counts[outcome].fetch_add(rig.batch, Ordering::Relaxed);
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let mut answers_us = std::mem::take(&mut *answers.lock().unwrap_or_else(|e| e.into_inner()));
    answers_us.sort_unstable();
    Phase {
        started_us,
        ended_us: now_us(),
        secs: started.elapsed().as_secs_f64(),
        offered: counts[0].load(Ordering::Relaxed),
        accepted: counts[1].load(Ordering::Relaxed),
        refused: counts[2].load(Ordering::Relaxed),
        errors: counts[3].load(Ordering::Relaxed),
        answers_us,
    }
}

/// The latencies (µs, sorted) of notifications published in `[from_us, to_us)`.
fn latencies(samples: &[(u64, u64)], from_us: u64, to_us: u64) -> Vec<u64> {
    let mut l: Vec<u64> = samples
        .iter()
        .filter(|(sent, _)| (from_us..to_us).contains(sent))
        .map(|(_, l)| *l)
        .collect();
    l.sort_unstable();
    l
}

/// Resident memory of `pids`, added up, in bytes (0 for one that is gone).
fn rss_bytes(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .sum::<u64>()
        * 1024
}

fn phase_json(p: &Phase, lat: &[u64]) -> Value {
    json!({
        "secs": p.secs,
        "offered_per_s": p.offered as f64 / p.secs.max(1e-9),
        "accepted_per_s": p.accepted as f64 / p.secs.max(1e-9),
        "refused": p.refused,
        "errors": p.errors,
        "p50_ms": percentile(lat, 0.50),
        "p99_ms": percentile(lat, 0.99),
        "answer_p99_ms": percentile(&p.answers_us, 0.99),
    })
}

pub async fn run(args: Args) -> anyhow::Result<Value> {
    let (platform, users) = load_users(&args.common)?;
    let tally = Arc::new(Tally::default());
    connect_all(&args.common, args.common.server, &users, &tally, false).await?;
    println!("{}", json!({"event": "connected", "sockets": users.len()}));
    let rig = Arc::new(Rig {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(args.publishers)
            .timeout(Duration::from_secs(30))
            .build()?,
        base: args.publish.clone(),
        platform,
        users,
        proto: args.common.proto,
        batch: args.batch.max(1) as u64,
        label: AtomicU64::new(0),
    });

    let capacity = if args.capacity > 0 {
        args.capacity
    } else {
        let p = drive(&rig, 0, args.measure_secs, args.measure_publishers).await;
        eprintln!(
            "overload: capacity {:.0}/s ({} refused)",
            p.accepted as f64 / p.secs,
            p.refused
        );
        (p.accepted as f64 / p.secs) as u64
    };
    anyhow::ensure!(capacity > 0, "no capacity measured: nothing was accepted");
    // Let what the measurement queued drain before the baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let unloaded = drive(&rig, capacity / 2, args.measure_secs, args.publishers).await;

    let peak = Arc::new(AtomicU64::new(0));
    let rss_before = rss_bytes(&args.rss_pid);
    let sampling = Arc::new(tokio::sync::Notify::new());
    let sampler = {
        let (peak, pids, done) = (peak.clone(), args.rss_pid.clone(), sampling.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    _ = tick.tick() => { peak.fetch_max(rss_bytes(&pids), Ordering::Relaxed); }
                    _ = done.notified() => return,
                }
            }
        })
    };
    eprintln!(
        "overload: offering {}/s for {} s",
        capacity * 2,
        args.over_secs
    );
    let over = drive(&rig, capacity * 2, args.over_secs, args.publishers).await;
    eprintln!(
        "overload: offering {}/s for {} s",
        capacity / 2,
        args.under_secs
    );
    let under = drive(&rig, capacity / 2, args.under_secs, args.publishers).await;
    let accepted = over.accepted + under.accepted;
    let everything = unloaded.accepted + accepted;
    wait_until(Duration::from_secs(15), || {
        tally
            .ids
            .lock()
            .map(|ids| ids.len() as u64 >= everything)
            .unwrap_or(true)
    })
    .await;
    sampling.notify_one();
    let _ = sampler.await;

    let samples = tally
        .sent_latency_us
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    let base_lat = latencies(&samples, unloaded.started_us, unloaded.ended_us);
    let over_lat = latencies(&samples, over.started_us, over.ended_us);
    let under_lat = latencies(&samples, under.started_us, under.ended_us);
    let unloaded_p99 = percentile(&base_lat, 0.99);
    // p99 per second of publish time after the load fell; recovered at the first second
    // within twice the unloaded p99 (the seconds after it are in the output: on a shared
    // machine one may stray above again).
    let windows: Vec<f64> = (0..args.under_secs)
        .map(|s| {
            let from = under.started_us + s * 1_000_000;
            percentile(&latencies(&samples, from, from + 1_000_000), 0.99)
        })
        .collect();
    let recovered_s = windows
        .iter()
        .position(|p| *p <= 2.0 * unloaded_p99)
        .map(|w| w as u64);
    let unique = tally.ids.lock().map(|ids| ids.len() as u64).unwrap_or(0);
    Ok(json!({
        "capacity_per_s": capacity,
        "batch": rig.batch,
        "offered_per_s": over.offered as f64 / over.secs,
        "unloaded_p99_ms": unloaded_p99,
        "accepted_p99_ms": percentile(&over_lat, 0.99),
        "accepted_per_s": over.accepted as f64 / over.secs,
        "refused": over.refused + under.refused,
        "errors": over.errors + under.errors,
        "rss_before_bytes": rss_before,
        "rss_peak_bytes": peak.load(Ordering::Relaxed),
        "recovered_s": recovered_s,
        "under_p99_per_s_ms": windows,
        "lost": everything.saturating_sub(unique),
        "delivered_unasked": unique.saturating_sub(everything),
        "phases": {
            "unloaded": phase_json(&unloaded, &base_lat),
            "over": phase_json(&over, &over_lat),
            "under": phase_json(&under, &under_lat),
        },
    }))
}
