//! Overload (SPEC §11): a replica offered more sends than `PUBLISH_MAX_IN_FLIGHT` lets
//! it publish at once, or sends while they are over `PUBLISH_TARGET_LATENCY`, accepts some (202, delivered exactly once to the open socket) and
//! refuses the rest honestly (503 `overloaded` with `Retry-After`, nothing written: no
//! inbox entry, no receipt, no claimed Idempotency-Key), and answers normally again once
//! the burst is over. No timing is asserted: speed belongs to `loadtest/overload.sh`.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::join_all;
use locallife::domain::{Role, UserId};
use serde_json::{json, Value};

use crate::support::{
    assert_error, into_parts, spawn_app_with, use_engine, EngineKind, TestApp, WsClient, WAIT,
};

/// Places per replica in these tests: small, so that a burst overflows them.
const BOUND: usize = 2;
/// Concurrent sends per burst.
const BURST: usize = 60;
/// Bursts tried until one has been refused in part (each is accounted for whole).
const MAX_BURSTS: usize = 20;

/// A platform send: its status, `Retry-After` (if any) and body.
async fn send(
    app: &TestApp,
    staff: &str,
    path: &str,
    body: &Value,
    key: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut req = app.http.post(app.url(path)).bearer_auth(staff).json(body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let resp = req.send().await.expect("the replica answers");
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, body) = into_parts(resp).await;
    (status, retry_after, body)
}

/// Asserts a 503 `overloaded` with `Retry-After` in the header and the body.
fn assert_overloaded(answer: &(u16, Option<String>, Value)) {
    let (status, retry_after, body) = answer;
    assert_error(&(*status, body.clone()), 503, "overloaded");
    assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
    assert_eq!(body["retry_after_s"], 1, "{body}");
    assert!(
        body.get("message_ids").is_none(),
        "nothing was sent: {body}"
    );
}

/// Reads `socket`'s notifications, acking each, until it holds every title of `expected`;
/// each title received counted. Then a ping round trip: nothing else was on its way.
async fn receive(socket: &mut WsClient, expected: &BTreeSet<String>) -> BTreeMap<String, usize> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    while !expected.iter().all(|t| seen.contains_key(t)) {
        let n = socket.next_notification().await;
        socket.ack(&n).await;
        let title = n["data"]["title"].as_str().unwrap_or_default().to_owned();
        *seen.entry(title).or_default() += 1;
    }
    socket.roundtrip().await;
    seen
}

/// The message ids `user` has a receipt for.
async fn receipts_of(app: &TestApp, user: UserId) -> BTreeSet<String> {
    let ids: Vec<String> = app
        .db
        .scalar(
            "SELECT coalesce(array_agg(DISTINCT m), '{}')
             FROM receipt_batches, unnest(message_ids, user_ids) AS t(m, u) WHERE u = $1",
            &[&user.0],
        )
        .await;
    ids.into_iter().collect()
}

#[tokio::test]
async fn a_burst_over_the_bound_is_accepted_in_part_and_the_rest_refused_with_nothing_written() {
    burst_is_accepted_in_part(("PUBLISH_MAX_IN_FLIGHT", &BOUND.to_string())).await;
}

/// With places to spare, the latency target refuses: its average of a send's time is
/// over 1 µs after the first one, so a send is admitted only while none is in flight.
#[tokio::test]
async fn over_the_latency_target_a_burst_is_accepted_in_part_and_the_rest_refused() {
    burst_is_accepted_in_part(("PUBLISH_TARGET_LATENCY", "1us")).await;
}

/// Bursts of concurrent sends to three open sockets until one is refused in part (the
/// replica set up with `setting`): every 202 is delivered exactly once with a receipt,
/// every refusal is a 503 `overloaded` that wrote nothing, and afterwards a send goes
/// through.
async fn burst_is_accepted_in_part(setting: (&str, &str)) {
    let app = spawn_app_with(|env| {
        use_engine(env, EngineKind::Redis);
        env.insert(setting.0.into(), setting.1.into());
    })
    .await;
    let (_, staff) = app.user_with_role("staff", Role::Platform).await;
    let mut users = Vec::new();
    for _ in 0..3 {
        let (user, token) = app.socket_user(Role::Rider).await;
        users.push((user, app.ws_ok(&token).await));
    }

    // Per user, the titles and the message ids answered 202.
    let mut accepted: BTreeMap<UserId, BTreeSet<String>> = BTreeMap::new();
    let mut accepted_ids: BTreeMap<UserId, BTreeSet<String>> = BTreeMap::new();
    let mut refused_titles = BTreeSet::new();
    for burst in 0..MAX_BURSTS {
        let sends = (0..BURST).map(|i| {
            let (user, _) = &users[i % users.len()];
            let title = format!("b{burst}-{i}");
            let body = json!({"user_id": user.0, "title": title, "content": "burst"});
            let (app, staff) = (&app, &staff);
            async move {
                (
                    *user,
                    title,
                    send(app, staff, "/v1/platform/notifications", &body, None).await,
                )
            }
        });
        let mut refused = 0;
        for (user, title, answer) in join_all(sends).await {
            match answer.0 {
                202 => {
                    let id = answer.2["message_id"].as_str().expect("a message id");
                    accepted_ids.entry(user).or_default().insert(id.to_owned());
                    accepted.entry(user).or_default().insert(title);
                }
                _ => {
                    assert_overloaded(&answer);
                    refused += 1;
                    refused_titles.insert(title);
                }
            }
        }
        if refused > 0 {
            break;
        }
    }
    assert!(
        !refused_titles.is_empty(),
        "{MAX_BURSTS} bursts of {BURST} were never refused ({setting:?})"
    );
    assert!(!accepted.is_empty(), "a burst had room for some sends");

    // Every 202 reaches its user's socket exactly once; no refused one does.
    for (user, socket) in &mut users {
        let expected = accepted.get(user).cloned().unwrap_or_default();
        let seen = receive(socket, &expected).await;
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "delivered more than once: {twice:?}");
        let unexpected: Vec<_> = seen.keys().filter(|t| !expected.contains(*t)).collect();
        assert!(
            unexpected.is_empty(),
            "refused sends delivered: {unexpected:?}"
        );
        // One receipt per accepted send, none for a refused one; acked, the inbox is empty.
        let ids = accepted_ids.get(user).cloned().unwrap_or_default();
        assert_eq!(receipts_of(&app, *user).await, ids);
        app.until_inbox(*user, 0, "the accepted notifications are acked")
            .await;
    }
    let refused_total = app.metrics_text().await;
    assert!(
        refused_total
            .lines()
            .any(|l| l.starts_with("locallife_publish_refused_total ") && !l.ends_with(" 0")),
        "the refusals are counted"
    );

    // The burst is over: the replica answers normally again.
    let (user, socket) = &mut users[0];
    let answer = send(
        &app,
        &staff,
        "/v1/platform/notifications",
        &json!({"user_id": user.0, "title": "after", "content": "calm"}),
        None,
    )
    .await;
    assert_eq!(answer.0, 202, "{}", answer.2);
    let n = socket.next_notification().await;
    assert_eq!(n["data"]["title"], "after");
}

#[tokio::test]
async fn a_send_without_room_writes_nothing_and_its_key_stays_free() {
    let app = spawn_app_with(|env| {
        env.insert("PUBLISH_MAX_IN_FLIGHT".into(), BOUND.to_string());
    })
    .await;
    let (_, staff) = app.user_with_role("staff", Role::Platform).await;
    let (rider, token) = app.socket_user(Role::Rider).await;
    let mut socket = app.ws_ok(&token).await;
    let batch = json!({"notifications": [
        {"user_id": rider.0, "title": "one", "content": ""},
        {"user_id": rider.0, "title": "two", "content": ""},
    ]});
    let command = json!({"title": "go", "content": "north"});
    let single = json!({"user_id": rider.0, "title": "solo", "content": ""});

    // Every place taken (as by sends in flight): each kind of send is refused.
    let held = app
        .state
        .publishing()
        .admit(BOUND)
        .expect("the places are free");
    for (path, body) in [
        ("/v1/platform/notifications", &single),
        ("/v1/platform/notifications/batch", &batch),
        (
            &*format!("/v1/platform/riders/{}/commands", rider.0),
            &command,
        ),
    ] {
        let answer = send(&app, &staff, path, body, Some(&format!("k-{path}"))).await;
        assert_overloaded(&answer);
    }
    assert_eq!(app.inbox_len(rider).await, 0, "no inbox entry");
    assert!(receipts_of(&app, rider).await.is_empty(), "no receipt");
    assert!(
        socket
            .nothing_within(std::time::Duration::from_millis(200))
            .await
    );

    // With room again, the same requests under the same keys are first attempts.
    drop(held);
    let mut expected = BTreeSet::new();
    for (path, body, titles) in [
        ("/v1/platform/notifications", &single, &["solo"][..]),
        (
            "/v1/platform/notifications/batch",
            &batch,
            &["one", "two"][..],
        ),
        (
            &*format!("/v1/platform/riders/{}/commands", rider.0),
            &command,
            &["go"][..],
        ),
    ] {
        let answer = send(&app, &staff, path, body, Some(&format!("k-{path}"))).await;
        assert_eq!(answer.0, 202, "{path}: {}", answer.2);
        expected.extend(titles.iter().map(|t| t.to_string()));
    }
    let seen = tokio::time::timeout(WAIT, receive(&mut socket, &expected))
        .await
        .expect("delivered");
    assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    assert_eq!(receipts_of(&app, rider).await.len(), 4);
}
