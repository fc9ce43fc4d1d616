//! Live admission (SPEC §4): suspending a rider or a merchant, going offline, a role
//! revoked from the command line, and the periodic re-check against the database take
//! the role from open sockets on every replica; a socket left with no role closes with
//! 4003, one with another role keeps it.

use std::time::Duration;

use locallife::domain::Role;
use serde_json::json;

use crate::support::{spawn_cluster, spawn_cluster_with, WsClient};

/// Within 5 s, the socket closes with `code`.
async fn closes_within_5s(socket: &mut WsClient, code: u16) {
    let got = tokio::time::timeout(Duration::from_secs(5), socket.closed_with())
        .await
        .expect("closed within 5 s");
    assert_eq!(got, code);
}

#[tokio::test]
async fn suspending_a_rider_closes_their_socket_on_another_replica_with_4003() {
    let apps = spawn_cluster(2).await;
    let (a, b) = (&apps[0], &apps[1]);
    let (_, staff) = a.user_with_role("staff", Role::Platform).await;
    let (rider, token) = b.socket_user(Role::Rider).await;
    let mut socket = b.ws_ok(&token).await;
    let (status, body) = a
        .post_json(
            &format!("/v1/platform/riders/{}/suspend", rider.0),
            Some(&staff),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    closes_within_5s(&mut socket, 4003).await;
    b.ws_refused(&token, 403, "rider_suspended").await;
    let (status, _) = a
        .post_json(
            "/v1/platform/riders/999999/suspend",
            Some(&staff),
            &json!({}),
        )
        .await;
    assert_eq!(status, 404);
}

/// A rider who is also platform staff, suspended as a rider: the socket stays (platform)
/// and no longer gets rider announcements; a merchant suspended: its admin's socket
/// closes with 4003.
#[tokio::test]
async fn a_socket_keeps_its_other_roles_and_a_suspended_merchant_is_closed() {
    let apps = spawn_cluster(2).await;
    let (a, b) = (&apps[0], &apps[1]);
    let (_, staff) = a.user_with_role("staff", Role::Platform).await;
    let (both, token) = b.socket_user(Role::Rider).await;
    b.db.execute(
        "INSERT INTO user_roles (user_id, role) VALUES ($1, 'platform')",
        &[&both.0],
    )
    .await;
    let mut socket = b.ws_ok(&token).await;
    let (status, _) = a
        .post_json(
            &format!("/v1/platform/riders/{}/suspend", both.0),
            Some(&staff),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    // The suspension travels through pub/sub; a rider announcement sent after the
    // platform one below must not arrive, the platform one must.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for role in ["rider", "platform"] {
        let (status, _) = a
            .post_notification(&staff, &json!({"role": role, "title": role, "content": ""}))
            .await;
        assert_eq!(status, 202);
    }
    let n = socket.next_notification().await;
    assert_eq!(n["data"]["title"], "platform", "{n}");
    assert!(socket.nothing_within(Duration::from_millis(300)).await);

    let ((_, merchant_token), merchant) = b.merchant_admin("shop-owner", true).await;
    let mut shop = b.ws_ok(&merchant_token).await;
    let (status, _) = a
        .post_json(
            &format!("/v1/platform/merchants/{merchant}/suspend"),
            Some(&staff),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    closes_within_5s(&mut shop, 4003).await;
}

/// A change made behind the API's back (SQL): the periodic re-check finds it.
#[tokio::test]
async fn the_periodic_recheck_finds_a_change_made_in_the_database() {
    let apps = spawn_cluster_with(1, |env| {
        env.insert("WS_ADMISSION_RECHECK".into(), "1s".into());
    })
    .await;
    let a = &apps[0];
    let (rider, token) = a.socket_user(Role::Rider).await;
    let mut socket = a.ws_ok(&token).await;
    a.db.execute(
        "UPDATE riders SET online = false WHERE user_id = $1",
        &[&rider.0],
    )
    .await;
    closes_within_5s(&mut socket, 4003).await;
}
