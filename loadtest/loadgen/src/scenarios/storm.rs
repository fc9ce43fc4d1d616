//! `loadgen storm`: every socket holds an unacked notification, the replica they are on
//! is killed (here, or by whoever writes `--go-file`), they all reconnect to
//! `--fallback` at once, and the notifications must be redelivered there.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::clients::{connect_all, load_users, Common, Tally};
use crate::figures::{now_us, wait_until};
use crate::publish::publish_answer;

#[derive(clap::Args)]
pub struct Args {
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
}

pub async fn run(
    Args {
        common,
        publish: base,
        kill_pid,
        go_file,
        fallback,
    }: Args,
) -> anyhow::Result<Value> {
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
            // As a sender does: a refusal (503 `overloaded`, 429) is tried again a
            // little later, for up to a minute; so is no answer (the same label is the
            // same notification to the client).
            let label = format!("s{i}");
            let until = Instant::now() + Duration::from_secs(60);
            let ok = loop {
                match publish_answer(&http, proto, &base, &platform, Some(uid), &label).await {
                    Some(s) if (200..300).contains(&s) => break true,
                    Some(503 | 429) | None if Instant::now() < until => {
                        let wait = rand::thread_rng().gen_range(100..500);
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                    }
                    _ => break false,
                }
            };
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
    // Who is still waiting, by user id (the label `s{i}` was sent to `users[i]`): to
    // look their inboxes and the replicas' logs up after a run that lost some.
    let missing: Vec<i64> = {
        let got = again.ids.lock().map(|i| i.clone()).unwrap_or_default();
        let mut m: Vec<i64> = before
            .difference(&got)
            .filter_map(|label| label.strip_prefix('s')?.parse::<usize>().ok())
            .filter_map(|i| users.get(i).map(|u| u.user_id))
            .collect();
        m.sort_unstable();
        m.truncate(50);
        m
    };
    Ok(json!({
        "sockets": users.len(),
        "reconnected": reconnected,
        "reconnect_error": reconnect.err().map(|e| e.to_string()),
        "unacked_before": before.len(),
        "redelivered": redelivered,
        "reconnect_s": reconnect_s,
        "reconnect_storm_s": storm_s,
        "lost": (before.len() as u64).saturating_sub(redelivered),
        "missing_users": missing,
        "closed_after": again.closed.load(Ordering::Relaxed),
    }))
}
