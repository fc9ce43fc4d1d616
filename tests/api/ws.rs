//! `/v1/ws` behaviour: admission (every row of SPEC §2), the protocol (§2.1), keep-alive
//! (§2.2) and live delivery. Every test runs against both engines.

use std::time::Duration;

use futures::SinkExt;
use locallife::domain::Role;
use serde_json::json;

use crate::support::eventually::POLL;
use crate::support::{
    assert_error, spawn_app_on, spawn_app_with, use_engine, within, EngineKind, RawClient, TestApp,
    WsClient,
};

on_both_engines!(
    bad_tokens_are_401,
    consumers_are_403,
    riders_must_be_approved_and_online,
    merchants_must_administer_an_approved_merchant,
    platform_staff_connect_with_every_role_that_passes,
    the_token_may_come_in_the_header,
    too_many_sockets_is_429_until_one_closes,
    places_of_a_dead_replica_give_way_once_overdue,
    reconnecting_too_often_is_429,
    a_draining_replica_refuses_sockets,
    a_plain_get_is_400,
    welcome_describes_the_connection,
    ping_gets_pong,
    bad_messages_get_errors_and_the_socket_stays,
    persistent_garbage_is_closed_1008,
    flooding_is_closed_1008,
    a_ping_frame_flood_is_closed_1008,
    oversize_frames_are_closed_1009,
    binary_frames_are_closed_1003,
    only_riders_send_location,
    pings_are_sent_and_silence_is_closed_4000,
    app_level_pings_alone_keep_a_socket_alive,
    an_expired_token_closes_the_socket_4001,
    a_user_notification_reaches_every_socket_of_the_user,
    announcements_reach_every_socket_of_the_role_only,
    a_user_who_reconnects_is_subscribed_again,
    publishing_is_for_platform_staff_with_a_valid_target,
    connections_are_counted_by_role,
    stopping_the_replica_closes_sockets_1001,
);

/// An app on `engine` and a socket of a platform user's on it.
async fn staff_socket(engine: EngineKind) -> (TestApp, WsClient) {
    let app = spawn_app_on(engine).await;
    let (_, token) = app.socket_user(Role::Platform).await;
    let socket = app.ws_ok(&token).await;
    (app, socket)
}

/// An app on `engine` with `WS_PING_INTERVAL` and `WS_IDLE_TIMEOUT` set.
async fn spawn_with_keepalive(engine: EngineKind, ping: &str, idle: &str) -> TestApp {
    spawn_app_with(|env| {
        use_engine(env, engine);
        env.insert("WS_PING_INTERVAL".into(), ping.into());
        env.insert("WS_IDLE_TIMEOUT".into(), idle.into());
    })
    .await
}

/// Sends `text` up to `times` times, stopping once a send fails (the server closed).
async fn flood(c: &mut WsClient, text: &str, times: usize) {
    for _ in 0..times {
        let frame = tokio_tungstenite::tungstenite::Message::text(text.to_owned());
        if c.stream.send(frame).await.is_err() {
            break;
        }
    }
}

async fn bad_tokens_are_401(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let (id, _) = app.socket_user(Role::Platform).await;
    let expired = app.tokens.mint_with_ttl(id, Duration::ZERO).token;
    // Past the 5 s leeway: forge one that expired a minute ago.
    let claims = locallife::auth::Claims {
        sub: id.to_string(),
        iss: "locallife".into(),
        aud: "locallife".into(),
        iat: locallife::time::unix_secs() - 120,
        exp: locallife::time::unix_secs() - 60,
        nbf: None,
        iat_ms: None,
        epoch: None,
    };
    let long_expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(crate::support::JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let wrong_key = {
        let mut cfg = app.config.jwt.clone();
        cfg.secret =
            secrecy::SecretString::from("another-key-0123456789abcdef-0123456789".to_owned());
        locallife::auth::Tokens::new(&cfg).mint(id).token
    };
    for token in ["", "garbage", &long_expired, &wrong_key] {
        let refused = app.ws(token).await.err().expect("refused");
        assert_eq!(refused.status, 401, "{token:?}: {:?}", refused.body);
        assert_eq!(refused.body["code"], "unauthorized");
    }
    // Within the leeway it still works.
    app.ws_ok(&expired).await;
}

async fn consumers_are_403(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let (_, token) = app.user_with_role("consumer-1", Role::Consumer).await;
    app.ws_refused(&token, 403, "role_not_allowed").await;
}

async fn riders_must_be_approved_and_online(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let (_, pending) = app.rider("rider-pending", "pending").await;
    app.ws_refused(&pending, 403, "rider_not_approved").await;

    let (id, offline) = app.rider("rider-offline", "approved").await;
    app.ws_refused(&offline, 403, "rider_offline").await;

    // Decided at connect time from the database: the same token works once online.
    app.db
        .execute(
            "UPDATE riders SET online = true, last_lat = 31.2, last_lng = 121.4 WHERE user_id = $1",
            &[&id.0],
        )
        .await;
    let client = app.ws_ok(&offline).await;
    assert_eq!(client.welcome["data"]["roles"], json!(["rider"]));
}

async fn merchants_must_administer_an_approved_merchant(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let ((_, token), merchant) = app.merchant_admin("owner-1", false).await;
    app.ws_refused(&token, 403, "not_merchant_admin").await;
    let (_, no_shop) = app.user_with_role("owner-2", Role::Merchant).await;
    app.ws_refused(&no_shop, 403, "not_merchant_admin").await;

    app.db
        .execute(
            "UPDATE merchants SET status = 'approved', approved_at = now() WHERE id = $1",
            &[&merchant],
        )
        .await;
    let client = app.ws_ok(&token).await;
    assert_eq!(client.welcome["data"]["roles"], json!(["merchant"]));
}

async fn platform_staff_connect_with_every_role_that_passes(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let ((id, token), _) = app.merchant_admin("staff-and-owner", true).await;
    app.user_with_role("staff-and-owner", Role::Platform).await;
    let client = app.ws_ok(&token).await;
    assert_eq!(client.welcome["data"]["user_id"], id.0);
    assert_eq!(
        client.welcome["data"]["roles"],
        json!(["merchant", "platform"])
    );
}

async fn the_token_may_come_in_the_header(engine: EngineKind) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = spawn_app_on(engine).await;
    let (_, token) = app.socket_user(Role::Platform).await;
    let url = format!("{}/v1/ws", app.address.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    WsClient::connect(request)
        .await
        .expect("admitted with the header");
}

async fn too_many_sockets_is_429_until_one_closes(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let (_, token) = app.socket_user(Role::Platform).await;
    let mut sockets = Vec::new();
    for _ in 0..app.config.ws.max_sockets_per_user {
        sockets.push(app.ws_ok(&token).await);
    }
    app.ws_refused(&token, 429, "too_many_sockets").await;
    // Another user is not affected.
    let (_, other) = app.socket_user(Role::Platform).await;
    app.ws_ok(&other).await;

    let mut closing = sockets.pop().unwrap();
    closing.stream.close(None).await.unwrap();
    // The place is released as the session ends: wait for it, bounded.
    let admitted = within(crate::support::WAIT, POLL, async || {
        app.ws(&token).await.is_ok().then_some(())
    })
    .await;
    assert!(admitted.is_some(), "a closed socket frees its place");
}

/// Places another replica took and stopped renewing (it died): while they are fresh
/// the user is full; once overdue for renewal they give way to a new socket, long
/// before their leases run out.
async fn places_of_a_dead_replica_give_way_once_overdue(engine: EngineKind) {
    use locallife::hub::{LEASE, LEASE_OVERDUE};
    let app = spawn_app_on(engine).await;
    let (user, token) = app.socket_user(Role::Platform).await;
    let engine = app.state.hub().engine().clone();
    let max = app.config.ws.max_sockets_per_user;
    let now = locallife::time::unix_ms();
    let ms = |d: Duration| d.as_millis() as u64;
    let take = |conn: String, until: u64| {
        let engine = engine.clone();
        async move {
            engine
                .acquire_socket(user, &conn, max, until, until - ms(LEASE_OVERDUE))
                .await
                .unwrap()
        }
    };
    // Renewed a moment ago by a replica that is alive: they hold.
    for i in 0..max {
        let place = take(format!("alive-{i}"), now + ms(LEASE)).await;
        assert_eq!(place, locallife::engine::Place::Taken);
    }
    app.ws_refused(&token, 429, "too_many_sockets").await;
    for i in 0..max {
        engine
            .release_socket(user, &format!("alive-{i}"))
            .await
            .unwrap();
    }
    // Last renewed LEASE_OVERDUE + 1 s ago: their replica is gone.
    let renewed = now + ms(LEASE) - ms(LEASE_OVERDUE) - 1000;
    for i in 0..max {
        let place = take(format!("dead-{i}"), renewed).await;
        assert_eq!(place, locallife::engine::Place::Taken);
    }
    app.ws_ok(&token).await;
}

async fn reconnecting_too_often_is_429(engine: EngineKind) {
    let app = spawn_app_with(|env| {
        use_engine(env, engine);
        env.insert("WS_MAX_SOCKETS_PER_USER".into(), "100".into());
    })
    .await;
    let (_, token) = app.socket_user(Role::Platform).await;
    let mut open = Vec::new();
    for _ in 0..locallife::engine::CONNECT_LIMIT {
        open.push(app.ws_ok(&token).await);
    }
    app.ws_refused(&token, 429, "connect_rate_limited").await;
    let (_, other) = app.socket_user(Role::Platform).await;
    app.ws_ok(&other).await;
}

async fn a_draining_replica_refuses_sockets(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let (_, token) = app.socket_user(Role::Platform).await;
    app.state.start_draining();
    app.ws_refused(&token, 503, "draining").await;
    assert_eq!(app.get("/readyz", None).await.0, 503);
}

async fn a_plain_get_is_400(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let (_, token) = app.socket_user(Role::Platform).await;
    assert_error(
        &app.get("/v1/ws", Some(&token)).await,
        400,
        "websocket_required",
    );
    // Admission comes first: no token is 401 even without an upgrade.
    assert_error(&app.get("/v1/ws", None).await, 401, "unauthorized");
}

async fn welcome_describes_the_connection(engine: EngineKind) {
    let app = spawn_with_keepalive(engine, "20s", "45s").await;
    let (id, token) = app.socket_user(Role::Platform).await;
    let a = app.ws_ok(&token).await;
    let b = app.ws_ok(&token).await;
    let w = &a.welcome;
    assert_eq!(w["data"]["user_id"], id.0);
    assert_eq!(w["data"]["roles"], json!(["platform"]));
    assert_eq!(w["data"]["ping_interval_s"], 20);
    assert_eq!(w["data"]["idle_timeout_s"], 45);
    let ts = w["timestamp"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
    assert!(w["data"]["connection_id"]
        .as_str()
        .is_some_and(|c| !c.is_empty()));
    assert_ne!(
        w["data"]["connection_id"],
        b.welcome["data"]["connection_id"]
    );
}

async fn ping_gets_pong(engine: EngineKind) {
    let (_app, mut c) = staff_socket(engine).await;
    c.send_json(json!({"type": "ping", "data": {}})).await;
    let pong = c.next_json().await;
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["data"], json!({}));
    assert!(pong["timestamp"].is_string());
}

async fn bad_messages_get_errors_and_the_socket_stays(engine: EngineKind) {
    let (_app, mut c) = staff_socket(engine).await;
    for (frame, code) in [
        ("{not json", "bad_json"),
        ("42", "bad_json"),
        (r#"{"type":"subscribe","data":{}}"#, "unknown_type"),
        (r#"{"type":"ack","data":{}}"#, "invalid_data"),
        (r#"{"type":"ack"}"#, "invalid_data"),
        (
            r#"{"type":"location","data":{"lat":200,"lng":0}}"#,
            "invalid_data",
        ),
    ] {
        c.send_text(frame).await;
        let e = c.next_json().await;
        assert_eq!(e["type"], "error", "{frame}");
        assert_eq!(e["data"]["code"], code, "{frame}");
        assert!(e["data"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    c.roundtrip().await;
}

async fn persistent_garbage_is_closed_1008(engine: EngineKind) {
    let (_app, mut c) = staff_socket(engine).await;
    flood(&mut c, "garbage", 20).await;
    assert_eq!(c.closed_with().await, 1008);
}

async fn flooding_is_closed_1008(engine: EngineKind) {
    let (_app, mut c) = staff_socket(engine).await;
    flood(&mut c, r#"{"type":"ping"}"#, 200).await;
    assert_eq!(c.closed_with().await, 1008);
}

/// WebSocket Ping frames count against the message rate: a Ping flood is closed 1008.
async fn a_ping_frame_flood_is_closed_1008(engine: EngineKind) {
    let (_app, mut c) = staff_socket(engine).await;
    for _ in 0..200 {
        let frame = tokio_tungstenite::tungstenite::Message::Ping(vec![1u8].into());
        if c.stream.send(frame).await.is_err() {
            break;
        }
    }
    assert_eq!(c.closed_with().await, 1008);
}

async fn oversize_frames_are_closed_1009(engine: EngineKind) {
    let (_app, mut c) = staff_socket(engine).await;
    // Just under the limit is fine.
    let fits = format!(
        r#"{{"type":"ping","data":{{"pad":"{}"}}}}"#,
        "x".repeat(4000)
    );
    c.send_text(&fits).await;
    assert_eq!(c.next_json().await["type"], "pong");
    let big = format!(
        r#"{{"type":"ping","data":{{"pad":"{}"}}}}"#,
        "x".repeat(5000)
    );
    let _ = c
        .stream
        .send(tokio_tungstenite::tungstenite::Message::text(big))
        .await;
    assert_eq!(c.closed_with().await, 1009);
}

async fn binary_frames_are_closed_1003(engine: EngineKind) {
    let (_app, mut c) = staff_socket(engine).await;
    c.stream
        .send(tokio_tungstenite::tungstenite::Message::binary(vec![
            1u8, 2, 3,
        ]))
        .await
        .unwrap();
    assert_eq!(c.closed_with().await, 1003);
}

async fn only_riders_send_location(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let (_, staff) = app.socket_user(Role::Platform).await;
    let mut c = app.ws_ok(&staff).await;
    c.send_json(json!({"type": "location", "data": {"lat": 31.2, "lng": 121.4}}))
        .await;
    let e = c.next_json().await;
    assert_eq!(
        (e["type"].as_str(), e["data"]["code"].as_str()),
        (Some("error"), Some("not_rider"))
    );

    let (_, rider) = app.socket_user(Role::Rider).await;
    let mut r = app.ws_ok(&rider).await;
    r.send_json(json!({"type": "location", "data": {"lat": 31.2, "lng": 121.4}}))
        .await;
    r.send_json(json!({"type": "ack", "data": {"message_id": "anything"}}))
        .await;
    // Accepted silently: the next thing back is the pong.
    r.send_json(json!({"type": "ping"})).await;
    assert_eq!(r.next_json().await["type"], "pong");
}

async fn pings_are_sent_and_silence_is_closed_4000(engine: EngineKind) {
    let app = spawn_with_keepalive(engine, "150ms", "700ms").await;
    let (_, token) = app.socket_user(Role::Platform).await;
    let mut raw = RawClient::connect(&app.address, &token).await;
    let (code, pings) = raw.until_close().await;
    assert_eq!(code, 4000);
    assert!(pings >= 2, "Ping frames were sent while waiting: {pings}");
}

async fn app_level_pings_alone_keep_a_socket_alive(engine: EngineKind) {
    let app = spawn_with_keepalive(engine, "150ms", "600ms").await;
    let (_, token) = app.socket_user(Role::Platform).await;
    // This client never answers Ping frames, like a mini-program may not.
    let mut raw = RawClient::connect(&app.address, &token).await;
    let mut pongs = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(2000) {
        raw.send_text(r#"{"type":"ping"}"#).await;
        loop {
            let frame = raw.next_frame().await.expect("still open");
            assert_ne!(frame.opcode, 0x8, "closed while pinging");
            if frame.opcode == 0x1 {
                pongs += 1;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(pongs >= 5);
    // Silence now closes it.
    assert_eq!(raw.until_close().await.0, 4000);
}

async fn an_expired_token_closes_the_socket_4001(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let (id, _) = app.socket_user(Role::Platform).await;
    let short = app.tokens.mint_with_ttl(id, Duration::from_secs(1)).token;
    let mut c = app.ws_ok(&short).await;
    assert_eq!(c.closed_with().await, 4001);
}

async fn a_user_notification_reaches_every_socket_of_the_user(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let (_, staff) = app.socket_user(Role::Platform).await;
    let (rider, rider_token) = app.socket_user(Role::Rider).await;
    let mut a = app.ws_ok(&rider_token).await;
    let mut b = app.ws_ok(&rider_token).await;
    let (_, other_token) = app.socket_user(Role::Rider).await;
    let mut other = app.ws_ok(&other_token).await;

    let (status, body) = app
        .post_notification(
            &staff,
            &json!({"user_id": rider.0, "title": "调度", "content": "请前往商家", "data": {"order_id": 7}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let message_id = body["message_id"].as_str().unwrap().to_owned();
    for c in [&mut a, &mut b] {
        let n = c.next_notification().await;
        assert_eq!(n["data"]["message_id"], message_id.as_str());
        assert_eq!(n["data"]["event"], "platform.notice");
        assert_eq!(n["data"]["title"], "调度");
        assert_eq!(n["data"]["content"], "请前往商家");
        assert_eq!(n["data"]["order_id"], 7);
        assert_eq!(n["data"]["requires_ack"], true);
        assert!(n["timestamp"].is_string());
    }
    assert!(other.nothing_within(Duration::from_millis(300)).await);
}

async fn announcements_reach_every_socket_of_the_role_only(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let (_, staff) = app.socket_user(Role::Platform).await;
    let (_, r1) = app.socket_user(Role::Rider).await;
    let (_, r2) = app.socket_user(Role::Rider).await;
    let (_, m) = app.socket_user(Role::Merchant).await;
    let mut riders = [app.ws_ok(&r1).await, app.ws_ok(&r2).await];
    let mut merchant = app.ws_ok(&m).await;
    let (status, body) = app
        .post_notification(
            &staff,
            &json!({"role": "rider", "title": "暴雨", "content": "注意安全"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    for r in &mut riders {
        let n = r.next_notification().await;
        assert_eq!(n["data"]["event"], "announcement");
        assert_eq!(n["data"]["requires_ack"], false);
        assert_eq!(n["data"]["title"], "暴雨");
    }
    assert!(merchant.nothing_within(Duration::from_millis(300)).await);
}

async fn a_user_who_reconnects_is_subscribed_again(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let (_, staff) = app.socket_user(Role::Platform).await;
    let (rider, token) = app.socket_user(Role::Rider).await;
    for round in 0..3 {
        let mut c = app.ws_ok(&token).await;
        let (status, _) = app
            .post_notification(
                &staff,
                &json!({"user_id": rider.0, "title": format!("round {round}"), "content": ""}),
            )
            .await;
        assert_eq!(status, 202);
        let n = c.next_notification().await;
        assert_eq!(n["data"]["title"], format!("round {round}"));
        c.ack(&n).await;
        c.roundtrip().await;
        c.stream.close(None).await.unwrap();
    }
}

async fn publishing_is_for_platform_staff_with_a_valid_target(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let (_, staff) = app.socket_user(Role::Platform).await;
    let (rider, rider_token) = app.socket_user(Role::Rider).await;
    let body = json!({"user_id": rider.0, "title": "t", "content": "c"});
    assert_error(
        &app.post_notification(&rider_token, &body).await,
        403,
        "forbidden",
    );
    assert_error(
        &app.post_json("/v1/platform/notifications", None, &body)
            .await,
        401,
        "unauthorized",
    );
    for (bad, status, code) in [
        (json!({"title": "t", "content": "c"}), 422, "invalid_target"),
        (
            json!({"user_id": rider.0, "role": "rider", "title": "t", "content": "c"}),
            422,
            "invalid_target",
        ),
        (
            json!({"role": "consumer", "title": "t", "content": "c"}),
            422,
            "invalid_role",
        ),
        (
            json!({"role": "admin", "title": "t", "content": "c"}),
            422,
            "invalid_body",
        ),
        (
            json!({"user_id": 999_999, "title": "t", "content": "c"}),
            404,
            "user_not_found",
        ),
        (
            json!({"user_id": rider.0, "title": "", "content": "c"}),
            422,
            "invalid_title",
        ),
        (
            json!({"user_id": rider.0, "title": "t", "content": "c", "data": [1]}),
            422,
            "invalid_body",
        ),
    ] {
        let answer = app.post_notification(&staff, &bad).await;
        assert_eq!(answer.0, status, "{bad}: {}", answer.1);
        assert_error(&answer, status, code);
    }
}

async fn connections_are_counted_by_role(engine: EngineKind) {
    let app = spawn_app_on(engine).await;
    let (_, staff) = app.socket_user(Role::Platform).await;
    let (_, rider) = app.socket_user(Role::Rider).await;
    let _s = app.ws_ok(&staff).await;
    let _r1 = app.ws_ok(&rider).await;
    let _r2 = app.ws_ok(&rider).await;
    let (status, body) = app.get("/v1/platform/connections", Some(&staff)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"]["sockets"], 3);
    assert_eq!(body["total"]["by_role"]["rider"], 2);
    assert_eq!(body["total"]["by_role"]["platform"], 1);
    assert_eq!(body["total"]["by_role"]["merchant"], 0);
    assert_eq!(body["replicas"].as_array().unwrap().len(), 1);
    assert_eq!(body["replicas"][0]["replica_id"], body["replica_id"]);
    assert_error(
        &app.get("/v1/platform/connections", Some(&rider)).await,
        403,
        "forbidden",
    );
}

async fn stopping_the_replica_closes_sockets_1001(engine: EngineKind) {
    let (app, mut c) = staff_socket(engine).await;
    let stopping = tokio::spawn(app.stop());
    assert_eq!(c.closed_with().await, 1001);
    stopping.await.unwrap().expect("stops cleanly");
}
