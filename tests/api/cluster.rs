//! Several replicas in one test process, sharing Redis (a key prefix of their own) and
//! the database: events cross replicas, limits and counts are cluster-wide, and a
//! replica whose Redis subscriber connection drops subscribes again on its own.

use std::time::Duration;

use locallife::domain::Role;
use serde_json::json;

use crate::support::{eventually, redis_url, spawn_cluster, WAIT};

#[tokio::test]
async fn a_notification_published_on_one_replica_reaches_a_socket_on_another() {
    let apps = spawn_cluster(3).await;
    let (a, b) = (&apps[0], &apps[1]);
    let (_, staff) = a.socket_user(Role::Platform).await;
    let (rider, token) = a.socket_user(Role::Rider).await;
    let mut socket = a.ws_ok(&token).await;
    let (status, body) = b
        .post_notification(
            &staff,
            &json!({"user_id": rider.0, "title": "跨副本", "content": "from b"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let n = socket.next_notification().await;
    assert_eq!(n["data"]["message_id"], body["message_id"]);
    assert_eq!(n["data"]["content"], "from b");
}

#[tokio::test]
async fn two_sockets_of_one_user_on_two_replicas_both_receive() {
    let apps = spawn_cluster(3).await;
    let (_, staff) = apps[0].socket_user(Role::Platform).await;
    let (rider, token) = apps[0].socket_user(Role::Rider).await;
    let mut on_a = apps[0].ws_ok(&token).await;
    let mut on_c = apps[2].ws_ok(&token).await;
    let (status, body) = apps[1]
        .post_notification(
            &staff,
            &json!({"user_id": rider.0, "title": "t", "content": "both"}),
        )
        .await;
    assert_eq!(status, 202);
    for socket in [&mut on_a, &mut on_c] {
        assert_eq!(
            socket.next_notification().await["data"]["message_id"],
            body["message_id"]
        );
    }
}

#[tokio::test]
async fn an_announcement_reaches_the_role_on_every_replica() {
    let apps = spawn_cluster(3).await;
    let (_, staff) = apps[0].socket_user(Role::Platform).await;
    let (_, m1) = apps[0].socket_user(Role::Merchant).await;
    let (_, m2) = apps[0].socket_user(Role::Merchant).await;
    let (_, rider) = apps[0].socket_user(Role::Rider).await;
    let mut merchants = [apps[0].ws_ok(&m1).await, apps[2].ws_ok(&m2).await];
    let mut rider = apps[2].ws_ok(&rider).await;
    let (status, _) = apps[1]
        .post_notification(
            &staff,
            &json!({"role": "merchant", "title": "公告", "content": "系统维护"}),
        )
        .await;
    assert_eq!(status, 202);
    for m in &mut merchants {
        assert_eq!(m.next_notification().await["data"]["event"], "announcement");
    }
    assert!(rider.nothing_within(Duration::from_millis(300)).await);
}

#[tokio::test]
async fn the_socket_limit_holds_across_replicas() {
    let apps = spawn_cluster(3).await;
    let (_, token) = apps[0].socket_user(Role::Platform).await;
    let mut open = Vec::new();
    for i in 0..apps[0].config.ws.max_sockets_per_user {
        open.push(apps[i % 2].ws_ok(&token).await);
    }
    apps[2].ws_refused(&token, 429, "too_many_sockets").await;
}

#[tokio::test]
async fn connections_are_counted_across_replicas() {
    let apps = spawn_cluster(3).await;
    let (_, staff) = apps[0].socket_user(Role::Platform).await;
    let (_, rider) = apps[0].socket_user(Role::Rider).await;
    let _s = apps[0].ws_ok(&staff).await;
    let _r1 = apps[1].ws_ok(&rider).await;
    let _r2 = apps[2].ws_ok(&rider).await;
    // Replicas report their counts on their own; wait for all three to show.
    let body = eventually(WAIT, "every replica's sockets are counted", async || {
        let (status, body) = apps[0].get("/v1/platform/connections", Some(&staff)).await;
        assert_eq!(status, 200, "{body}");
        let all = body["total"]["sockets"] == 3 && body["replicas"].as_array().unwrap().len() == 3;
        all.then_some(body)
    })
    .await;
    assert_eq!(body["total"]["by_role"]["rider"], 2);
    assert_eq!(body["total"]["by_role"]["platform"], 1);
    for r in body["replicas"].as_array().unwrap() {
        assert_eq!(r["sockets"], 1, "{r}");
    }
}

/// Kills this replica's subscriber connection in Redis (found by its client name).
async fn kill_subscriber(app: &crate::support::TestApp) {
    use fred::prelude::*;
    use fred::types::CustomCommand;
    let name = app
        .state
        .hub()
        .engine()
        .subscriber_name()
        .expect("the Redis engine names its subscriber");
    let config = fred::types::config::Config::from_url(&redis_url()).unwrap();
    let client = Builder::from_config(config).build().unwrap();
    client.init().await.unwrap();
    let client_cmd = || CustomCommand::new_static("CLIENT", None, false);
    let list: String = client.custom(client_cmd(), vec!["LIST"]).await.unwrap();
    let id = list
        .lines()
        .find(|l| l.contains(&format!(" name={name} ")))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .expect("the subscriber connection is listed")
        .to_owned();
    let killed: i64 = client
        .custom(client_cmd(), vec!["KILL", "ID", id.as_str()])
        .await
        .unwrap();
    assert_eq!(killed, 1);
    let _ = client.quit().await;
}

#[tokio::test]
async fn a_dropped_subscriber_connection_resubscribes_on_its_own() {
    let apps = spawn_cluster(2).await;
    let (_, staff) = apps[0].socket_user(Role::Platform).await;
    let (rider, token) = apps[0].socket_user(Role::Rider).await;
    let (_, other_rider) = apps[0].socket_user(Role::Rider).await;
    let mut socket = apps[0].ws_ok(&token).await;
    let mut announced = apps[0].ws_ok(&other_rider).await;
    kill_subscriber(&apps[0]).await;

    // Publishing from the other replica reaches the socket again once the subscriber has
    // reconnected and subscribed: keep publishing until one arrives, bounded.
    let delivered = tokio::time::timeout(WAIT, async {
        loop {
            let (status, _) = apps[1]
                .post_notification(
                    &staff,
                    &json!({"user_id": rider.0, "title": "again", "content": ""}),
                )
                .await;
            assert_eq!(status, 202);
            if !socket.nothing_within(Duration::from_millis(100)).await {
                return;
            }
        }
    })
    .await;
    assert!(delivered.is_ok(), "user channel resubscribed");
    // Role channels too.
    let (status, _) = apps[1]
        .post_notification(
            &staff,
            &json!({"role": "rider", "title": "roles back", "content": ""}),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        announced.next_notification().await["data"]["title"],
        "roles back"
    );
}

#[tokio::test]
async fn what_is_published_while_the_subscriber_is_down_arrives_after_it_returns() {
    let apps = spawn_cluster(2).await;
    let (rider, token) = apps[0].socket_user(Role::Rider).await;
    let mut socket = apps[0].ws_ok(&token).await;
    kill_subscriber(&apps[0]).await;
    // Published once, at once: live delivery to replica 0 is likely down right now.
    let n =
        locallife::notify::Notification::new(locallife::notify::Kind::OrderRecommend, "during", "");
    let id = apps[1].publish_notification(rider, &n).await;
    let got = socket.next_notification().await;
    assert_eq!(got["data"]["message_id"], id.as_str());
    socket.ack(&got).await;
    assert!(
        socket.nothing_within(Duration::from_millis(300)).await,
        "delivered once"
    );
}

#[tokio::test]
async fn an_ack_on_one_replica_stops_redelivery_on_another() {
    let apps = crate::support::spawn_cluster_with(2, |env| {
        env.insert("WS_ACK_TIMEOUT".into(), "300ms".into());
    })
    .await;
    let (rider, token) = apps[0].socket_user(Role::Rider).await;
    let mut on_a = apps[0].ws_ok(&token).await;
    let mut on_b = apps[1].ws_ok(&token).await;
    let n = locallife::notify::Notification::new(locallife::notify::Kind::RiderCommand, "go", "");
    apps[1].publish_notification(rider, &n).await;
    let got = on_a.next_notification().await;
    assert_eq!(
        on_b.next_notification().await["data"]["message_id"],
        got["data"]["message_id"]
    );
    on_a.ack(&got).await;
    assert!(
        on_b.nothing_within(Duration::from_millis(1000)).await,
        "b stops redelivering"
    );
    assert!(on_a.nothing_within(Duration::from_millis(100)).await);
}

#[tokio::test]
async fn a_batch_reaches_each_user_in_order_across_replicas() {
    let apps = spawn_cluster(2).await;
    let (_, staff) = apps[0].socket_user(Role::Platform).await;
    let (r1, t1) = apps[0].socket_user(Role::Rider).await;
    let (r2, t2) = apps[0].socket_user(Role::Rider).await;
    let mut s1 = apps[0].ws_ok(&t1).await;
    let mut s2 = apps[0].ws_ok(&t2).await;
    let (status, body) = apps[1]
        .post_json(
            "/v1/platform/notifications/batch",
            Some(&staff),
            &json!({"notifications": [
                {"user_id": r1.0, "title": "t", "content": "one"},
                {"user_id": r2.0, "title": "t", "content": "two", "data": {"k": 1}},
                {"user_id": r1.0, "title": "t", "content": "three"},
            ]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let ids = body["message_ids"].as_array().expect("message_ids").clone();
    assert_eq!(ids.len(), 3);
    let first = s1.next_notification().await;
    let third = s1.next_notification().await;
    let second = s2.next_notification().await;
    assert_eq!(
        (&first["data"]["content"], &first["data"]["message_id"]),
        (&json!("one"), &ids[0])
    );
    assert_eq!(
        (&third["data"]["content"], &third["data"]["message_id"]),
        (&json!("three"), &ids[2])
    );
    assert_eq!(second["data"]["message_id"], ids[1]);
    assert_eq!(second["data"]["k"], 1, "{second}");
    assert!(second["data"]["requires_ack"] == true);
}

#[tokio::test]
async fn a_batch_with_a_bad_item_or_an_unknown_user_sends_nothing() {
    let apps = spawn_cluster(1).await;
    let app = &apps[0];
    let (_, staff) = app.socket_user(Role::Platform).await;
    let (rider, token) = app.socket_user(Role::Rider).await;
    let mut socket = app.ws_ok(&token).await;
    let url = "/v1/platform/notifications/batch";
    let good = json!({"user_id": rider.0, "title": "t", "content": "c"});

    let unknown = json!({"user_id": 999_999_999, "title": "t", "content": "c"});
    let answer = app
        .post_json(
            url,
            Some(&staff),
            &json!({"notifications": [good, unknown]}),
        )
        .await;
    crate::support::assert_error(&answer, 404, "user_not_found");
    assert!(answer.1["message"].as_str().unwrap().contains("999999999"));

    let untitled = json!({"user_id": rider.0, "title": " ", "content": "c"});
    let answer = app
        .post_json(
            url,
            Some(&staff),
            &json!({"notifications": [good, untitled]}),
        )
        .await;
    crate::support::assert_error(&answer, 422, "invalid_title");
    assert!(answer.1["message"]
        .as_str()
        .unwrap()
        .starts_with("notifications[1]"));

    let role = json!({"role": "rider", "title": "t", "content": "c"});
    let answer = app
        .post_json(url, Some(&staff), &json!({"notifications": [role]}))
        .await;
    crate::support::assert_error(&answer, 422, "invalid_target");

    let answer = app
        .post_json(url, Some(&staff), &json!({"notifications": []}))
        .await;
    crate::support::assert_error(&answer, 422, "invalid_batch");
    let many: Vec<_> = (0..1001).map(|_| good.clone()).collect();
    let answer = app
        .post_json(url, Some(&staff), &json!({"notifications": many}))
        .await;
    crate::support::assert_error(&answer, 422, "invalid_batch");

    let answer = app
        .post_json(url, Some(&token), &json!({"notifications": [good]}))
        .await;
    assert_eq!(answer.0, 403, "{}", answer.1);

    assert!(socket.nothing_within(Duration::from_millis(300)).await);
}

/// SPEC §2: nothing published after `welcome` can be missed. Riders connect to either
/// of two replicas, stay a moment and leave, over and over, while notifications are
/// published to them from both replicas in a tight loop. Every notification whose
/// publishing began after a connection's `welcome`, and finished well before that
/// connection closed, arrived on that connection.
#[tokio::test]
async fn a_welcomed_socket_misses_nothing_under_reconnect_churn() {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use locallife::notify::{self, Kind, Notification};

    const RUN: Duration = Duration::from_secs(4);
    const GRACE: Duration = Duration::from_millis(300);
    let apps = Arc::new(spawn_cluster(2).await);
    let mut riders = Vec::new();
    for _ in 0..6 {
        riders.push(apps[0].socket_user(Role::Rider).await);
    }
    let start = Instant::now();
    // (rider, id, publish began, publish returned)
    let published = Arc::new(Mutex::new(Vec::new()));
    let publisher = {
        let (apps, published) = (apps.clone(), published.clone());
        let users: Vec<_> = riders.iter().map(|(u, _)| *u).collect();
        tokio::spawn(async move {
            let mut i = 0u64;
            while start.elapsed() < RUN {
                let user = users[(i as usize) % users.len()];
                let engine = apps[(i % 2) as usize].state.hub().engine().clone();
                let n = Notification::new(Kind::PlatformNotice, format!("n{i}"), "");
                let began = start.elapsed();
                let id = notify::to_user(&*engine, user, &n).await.unwrap();
                published
                    .lock()
                    .unwrap()
                    .push((user, id, began, start.elapsed()));
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    // (rider, welcome, close, ids received)
    let mut clients = Vec::new();
    for (k, (user, token)) in riders.iter().cloned().enumerate() {
        let apps = apps.clone();
        clients.push(tokio::spawn(async move {
            let mut connections = Vec::new();
            let mut round = k;
            while start.elapsed() < RUN {
                let mut socket = apps[round % 2].ws_ok(&token).await;
                let welcome = start.elapsed();
                let hold = Duration::from_millis(250 + (rand::random::<u64>() % 250));
                let close_at = welcome + hold;
                let mut got = Vec::new();
                while start.elapsed() < close_at {
                    let left = close_at.saturating_sub(start.elapsed());
                    if let Some(n) = socket.notification_within(left).await {
                        got.push(n["data"]["message_id"].as_str().unwrap().to_owned());
                        socket.ack(&n).await;
                    }
                }
                connections.push((user, welcome, start.elapsed(), got));
                drop(socket);
                round += 1;
            }
            connections
        }));
    }
    publisher.await.unwrap();
    let published = published.lock().unwrap().clone();
    let mut checked = 0;
    for client in clients {
        for (user, welcome, closed, got) in client.await.unwrap() {
            for (to, id, began, returned) in &published {
                if *to == user && *began > welcome && *returned + GRACE < closed {
                    checked += 1;
                    assert!(
                        got.contains(id),
                        "{id} published at {began:?}..{returned:?} missed by the connection \
                         welcomed at {welcome:?} and closed at {closed:?}"
                    );
                }
            }
        }
    }
    assert!(
        checked > 100,
        "too few notifications fell inside a connection: {checked}"
    );
    eprintln!("churn: {} published, {checked} checked", published.len());
}
