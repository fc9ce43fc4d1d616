//! `/healthz`, `/readyz`, and the JSON answers for routes that do not exist.

use crate::support::{
    assert_error, eventually, free_port, redis_url, spawn_app, spawn_app_with, within,
};
use locallife::domain::Role;
use std::time::Duration;

#[tokio::test]
async fn healthz_and_readyz_answer_when_all_is_well() {
    let app = spawn_app().await;
    let (status, body) = app.get("/healthz", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["postgres"], "ok");
    assert_eq!(body["checks"]["redis"], "disabled");
}

#[tokio::test]
async fn readyz_checks_redis_when_it_is_configured() {
    let app = spawn_app_with(|env| {
        env.insert("REDIS_URL".into(), redis_url());
    })
    .await;
    // Ready once this replica's first pub/sub canary came back.
    let body = app.wait_readyz(200).await;
    assert_eq!(body["checks"]["redis"], "ok");
    assert_eq!(body["checks"]["pubsub"], "ok");
}

/// A paused Redis (SIGSTOP: connections stay open, nothing answers, nothing is
/// delivered) makes the replica not ready within 10 s, and ready again after SIGCONT.
#[tokio::test]
async fn a_paused_redis_makes_readyz_503_within_10_s_and_200_after() {
    let (redis, app, _) = crate::support::OwnRedis::with_app().await;
    app.wait_readyz(200).await;
    redis.signal("-STOP");
    let paused = std::time::Instant::now();
    let body = app.wait_readyz(503).await;
    assert!(
        paused.elapsed() < std::time::Duration::from_secs(10),
        "503 only after {:?}",
        paused.elapsed()
    );
    assert_eq!(body["status"], "not_ready");
    redis.signal("-CONT");
    let body = app.wait_readyz(200).await;
    assert_eq!(body["checks"]["pubsub"], "ok");
}

#[tokio::test]
async fn an_unreachable_redis_makes_the_replica_not_ready_but_alive() {
    let port = free_port();
    let app = spawn_app_with(|env| {
        env.insert("REDIS_URL".into(), format!("redis://127.0.0.1:{port}"));
    })
    .await;
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["redis"], "unavailable");
    assert_eq!(body["checks"]["postgres"], "ok");
    assert_eq!(app.get("/healthz", None).await.0, 200);
}

#[tokio::test]
async fn losing_postgres_makes_readyz_503_and_requests_503_not_500() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_role("pg-loss", Role::Platform).await;
    assert_eq!(app.get("/v1/me", Some(&token)).await.0, 200);
    app.db.drop_now().await;
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["postgres"], "unavailable");
    assert_error(
        &app.get("/v1/me", Some(&token)).await,
        503,
        "database_unavailable",
    );
    assert_eq!(app.get("/healthz", None).await.0, 200);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = spawn_app().await;
    assert_error(&app.get("/v1/nowhere", None).await, 404, "not_found");
    assert_error(&app.get("/", None).await, 404, "not_found");
    let resp = app.http.delete(app.url("/healthz")).send().await.unwrap();
    assert_error(
        &crate::support::into_parts(resp).await,
        405,
        "method_not_allowed",
    );
    let resp = app
        .http
        .get(app.url("/v1/auth/wechat-login"))
        .send()
        .await
        .unwrap();
    assert_error(
        &crate::support::into_parts(resp).await,
        405,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn stopping_the_app_returns_cleanly() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz", None).await.0, 200);
    app.stop().await.expect("run_until_stopped returns Ok");
}

/// A Redis of the test's own, a [`crate::support::WedgeProxy`] in front of it, and a
/// ready app that reaches Redis through the proxy.
async fn behind_a_proxy() -> (
    crate::support::OwnRedis,
    crate::support::WedgeProxy,
    crate::support::TestApp,
) {
    let port = crate::support::stable_port();
    let redis = crate::support::OwnRedis::start(port).await;
    let proxy = crate::support::WedgeProxy::start(port).await;
    let app = spawn_app_with(|env| {
        env.insert(
            "REDIS_URL".into(),
            format!("redis://127.0.0.1:{}", proxy.port),
        );
    })
    .await;
    app.wait_readyz(200).await;
    (redis, proxy, app)
}

/// A subscription that looks connected but delivers nothing (the connection stays
/// open; Redis answers every command): the canary stops coming back, `/readyz` turns
/// 503, the replica makes its subscriber connection again by itself and is ready again,
/// and a notification published meanwhile is delivered.
#[tokio::test]
async fn a_wedged_subscription_is_noticed_and_repaired_by_the_replica_itself() {
    let (_redis, proxy, app) = behind_a_proxy().await;
    let (_, staff) = app.socket_user(Role::Platform).await;
    let (rider, token) = app.socket_user(Role::Rider).await;
    let mut socket = app.ws_ok(&token).await;

    assert_eq!(proxy.wedge_subscribers(), 1, "one subscriber connection");
    let notice = serde_json::json!({"user_id": rider.0, "title": "stranded", "content": ""});
    // Commands still work: the notification is accepted into the inbox.
    assert_eq!(app.post_notification(&staff, &notice).await.0, 202);
    let body = app.wait_readyz(503).await;
    assert_eq!(body["checks"]["pubsub"], "unavailable");
    assert_eq!(body["checks"]["redis"], "ok");
    let body = app.wait_readyz(200).await;
    assert_eq!(body["checks"]["pubsub"], "ok");
    let n = socket.next_notification().await;
    assert_eq!(n["data"]["title"], "stranded");
}

/// The subscriber connection is lost, and the connections made again are cut while they
/// subscribe a user's channel once more (as a failover that flaps does): the user's open
/// socket is not left without a subscription. Once the connection holds, a notification
/// reaches it live.
#[tokio::test]
async fn a_resubscription_cut_by_another_reconnect_is_made_again() {
    let (_redis, proxy, app) = behind_a_proxy().await;
    let (_, staff) = app.socket_user(Role::Platform).await;
    let (rider, token) = app.socket_user(Role::Rider).await;
    let mut socket = app.ws_ok(&token).await;

    proxy.cut_subscribes_of(&format!("{{u:{}}}:live", rider.0), 4);
    assert_eq!(proxy.cut_subscribers(), 1, "one subscriber connection");
    eventually(
        Duration::from_secs(20),
        "the replica subscribes the user again, and is cut twice",
        async || (proxy.cuts_left() == 0).then_some(()),
    )
    .await;
    app.wait_readyz(200).await;
    let notice = serde_json::json!({"user_id": rider.0, "title": "after", "content": ""});
    assert_eq!(app.post_notification(&staff, &notice).await.0, 202);
    let n = socket
        .notification_within(Duration::from_secs(10))
        .await
        .expect("the user's channel is subscribed again");
    assert_eq!(n["data"]["title"], "after");
}

/// A socket that closes while Redis is away cannot give its per-user place back then;
/// the replica gives it back once Redis returns, so the user is not refused
/// (`too_many_sockets`) until the lease runs out or is overdue.
#[tokio::test]
async fn a_place_released_during_a_redis_outage_is_given_back_when_redis_returns() {
    let port = crate::support::stable_port();
    let dir = tempfile::tempdir().unwrap();
    let redis = crate::support::OwnRedis::start_aof(port, dir.path()).await;
    let app = spawn_app_with(|env| {
        env.insert("REDIS_URL".into(), format!("redis://127.0.0.1:{port}"));
        env.insert("WS_MAX_SOCKETS_PER_USER".into(), "1".into());
    })
    .await;
    app.wait_readyz(200).await;
    let (_, token) = app.socket_user(Role::Platform).await;
    let failures = |text: String| {
        text.lines()
            .find_map(|l| l.strip_prefix("locallife_socket_release_failures_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let before = failures(app.metrics_text().await);
    let mut socket = app.ws_ok(&token).await;
    redis.stop().await;
    let _ = socket.stream.close(None).await;
    let failed = within(
        Duration::from_secs(20),
        Duration::from_millis(100),
        async || (failures(app.metrics_text().await) > before).then_some(()),
    )
    .await;
    assert!(failed.is_some(), "the release fails while Redis is away");
    let _redis = crate::support::OwnRedis::start_aof(port, dir.path()).await;
    app.wait_readyz(200).await;
    // The lease itself would hold for a minute, and give way only after 25 s.
    let admitted = within(
        Duration::from_secs(10),
        Duration::from_millis(200),
        async || app.ws(&token).await.is_ok().then_some(()),
    )
    .await;
    assert!(
        admitted.is_some(),
        "the place is given back once Redis returns"
    );
}
