//! `GET /v1/me` and the `Caller` extractor: who may call, and what they see.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use locallife::auth::Claims;
use locallife::domain::{Role, UserId};
use serde_json::json;

use crate::support::{assert_error, spawn_app, spawn_cluster, JWT_SECRET};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn forge(claims: &Claims, key: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

fn claims(sub: &str, exp: u64) -> Claims {
    Claims {
        sub: sub.into(),
        iss: "locallife".into(),
        aud: "locallife".into(),
        iat: now() - 10,
        exp,
        nbf: None,
        iat_ms: None,
        epoch: None,
    }
}

#[tokio::test]
async fn a_platform_user_made_by_the_cli_path_sees_their_roles() {
    let app = spawn_app().await;
    let (id, token) = app.user_with_role("staff-1", Role::Platform).await;
    let (status, me) = app.get("/v1/me", Some(&token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me,
        json!({ "id": id.0, "roles": ["platform"], "rider": null, "merchants": [] })
    );
}

#[tokio::test]
async fn roles_are_read_at_call_time_not_from_the_token() {
    let app = spawn_app().await;
    let (id, token) = app.user_with_role("grow-1", Role::Consumer).await;
    let (_, before) = app.get("/v1/me", Some(&token)).await;
    assert_eq!(before["roles"], json!(["consumer"]));
    // Granting a role after the token was minted takes effect on the next call.
    app.user_with_role("grow-1", Role::Merchant).await;
    let (_, after) = app.get("/v1/me", Some(&token)).await;
    assert_eq!(after["id"], id.0);
    assert_eq!(after["roles"], json!(["consumer", "merchant"]));
}

#[tokio::test]
async fn rider_and_merchant_records_are_shown() {
    let app = spawn_app().await;
    let (id, token) = app.user_with_role("rider-and-owner", Role::Rider).await;
    app.db
        .execute(
            "INSERT INTO riders (user_id, name, phone) VALUES ($1, 'Li Lei', '13800000000')",
            &[&id.0],
        )
        .await;
    let merchant = app.merchant_of(id, "Noodle Bar", "pending").await;
    let (status, me) = app.get("/v1/me", Some(&token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["rider"]["status"], "pending");
    assert_eq!(me["rider"]["online"], false);
    assert_eq!(me["rider"]["name"], "Li Lei");
    assert_eq!(
        me["merchants"],
        json!([{ "id": merchant, "name": "Noodle Bar", "status": "pending", "suspension": null }])
    );
}

#[tokio::test]
async fn missing_malformed_and_foreign_tokens_are_401() {
    let app = spawn_app().await;
    let (id, good) = app.user_with_role("tok-1", Role::Platform).await;
    assert_error(&app.get("/v1/me", None).await, 401, "unauthorized");
    assert_error(
        &app.get("/v1/me", Some("not-a-jwt")).await,
        401,
        "unauthorized",
    );

    let wrong_key = forge(
        &claims(&id.to_string(), now() + 600),
        "another-secret-0123456789abcdef-012345",
    );
    assert_error(
        &app.get("/v1/me", Some(&wrong_key)).await,
        401,
        "unauthorized",
    );

    let mut other_issuer = claims(&id.to_string(), now() + 600);
    other_issuer.iss = "someone-else".into();
    assert_error(
        &app.get("/v1/me", Some(&forge(&other_issuer, JWT_SECRET)))
            .await,
        401,
        "unauthorized",
    );

    // A scheme other than Bearer does not count.
    let resp = app
        .http
        .get(app.url("/v1/me"))
        .header("authorization", format!("Basic {good}"))
        .send()
        .await
        .unwrap();
    assert_error(&crate::support::into_parts(resp).await, 401, "unauthorized");

    // The HTTP API takes the header only; `?token=` is for the socket.
    assert_error(
        &app.get(&format!("/v1/me?token={good}"), None).await,
        401,
        "unauthorized",
    );
    assert_eq!(app.get("/v1/me", Some(&good)).await.0, 200);
}

#[tokio::test]
async fn expired_tokens_are_401_past_the_five_second_leeway() {
    let app = spawn_app().await;
    let (id, _) = app.user_with_role("tok-2", Role::Platform).await;
    let sub = id.to_string();
    let expired = forge(&claims(&sub, now() - 60), JWT_SECRET);
    assert_error(
        &app.get("/v1/me", Some(&expired)).await,
        401,
        "unauthorized",
    );
    let just_expired = forge(&claims(&sub, now() - 2), JWT_SECRET);
    assert_eq!(app.get("/v1/me", Some(&just_expired)).await.0, 200);
}

#[tokio::test]
async fn a_token_for_a_user_that_does_not_exist_is_401() {
    let app = spawn_app().await;
    let token = app.tokens.mint(UserId(987_654)).token;
    assert_error(&app.get("/v1/me", Some(&token)).await, 401, "unauthorized");
}

/// A token whose `nbf` is still ahead is refused.
#[tokio::test]
async fn a_token_not_valid_before_a_future_time_is_401() {
    let app = spawn_app().await;
    let (user, _) = app.user_with_role("early", Role::Platform).await;
    let mut c = claims(&user.0.to_string(), now() + 600);
    c.nbf = Some(now() + 60);
    assert_error(
        &app.get("/v1/me", Some(&forge(&c, JWT_SECRET))).await,
        401,
        "unauthorized",
    );
    c.nbf = Some(now() - 1);
    assert_eq!(app.get("/v1/me", Some(&forge(&c, JWT_SECRET))).await.0, 200);
}

/// `POST /v1/auth/logout` on one replica: the token is refused on the other, the user's
/// socket there closes with 4001, a socket cannot be opened with it any more, and a token
/// minted afterwards works.
#[tokio::test]
async fn logout_refuses_older_tokens_and_closes_sockets_on_every_replica() {
    let apps = spawn_cluster(2).await;
    let (a, b) = (&apps[0], &apps[1]);
    let (user, token) = a.socket_user(Role::Platform).await;
    let mut socket = b.ws_ok(&token).await;
    assert_eq!(b.get("/v1/me", Some(&token)).await.0, 200);

    let (status, _) = a
        .post_json("/v1/auth/logout", Some(&token), &json!({}))
        .await;
    assert_eq!(status, 204);
    assert_error(&b.get("/v1/me", Some(&token)).await, 401, "unauthorized");
    assert_eq!(socket.closed_with().await, 4001);
    b.ws_refused(&token, 401, "unauthorized").await;

    let fresh = a.fresh_token(user).await;
    assert_eq!(b.get("/v1/me", Some(&fresh)).await.0, 200);
    let mut again = b.ws_ok(&fresh).await;
    // Nor can the old token extend a new socket in band.
    again
        .send_json(json!({"type": "auth", "data": {"token": token}}))
        .await;
    let refused = again.next_json().await;
    assert_eq!(
        (refused["type"].as_str(), refused["data"]["code"].as_str()),
        (Some("error"), Some("invalid_token")),
        "{refused}"
    );
    again
        .send_json(json!({"type": "auth", "data": {"token": a.fresh_token(user).await}}))
        .await;
    assert_eq!(again.next_json().await["type"], "auth_ok");
}

/// Per-user and per-address request limits: a user over their quota gets 429 with
/// `Retry-After`, before any database work, while another user's requests go through
/// at once; an address over its quota gets 429 even without a token.
#[tokio::test]
async fn request_rates_are_limited_per_user_and_per_address() {
    let app = crate::support::spawn_app_with(|env| {
        env.insert("HTTP_RATE_USER".into(), "5".into());
        env.insert("HTTP_RATE_ADDRESS".into(), "1000".into());
    })
    .await;
    let (_, greedy) = app.user_with_role("greedy", Role::Platform).await;
    let (_, calm) = app.user_with_role("calm", Role::Consumer).await;
    let answers =
        futures::future::join_all((0..40).map(|_| app.get("/v1/me", Some(&greedy)))).await;
    let limited: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert!(limited.len() >= 25, "{} of 40 limited", limited.len());
    assert_eq!(limited[0].1["code"], "rate_limited");
    // The other user is not slowed down.
    let started = std::time::Instant::now();
    for _ in 0..5 {
        assert_eq!(app.get("/v1/me", Some(&calm)).await.0, 200);
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let answer = app
        .http
        .get(app.url("/v1/me"))
        .bearer_auth(&greedy)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 429);
    assert!(answer.headers().get("retry-after").is_some());
    // Back-office routes have their own, generous quota (1,000/s by default).
    let office = futures::future::join_all(
        (0..40).map(|_| app.get("/v1/platform/connections", Some(&greedy))),
    )
    .await;
    assert!(office.iter().all(|(s, _)| *s == 200), "{office:?}");

    let strict = crate::support::spawn_app_with(|env| {
        env.insert("HTTP_RATE_ADDRESS".into(), "5".into());
    })
    .await;
    let answers = futures::future::join_all((0..40).map(|_| strict.get("/v1/me", None))).await;
    assert!(
        answers.iter().any(|(s, _)| *s == 429),
        "the address is limited"
    );
    assert!(
        answers.iter().any(|(s, _)| *s == 401),
        "within the quota: 401"
    );
}

/// Behind a proxy (`HTTP_FORWARDED_FOR=true`), the per-address limit counts the last
/// `X-Forwarded-For` entry (the proxy's), not the peer and not what the client claimed
/// before it.
#[tokio::test]
async fn behind_a_proxy_the_forwarded_address_is_limited() {
    let app = crate::support::spawn_app_with(|env| {
        env.insert("HTTP_RATE_ADDRESS".into(), "5".into());
        env.insert("HTTP_FORWARDED_FOR".into(), "true".into());
    })
    .await;
    let get = |forwarded: &'static str| {
        let request = app
            .http
            .get(app.url("/v1/me"))
            .header("x-forwarded-for", forwarded);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    // The client claims other addresses first: the proxy's last entry is what counts.
    let busy = futures::future::join_all((0..40).map(|i| {
        get(if i % 2 == 0 {
            "1.2.3.4, 10.0.0.1"
        } else {
            "5.6.7.8, 10.0.0.1"
        })
    }))
    .await;
    assert!(busy.contains(&429), "{busy:?}");
    // Another client behind the same proxy is not held up.
    assert_eq!(get("10.0.0.2").await, 401);
}
