//! Receipts (SPEC §3, §4): per notification and recipient, pending → delivered (a Pong
//! to a Ping written after it) → acked, or expired; served to platform staff, and an
//! order's to its merchant's admins.

use std::time::Duration;

use locallife::domain::Role;
use serde_json::{json, Value};

use crate::support::{assert_error, eventually, spawn_cluster_with, TestApp, WAIT};

/// Polls the receipt until `user`'s state is `state`.
async fn until_state(app: &TestApp, staff: &str, id: &str, user: i64, state: &str) -> Value {
    let what = format!("{id} is {state} for {user}");
    eventually(WAIT, &what, async || {
        let (status, body) = app
            .get(&format!("/v1/platform/notifications/{id}"), Some(staff))
            .await;
        let r = body["recipients"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["user_id"] == user).cloned());
        let reached = status == 200 && r.as_ref().is_some_and(|r| r["state"] == state);
        reached.then_some(body)
    })
    .await
}

#[tokio::test]
async fn a_notice_goes_pending_delivered_acked_across_replicas() {
    let apps = spawn_cluster_with(2, |env| {
        // Pings come often, so a protocol-2 socket proves delivery quickly too.
        env.insert("WS_PING_INTERVAL".into(), "1s".into());
        env.insert("WS_IDLE_TIMEOUT".into(), "10s".into());
    })
    .await;
    let (a, b) = (&apps[0], &apps[1]);
    let (_, staff) = a.user_with_role("staff", Role::Platform).await;
    let (merchant, token) = a.socket_user(Role::Merchant).await;
    let (status, sent) = a
        .post_notification(
            &staff,
            &json!({"user_id": merchant.0, "title": "新订单", "content": ""}),
        )
        .await;
    assert_eq!(status, 202);
    let id = sent["message_id"].as_str().unwrap();
    let r = until_state(a, &staff, id, merchant.0, "pending").await;
    assert_eq!(r["event"], "platform.notice");
    assert!(r["recipients"][0]["delivered_at"].is_null());

    let mut socket = b.ws_ok(&token).await;
    let n = socket.next_notification().await;
    assert_eq!(n["data"]["message_id"], id);
    // Reading on, the client answers the server's next Ping: delivered.
    let delivered = tokio::time::timeout(WAIT, async {
        loop {
            let _ = socket.nothing_within(Duration::from_millis(200)).await;
            let (_, body) = a
                .get(&format!("/v1/platform/notifications/{id}"), Some(&staff))
                .await;
            if body["recipients"][0]["state"] == "delivered" {
                return body;
            }
        }
    })
    .await
    .expect("delivered once the client answered a Ping");
    assert!(delivered["recipients"][0]["delivered_at"].is_string());
    socket.ack(&n).await;
    let acked = until_state(a, &staff, id, merchant.0, "acked").await;
    assert!(acked["recipients"][0]["acked_at"].is_string());
    assert!(acked["recipients"][0]["delivered_at"].is_string());
}

#[tokio::test]
async fn expiry_unknown_ids_and_who_may_read_receipts() {
    let apps = spawn_cluster_with(1, |_| {}).await;
    let a = &apps[0];
    let (_, staff) = a.user_with_role("staff", Role::Platform).await;
    let (rider, rider_token) = a.socket_user(Role::Rider).await;
    let (_, sent) = a
        .post_notification(
            &staff,
            &json!({"user_id": rider.0, "title": "t", "content": ""}),
        )
        .await;
    let id = sent["message_id"].as_str().unwrap();
    until_state(a, &staff, id, rider.0, "pending").await;
    a.db.execute(
        "UPDATE receipt_batches
         SET expires_at = array_fill(now() - interval '1 second', ARRAY[cardinality(expires_at)])
         WHERE $1 = ANY(message_ids)",
        &[&id],
    )
    .await;
    until_state(a, &staff, id, rider.0, "expired").await;
    assert_error(
        &a.get("/v1/platform/notifications/1-1", Some(&staff)).await,
        404,
        "not_found",
    );
    assert_error(
        &a.get(
            &format!("/v1/platform/notifications/{id}"),
            Some(&rider_token),
        )
        .await,
        403,
        "forbidden",
    );
    assert_error(
        &a.get("/v1/orders/999999/notifications", Some(&staff)).await,
        404,
        "not_found",
    );
}

/// A delivery recorded on one replica may reach the table before the pending row that
/// another replica queued: the row shows once its notification's part arrives, with the
/// delivery kept.
#[tokio::test]
async fn a_mark_written_before_its_pending_row_is_kept() {
    use locallife::domain::UserId;
    use locallife::store::receipts::{self, Mark, Update};

    let apps = spawn_cluster_with(1, |_| {}).await;
    let a = &apps[0];
    let (_, staff) = a.user_with_role("staff", Role::Platform).await;
    let pool = locallife::store::connect_pool(&locallife::config::DatabaseConfig {
        url: a.db.url.clone().into(),
        pool_size: 1,
        tls: locallife::config::PgTls::Plain,
    })
    .unwrap();
    let db = pool.get().await.unwrap();
    // A recent id: the hourly prune (which every replica runs at start) drops old ones.
    let now = chrono::Utc::now().timestamp_millis();
    let id = format!("{now}-00000000000000000001");
    let (id, user) = (id.as_str(), UserId(4242));
    let delivered = Update::mark(Mark::Delivered, id.into(), user, now + 500);
    receipts::write(&db, &[delivered]).await.unwrap();
    // Only the mark: nothing to show yet.
    assert_error(
        &a.get(&format!("/v1/platform/notifications/{id}"), Some(&staff))
            .await,
        404,
        "not_found",
    );
    let far = 4_000_000_000_000;
    let pending = Update::pending(id.into(), user, "order.new", Some(9), now, far);
    let acked = Update::mark(Mark::Acked, id.into(), user, now + 900);
    receipts::write(&db, &receipts::merged([pending, acked]))
        .await
        .unwrap();
    let (status, r) = a
        .get(&format!("/v1/platform/notifications/{id}"), Some(&staff))
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["event"], "order.new");
    let recipient = &r["recipients"][0];
    assert_eq!(recipient["state"], "acked");
    // The first delivery time stays; the ack's own does not replace it.
    let first = chrono::DateTime::from_timestamp_millis(now + 500).unwrap();
    assert_eq!(
        recipient["delivered_at"],
        first.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
}

/// A receipt exists the moment its notification is accepted (SPEC §3): sent on one
/// replica, read at once on the other, a hundred times in a row, single and batch
/// sends alike: never a 404, every recipient at least `pending`.
#[tokio::test]
async fn a_receipt_is_readable_on_any_replica_right_after_the_202() {
    let apps = spawn_cluster_with(2, |_| {}).await;
    let (a, b) = (&apps[0], &apps[1]);
    let (_, staff) = a.user_with_role("staff", Role::Platform).await;
    let (merchant, _) = a.socket_user(Role::Merchant).await;
    let (rider, _) = a.socket_user(Role::Rider).await;
    for i in 0..100 {
        let (status, sent) = a
            .post_notification(
                &staff,
                &json!({"user_id": merchant.0, "title": format!("n{i}"), "content": ""}),
            )
            .await;
        assert_eq!(status, 202, "{sent}");
        let id = sent["message_id"].as_str().unwrap();
        let (status, receipt) = b
            .get(&format!("/v1/platform/notifications/{id}"), Some(&staff))
            .await;
        assert_eq!(status, 200, "send {i}: {receipt}");
        assert_eq!(receipt["recipients"][0]["user_id"], merchant.0);
    }
    for i in 0..100 {
        let (status, sent) = b
            .post_json(
                "/v1/platform/notifications/batch",
                Some(&staff),
                &json!({"notifications": [
                    {"user_id": merchant.0, "title": format!("b{i}"), "content": ""},
                    {"user_id": rider.0, "title": format!("b{i}"), "content": ""},
                ]}),
            )
            .await;
        assert_eq!(status, 202, "{sent}");
        for id in sent["message_ids"].as_array().unwrap() {
            let (status, receipt) = a
                .get(
                    &format!("/v1/platform/notifications/{}", id.as_str().unwrap()),
                    Some(&staff),
                )
                .await;
            assert_eq!(status, 200, "batch {i}: {receipt}");
            let state = receipt["recipients"][0]["state"].as_str().unwrap();
            assert!(
                ["pending", "delivered", "acked"].contains(&state),
                "{receipt}"
            );
        }
    }
}
