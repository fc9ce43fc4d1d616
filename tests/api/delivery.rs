//! At-least-once delivery (SPEC §3): the inbox, acks, redelivery, replay on connect,
//! expiry and the bound. Every test runs against both engines.

use std::time::Duration;

use locallife::domain::Role;
use locallife::notify::{self, Kind, Notification};
use serde_json::{json, Value};

use crate::support::{eventually, spawn_app_on, spawn_app_with, use_engine, EngineKind};

on_both_engines!(
    offline_notifications_arrive_on_connect_in_order,
    unacked_notifications_are_redelivered_with_the_same_id,
    acked_notifications_are_neither_redelivered_nor_replayed,
    an_ack_on_one_socket_stops_redelivery_on_the_others,
    expired_notifications_are_never_delivered,
    the_inbox_keeps_the_newest,
    nothing_published_while_connecting_is_lost,
    announcements_are_live_only,
    acks_of_unknown_ids_are_harmless,
);

fn title(n: &Value) -> &str {
    n["data"]["title"].as_str().unwrap()
}

fn short_acks(engine: EngineKind) -> impl FnOnce(&mut std::collections::HashMap<String, String>) {
    move |env| {
        use_engine(env, engine);
        env.insert("WS_ACK_TIMEOUT".into(), "300ms".into());
        env.insert("WS_MAX_REDELIVERIES".into(), "2".into());
    }
}

async fn offline_notifications_arrive_on_connect_in_order(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let (rider, token) = app.socket_user(Role::Rider).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.publish(rider, &format!("offline {i}")).await);
    }
    let mut c = app.ws_ok(&token).await;
    for (i, id) in ids.iter().enumerate() {
        let n = c.next_notification().await;
        assert_eq!(title(&n), format!("offline {i}"));
        assert_eq!(n["data"]["message_id"], id.as_str());
        assert_eq!(n["data"]["requires_ack"], true);
    }
    // Then live ones.
    app.publish(rider, "live").await;
    assert_eq!(title(&c.next_notification().await), "live");
}

async fn unacked_notifications_are_redelivered_with_the_same_id(engine: EngineKind) {
    let app = spawn_app_with(short_acks(engine)).await;
    let (rider, token) = app.socket_user(Role::Rider).await;
    let mut c = app.ws_ok(&token).await;
    let id = app.publish(rider, "urgent").await;
    // Delivered once, then redelivered twice (WS_MAX_REDELIVERIES), same id each time.
    for _ in 0..3 {
        assert_eq!(
            c.next_notification().await["data"]["message_id"],
            id.as_str()
        );
    }
    assert!(
        c.nothing_within(Duration::from_millis(900)).await,
        "no more than the maximum"
    );
    // Left for the next connect.
    drop(c);
    let mut again = app.ws_ok(&token).await;
    assert_eq!(
        again.next_notification().await["data"]["message_id"],
        id.as_str()
    );
}

async fn acked_notifications_are_neither_redelivered_nor_replayed(engine: EngineKind) {
    let app = spawn_app_with(short_acks(engine)).await;
    let (rider, token) = app.socket_user(Role::Rider).await;
    let mut c = app.ws_ok(&token).await;
    app.publish(rider, "ack me").await;
    let n = c.next_notification().await;
    c.ack(&n).await;
    assert!(
        c.nothing_within(Duration::from_millis(800)).await,
        "not redelivered"
    );
    c.roundtrip().await;
    drop(c);
    let mut again = app.ws_ok(&token).await;
    again.roundtrip().await;
    app.publish(rider, "next").await;
    assert_eq!(
        title(&again.next_notification().await),
        "next",
        "the acked one is gone"
    );
}

async fn an_ack_on_one_socket_stops_redelivery_on_the_others(engine: EngineKind) {
    let app = spawn_app_with(short_acks(engine)).await;
    let (rider, token) = app.socket_user(Role::Rider).await;
    let mut a = app.ws_ok(&token).await;
    let mut b = app.ws_ok(&token).await;
    app.publish(rider, "both").await;
    let n = a.next_notification().await;
    assert_eq!(
        b.next_notification().await["data"]["message_id"],
        n["data"]["message_id"]
    );
    a.ack(&n).await;
    assert!(
        b.nothing_within(Duration::from_millis(800)).await,
        "b does not redeliver"
    );
    assert!(a.nothing_within(Duration::from_millis(100)).await);
}

async fn expired_notifications_are_never_delivered(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let (rider, token) = app.socket_user(Role::Rider).await;
    let stale =
        Notification::new(Kind::OrderRecommend, "stale", "").with_ttl(Duration::from_millis(1));
    app.publish_notification(rider, &stale).await;
    app.publish(rider, "fresh").await;
    // Connecting takes longer than a millisecond: the first one has expired by then.
    let mut c = app.ws_ok(&token).await;
    assert_eq!(title(&c.next_notification().await), "fresh");
    assert!(c.nothing_within(Duration::from_millis(200)).await);
}

async fn the_inbox_keeps_the_newest(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let (rider, token) = app.socket_user(Role::Rider).await;
    let max = locallife::engine::inbox::INBOX_MAX;
    for i in 0..max + 5 {
        app.publish(rider, &format!("n{i}")).await;
    }
    let mut c = app.ws_ok(&token).await;
    assert_eq!(
        title(&c.next_notification().await),
        "n5",
        "the oldest five were dropped"
    );
    for i in 6..max + 5 {
        assert_eq!(title(&c.next_notification().await), format!("n{i}"));
    }
}

async fn nothing_published_while_connecting_is_lost(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    for round in 0..25 {
        // A rider per round: one rider reconnecting 25 times would meet the connect
        // rate limit.
        let (rider, token) = app.socket_user(Role::Rider).await;
        let label = format!("race {round}");
        // Publish at a moment that falls somewhere inside the connect.
        let publisher = {
            let engine = app.state.hub().engine().clone();
            let label = label.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(rand::random::<u64>() % 4000)).await;
                let n = Notification::new(Kind::PlatformNotice, label, "");
                notify::to_user(&*engine, rider, &n).await.unwrap()
            })
        };
        let mut c = app.ws_ok(&token).await;
        let id = publisher.await.unwrap();
        // It must arrive on this socket: replayed or live, exactly once here.
        let n = c.next_notification().await;
        assert_eq!(n["data"]["message_id"], id.as_str(), "round {round}");
        c.ack(&n).await;
        c.roundtrip().await;
        assert!(
            c.nothing_within(Duration::from_millis(20)).await,
            "no duplicate, round {round}"
        );
        drop(c);
    }
}

async fn announcements_are_live_only(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let (_, staff) = app.socket_user(Role::Platform).await;
    let (_, token) = app.socket_user(Role::Rider).await;
    let (status, _) = app
        .post_notification(
            &staff,
            &json!({"role": "rider", "title": "nobody listening", "content": ""}),
        )
        .await;
    assert_eq!(status, 202);
    let mut c = app.ws_ok(&token).await;
    assert!(c.nothing_within(Duration::from_millis(300)).await);
}

async fn acks_of_unknown_ids_are_harmless(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let (_, token) = app.socket_user(Role::Rider).await;
    let mut c = app.ws_ok(&token).await;
    for id in [
        "1-0",
        "99999999999999-3",
        "0123456789abcdef0123456789abcdef",
    ] {
        c.send_json(json!({"type": "ack", "data": {"message_id": id}}))
            .await;
    }
    c.roundtrip().await;
}

#[tokio::test]
async fn the_redis_inbox_expires_when_idle() {
    use fred::prelude::*;
    let app = spawn_app_on(EngineKind::Redis).await;
    let (rider, _) = app.socket_user(Role::Rider).await;
    app.publish(rider, "kept").await;
    let key = format!("{}:{{u:{}}}:stream", app.config.redis_key_prefix, rider.0);
    let client = Builder::from_config(
        fred::types::config::Config::from_url(&crate::support::redis_url()).unwrap(),
    )
    .build()
    .unwrap();
    client.init().await.unwrap();
    let ttl_ms: i64 = client.pttl(&key).await.unwrap();
    assert!(
        ttl_ms > 24 * 3600 * 1000,
        "an idle inbox expires after a day and more: {ttl_ms}"
    );
    let len: i64 = client.xlen(&key).await.unwrap();
    assert_eq!(len, 1);
    let ids = format!("{}:{{u:{}}}:ids", app.config.redis_key_prefix, rider.0);
    let ttl_ms: i64 = client.pttl(&ids).await.unwrap();
    assert!(
        ttl_ms > 24 * 3600 * 1000,
        "the ids expire with the inbox: {ttl_ms}"
    );
    let _ = client.quit().await;
}

/// `ttl_s` (SPEC §4): a platform notice may stay deliverable up to 7 days; its inbox is
/// kept past that (a later, shorter notification does not shorten it), and its receipt
/// says when it expires. Out of range, or on an announcement: 422.
#[tokio::test]
async fn a_notice_with_a_long_ttl_is_kept_that_long() {
    use fred::prelude::*;
    let app = spawn_app_on(EngineKind::Redis).await;
    let (_, staff) = app.user_with_role("staff-ttl", Role::Platform).await;
    let (rider, _) = app.socket_user(Role::Rider).await;
    for (body, what) in [
        (
            json!({"user_id": rider.0, "title": "t", "content": "", "ttl_s": 0}),
            "zero",
        ),
        (
            json!({"user_id": rider.0, "title": "t", "content": "", "ttl_s": 604_801}),
            "too long",
        ),
        (
            json!({"role": "rider", "title": "t", "content": "", "ttl_s": 60}),
            "announcement",
        ),
    ] {
        let answer = app.post_notification(&staff, &body).await;
        assert_eq!(answer.0, 422, "{what}: {}", answer.1);
        assert_eq!(answer.1["code"], "invalid_ttl", "{what}");
    }
    let week = 7 * 24 * 3600;
    let (status, sent) = app
        .post_notification(
            &staff,
            &json!({"user_id": rider.0, "title": "week", "content": "", "ttl_s": week}),
        )
        .await;
    assert_eq!(status, 202, "{sent}");
    app.publish(rider, "a day").await;

    let client = Builder::from_config(
        fred::types::config::Config::from_url(&crate::support::redis_url()).unwrap(),
    )
    .build()
    .unwrap();
    client.init().await.unwrap();
    for key in ["stream", "ids"] {
        let key = format!("{}:{{u:{}}}:{key}", app.config.redis_key_prefix, rider.0);
        let ttl_ms: i64 = client.pttl(&key).await.unwrap();
        assert!(
            ttl_ms > week * 1000,
            "{key} kept past the week: {ttl_ms} ms"
        );
    }
    let _ = client.quit().await;

    let id = sent["message_id"].as_str().unwrap();
    let receipt = eventually(crate::support::WAIT, "the receipt is written", async || {
        let (status, body) = app
            .get(&format!("/v1/platform/notifications/{id}"), Some(&staff))
            .await;
        (status == 200).then_some(body)
    })
    .await;
    let at = |f: &str| chrono::DateTime::parse_from_rfc3339(receipt[f].as_str().unwrap()).unwrap();
    let lasts = at("expires_at") - at("created_at");
    assert_eq!(lasts.num_seconds(), week, "{receipt}");
}
