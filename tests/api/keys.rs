//! Service keys (SPEC §10): made by staff (or an `admin` key) or the CLI, scoped,
//! refused on every replica within 5 s of a revocation, named in receipts, with their
//! own rate limit and Idempotency-Key space, and never logged.

use std::time::Duration;

use locallife::domain::Role;
use serde_json::json;

use crate::support::{assert_error, eventually, spawn_cluster_with, TestApp, WAIT};

/// The secret part of `llk_<id>_<secret>` (which may itself hold `_`).
fn secret_of(key: &str) -> &str {
    key.splitn(3, '_').nth(2).unwrap()
}

/// Polls `path` with `key` until it answers `status`, at most `within`.
async fn until_status(app: &TestApp, path: &str, key: &str, status: u16, within: Duration) {
    let what = format!("{path} answers {status}");
    eventually(within, &what, async || {
        (app.get(path, Some(key)).await.0 == status).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_key_sends_with_its_scopes_is_named_in_receipts_and_is_revoked_everywhere() {
    let apps = spawn_cluster_with(2, |_| {}).await;
    let (a, b) = (&apps[0], &apps[1]);
    let (staff_id, staff) = a.user_with_role("staff", Role::Platform).await;
    let (merchant, merchant_token) = a.socket_user(Role::Merchant).await;
    let (id, key) = a
        .service_key(&staff, "order-system", &["notify", "read"])
        .await;

    // Sent on B with the key; readable at once on A, naming the key.
    let mut socket = a.ws_ok(&merchant_token).await;
    let (status, sent) = b
        .post_notification(
            &key,
            &json!({"user_id": merchant.0, "title": "新订单", "content": "1"}),
        )
        .await;
    assert_eq!(status, 202, "{sent}");
    let message_id = sent["message_id"].as_str().unwrap();
    let (status, receipt) = a
        .get(
            &format!("/v1/platform/notifications/{message_id}"),
            Some(&key),
        )
        .await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(
        receipt["sent_by"],
        json!({"key": id, "name": "order-system"})
    );
    assert_eq!(receipt["recipients"][0]["state"], "pending");
    assert_eq!(
        socket.next_notification().await["data"]["message_id"],
        message_id
    );
    // A person's send names the person.
    let (_, by_staff) = a
        .post_notification(
            &staff,
            &json!({"user_id": merchant.0, "title": "t", "content": ""}),
        )
        .await;
    let (_, receipt) = b
        .get(
            &format!(
                "/v1/platform/notifications/{}",
                by_staff["message_id"].as_str().unwrap()
            ),
            Some(&staff),
        )
        .await;
    assert_eq!(receipt["sent_by"], json!({"user_id": staff_id.0}));

    // Scopes: notify and read, not admin.
    assert_eq!(b.get("/v1/platform/connections", Some(&key)).await.0, 200);
    assert_error(
        &b.get("/v1/platform/keys", Some(&key)).await,
        403,
        "missing_scope",
    );
    let (_, reader) = a.service_key(&staff, "dashboard", &["read"]).await;
    assert_error(
        &b.post_notification(
            &reader,
            &json!({"user_id": merchant.0, "title": "t", "content": ""}),
        )
        .await,
        403,
        "missing_scope",
    );
    // A key is not a user.
    assert_error(&b.get("/v1/me", Some(&key)).await, 401, "unauthorized");
    b.ws_refused(&key, 401, "unauthorized").await;

    // Listed without secrets, with its last use.
    let (status, list) = a.get("/v1/platform/keys", Some(&staff)).await;
    assert_eq!(status, 200);
    let text = list.to_string();
    assert!(!text.contains(secret_of(&key)), "{text}");
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap();
    assert_eq!(listed["scopes"], json!(["notify", "read"]));
    assert!(listed["last_used_at"].is_string(), "{listed}");
    assert!(listed["revoked_at"].is_null());

    // Revoked on A: refused on B within 5 s.
    let answer = a
        .http
        .delete(a.url(&format!("/v1/platform/keys/{id}")))
        .bearer_auth(&staff)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    assert_error(
        &a.get("/v1/platform/connections", Some(&key)).await,
        401,
        "unauthorized",
    );
    until_status(
        b,
        "/v1/platform/connections",
        &key,
        401,
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test]
async fn malformed_unknown_wrong_and_expired_keys_are_401() {
    let apps = spawn_cluster_with(1, |_| {}).await;
    let a = &apps[0];
    let (_, staff) = a.user_with_role("staff", Role::Platform).await;
    let (id, key) = a.service_key(&staff, "job", &["read"]).await;
    let secret = secret_of(&key).to_owned();
    let mut wrong = secret.clone().into_bytes();
    wrong[0] = if wrong[0] == b'A' { b'B' } else { b'A' };
    let wrong = String::from_utf8(wrong).unwrap();
    for bad in [
        "llk_".to_owned(),
        format!("llk_{id}"),
        format!("llk_{id}_short"),
        format!("llk_{}_{secret}", id + 1000),
        format!("llk_{id}_{wrong}"),
    ] {
        assert_error(
            &a.get("/v1/platform/connections", Some(&bad)).await,
            401,
            "unauthorized",
        );
    }
    assert_eq!(a.get("/v1/platform/connections", Some(&key)).await.0, 200);
    a.db.execute(
        "UPDATE service_keys SET expires_at = now() - interval '1 second' WHERE id = $1",
        &[&id],
    )
    .await;
    until_status(
        a,
        "/v1/platform/connections",
        &key,
        401,
        Duration::from_secs(5),
    )
    .await;

    // Bad requests to make one.
    for (body, code) in [
        (json!({"name": "", "scopes": ["read"]}), "invalid_name"),
        (json!({"name": "x", "scopes": []}), "invalid_scopes"),
        (
            json!({"name": "x", "scopes": ["read"], "expires_in_s": 0}),
            "invalid_expires_in",
        ),
    ] {
        assert_error(
            &a.post_json("/v1/platform/keys", Some(&staff), &body).await,
            422,
            code,
        );
    }
    assert_error(
        &a.post_json(
            "/v1/platform/keys",
            Some(&staff),
            &json!({"name": "x", "scopes": ["write"]}),
        )
        .await,
        422,
        "invalid_body",
    );
    // Only staff or an admin key make keys.
    let (_, consumer) = a.user_with_role("c", Role::Consumer).await;
    assert_error(
        &a.post_json(
            "/v1/platform/keys",
            Some(&consumer),
            &json!({"name": "x", "scopes": ["read"]}),
        )
        .await,
        403,
        "forbidden",
    );
    let (_, admin) = a.service_key(&staff, "ops-bot", &["admin"]).await;
    let (made, _) = a.service_key(&admin, "made-by-a-key", &["notify"]).await;
    assert!(made > id);
}

/// A key's Idempotency-Keys are its own: the same key string from staff and from a
/// service sends twice; repeated by the service, once. Each key has its own quota.
#[tokio::test]
async fn keys_have_their_own_idempotency_space_and_rate_limit() {
    // Each request of the rate-limit part comes from an address of its own, so only
    // the key's quota can refuse it.
    let apps = spawn_cluster_with(1, |env| {
        env.insert("HTTP_RATE_BACK_OFFICE".into(), "5".into());
        env.insert("HTTP_FORWARDED_FOR".into(), "true".into());
    })
    .await;
    let a = &apps[0];
    let (_, staff) = a.user_with_role("staff", Role::Platform).await;
    let (user, _) = a.user_with_role("u", Role::Merchant).await;
    let (_, key) = a.service_key(&staff, "svc", &["notify"]).await;
    let body = json!({"user_id": user.0, "title": "t", "content": ""});
    let path = "/v1/platform/notifications";
    let (s1, by_key) = a.post_with_key(path, &key, "same-key", &body).await;
    let (s2, by_key_again) = a.post_with_key(path, &key, "same-key", &body).await;
    let (s3, by_staff) = a.post_with_key(path, &staff, "same-key", &body).await;
    assert_eq!((s1, s2, s3), (202, 202, 202));
    assert_eq!(by_key["message_id"], by_key_again["message_id"]);
    assert_ne!(by_key["message_id"], by_staff["message_id"]);

    let (_, busy) = a.service_key(&staff, "busy", &["read"]).await;
    let (_, calm) = a.service_key(&staff, "calm", &["read"]).await;
    let from = |key: &str, i: usize| {
        a.http
            .get(a.url("/v1/platform/connections"))
            .bearer_auth(key)
            .header(
                "x-forwarded-for",
                format!("10.1.{}.{}", i / 250, i % 250 + 1),
            )
            .send()
    };
    let answers = futures::future::join_all((0..40).map(|i| from(&busy, i))).await;
    let limited = answers
        .into_iter()
        .filter(|r| r.as_ref().unwrap().status() == 429)
        .count();
    assert!(limited > 0, "the key is limited");
    let calm = from(&calm, 100).await.unwrap().status();
    assert_eq!(calm, 200, "another key is not");
}

/// `locallife key create|list|revoke`, and a key used against a running replica whose
/// logs (at debug) never show the secret.
#[tokio::test]
async fn the_cli_makes_lists_and_revokes_keys_and_no_secret_is_logged() {
    let apps = spawn_cluster_with(1, |_| {}).await;
    let a = &apps[0];
    let run = |args: &'static [&'static str]| {
        let mut cmd = crate::support::binary(&a.db.url);
        cmd.env("RUST_LOG", "debug").args(args);
        async move { cmd.output().await.unwrap() }
    };
    let made = run(&[
        "key",
        "create",
        "--name",
        "nightly-report",
        "--scope",
        "read",
        "--expires",
        "90d",
    ])
    .await;
    assert!(made.status.success(), "{made:?}");
    let key = String::from_utf8(made.stdout).unwrap();
    let key = key.trim().to_owned();
    assert!(key.starts_with("llk_") && !key.contains('\n'), "{key}");
    let id: i64 = key.split('_').nth(1).unwrap().parse().unwrap();

    let port = crate::support::free_port();
    let mut replica = crate::support::binary_listening(&a.db.url, port);
    let mut child = replica
        .env("RUST_LOG", "debug")
        .env("LOG_FORMAT", "json")
        .arg("serve")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    eventually(WAIT, "the replica becomes ready", async || {
        let answer = http.get(format!("{url}/readyz")).send().await;
        answer.is_ok_and(|r| r.status() == 200).then_some(())
    })
    .await;
    let answer = http
        .get(format!("{url}/v1/platform/connections"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let tampered = format!("{}x", &key[..key.len() - 1]);
    let answer = http
        .get(format!("{url}/v1/platform/connections"))
        .bearer_auth(&tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);

    let listed = run(&["key", "list"]).await;
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(
        listed.contains("nightly-report") && listed.contains("read"),
        "{listed}"
    );
    let secret = secret_of(&key);
    assert!(!listed.contains(secret));

    let revoke = {
        let mut cmd = crate::support::binary(&a.db.url);
        cmd.args(["key", "revoke", "--id", &id.to_string()]);
        cmd.output().await.unwrap()
    };
    assert!(revoke.status.success(), "{revoke:?}");
    eventually(Duration::from_secs(5), "revoked within 5 s", async || {
        let r = http
            .get(format!("{url}/v1/platform/connections"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        (r.status() == 401).then_some(())
    })
    .await;

    let _ = child.start_kill();
    let out = child.wait_with_output().await.unwrap();
    let logs =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("request"), "the replica logged its requests");
    assert!(!logs.contains(secret), "a secret reached the logs");
    assert!(!logs.contains(&tampered[tampered.len() - 20..]));
}

/// An `admin` key approves and suspends; the history names the key, not a person. A
/// `notify` key may not.
#[tokio::test]
async fn an_admin_key_suspends_and_is_named_in_the_history() {
    let apps = spawn_cluster_with(1, |_| {}).await;
    let a = &apps[0];
    let (_, staff) = a.user_with_role("staff", Role::Platform).await;
    let (rider, _) = a.socket_user(Role::Rider).await;
    let (id, admin) = a.service_key(&staff, "ops-bot", &["admin", "read"]).await;
    let (_, notifier) = a.service_key(&staff, "sender", &["notify"]).await;
    let path = format!("/v1/platform/riders/{}/suspend", rider.0);
    assert_error(
        &a.post_json(&path, Some(&notifier), &json!({"reason": "x"}))
            .await,
        403,
        "missing_scope",
    );
    let (status, body) = a
        .post_json(&path, Some(&admin), &json!({"reason": "多次超时"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, history) = a
        .get(
            &format!("/v1/platform/riders/{}/suspensions", rider.0),
            Some(&admin),
        )
        .await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["events"][0]["by"], json!({"key": id}), "{history}");
    let (status, _) = a
        .post_json(
            &format!("/v1/platform/riders/{}/reinstate", rider.0),
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
}
