//! `POST /v1/auth/wechat-login` against the fake WeChat: every mapping of SPEC §4.

use std::time::Duration;

use serde_json::json;

use crate::support::fake_wechat::Forced;
use crate::support::{assert_error, free_port, spawn_app, spawn_app_with};

#[tokio::test]
async fn first_login_creates_a_consumer_and_the_token_works() {
    let app = spawn_app().await;
    let (status, body) = app.login("openid-alice").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        body["expires_in"],
        app.config.jwt.access_token_ttl.as_secs()
    );
    assert_eq!(body["user"]["roles"], json!(["consumer"]));
    let id = body["user"]["id"].as_i64().unwrap();
    assert!(id > 0);
    // The session_key WeChat sent is not handed on.
    assert!(!body.to_string().contains("c2Vzc2lvbi1rZXktc2VjcmV0"));

    let token = body["access_token"].as_str().unwrap();
    let (status, me) = app.get("/v1/me", Some(token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["id"], id);
}

#[tokio::test]
async fn a_second_login_finds_the_same_user() {
    let app = spawn_app().await;
    let first = app.login("openid-bob").await;
    let second = app.login("openid-bob").await;
    assert_eq!(second.0, 200);
    assert_eq!(first.1["user"]["id"], second.1["user"]["id"]);
    let other = app.login("openid-carol").await;
    assert_ne!(first.1["user"]["id"], other.1["user"]["id"]);
}

#[tokio::test]
async fn concurrent_first_logins_of_one_openid_make_one_user() {
    let app = spawn_app().await;
    let logins = (0..10).map(|_| app.login("openid-rush"));
    let answers = futures::future::join_all(logins).await;
    let ids: std::collections::HashSet<i64> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body["user"]["id"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    let users: i64 = app
        .db
        .scalar(
            "SELECT count(*) FROM users WHERE openid = 'openid-rush'",
            &[],
        )
        .await;
    assert_eq!(users, 1);
}

#[tokio::test]
async fn invalid_and_reused_codes_are_401() {
    let app = spawn_app().await;
    let answer = app.login_with_code("never-issued").await;
    assert_error(&answer, 401, "wechat_code_invalid");

    let code = app.wechat.issue_code("openid-dave");
    assert_eq!(app.login_with_code(&code).await.0, 200);
    let reused = app.login_with_code(&code).await;
    assert_error(&reused, 401, "wechat_code_invalid");
}

#[tokio::test]
async fn a_blocked_user_is_403() {
    let app = spawn_app().await;
    app.wechat.block("openid-eve");
    assert_error(&app.login("openid-eve").await, 403, "wechat_user_blocked");
}

#[tokio::test]
async fn wechat_errcodes_map_as_specified() {
    let app = spawn_app().await;
    let cases: [(Forced, u16, &str); 6] = [
        (Forced::Errcode(45011), 429, "wechat_rate_limited"),
        (Forced::Errcode(-1), 502, "wechat_unavailable"),
        (Forced::Errcode(40013), 502, "wechat_unavailable"),
        (Forced::Errcode(40029), 401, "wechat_code_invalid"),
        (Forced::Errcode(40163), 401, "wechat_code_invalid"),
        (Forced::Errcode(40226), 403, "wechat_user_blocked"),
    ];
    for (forced, status, code) in cases {
        let label = format!("{forced:?}");
        app.wechat.force_next(forced);
        let answer = app.login("openid-frank").await;
        assert_eq!(answer.0, status, "{label}: {}", answer.1);
        assert_error(&answer, status, code);
    }
}

#[tokio::test]
async fn an_explicit_errcode_zero_is_success_and_an_empty_openid_is_not() {
    let app = spawn_app().await;
    app.wechat
        .force_next(Forced::ExplicitZero("openid-zero".into()));
    let (status, body) = app.login("ignored").await;
    assert_eq!(status, 200, "{body}");

    app.wechat.force_next(Forced::EmptyOpenid);
    assert_error(&app.login("ignored").await, 502, "wechat_unavailable");
}

#[tokio::test]
async fn broken_wechat_answers_are_502() {
    let app = spawn_app().await;
    for forced in [
        Forced::Status(500),
        Forced::Status(404),
        Forced::Body("<html>gateway error</html>"),
        Forced::Body(""),
    ] {
        app.wechat.force_next(forced);
        assert_error(&app.login("openid-gina").await, 502, "wechat_unavailable");
    }
    let users: i64 = app.db.scalar("SELECT count(*) FROM users", &[]).await;
    assert_eq!(users, 0, "a failed login creates no user");
}

#[tokio::test]
async fn a_wrong_app_secret_is_502_not_a_login() {
    let app = spawn_app_with(|env| {
        env.insert("WECHAT_SECRET".into(), "not-the-real-secret".into());
    })
    .await;
    assert_error(&app.login("openid-hank").await, 502, "wechat_unavailable");
}

#[tokio::test]
async fn a_stalled_wechat_times_out_as_502() {
    let app = spawn_app().await;
    app.wechat
        .force_next(Forced::Stall(Duration::from_secs(10)));
    let started = std::time::Instant::now();
    assert_error(&app.login("openid-ivy").await, 502, "wechat_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "login must give up on WeChat well before the client does"
    );
}

/// A 50 MB answer from WeChat is refused once it passes 64 KiB: 502, and the replica
/// stopped reading (it never took more than a few MB, socket buffers included).
#[tokio::test]
async fn a_huge_wechat_answer_is_refused_without_reading_it() {
    let app = spawn_app().await;
    app.wechat.force_next(Forced::Huge(50 * 1024 * 1024));
    assert_error(&app.login("openid-huge").await, 502, "wechat_unavailable");
    let taken = app.wechat.streamed();
    assert!(taken < 8 * 1024 * 1024, "{taken} bytes streamed");
}

#[tokio::test]
async fn an_unreachable_wechat_is_502() {
    // A port that was just free: nothing listens there.
    let port = free_port();
    let app = spawn_app_with(|env| {
        env.insert("WECHAT_API_BASE".into(), format!("http://127.0.0.1:{port}"));
    })
    .await;
    assert_error(&app.login_with_code("abc").await, 502, "wechat_unavailable");
}

#[tokio::test]
async fn without_wechat_settings_login_is_503() {
    let app = spawn_app_with(|env| {
        env.remove("WECHAT_APPID");
        env.remove("WECHAT_SECRET");
    })
    .await;
    assert_error(
        &app.login_with_code("abc").await,
        503,
        "wechat_not_configured",
    );
}

#[tokio::test]
async fn bad_bodies_are_400_or_422_and_never_reach_wechat() {
    let app = spawn_app().await;
    let url = app.url("/v1/auth/wechat-login");
    let send = |body: &'static str, content_type: &'static str| {
        let req = app
            .http
            .post(&url)
            .header("content-type", content_type)
            .body(body);
        async move { crate::support::into_parts(req.send().await.unwrap()).await }
    };
    assert_error(
        &send("{\"code\": ", "application/json").await,
        400,
        "malformed_json",
    );
    assert_error(
        &send("not json", "application/json").await,
        400,
        "malformed_json",
    );
    assert_error(&send("{}", "application/json").await, 422, "invalid_body");
    assert_error(
        &send("{\"code\": 42}", "application/json").await,
        422,
        "invalid_body",
    );
    assert_error(
        &send("{\"code\": \"\"}", "application/json").await,
        422,
        "invalid_code",
    );
    assert_error(
        &send("{\"code\": \"has spaces\"}", "application/json").await,
        422,
        "invalid_code",
    );
    assert_error(
        &send("{\"code\": \"abc\"}", "text/plain").await,
        400,
        "unsupported_media_type",
    );
    assert_eq!(app.wechat.calls(), 0);
}

#[tokio::test]
async fn an_oversize_body_is_413() {
    let app = spawn_app().await;
    let huge = format!("{{\"code\": \"{}\"}}", "a".repeat(200 * 1024));
    let resp = app
        .http
        .post(app.url("/v1/auth/wechat-login"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    let answer = crate::support::into_parts(resp).await;
    assert_error(&answer, 413, "body_too_large");
}
