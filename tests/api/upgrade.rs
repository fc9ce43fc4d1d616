//! Upgrade in place (SPEC §11): inboxes written by the previous release (sorted sets,
//! `docs/architecture.md`) reach their users through this one (streams), each
//! notification once, and what was acked under the previous release stays acked.
//!
//! The previous release's binary is built by `scripts/previous-release.sh`, and
//! `scripts/test.sh` names it in `LOCALLIFE_PREVIOUS_BIN`. Run alone, without that
//! variable, the test says so and passes; with it, a missing binary fails it.

use std::time::Duration;

use fred::prelude::*;
use locallife::domain::Role;
use locallife::engine::{MsgId, Pushed};
use serde_json::json;

use crate::support::env::TEST_RATE;
use crate::support::Replica;
use crate::support::{free_port, redis_url, spawn_app_on, EngineKind, TestApp, JWT_SECRET};

/// The previous release's binary, or `None` when the test runs outside
/// `scripts/test.sh` (which always sets the variable).
fn previous_binary() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("LOCALLIFE_PREVIOUS_BIN")?;
    let path = std::path::PathBuf::from(path);
    assert!(
        path.is_file(),
        "LOCALLIFE_PREVIOUS_BIN names {}, which is no file: scripts/previous-release.sh did not build it",
        path.display()
    );
    Some(path)
}

/// A replica of the previous release on `app`'s database, Redis and key prefix.
async fn previous_replica(binary: &std::path::Path, app: &TestApp) -> Replica {
    let port = free_port();
    let child = tokio::process::Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &app.db.url)
        .env("JWT_SECRET", JWT_SECRET)
        .env("REDIS_URL", redis_url())
        .env("REDIS_KEY_PREFIX", &app.config.redis_key_prefix)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("HTTP_RATE_BACK_OFFICE", TEST_RATE)
        .env("HTTP_RATE_USER", TEST_RATE)
        .env("HTTP_RATE_ADDRESS", TEST_RATE)
        .env("RUST_LOG", "warn")
        .arg("serve")
        .kill_on_drop(true)
        .spawn()
        .expect("the previous release starts");
    let replica = Replica {
        child,
        address: format!("127.0.0.1:{port}"),
    };
    replica.wait_ready().await;
    replica
}

async fn redis() -> Client {
    let client = Builder::from_config(fred::types::config::Config::from_url(&redis_url()).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    client
}

#[tokio::test]
async fn inboxes_of_the_previous_release_are_delivered_once_and_moved_to_streams() {
    let Some(binary) = previous_binary() else {
        eprintln!("upgrade: LOCALLIFE_PREVIOUS_BIN is not set (scripts/test.sh sets it); not run");
        return;
    };
    let app = spawn_app_on(EngineKind::Redis).await;
    let (_, staff) = app.user_with_role("staff-upgrade", Role::Platform).await;
    let (rider, token) = app.socket_user(Role::Rider).await;
    let old = previous_replica(&binary, &app).await;

    // The previous release writes five notifications to the rider's inbox...
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..5 {
        let answer: serde_json::Value = http
            .post(format!("http://{}/v1/platform/notifications", old.address))
            .bearer_auth(&staff)
            .json(&json!({"user_id": rider.0, "title": format!("old {i}"), "content": ""}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(answer["message_id"].as_str().unwrap().to_owned());
    }
    // ...and the rider acks the first two on a socket of the previous release.
    let mut c = old.ws(&token).await;
    for id in &ids[..2] {
        let n = c.next_notification().await;
        assert_eq!(n["data"]["message_id"], id.as_str());
        c.ack(&n).await;
    }
    c.roundtrip().await;
    drop(c);
    let client = redis().await;
    let base = format!("{}:{{u:{}}}", app.config.redis_key_prefix, rider.0);
    let old_keys = [
        format!("{base}:inbox"),
        format!("{base}:msgs"),
        format!("{base}:done"),
    ];
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let pending: i64 = client.zcard(&old_keys[0]).await.unwrap();
            if pending == 3 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the previous release records both acks in its inbox");

    // The switch: the previous release stops, this one serves.
    drop(old);
    let mut c = app.ws_ok(&token).await;
    for (i, id) in ids.iter().enumerate().skip(2) {
        let n = c.next_notification().await;
        assert_eq!(n["data"]["message_id"], id.as_str(), "in order, once");
        assert_eq!(n["data"]["title"], format!("old {i}"));
        c.ack(&n).await;
    }
    c.roundtrip().await;
    assert!(
        c.nothing_within(Duration::from_millis(300)).await,
        "nothing twice, nothing acked before"
    );
    let left: i64 = client.exists(old_keys.to_vec()).await.unwrap();
    assert_eq!(left, 0, "the previous release's keys are gone");
    drop(c);

    // What the previous release recorded as acked stays acked: a late write of it (a
    // relay retried) delivers nothing, and neither does one of what was acked here.
    let engine = app.state.engine();
    engine.acks_settled(rider).await;
    for id in [&ids[0], &ids[4]] {
        let id: MsgId = id.parse().unwrap();
        let again = engine
            .push_inbox(
                rider,
                id,
                r#"","title":"again"},"timestamp":"t"}"#,
                locallife::time::unix_ms() + 60_000,
            )
            .await
            .unwrap();
        assert_eq!(again, Pushed::Duplicate, "{id}");
    }
    let len: i64 = client.xlen(format!("{base}:stream")).await.unwrap();
    assert_eq!(len, 0, "only unacked notifications sit in the stream");
    let mut c = app.ws_ok(&token).await;
    assert!(c.nothing_within(Duration::from_millis(300)).await);
    let _ = client.quit().await;
}
