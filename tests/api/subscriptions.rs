//! WeChat subscription messages as the fallback for unconfirmed notifications
//! (SPEC §9), against the fake WeChat (`/cgi-bin/token`, `/cgi-bin/message/subscribe/send`),
//! on each engine; on Redis and the Cluster with two replicas sharing the work.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{
    eventually, eventually_every, spawn_app_with, spawn_cluster_with, use_engine, within,
    EngineKind, TestApp,
};
use locallife::domain::{Role, UserId};

on_both_engines!(
    an_unconfirmed_notification_is_pushed_once_with_its_template_page_and_data,
    no_push_when_delivered_in_time_without_quota_or_without_a_template,
    a_refused_token_is_refreshed_once_and_43101_zeroes_the_quota,
    a_protocol_2_pong_is_delivery_so_a_slow_acker_is_not_pushed,
);

const TEMPLATES: &str = r#"{
  "platform.notice": {"template_id": "TPL_NOTICE", "page": "pages/notice/detail?id={message_id}",
                      "data": {"thing1": "{title}", "thing2": "{content}", "character_string3": "{message_id}"}}
}"#;

/// Replicas with the fallback on (3 s) and their templates file: two on Redis, one
/// in-process.
async fn replicas(kind: EngineKind) -> (Vec<TestApp>, tempfile::NamedTempFile) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), TEMPLATES).unwrap();
    let path = file.path().display().to_string();
    let configure = |env: &mut std::collections::HashMap<String, String>| {
        env.insert("WECHAT_SUBSCRIBE_FILE".into(), path.clone());
        // Longer than a protocol-2 socket takes to prove delivery by a Pong
        // (`CONFIRM_AFTER_MS` and a sweeper tick).
        env.insert("PUSH_FALLBACK_AFTER".into(), "3s".into());
    };
    let apps = match kind {
        EngineKind::Memory => vec![spawn_app_with(configure).await],
        _ => {
            spawn_cluster_with(2, |env| {
                use_engine(env, kind);
                configure(env);
            })
            .await
        }
    };
    (apps, file)
}

/// A user (platform staff, so they may hold a socket) with `quota` sends of
/// TPL_NOTICE reported; their id, openid and token.
async fn subscriber(app: &TestApp, name: &str, quota: i32) -> (UserId, String, String) {
    let openid = format!("openid-{name}-{:x}", rand::random::<u32>());
    let (id, token) = app.user_with_role(&openid, Role::Platform).await;
    if quota > 0 {
        let (status, body) = app
            .post_json(
                "/v1/me/subscriptions",
                Some(&token),
                &json!({"template_id": "TPL_NOTICE", "accepted": quota}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["remaining"], quota);
        assert_eq!(body["events"], json!(["platform.notice"]));
    }
    (id, openid, token)
}

async fn notify(app: &TestApp, staff: &str, user: UserId, title: &str) -> String {
    let (status, body) = app
        .post_notification(
            staff,
            &json!({"user_id": user.0, "title": title, "content": "请尽快查看"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    body["message_id"].as_str().unwrap().to_owned()
}

/// Waits (30 s at most) until the receipt of `message_id` shows `user` with a
/// `pushed_at`; the recipient's entry.
async fn pushed(app: &TestApp, staff: &str, message_id: &str, user: UserId) -> Value {
    let found = within(
        Duration::from_secs(30),
        Duration::from_millis(100),
        async || {
            let (status, receipt) = app
                .get(
                    &format!("/v1/platform/notifications/{message_id}"),
                    Some(staff),
                )
                .await;
            if status != 200 {
                return None;
            }
            let entry = receipt["recipients"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["user_id"] == user.0)
                .cloned();
            entry.filter(|e| e["pushed_at"].is_string())
        },
    )
    .await;
    match found {
        Some(entry) => entry,
        None => {
            let rows = app
                .db
                .client()
                .await
                .query(
                    "SELECT message_id || ' ' || user_id || ' ' || state || ' ' || COALESCE(last_error, '')
                     FROM subscription_pushes ORDER BY claimed_at",
                    &[],
                )
                .await
                .unwrap();
            let rows: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            panic!("{message_id} was not pushed to {user:?} within 30 s; claims: {rows:#?}")
        }
    }
}

/// Whether a send was for `message_id` (its page names it).
fn is_for(body: &Value, message_id: &str) -> bool {
    body["page"] == format!("pages/notice/detail?id={message_id}")
}

/// The sends WeChat accepted for `message_id`.
fn accepted_for(app: &TestApp, message_id: &str) -> Vec<Value> {
    app.wechat
        .accepted_sends()
        .into_iter()
        .filter(|s| is_for(&s.body, message_id))
        .map(|s| s.body)
        .collect()
}

async fn remaining(app: &TestApp, token: &str) -> i64 {
    let (status, list) = app.get("/v1/me/subscriptions", Some(token)).await;
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .find(|s| s["template_id"] == "TPL_NOTICE")
        .map_or(0, |s| s["remaining"].as_i64().unwrap())
}

async fn an_unconfirmed_notification_is_pushed_once_with_its_template_page_and_data(
    kind: EngineKind,
) {
    let (apps, _file) = replicas(kind).await;
    let a = &apps[0];
    let (_, staff) = a.user_with_role("staff", Role::Platform).await;
    // Five recipients, none connected: each is pushed exactly once, whichever replica
    // looks first.
    let mut sent = Vec::new();
    for i in 0..5 {
        let (id, openid, token) = subscriber(a, &format!("m{i}"), 2).await;
        let message_id = notify(&apps[i % apps.len()], &staff, id, "新订单通知").await;
        sent.push((id, openid, token, message_id));
    }
    for (id, openid, token, message_id) in &sent {
        let entry = pushed(a, &staff, message_id, *id).await;
        assert_eq!(
            entry["state"], "pending",
            "a push does not change the state"
        );
        let bodies = accepted_for(a, message_id);
        assert_eq!(bodies.len(), 1, "{bodies:?}");
        let body = &bodies[0];
        assert_eq!(body["touser"], openid.as_str());
        assert_eq!(body["template_id"], "TPL_NOTICE");
        assert_eq!(body["page"], format!("pages/notice/detail?id={message_id}"));
        assert_eq!(body["data"]["thing1"]["value"], "新订单通知");
        assert_eq!(body["data"]["thing2"]["value"], "请尽快查看");
        // A character_string is cut to WeChat's 32 characters.
        let id_value = body["data"]["character_string3"]["value"].as_str().unwrap();
        assert!(message_id.starts_with(id_value) && id_value.len() <= 32);
        assert_eq!(body["miniprogram_state"], "formal");
        assert_eq!(body["lang"], "zh_CN");
        assert_eq!(remaining(a, token).await, 1, "one send used");
    }
    assert_eq!(a.wechat.accepted_sends().len(), 5, "never twice");
    // The token was fetched once and shared.
    assert_eq!(a.wechat.token_calls(), 1);

    // The in-app notification still waits: the user opens the app and gets it.
    let (_, _, token, message_id) = &sent[0];
    let mut socket = a.ws_ok(token).await;
    let n = socket.next_event("platform.notice").await;
    assert_eq!(n["data"]["message_id"].as_str(), Some(message_id.as_str()));
    socket.ack(&n).await;
    socket.roundtrip().await;
    let metrics = a.metrics_text().await + &apps[apps.len() - 1].metrics_text().await;
    assert!(
        metrics
            .contains(r#"locallife_push_fallbacks_total{event="platform.notice",result="sent"}"#),
        "{metrics}"
    );
}

async fn no_push_when_delivered_in_time_without_quota_or_without_a_template(kind: EngineKind) {
    let (apps, _file) = replicas(kind).await;
    let a = &apps[0];
    let (_, staff) = a.user_with_role("staff", Role::Platform).await;

    // Connected: confirmed within the delay, so no push.
    let (online, _, online_token) = subscriber(a, "online", 3).await;
    let mut socket = a.ws_ok(&online_token).await;
    let delivered = notify(a, &staff, online, "在线").await;
    let n = socket.next_event("platform.notice").await;
    socket.ack(&n).await;
    // No quota reported.
    let (broke, _, _) = subscriber(a, "broke", 0).await;
    let unfunded = notify(a, &staff, broke, "无额度").await;
    // An event without a template (rider.command) to a rider with quota, and an
    // announcement (live only).
    let (rider, rider_token) = a.online_rider("rider-sub").await;
    let (status, _) = a
        .post_json(
            "/v1/me/subscriptions",
            Some(&rider_token),
            &json!({"template_id": "TPL_NOTICE", "accepted": 3}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = a
        .post_json(
            &format!("/v1/platform/riders/{}/commands", rider.0),
            Some(&staff),
            &json!({"title": "去取餐", "content": "人民广场店"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let (status, _) = a
        .post_notification(
            &staff,
            &json!({"role": "rider", "title": "公告", "content": "大家好"}),
        )
        .await;
    assert_eq!(status, 202);

    // A last notification that does fall back: once it is pushed, the ones before it
    // have been looked at too (the fallback reads the receipts in order of time).
    let (last, _, _) = subscriber(a, "last", 1).await;
    let witness = notify(a, &staff, last, "最后").await;
    pushed(a, &staff, &witness, last).await;
    let sends = a.wechat.sends();
    assert_eq!(sends.len(), 1, "only the last one: {sends:?}");
    assert!(accepted_for(a, &delivered).is_empty());
    assert!(accepted_for(a, &unfunded).is_empty());
    assert_eq!(remaining(a, &online_token).await, 3);
    assert_eq!(remaining(a, &rider_token).await, 3);
}

async fn a_refused_token_is_refreshed_once_and_43101_zeroes_the_quota(kind: EngineKind) {
    let (apps, _file) = replicas(kind).await;
    let a = &apps[0];
    let (_, staff) = a.user_with_role("staff", Role::Platform).await;

    // A first push fetches the token.
    let (first, _, _) = subscriber(a, "first", 1).await;
    let m = notify(a, &staff, first, "一").await;
    pushed(a, &staff, &m, first).await;
    assert_eq!(a.wechat.token_calls(), 1);

    // WeChat stops taking that token (40001): a fresh one at once, the send once more.
    a.wechat.expire_tokens();
    let (second, _, second_token) = subscriber(a, "second", 2).await;
    let m = notify(a, &staff, second, "二").await;
    pushed(a, &staff, &m, second).await;
    assert_eq!(a.wechat.token_calls(), 2, "one refresh");
    let attempts: Vec<i64> = a
        .wechat
        .sends()
        .iter()
        .filter(|s| is_for(&s.body, &m))
        .map(|s| s.errcode)
        .collect();
    assert_eq!(attempts, vec![40001, 0]);
    assert_eq!(remaining(a, &second_token).await, 1);

    // 43101: the user has none left, whatever we counted.
    a.wechat.force_send(43101);
    let (third, _, third_token) = subscriber(a, "third", 5).await;
    let refused = notify(a, &staff, third, "三").await;
    eventually_every(
        Duration::from_secs(30),
        Duration::from_millis(100),
        "43101 sets the quota to 0",
        async || (remaining(a, &third_token).await == 0).then_some(()),
    )
    .await;
    assert!(accepted_for(a, &refused).is_empty());
    let (_, receipt) = a
        .get(
            &format!("/v1/platform/notifications/{refused}"),
            Some(&staff),
        )
        .await;
    assert!(
        receipt["recipients"][0].get("pushed_at").is_none(),
        "{receipt}"
    );
    assert_eq!(a.wechat.token_calls(), 2, "the token is cached and shared");
}

/// Delivered means delivered on protocol 2 too (SPEC §2.3, §3, §9): a protocol-2 client
/// that answers Pings but has not acked yet. The server Pings once the notification has
/// waited `CONFIRM_AFTER_MS` for its ack (not only every `WS_PING_INTERVAL`, 54 s here), the Pong marks the
/// receipt `delivered` within moments, and the fallback sends no subscription message;
/// the notification still waits in the inbox for its ack, so the next connect gets it
/// again.
async fn a_protocol_2_pong_is_delivery_so_a_slow_acker_is_not_pushed(kind: EngineKind) {
    let (apps, _file) = replicas(kind).await;
    let (a, b) = (&apps[0], &apps[apps.len() - 1]);
    let (_, staff) = a.user_with_role("staff", Role::Platform).await;
    let (slow, _, slow_token) = subscriber(a, "slow-acker", 2).await;
    // Protocol 2; tokio-tungstenite answers each Ping while the socket is read.
    let mut socket = a.ws_ok(&slow_token).await;
    assert_eq!(socket.welcome["data"]["protocol"], 2);
    assert_eq!(socket.welcome["data"]["ping_interval_s"], 54);
    let message_id = notify(b, &staff, slow, "新订单").await;
    let n = socket.next_event("platform.notice").await;
    assert_eq!(n["data"]["message_id"].as_str(), Some(message_id.as_str()));
    let receipt_path = format!("/v1/platform/notifications/{message_id}");
    let entry = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            // Reading on is what lets the client stack answer the Ping.
            socket.nothing_within(Duration::from_millis(100)).await;
            let (_, receipt) = a.get(&receipt_path, Some(&staff)).await;
            let entry = receipt["recipients"][0].clone();
            if entry["state"] == "delivered" {
                return entry;
            }
        }
    })
    .await
    .expect("delivered within seconds of the notification, unacked");
    assert!(entry["delivered_at"].is_string() && entry["acked_at"].is_null());

    // A later notification that does fall back: once it is pushed, the fallback has
    // looked at the earlier one too.
    let (witness_user, _, _) = subscriber(a, "witness", 1).await;
    let witness = notify(a, &staff, witness_user, "最后").await;
    pushed(a, &staff, &witness, witness_user).await;
    assert!(accepted_for(a, &message_id).is_empty());
    assert!(
        a.wechat
            .sends()
            .iter()
            .all(|s| !is_for(&s.body, &message_id)),
        "never even tried"
    );
    assert_eq!(remaining(a, &slow_token).await, 2, "no quota used");
    let (_, receipt) = a.get(&receipt_path, Some(&staff)).await;
    let entry = &receipt["recipients"][0];
    assert_eq!(entry["state"], "delivered");
    assert!(entry.get("pushed_at").is_none(), "{receipt}");

    // Delivered is not acked: still in the inbox, so the next connect (on any
    // replica) gets it again, until the ack.
    drop(socket);
    let mut again = b.ws_ok(&slow_token).await;
    let n = again.next_event("platform.notice").await;
    assert_eq!(n["data"]["message_id"].as_str(), Some(message_id.as_str()));
    again.ack(&n).await;
    again.roundtrip().await;
    drop(again);
    let mut after = a.ws_ok(&slow_token).await;
    assert!(
        after.nothing_within(Duration::from_millis(500)).await,
        "acked: not delivered again"
    );
    eventually(
        crate::support::WAIT,
        "the ack shows on the receipt",
        async || {
            let (_, receipt) = a.get(&receipt_path, Some(&staff)).await;
            (receipt["recipients"][0]["state"] == "acked").then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn the_quota_endpoints_validate_and_add_up() {
    let (apps, _file) = replicas(EngineKind::Memory).await;
    let a = &apps[0];
    let (_, _, token) = subscriber(a, "q", 0).await;
    let (status, list) = a.get("/v1/me/subscriptions", Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(
        list,
        json!([{"template_id": "TPL_NOTICE", "remaining": 0, "events": ["platform.notice"]}])
    );
    for (body, code) in [
        (
            json!({"template_id": "", "accepted": 1}),
            "invalid_template",
        ),
        (
            json!({"template_id": "T", "accepted": -1}),
            "invalid_accepted",
        ),
        (
            json!({"template_id": "T", "accepted": 1001}),
            "invalid_accepted",
        ),
    ] {
        let answer = a
            .post_json("/v1/me/subscriptions", Some(&token), &body)
            .await;
        crate::support::assert_error(&answer, 422, code);
    }
    for _ in 0..2 {
        let (status, _) = a
            .post_json(
                "/v1/me/subscriptions",
                Some(&token),
                &json!({"template_id": "TPL_NOTICE", "accepted": 2}),
            )
            .await;
        assert_eq!(status, 200);
    }
    // With a templates file, a template it does not name is refused, not stored.
    let answer = a
        .post_json(
            "/v1/me/subscriptions",
            Some(&token),
            &json!({"template_id": "TPL_OTHER", "accepted": 2}),
        )
        .await;
    crate::support::assert_error(&answer, 422, "unknown_template");
    let (_, list) = a.get("/v1/me/subscriptions", Some(&token)).await;
    assert_eq!(
        list,
        json!([{"template_id": "TPL_NOTICE", "remaining": 4, "events": ["platform.notice"]}])
    );
    assert_eq!(a.get("/v1/me/subscriptions", None).await.0, 401);
}

#[test]
fn a_bad_templates_file_stops_start_up_naming_the_entry() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        r#"{"announcement": {"template_id": "T", "data": {"thing1": "{title}"}}}"#,
    )
    .unwrap();
    let path = file.path().display().to_string();
    let env = std::collections::HashMap::from([
        ("DATABASE_URL", "postgres://x@127.0.0.1/x".to_owned()),
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef".to_owned()),
        ("WECHAT_APPID", "wx".to_owned()),
        ("WECHAT_SECRET", "s".to_owned()),
        ("WECHAT_SUBSCRIBE_FILE", path),
    ]);
    let e = locallife::config::Config::from_lookup(|k| env.get(k).cloned()).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("WECHAT_SUBSCRIBE_FILE") && text.contains("\"announcement\""),
        "{text}"
    );
}

/// Twenty replicas' worth of concurrent reservations against three sends: exactly three
/// succeed, and the count ends at 0, never below.
#[tokio::test]
async fn quota_is_spent_race_free() {
    let (apps, _file) = replicas(EngineKind::Memory).await;
    let a = &apps[0];
    let (user, _, token) = subscriber(a, "race", 3).await;
    let pool = locallife::store::connect_pool(&a.config.database).unwrap();
    let tries = (0..20).map(|_| {
        let pool = pool.clone();
        async move {
            locallife::store::subscriptions::reserve(&pool, user, "TPL_NOTICE")
                .await
                .unwrap()
        }
    });
    let won = futures::future::join_all(tries)
        .await
        .into_iter()
        .filter(|w| *w)
        .count();
    assert_eq!(won, 3);
    assert_eq!(remaining(a, &token).await, 0);
}
