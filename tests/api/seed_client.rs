//! The seed document's own reference mini-program code, unchanged, in Node under a `wx`
//! stand-in (`tests/seed-client/`), against two replica processes: three notifications
//! while it is connected, a redeploy of its replica (SIGTERM), two while it is away,
//! then its reconnect 3 s later. Each of the five is shown exactly once (SPEC §2.3,
//! protocol 1). Needs `npm ci` in `tests/seed-client` (scripts/test.sh runs it).

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use locallife::domain::Role;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{spawn_cluster, Replica};

type Lines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// The client's next event line.
async fn next_event(lines: &mut Lines) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
        .await
        .expect("the client reports in time")
        .unwrap()
        .expect("the client runs");
    serde_json::from_str::<Value>(&line).unwrap()
}

#[tokio::test]
async fn the_seed_reference_client_shows_each_notification_once_across_a_redeploy() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/seed-client");
    assert!(
        std::path::Path::new(dir).join("node_modules/ws").exists(),
        "run `npm ci` in tests/seed-client first (scripts/test.sh does)"
    );
    let apps = spawn_cluster(1).await;
    let peer = &apps[0];
    let mut replicas = [
        Replica::start(peer, &[]).await,
        Replica::start(peer, &[]).await,
    ];
    let addresses: Vec<String> = replicas.iter().map(|r| r.address.clone()).collect();
    let (merchant, token) = peer.socket_user(Role::Merchant).await;

    let mut node = tokio::process::Command::new("node")
        .arg(format!("{dir}/run.js"))
        .arg(addresses.join(","))
        .arg(&token)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node is installed");
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut toasts: HashMap<String, usize> = HashMap::new();

    let opened = loop {
        let e = next_event(&mut lines).await;
        if e["event"] == "open" {
            break e["backend"].as_str().unwrap().to_owned();
        }
    };
    // Welcomed by now? The first notification tells: it arrives either way (inbox).
    for title in ["n1", "n2", "n3"] {
        peer.publish(merchant, title).await;
    }
    while toasts.len() < 3 {
        let e = next_event(&mut lines).await;
        if e["event"] == "toast" {
            *toasts
                .entry(e["title"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    // The client's Pong confirms n1..n3: they leave the inbox.
    peer.until_inbox(merchant, 0, "confirmed by the Pong").await;

    // A redeploy of its replica: SIGTERM drains with 1001.
    let i = addresses.iter().position(|a| *a == opened).unwrap();
    replicas[i].signal("-TERM");
    loop {
        let e = next_event(&mut lines).await;
        if e["event"] == "close" {
            assert_eq!(e["code"], 1001, "{e}");
            break;
        }
        if e["event"] == "toast" {
            *toasts
                .entry(e["title"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(15), replicas[i].child.wait()).await;
    // Away: the client waits 3 s before it reconnects.
    for title in ["n4", "n5"] {
        peer.publish(merchant, title).await;
    }
    // Back on the other replica: n4 and n5, and nothing again. Read until 4 s after
    // the last one, long enough for any repeat (redelivery, another replay) to show.
    let mut quiet_since = tokio::time::Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        let wait = Duration::from_secs(4).saturating_sub(quiet_since.elapsed());
        if toasts.len() == 5 && wait.is_zero() {
            break;
        }
        match tokio::time::timeout(wait.max(Duration::from_millis(50)), lines.next_line()).await {
            Ok(Ok(Some(line))) => {
                let e: Value = serde_json::from_str(&line).unwrap();
                if e["event"] == "toast" {
                    *toasts
                        .entry(e["title"].as_str().unwrap().to_owned())
                        .or_default() += 1;
                    quiet_since = tokio::time::Instant::now();
                }
            }
            Ok(_) => break,
            Err(_) => {}
        }
    }
    let expected: HashMap<String, usize> = ["n1", "n2", "n3", "n4", "n5"]
        .into_iter()
        .map(|t| (t.to_owned(), 1))
        .collect();
    assert_eq!(toasts, expected, "each notification shown exactly once");
}
