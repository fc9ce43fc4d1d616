//! What a replica does with what a newer release wrote (SPEC §11, the versions of
//! `engine::wire`): a pub/sub event or an inbox entry of a version it does not know is
//! skipped and counted (`locallife_wire_newer_skipped_total`), never delivered nor
//! removed, and the user's socket keeps working; a pub/sub event marked with this
//! release's version is read like an unmarked one. The rolling upgrade itself, replicas
//! of the previous release beside this one under load, is in `chaos.rs`.

use std::time::Duration;

use fred::prelude::*;
use locallife::domain::Role;
use locallife::engine::{Event, MsgId};

use crate::support::{redis_url, spawn_app_on, EngineKind};

async fn redis() -> Client {
    let client = Builder::from_config(fred::types::config::Config::from_url(&redis_url()).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    client
}

/// The value of `name{format="<format>"}` in a metrics exposition, 0 when absent.
fn counted(metrics: &str, name: &str, format: &str) -> u64 {
    let prefix = format!("{name}{{format=\"{format}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn events_and_inbox_entries_of_a_newer_release_are_skipped_and_counted() {
    let app = spawn_app_on(EngineKind::Redis).await;
    let (rider, token) = app.socket_user(Role::Rider).await;
    let client = redis().await;
    let base = format!("{}:{{u:{}}}", app.config.redis_key_prefix, rider.0);
    let stream = format!("{base}:stream");
    const SKIPPED: &str = "locallife_wire_newer_skipped_total";

    // An inbox entry a newer release wrote: version 2, in a layout this one cannot read.
    let newer = MsgId::generate().to_string();
    let _: String = client
        .xadd(
            &stream,
            false,
            None,
            newer.as_str(),
            vec![("n", "?? a layout of version 2"), ("v", "2")],
        )
        .await
        .unwrap();
    let before = counted(&app.metrics_text().await, SKIPPED, "inbox");
    let after_it = app.publish(rider, "after the newer entry").await;

    let mut c = app.ws_ok(&token).await;
    let n = c.next_notification().await;
    assert_eq!(n["data"]["message_id"], after_it.as_str());
    assert!(
        c.nothing_within(Duration::from_millis(300)).await,
        "nothing of the newer entry is delivered"
    );
    let kept: Vec<(String, Vec<(String, String)>)> = client
        .xrange(&stream, newer.as_str(), newer.as_str(), None)
        .await
        .unwrap();
    assert_eq!(kept.len(), 1, "the newer entry stays for its release");
    assert!(counted(&app.metrics_text().await, SKIPPED, "inbox") > before);

    // A pub/sub event a newer release published: skipped, counted, the socket unharmed.
    let channel = format!("{base}:live");
    let before = counted(&app.metrics_text().await, SKIPPED, "event");
    let newer_event = [&[2u8][..], b"N?? a layout of version 2"].concat();
    let _: i64 = client
        .publish(&channel, Value::Bytes(newer_event.into()))
        .await
        .unwrap();
    // One marked with this release's version is read like the unmarked one.
    let marked_id = MsgId::generate();
    let frame =
        locallife::engine::wire::frame(marked_id, r#"","title":"marked"},"timestamp":"t"}"#);
    let marked = [&[1u8][..], &Event::Message(frame).encode()].concat();
    let _: i64 = client
        .publish(&channel, Value::Bytes(marked.into()))
        .await
        .unwrap();
    let n = c.next_notification().await;
    assert_eq!(n["data"]["message_id"], marked_id.to_string());
    let live = app.publish(rider, "live after the newer event").await;
    let n = c.next_notification().await;
    assert_eq!(n["data"]["message_id"], live.as_str());
    c.ack(&n).await;
    assert!(counted(&app.metrics_text().await, SKIPPED, "event") > before);
    let _ = client.quit().await;
}
