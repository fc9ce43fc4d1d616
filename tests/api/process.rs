//! The real binary as separate processes: a replica killed with SIGKILL loses nothing,
//! SIGTERM drains (1001, spread over the drain period, exit 0), and a Redis that goes
//! away and comes back is survived without a restart.

use std::time::{Duration, Instant};

use crate::support::{
    assert_error, free_port, spawn_app_with, spawn_cluster, within, OwnRedis, Replica, WAIT,
};
use locallife::domain::Role;
use locallife::notify::{Kind, Notification};

/// A dispatch titled `title`: a business notification that needs an ack.
fn dispatched(title: &str) -> Notification {
    Notification::new(Kind::OrderDispatched, title, "go").with("order_id", 1)
}

#[tokio::test]
async fn a_killed_replica_loses_no_unacked_notification() {
    let apps = spawn_cluster(1).await;
    let hub = &apps[0];
    let p1 = Replica::start(hub, &[]).await;
    let p2 = Replica::start(hub, &[]).await;
    let (rider, token) = hub.socket_user(Role::Rider).await;

    let mut on_p1 = p1.ws(&token).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            hub.publish_notification(rider, &dispatched(&format!("dispatch {i}")))
                .await,
        );
    }
    for id in &ids {
        assert_eq!(
            on_p1.next_notification().await["data"]["message_id"],
            id.as_str()
        );
    }
    // Not acked. The replica dies without a word.
    let mut p1 = p1;
    p1.signal("-KILL");
    let _ = tokio::time::timeout(WAIT, p1.child.wait()).await;

    // The client reconnects and lands on the other replica.
    let mut on_p2 = p2.ws(&token).await;
    for (i, id) in ids.iter().enumerate() {
        let n = on_p2.next_notification().await;
        assert_eq!(n["data"]["message_id"], id.as_str());
        assert_eq!(n["data"]["title"], format!("dispatch {i}"));
    }
}

#[tokio::test]
async fn sigterm_drains_sockets_with_1001_spread_out_and_exits_zero() {
    let apps = spawn_cluster(1).await;
    let hub = &apps[0];
    let mut p1 = Replica::start(hub, &[("WS_DRAIN_PERIOD", "1s")]).await;
    let p2 = Replica::start(hub, &[]).await;

    let (rider, rider_token) = hub.socket_user(Role::Rider).await;
    let mut sockets = vec![p1.ws(&rider_token).await];
    for _ in 0..9 {
        let (_, token) = hub.socket_user(Role::Platform).await;
        sockets.push(p1.ws(&token).await);
    }
    let unacked = hub
        .publish_notification(rider, &dispatched("still yours"))
        .await;
    assert_eq!(
        sockets[0].next_notification().await["data"]["message_id"],
        unacked.as_str()
    );

    let signalled = Instant::now();
    p1.signal("-TERM");
    let closes = futures::future::join_all(sockets.iter_mut().map(|s| async {
        let code = s.closed_with().await;
        (code, signalled.elapsed())
    }))
    .await;
    assert!(closes.iter().all(|(code, _)| *code == 1001), "{closes:?}");
    let first = closes.iter().map(|(_, t)| *t).min().unwrap();
    let last = closes.iter().map(|(_, t)| *t).max().unwrap();
    assert!(
        last - first >= Duration::from_millis(400),
        "closes are spread over the drain period: {first:?} .. {last:?}"
    );
    let status = tokio::time::timeout(Duration::from_secs(20), p1.child.wait())
        .await
        .expect("exits after draining")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");

    // Its unacked notification reaches the client on the next replica.
    let mut again = p2.ws(&rider_token).await;
    assert_eq!(
        again.next_notification().await["data"]["message_id"],
        unacked.as_str()
    );
}

#[tokio::test]
async fn a_redis_outage_is_survived_without_a_restart() {
    let port = free_port();
    let redis = OwnRedis::start(port).await;
    let app = spawn_app_with(|env| {
        env.insert("REDIS_URL".into(), format!("redis://127.0.0.1:{port}"));
    })
    .await;
    let (_, staff) = app.socket_user(Role::Platform).await;
    let (rider, token) = app.socket_user(Role::Rider).await;
    let mut socket = app.ws_ok(&token).await;
    let mut staff_socket = app.ws_ok(&staff).await;
    let body = serde_json::json!({"user_id": rider.0, "title": "before", "content": ""});
    assert_eq!(app.post_notification(&staff, &body).await.0, 202);
    let n = socket.next_notification().await;
    socket.ack(&n).await;

    redis.stop().await;
    app.wait_readyz(503).await;
    let (_, ready) = app.get("/readyz", None).await;
    assert_eq!(ready["checks"]["redis"], "unavailable");
    // Publishing refuses rather than losing anything.
    assert_error(
        &app.post_notification(&staff, &body).await,
        503,
        "engine_unavailable",
    );
    // The socket stays open meanwhile.
    socket.roundtrip().await;

    let _redis = OwnRedis::start(port).await;
    app.wait_readyz(200).await;
    // Subscriptions come back on their own; delivery resumes.
    // Each try waits 200 ms for the socket, so the retries need no pause of their own.
    let resumed = within(WAIT, Duration::ZERO, async || {
        let body = serde_json::json!({"user_id": rider.0, "title": "after", "content": ""});
        let (status, _) = app.post_notification(&staff, &body).await;
        (status == 202 && !socket.nothing_within(Duration::from_millis(200)).await).then_some(())
    })
    .await;
    assert!(resumed.is_some(), "delivery resumed after Redis came back");
    // Staff hear of the outage once the alert can be delivered.
    let alert = staff_socket.next_notification().await;
    assert_eq!(alert["data"]["event"], "alert.system_error");
    assert_eq!(alert["data"]["kind"], "redis_unreachable");
}

/// A replica that starts while its Redis answers nothing (stopped, or still loading
/// its data) becomes ready once Redis does: no connection is left wedged.
#[tokio::test]
async fn a_replica_started_while_redis_is_stalled_becomes_ready() {
    let (redis, peer, port) = OwnRedis::with_app().await;
    redis.signal("-STOP");
    let url = format!("redis://127.0.0.1:{port}");
    let replica = Replica::spawn(
        &peer.db.url,
        &peer.config.redis_key_prefix,
        crate::support::stable_port(),
        &[("REDIS_URL", &url)],
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.signal("-CONT");
    assert!(
        replica.ready_within(Duration::from_secs(15)).await,
        "ready once Redis answers"
    );
}
