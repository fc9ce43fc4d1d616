//! `Idempotency-Key` on the platform API (SPEC §4): a repeat answers the same
//! `message_id` and delivers nothing again, a different request under the same key is
//! 422, and a publish answered 503 because Redis stalled never delivers twice when it
//! is retried with its key, although the stalled command runs once Redis wakes.

use std::time::Duration;

use locallife::domain::Role;
use serde_json::json;

use crate::support::{assert_error, eventually_every, spawn_app_on, EngineKind, OwnRedis};

on_both_engines!(
    a_repeat_answers_the_same_id_and_delivers_once,
    a_different_request_under_the_same_key_is_refused,
    batches_and_commands_are_idempotent_too,
);

async fn a_repeat_answers_the_same_id_and_delivers_once(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let (_, staff) = app.socket_user(Role::Platform).await;
    let (rider, token) = app.socket_user(Role::Rider).await;
    let mut socket = app.ws_ok(&token).await;
    let body = json!({"user_id": rider.0, "title": "once", "content": "x"});
    let first = app
        .post_with_key("/v1/platform/notifications", &staff, "k-1", &body)
        .await;
    assert_eq!(first.0, 202, "{}", first.1);
    let again = app
        .post_with_key("/v1/platform/notifications", &staff, "k-1", &body)
        .await;
    assert_eq!(again, first, "the same answer");
    let n = socket.next_notification().await;
    assert_eq!(n["data"]["message_id"], first.1["message_id"]);
    socket.ack(&n).await;
    let after_ack = app
        .post_with_key("/v1/platform/notifications", &staff, "k-1", &body)
        .await;
    assert_eq!(after_ack, first, "also after the ack");
    assert!(
        socket.nothing_within(Duration::from_millis(300)).await,
        "delivered once"
    );
    // Another caller's key of the same text is another key.
    let (_, other_staff) = app.socket_user(Role::Platform).await;
    let other = app
        .post_with_key("/v1/platform/notifications", &other_staff, "k-1", &body)
        .await;
    assert_eq!(other.0, 202);
    assert_ne!(other.1["message_id"], first.1["message_id"]);
    // Without a key, every request is a new notification.
    let plain = app.post_notification(&staff, &body).await;
    assert_ne!(plain.1["message_id"], first.1["message_id"]);
}

async fn a_different_request_under_the_same_key_is_refused(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let (_, staff) = app.socket_user(Role::Platform).await;
    let (rider, _) = app.socket_user(Role::Rider).await;
    let body = json!({"user_id": rider.0, "title": "one", "content": ""});
    assert_eq!(
        app.post_with_key("/v1/platform/notifications", &staff, "k", &body)
            .await
            .0,
        202
    );
    let changed = json!({"user_id": rider.0, "title": "two", "content": ""});
    assert_error(
        &app.post_with_key("/v1/platform/notifications", &staff, "k", &changed)
            .await,
        422,
        "idempotency_key_reused",
    );
    let long = "x".repeat(256);
    assert_error(
        &app.post_with_key("/v1/platform/notifications", &staff, &long, &body)
            .await,
        400,
        "invalid_idempotency_key",
    );
}

async fn batches_and_commands_are_idempotent_too(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let (_, staff) = app.socket_user(Role::Platform).await;
    let (a, _) = app.socket_user(Role::Rider).await;
    let (b, _) = app.socket_user(Role::Merchant).await;
    let batch = json!({"notifications": [
        {"user_id": a.0, "title": "1", "content": ""},
        {"user_id": b.0, "title": "2", "content": ""},
    ]});
    let first = app
        .post_with_key("/v1/platform/notifications/batch", &staff, "b", &batch)
        .await;
    assert_eq!(first.0, 202, "{}", first.1);
    let again = app
        .post_with_key("/v1/platform/notifications/batch", &staff, "b", &batch)
        .await;
    assert_eq!(again, first);
    // The same key on another route is another request.
    let single = json!({"user_id": a.0, "title": "1", "content": ""});
    assert_error(
        &app.post_with_key("/v1/platform/notifications", &staff, "b", &single)
            .await,
        422,
        "idempotency_key_reused",
    );
    app.db
        .execute(
            "UPDATE riders SET status = 'approved' WHERE user_id = $1",
            &[&a.0],
        )
        .await;
    let path = format!("/v1/platform/riders/{}/commands", a.0);
    let command = json!({"title": "go", "content": "north"});
    let first = app.post_with_key(&path, &staff, "c", &command).await;
    assert_eq!(first.0, 202, "{}", first.1);
    assert_eq!(app.post_with_key(&path, &staff, "c", &command).await, first);
}

/// The chaos finding "503 that was sent anyway": Redis stalls, the API answers 503 with
/// the outcome unknown, Redis wakes and runs the queued command. The client retries
/// with its key: one notification, under one id.
#[tokio::test]
async fn a_retry_after_an_unknown_outcome_never_delivers_twice() {
    let (redis, app, _) = OwnRedis::with_app().await;
    let (_, staff) = app.socket_user(Role::Platform).await;
    let (rider, token) = app.socket_user(Role::Rider).await;
    let mut socket = app.ws_ok(&token).await;
    let body = json!({"user_id": rider.0, "title": "stalled", "content": ""});

    redis.signal("-STOP");
    let stalled = app
        .post_with_key("/v1/platform/notifications", &staff, "retry-me", &body)
        .await;
    assert_error(&stalled, 503, "engine_unavailable");
    assert!(
        stalled.1["message"].as_str().unwrap().contains("unknown"),
        "the answer says the outcome is unknown: {}",
        stalled.1
    );
    redis.signal("-CONT");

    let retried = eventually_every(
        Duration::from_secs(20),
        Duration::from_millis(100),
        "the retry succeeds once Redis is back",
        async || {
            let r = app
                .post_with_key("/v1/platform/notifications", &staff, "retry-me", &body)
                .await;
            (r.0 == 202).then_some(r)
        },
    )
    .await;
    let n = socket.next_notification().await;
    assert_eq!(n["data"]["title"], "stalled");
    assert_eq!(n["data"]["message_id"], retried.1["message_id"]);
    assert!(
        socket.nothing_within(Duration::from_millis(500)).await,
        "the stalled command and the retry are one notification"
    );
}
