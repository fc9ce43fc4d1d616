//! The two protocol versions of SPEC §2.3. Protocol 1 (the seed's clients, which never
//! ack): a notification is confirmed by the Pong to a Ping written after it, leaves the
//! inbox then, and is never written twice on a live socket; one not confirmed when the
//! socket closes comes again on the next connect. Protocol 2: explicit acks (the rest
//! of the suite connects with it). Also: `?protocol=` values, `welcome`, and the close
//! handshake.

use std::time::Duration;

use locallife::domain::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use futures::{SinkExt, StreamExt};

use crate::support::{
    assert_error, spawn_app_with, use_engine, EngineKind, RawClient, TestApp, WAIT,
};

async fn app(engine: EngineKind) -> TestApp {
    spawn_app_with(|env| {
        use_engine(env, engine);
        // Redelivery would be due at once, were it to happen on protocol 1.
        env.insert("WS_ACK_TIMEOUT".into(), "200ms".into());
    })
    .await
}

on_both_engines!(
    protocol_1_confirms_by_pong_and_never_repeats,
    protocol_1_without_pongs_delivers_again_on_the_next_connect,
);

async fn protocol_1_confirms_by_pong_and_never_repeats(engine: EngineKind) {
    let app = app(engine).await;
    let (rider, token) = app.socket_user(Role::Rider).await;
    let mut c = app.ws_v1(&token).await;
    assert_eq!(c.welcome["data"]["protocol"], 1);
    let ids = [app.publish(rider, "a").await, app.publish(rider, "b").await];
    for id in &ids {
        assert_eq!(
            c.next_notification().await["data"]["message_id"],
            id.as_str()
        );
    }
    // No ack. Reading on, the client answers the Ping written after them; nothing is
    // written twice (redelivery would have been due after 200 ms).
    assert!(
        c.nothing_within(Duration::from_millis(800)).await,
        "never written twice on a live protocol-1 socket"
    );
    // The Pong confirmed both: they left the inbox.
    app.until_inbox(rider, 0, "the inbox holds 0").await;
    drop(c);
    let mut again = app.ws_v1(&token).await;
    assert!(
        again.nothing_within(Duration::from_millis(300)).await,
        "nor after a reconnect"
    );
}

async fn protocol_1_without_pongs_delivers_again_on_the_next_connect(engine: EngineKind) {
    let app = app(engine).await;
    let (rider, token) = app.socket_user(Role::Rider).await;
    // Connected (and welcomed) without `protocol`: protocol 1.
    let mut raw = RawClient::connect(&app.address, &token).await;
    let id = app.publish(rider, "unconfirmed").await;
    // The notification, then the confirming Ping, which this client never answers.
    let mut saw_ping = false;
    while !saw_ping {
        let frame = raw.next_frame().await.expect("a frame");
        saw_ping = frame.opcode == 9;
    }
    app.until_inbox(rider, 1, "the inbox holds 1").await;
    drop(raw);
    let mut c = app.ws_v1(&token).await;
    let n = c.next_notification().await;
    assert_eq!(n["data"]["message_id"], id.as_str(), "delivered once more");
    // This client answers the Ping: confirmed now.
    assert!(c.nothing_within(Duration::from_millis(300)).await);
    app.until_inbox(rider, 0, "the inbox holds 0").await;
}

#[tokio::test]
async fn other_protocol_values_are_refused_before_the_upgrade() {
    let app = app(EngineKind::Memory).await;
    let (_, token) = app.socket_user(Role::Rider).await;
    for bad in ["3", "0", "v2", ""] {
        let url = format!(
            "{}/v1/ws?token={token}&protocol={bad}",
            app.address.replace("http://", "ws://")
        );
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let refused = crate::support::WsClient::connect(url.into_client_request().unwrap())
            .await
            .err()
            .expect("refused");
        assert_error(&(refused.status, refused.body), 400, "unsupported_protocol");
    }
    let c = app.ws_ok(&token).await;
    assert_eq!(c.welcome["data"]["protocol"], 2);
    let expires = c.welcome["data"]["token_expires_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(expires).unwrap() > chrono::Utc::now());
}

/// RFC 6455 §5.5.1: a client that closes with 1000 gets a close frame back, not 1006.
#[tokio::test]
async fn a_client_close_is_answered() {
    let app = app(EngineKind::Memory).await;
    let (_, token) = app.socket_user(Role::Merchant).await;
    let mut c = app.ws_v1(&token).await;
    c.stream
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        })))
        .await
        .unwrap();
    let answer = tokio::time::timeout(WAIT, async {
        loop {
            match c.stream.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("answered in time");
    assert_eq!(answer.map(|f| f.code), Some(CloseCode::Normal));
}

on_both_engines!(protocol_2_auth_extends_the_socket_past_its_first_token);

/// Protocol 2's in-band `auth`: a fresh token of the same user moves the socket's end
/// (answered `auth_ok`); anything else is an `error`, and the socket still closes with
/// 4001 when its token expires.
async fn protocol_2_auth_extends_the_socket_past_its_first_token(engine: EngineKind) {
    let app = app(engine).await;
    let (user, _) = app.socket_user(Role::Merchant).await;
    let short = app.tokens.mint_with_ttl(user, Duration::from_secs(2));
    let mut c = app.ws_ok(&short.token).await;
    let fresh = app.tokens.mint_with_ttl(user, Duration::from_secs(600));
    c.send_json(serde_json::json!({"type": "auth", "data": {"token": fresh.token}}))
        .await;
    let ok = c.next_json().await;
    assert_eq!(ok["type"], "auth_ok", "{ok}");
    let until =
        chrono::DateTime::parse_from_rfc3339(ok["data"]["expires_at"].as_str().unwrap()).unwrap();
    assert!(until > chrono::Utc::now() + chrono::Duration::seconds(500));
    // Past the first token's expiry, the socket is still there.
    assert!(c.nothing_within(Duration::from_secs(4)).await);
    c.roundtrip().await;

    let short = app.tokens.mint_with_ttl(user, Duration::from_secs(2));
    let mut refused = app.ws_ok(&short.token).await;
    let (other, _) = app.socket_user(Role::Merchant).await;
    let theirs = app.tokens.mint(other);
    refused
        .send_json(serde_json::json!({"type": "auth", "data": {"token": theirs.token}}))
        .await;
    let e = refused.next_json().await;
    assert_eq!(
        (e["type"].as_str(), e["data"]["code"].as_str()),
        (Some("error"), Some("invalid_token"))
    );
    assert_eq!(
        refused.closed_with().await,
        4001,
        "at the first token's expiry"
    );

    let mut v1 = app.ws_v1(&app.tokens.mint(user).token).await;
    v1.send_json(serde_json::json!({"type": "auth", "data": {"token": fresh.token}}))
        .await;
    assert_eq!(v1.next_json().await["data"]["code"], "unsupported");
}

/// A refused handshake: protocol 1 keeps the HTTP answer the seed documents; protocol 2
/// completes the upgrade and closes at once with the status as a close code (4001,
/// 4003, 4029) and the error body as the reason, since a mini-program cannot read the
/// status of a refused upgrade.
#[tokio::test]
async fn refusals_are_http_for_protocol_1_and_close_codes_for_protocol_2() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = spawn_app_with(|env| {
        env.insert("WS_MAX_SOCKETS_PER_USER".into(), "1".into());
    })
    .await;
    let base = app.address.replace("http://", "ws://");
    let v1 = |token: &str| {
        let url = format!("{base}/v1/ws?token={token}");
        async move {
            crate::support::WsClient::connect(url.into_client_request().unwrap())
                .await
                .err()
                .expect("refused")
        }
    };
    let bad = "not-a-token";
    let refused = app.ws(bad).await.err().expect("refused");
    assert_eq!(refused.close_code, Some(4001));
    assert_error(&(refused.status, refused.body), 401, "unauthorized");
    let refused = v1(bad).await;
    assert_eq!(refused.close_code, None);
    assert_error(&(refused.status, refused.body), 401, "unauthorized");

    let (_, offline) = app.rider("offline-rider", "approved").await;
    let refused = app.ws_refused(&offline, 403, "rider_offline").await;
    assert_eq!(refused.close_code, Some(4003));
    assert_eq!(v1(&offline).await.close_code, None);

    let (_, token) = app.socket_user(Role::Merchant).await;
    let _held = app.ws_ok(&token).await;
    let refused = app.ws_refused(&token, 429, "too_many_sockets").await;
    assert_eq!(refused.close_code, Some(4029));
    assert!(refused.body["retry_after_s"].as_u64().unwrap() > 0);
    let refused = v1(&token).await;
    assert_eq!((refused.status, refused.close_code), (429, None));
    assert!(refused.body["retry_after_s"].as_u64().unwrap() > 0);
    // And the header, for HTTP clients.
    let plain = app
        .http
        .get(format!("{}/v1/ws?token={token}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 429);
    let after: u64 = plain.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(after > 0);
}
