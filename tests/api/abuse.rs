//! What a stranger or a single customer must not be able to do to a replica (SPEC §4,
//! "Abuse limits"): grow its metrics, make it do database work or call WeChat before a
//! limit, take every connection place, store made-up rows, lock another token out, get
//! round the order caps, choose their own rate-limit key, or get a 500 from a control
//! character.

use locallife::domain::Role;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{assert_error, eventually, spawn_app, spawn_app_with, TestApp, WAIT};

/// Made-up HTTP methods share one label: `/metrics` gains no series per method.
#[tokio::test]
async fn made_up_methods_add_no_metrics_series() {
    let app = spawn_app().await;
    for i in 0..50 {
        let method = reqwest::Method::from_bytes(format!("XMADEUP{i:04}").as_bytes()).unwrap();
        let answer = app
            .http
            .request(method, app.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_client_error(), "{}", answer.status());
    }
    let text = app.metrics_text().await;
    assert!(!text.contains("XMADEUP"), "a made-up method became a label");
    assert!(
        text.lines()
            .any(|l| l.starts_with("locallife_http_requests_total")
                && l.contains("method=\"other\"")
                && l.contains("status=\"4xx\"")),
        "made-up methods are counted as `other`, statuses by class"
    );
}

/// A token that is always refused (a consumer's) spends its user's connect quota before
/// any database work: past the quota the upgrade is a 429, not another query.
#[tokio::test]
async fn refused_socket_upgrades_hit_the_connect_limit_before_the_database() {
    let app = spawn_app().await;
    let (_, consumer) = app.user_with_role("hammer", Role::Consumer).await;
    let mut statuses = Vec::new();
    for _ in 0..40 {
        let refused = app.ws(&consumer).await.err().expect("never admitted");
        statuses.push((refused.status, refused.body["code"].clone()));
    }
    let forbidden = statuses.iter().filter(|(s, _)| *s == 403).count();
    let limited = statuses
        .iter()
        .filter(|(s, c)| *s == 429 && c == "connect_rate_limited")
        .count();
    assert!(
        forbidden <= locallife::engine::CONNECT_LIMIT as usize,
        "{statuses:?}"
    );
    assert_eq!(forbidden + limited, 40, "{statuses:?}");
}

/// A logged-out token replayed against the API and the socket is refused without
/// spending anything of its user's quota: the user's new token still works.
#[tokio::test]
async fn a_logged_out_token_spends_nothing_of_its_owners_quota() {
    let app = spawn_app_with(|env| {
        env.insert("HTTP_RATE_USER".into(), "5".into());
    })
    .await;
    let (user, old) = app.socket_user(Role::Platform).await;
    let (status, _) = app
        .post_json("/v1/auth/logout", Some(&old), &json!({}))
        .await;
    assert_eq!(status, 204);
    // A wave at once: each is refused (401), or limited on the old token's own quota.
    let replays = futures::future::join_all((0..60).map(|_| app.get("/v1/me", Some(&old)))).await;
    assert!(
        replays.iter().all(|(s, _)| *s == 401 || *s == 429),
        "{replays:?}"
    );
    // Once known, the logged-out token is refused at once, however often.
    for _ in 0..30 {
        assert_error(&app.get("/v1/me", Some(&old)).await, 401, "unauthorized");
    }
    for _ in 0..30 {
        app.ws_refused(&old, 401, "unauthorized").await;
    }
    let fresh = app.fresh_token(user).await;
    for _ in 0..5 {
        assert_eq!(app.get("/v1/me", Some(&fresh)).await.0, 200);
    }
    app.ws_ok(&fresh).await;
}

/// Reads what the server answers on a raw connection (up to its close).
async fn answer_of(stream: &mut tokio::net::TcpStream) -> String {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut got)).await;
    String::from_utf8_lossy(&got).into_owned()
}

/// A connection to `app` from the local address `from`.
async fn connect_from(app: &TestApp, from: &str) -> tokio::net::TcpStream {
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap()
}

/// `GET /healthz` on a fresh connection from `from`: the raw answer.
async fn healthz_from(app: &TestApp, from: &str) -> String {
    let mut stream = connect_from(app, from).await;
    let _ = stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await;
    answer_of(&mut stream).await
}

/// `MAX_CONNECTIONS_PER_ADDRESS`: one address holding its share of idle connections
/// is refused more (429), while another address is served; a closed connection gives
/// its place back. Behind a proxy the cap is off (every connection is the proxy's).
#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let app = spawn_app_with(|env| {
        env.insert("MAX_CONNECTIONS".into(), "30".into());
        env.insert("MAX_CONNECTIONS_PER_ADDRESS".into(), "5".into());
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(connect_from(&app, "127.0.0.1").await);
    }
    // The accept loop counts the held ones before it answers the next.
    let over = eventually(
        WAIT,
        "a sixth connection from one address is refused",
        async || {
            let answer = healthz_from(&app, "127.0.0.1").await;
            answer.starts_with("HTTP/1.1 429").then_some(answer)
        },
    )
    .await;
    assert!(over.contains("too_many_connections"), "{over}");
    let elsewhere = healthz_from(&app, "127.0.0.2").await;
    assert!(elsewhere.starts_with("HTTP/1.1 200"), "{elsewhere}");
    drop(idle.pop());
    eventually(
        WAIT,
        "a closed connection gives its place back",
        async || {
            let answer = healthz_from(&app, "127.0.0.1").await;
            answer.starts_with("HTTP/1.1 200").then_some(())
        },
    )
    .await;

    let mut env = std::collections::HashMap::from([
        (
            "DATABASE_URL".to_owned(),
            "postgres://x@127.0.0.1/x".to_owned(),
        ),
        (
            "JWT_SECRET".to_owned(),
            crate::support::JWT_SECRET.to_owned(),
        ),
    ]);
    let config = |env: &std::collections::HashMap<String, String>| {
        locallife::config::Config::from_lookup(|k| env.get(k).cloned()).unwrap()
    };
    assert_eq!(config(&env).connections.max_per_address, Some(1000));
    env.insert("HTTP_FORWARDED_FOR".into(), "true".into());
    assert_eq!(config(&env).connections.max_per_address, None);
}

/// Polls `path` as `token` until `done` holds of the body.
async fn until(app: &TestApp, path: &str, token: &str, done: impl Fn(&Value) -> bool) -> Value {
    let what = format!("{path} reaches the state awaited");
    eventually(WAIT, &what, async || {
        let (status, body) = app.get(path, Some(token)).await;
        (status == 200 && done(&body)).then_some(body)
    })
    .await
}

/// Acks of ids the user was never sent (dated a year ahead, long ago, or now) store
/// nothing; the ack of a real notification, sent after them, is recorded.
#[tokio::test]
async fn acks_of_made_up_ids_store_no_receipts() {
    let app = spawn_app().await;
    let (_, staff) = app.user_with_role("staff", Role::Platform).await;
    let (merchant, token) = app.socket_user(Role::Merchant).await;
    let mut socket = app.ws_ok(&token).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for i in 0..60u64 {
        let id = match i % 3 {
            0 => format!("{}-{i}", now + 400 * 86_400_000),
            1 => format!("{}-{i}", 1_000 + i),
            _ => format!("{now}-{}", 1_000_000 + i),
        };
        socket
            .send_json(json!({"type": "ack", "data": {"message_id": id}}))
            .await;
    }
    let (status, sent) = app
        .post_notification(
            &staff,
            &json!({"user_id": merchant.0, "title": "t", "content": ""}),
        )
        .await;
    assert_eq!(status, 202);
    let id = sent["message_id"].as_str().unwrap().to_owned();
    let n = socket.next_notification().await;
    socket.ack(&n).await;
    until(
        &app,
        &format!("/v1/platform/notifications/{id}"),
        &staff,
        |r| r["recipients"][0]["state"] == "acked",
    )
    .await;
    let others: i64 = app
        .db
        .scalar(
            "SELECT count(*) FROM receipt_batches b, unnest(b.message_ids) AS m WHERE m <> $1",
            &[&id],
        )
        .await;
    assert_eq!(others, 0, "acks of ids never sent left receipt rows");
    let ahead: i64 = app
        .db
        .scalar(
            "SELECT count(*) FROM receipt_batches WHERE bucket > extract(epoch FROM now()) + 300",
            &[],
        )
        .await;
    assert_eq!(ahead, 0);
}

/// Behind a proxy, the right-most `X-Forwarded-For` entry is the key, with a port or
/// not; one that does not parse means the peer (never the client's own claims before
/// it); IPv6 clients count by their /64.
#[tokio::test]
async fn the_forwarded_address_cannot_be_chosen_by_the_client() {
    let app = spawn_app_with(|env| {
        env.insert("HTTP_RATE_ADDRESS".into(), "5".into());
        env.insert("HTTP_FORWARDED_FOR".into(), "true".into());
    })
    .await;
    assert!(burst(&app, |i| format!("6.7.0.{i}, 203.0.113.7:51234")).await > 0);
    assert!(burst(&app, |i| format!("6.7.1.{i}, unknown")).await > 0);
    assert!(burst(&app, |i| format!("2001:db8:0:1::{i:x}")).await > 0);
    assert!(burst(&app, |i| format!("[2001:db8:0:2::{i:x}]:443")).await > 0);
}

/// 60 requests at once, each with its own `X-Forwarded-For`: how many were limited.
async fn burst(app: &TestApp, header: fn(usize) -> String) -> usize {
    let statuses = futures::future::join_all((0..60).map(|i| {
        let request = app
            .http
            .get(app.url("/v1/me"))
            .header("x-forwarded-for", header(i));
        async move { request.send().await.unwrap().status().as_u16() }
    }))
    .await;
    statuses.iter().filter(|s| **s == 429).count()
}

/// A control character in any text field is a 422 naming the field; in a path, a 404.
#[tokio::test]
async fn control_characters_are_422_never_500() {
    let app = spawn_app().await;
    let (_, staff) = app.user_with_role("staff", Role::Platform).await;
    let (_, consumer) = app.user_with_role("c", Role::Consumer).await;
    let cases = [
        (
            "/v1/merchants",
            json!({"name": "老王\u{0}", "lat": 31.2, "lng": 121.4, "address": "a"}),
            "name",
        ),
        (
            "/v1/merchants",
            json!({"name": "老王", "lat": 31.2, "lng": 121.4, "address": "a\u{1b}[2J"}),
            "address",
        ),
        (
            "/v1/rider/apply",
            json!({"name": "\u{0}", "phone": "13800000000"}),
            "name",
        ),
        (
            "/v1/merchants/1/products",
            json!({"name": "面\u{0}", "price_fen": 1, "stock": 1, "low_stock_threshold": 0}),
            "name",
        ),
        (
            "/v1/orders",
            json!({"merchant_id": 1, "items": [{"product_id": 1, "quantity": 1}],
                   "address": {"lat": 31.2, "lng": 121.4, "detail": "门\u{0}口"}}),
            "address.detail",
        ),
    ];
    for (path, body, field) in cases {
        let answer = app.post_json(path, Some(&consumer), &body).await;
        assert_error(&answer, 422, "invalid_body");
        let message = answer.1["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{path}: {message}");
    }
    let answer = app
        .post_notification(
            &staff,
            &json!({"user_id": 1, "title": "t", "content": "c", "data": {"k": "\u{7f}"}}),
        )
        .await;
    assert_error(&answer, 422, "invalid_body");
    // Multi-line text is still text.
    let (_, merchant) = app
        .post_json(
            "/v1/merchants",
            Some(&consumer),
            &json!({"name": "老王", "lat": 31.2, "lng": 121.4, "address": "一楼\n左手边"}),
        )
        .await;
    assert!(merchant["id"].is_i64(), "{merchant}");
    for path in [
        "/v1/platform/notifications/%00",
        "/v1/platform/notifications/a%1Fb",
    ] {
        assert_error(&app.get(path, Some(&staff)).await, 404, "not_found");
    }
}

/// Subscription templates: at most 50 distinct ids per user, also without a templates
/// file (with one, only its ids: `subscriptions.rs`).
#[tokio::test]
async fn subscription_templates_are_capped_per_user() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_role("s", Role::Consumer).await;
    for i in 0..50 {
        let (status, body) = app
            .post_json(
                "/v1/me/subscriptions",
                Some(&token),
                &json!({"template_id": format!("TPL_{i}"), "accepted": 1}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let answer = app
        .post_json(
            "/v1/me/subscriptions",
            Some(&token),
            &json!({"template_id": "TPL_51", "accepted": 1}),
        )
        .await;
    assert_error(&answer, 422, "too_many_templates");
    let (status, _) = app
        .post_json(
            "/v1/me/subscriptions",
            Some(&token),
            &json!({"template_id": "TPL_7", "accepted": 1}),
        )
        .await;
    assert_eq!(status, 200, "a template already held still adds up");
    let (_, list) = app.get("/v1/me/subscriptions", Some(&token)).await;
    assert_eq!(list.as_array().unwrap().len(), 50);
}

/// `Idempotency-Key`: visible ASCII, 1 to 255 bytes.
#[tokio::test]
async fn idempotency_keys_with_spaces_are_400() {
    let app = spawn_app().await;
    let (_, staff) = app.user_with_role("staff", Role::Platform).await;
    let (user, _) = app.user_with_role("u", Role::Merchant).await;
    let body = json!({"user_id": user.0, "title": "t", "content": ""});
    for key in ["a b", "tab\there", &"k".repeat(256)] {
        let answer = app
            .post_with_key("/v1/platform/notifications", &staff, key, &body)
            .await;
        assert_error(&answer, 400, "invalid_idempotency_key");
    }
    let (status, _) = app
        .post_with_key("/v1/platform/notifications", &staff, "order-1:paid", &body)
        .await;
    assert_eq!(status, 202);
}

/// A token signed with the key but living longer than 24 h is refused, whoever minted
/// it.
#[tokio::test]
async fn tokens_longer_than_a_day_are_refused() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let app = spawn_app().await;
    let (user, _) = app.socket_user(Role::Platform).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sign = |iat: u64, exp: u64| {
        let claims = locallife::auth::Claims {
            sub: user.0.to_string(),
            iss: "locallife".into(),
            aud: "locallife".into(),
            iat,
            exp,
            nbf: None,
            iat_ms: None,
            epoch: None,
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(crate::support::JWT_SECRET.as_bytes()),
        )
        .unwrap()
    };
    let century = sign(now, now + 100 * 365 * 86_400);
    assert_error(
        &app.get("/v1/me", Some(&century)).await,
        401,
        "unauthorized",
    );
    app.ws_refused(&century, 401, "unauthorized").await;
    let day = sign(now, now + 86_400);
    assert_eq!(app.get("/v1/me", Some(&day)).await.0, 200);
}

/// Anonymous logins from one address have a small budget, checked before WeChat is
/// called: a flood of made-up codes cannot spend the app's WeChat quota.
#[tokio::test]
async fn anonymous_logins_are_limited_before_wechat_is_called() {
    let app = spawn_app_with(|env| {
        env.insert("HTTP_RATE_LOGIN".into(), "5".into());
    })
    .await;
    let codes: Vec<String> = (0..100).map(|i| format!("made-up-code-{i}")).collect();
    let answers = futures::future::join_all(codes.iter().map(|c| app.login_with_code(c))).await;
    let limited = answers.iter().filter(|(s, _)| *s == 429).count();
    assert!(limited >= 80, "{limited} of 100 limited");
    assert!(
        app.wechat.calls() <= 20,
        "{} calls reached WeChat",
        app.wechat.calls()
    );
    assert!(answers
        .iter()
        .filter(|(s, _)| *s == 429)
        .all(|(_, b)| b["code"] == "rate_limited"));
}

/// A busy socket answers the server's Pings (one per burst of notifications, to prove
/// them delivered) far more often than the ten client messages a second its rate limit
/// allows: those Pongs are confirmations, counted with the acks, so the socket stays
/// open. (Counted as messages, they closed every busy protocol-2 socket 1008.)
#[tokio::test]
async fn answering_the_servers_pings_on_a_busy_socket_is_not_rate_limited() {
    let app = spawn_app().await;
    let (_, staff) = app.user_with_role("staff", Role::Platform).await;
    let (rider, token) = app.socket_user(Role::Rider).await;
    let mut socket = app.ws_ok(&token).await;
    // Each notification a burst of its own: sent, received and acked before the next,
    // so each is followed by a Ping that the client answers while it reads.
    const SENDS: usize = 120;
    for i in 0..SENDS {
        let (status, body) = app
            .post_json(
                "/v1/platform/notifications",
                Some(&staff),
                &json!({"user_id": rider.0, "title": format!("n{i}"), "content": "busy"}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        let n = socket.next_notification().await;
        assert_eq!(n["data"]["title"], format!("n{i}"));
        socket.ack(&n).await;
    }
    // Still open: a ping round trip answers.
    socket.roundtrip().await;
}
