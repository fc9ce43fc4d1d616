//! Riders and dispatch: positions, the accept race, going offline, staff dispatch and
//! commands, the rules of riders and merchants, locations over the socket, and offers
//! withdrawn once an order is taken.

use std::time::Duration;

use serde_json::json;

use crate::support::world::{expect_event, token, World};
use crate::support::{assert_error, SHOP};

/// Latitudes beyond ±85.05 (what the rider index can hold) are refused with 422 on
/// every path that takes a position, on both engines alike.
#[tokio::test]
async fn positions_beyond_the_index_latitude_are_422() {
    let w = World::new(1, &[]).await;
    let (_, rider) = w.rider("polar", 0.0).await;
    for lat in [85.06, -85.06, 90.0] {
        assert_error(
            &w.a()
                .post_json(
                    "/v1/rider/online",
                    Some(&rider),
                    &json!({"lat": lat, "lng": 0.0}),
                )
                .await,
            422,
            "invalid_position",
        );
    }
    let (status, body) = w
        .a()
        .post_json(
            "/v1/rider/online",
            Some(&rider),
            &json!({"lat": 85.05, "lng": 0.0}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_first_rider_to_accept_wins_and_the_others_are_told() {
    let w = World::new(2, &[]).await;
    let mut riders = Vec::new();
    for i in 0..4 {
        let (id, token) = w
            .rider(&format!("rider-{i}"), 0.001 * f64::from(i + 1))
            .await;
        let socket = w.apps[i as usize % 2].ws_ok(&token).await;
        riders.push((id, token, socket));
    }
    // Far away: not recommended.
    let (_, far_token) = w.rider("rider-far", 0.05).await;
    let mut far = w.a().ws_ok(&far_token).await;

    let order = w.paid_order().await;
    let id = order["id"].as_i64().unwrap();
    let mut distances = Vec::new();
    for (_, _, socket) in riders.iter_mut() {
        let n = expect_event(socket, "order.recommend").await;
        distances.push(n["data"]["distance_m"].as_f64().unwrap());
    }
    assert!(distances.windows(2).all(|d| d[0] < d[1]), "{distances:?}");
    assert!(
        far.nothing_within(Duration::from_millis(300)).await,
        "out of radius"
    );

    let accepts = futures::future::join_all(
        riders
            .iter()
            .enumerate()
            .map(|(i, (_, token, _))| w.apps[i % 2].rider_step(token, id, "accept")),
    )
    .await;
    let winners: Vec<usize> = accepts
        .iter()
        .enumerate()
        .filter(|(_, (s, _))| *s == 200)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "{accepts:?}");
    for (i, answer) in accepts.iter().enumerate() {
        if i != winners[0] {
            assert_error(answer, 409, "order_taken");
        }
    }
    for (i, (_, _, socket)) in riders.iter_mut().enumerate() {
        if i == winners[0] {
            assert!(socket.nothing_within(Duration::from_millis(300)).await);
        } else {
            let taken = expect_event(socket, "order.taken").await;
            assert_eq!(taken["data"]["order_id"], id);
            assert_eq!(taken["data"]["requires_ack"], false);
        }
    }
}

#[tokio::test]
async fn going_offline_closes_every_socket_on_every_replica_with_4003() {
    let w = World::new(2, &[]).await;
    let (_, token) = w.rider("rider-off", 0.001).await;
    let mut on_a = w.a().ws_ok(&token).await;
    let mut on_b = w.b().ws_ok(&token).await;
    let (status, body) = w
        .b()
        .post_json("/v1/rider/offline", Some(&token), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(on_a.closed_with().await, 4003);
    assert_eq!(on_b.closed_with().await, 4003);
    w.a().ws_refused(&token, 403, "rider_offline").await;
    // And out of matching.
    let order = w.paid_order().await;
    let recommended: i64 = w
        .a()
        .db
        .scalar(
            "SELECT count(*) FROM order_recommendations WHERE order_id = $1",
            &[&order["id"].as_i64().unwrap()],
        )
        .await;
    assert_eq!(recommended, 0);
}

#[tokio::test]
async fn platform_dispatch_and_commands_reach_the_rider() {
    let w = World::new(2, &[]).await;
    let (rider, token) = w.rider("rider-d", 0.02).await;
    let mut socket = w.a().ws_ok(&token).await;
    let order = w.paid_order().await;
    let id = order["id"].as_i64().unwrap();
    let (status, o) = w.dispatch(id, rider).await;
    assert_eq!(status, 200, "{o}");
    let n = socket.next_event("order.dispatched").await;
    assert_eq!(n["data"]["title"], "派单通知");
    assert_eq!(n["data"]["order_id"], id);
    assert_error(&w.dispatch(id, rider).await, 409, "order_not_dispatchable");
    let (status, body) = w
        .b()
        .post_json(
            &format!("/v1/platform/riders/{}/commands", rider.0),
            Some(&w.staff),
            &json!({"title": "调度指令", "content": "请前往人民广场", "data": {"zone": "A"}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    // The order's recommendation may land around the dispatch: the relays publish
    // independent rows independently.
    let n = socket.next_event("rider.command").await;
    assert_eq!(n["data"]["message_id"], body["message_id"]);
    assert_eq!(n["data"]["zone"], "A");
    assert_error(
        &w.b()
            .post_json(
                "/v1/platform/riders/999999/commands",
                Some(&w.staff),
                &json!({"title": "t", "content": ""}),
            )
            .await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn rider_and_merchant_rules() {
    let w = World::new(1, &[]).await;
    let a = w.a();
    let someone = token(a.login("someone").await);
    // Not approved yet: cannot go online.
    let (status, body) = a.apply_as_rider(&someone, "张三", "13900000000").await;
    assert_eq!(status, 201, "{body}");
    assert_error(
        &a.apply_as_rider(&someone, "张三", "13900000000").await,
        409,
        "already_applied",
    );
    assert_error(
        &a.post_json(
            "/v1/rider/online",
            Some(&someone),
            &json!({"lat": 31.2, "lng": 121.4}),
        )
        .await,
        403,
        "rider_not_approved",
    );
    // Only the merchant's admins manage its products.
    assert_error(
        &a.post_json(
            &format!("/v1/merchants/{}/products", w.merchant),
            Some(&someone),
            &json!({"name": "x", "price_fen": 1, "stock": 1, "low_stock_threshold": 0}),
        )
        .await,
        403,
        "not_merchant_admin",
    );
    let product = format!("/v1/merchants/{}/products/{}", w.merchant, w.product);
    let (status, p) = a
        .patch_json(
            &product,
            Some(&w.owner),
            &json!({"stock": 7, "price_fen": 1800}),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(
        (p["stock"].as_i64(), p["price_fen"].as_i64()),
        (Some(7), Some(1800))
    );
    assert_error(
        &a.patch_json(&product, Some(&w.owner), &json!({"stock": -1}))
            .await,
        422,
        "invalid_stock",
    );
    // A merchant that is not approved takes no orders.
    let pending = a.apply_for_merchant(&someone, "新店").await;
    assert_error(
        &a.place_order(
            &w.consumer,
            pending,
            json!([{"product_id": w.product, "quantity": 1}]),
        )
        .await,
        409,
        "merchant_unavailable",
    );
}

#[tokio::test]
async fn a_location_over_the_socket_moves_the_rider() {
    let w = World::new(1, &[]).await;
    let (rider, token) = w.rider("rider-loc", 0.05).await;
    let mut socket = w.a().ws_ok(&token).await;
    socket
        .send_json(json!({"type": "location", "data": {"lat": SHOP.0 + 0.001, "lng": SHOP.1}}))
        .await;
    socket.roundtrip().await;
    let lat: f64 = w
        .a()
        .db
        .scalar(
            "SELECT last_lat FROM riders WHERE user_id = $1",
            &[&rider.0],
        )
        .await;
    assert!((lat - (SHOP.0 + 0.001)).abs() < 1e-9);
    // Now near enough to be recommended.
    w.paid_order().await;
    expect_event(&mut socket, "order.recommend").await;
}

/// SPEC §3, offers are withdrawn: a rider recommended an order while away (no socket)
/// connects after another rider took it, and is not offered it.
#[tokio::test]
async fn a_taken_order_is_no_longer_offered_to_riders_who_connect_later() {
    let w = World::new(2, &[]).await;
    let (_, taker_token) = w.rider("taker", 0.001).await;
    let (away, away_token) = w.rider("away", 0.002).await;
    let mut taker = w.a().ws_ok(&taker_token).await;
    let order = w.paid_order().await;
    let id = order["id"].as_i64().unwrap();
    expect_event(&mut taker, "order.recommend").await;
    // The offer waits in the away rider's inbox...
    w.b()
        .until_inbox(away, 1, "the offer reaches the away rider's inbox")
        .await;
    // ...until the order is taken.
    assert_eq!(w.b().rider_step(&taker_token, id, "accept").await.0, 200);
    w.a().until_inbox(away, 0, "the offer is withdrawn").await;
    let mut late = w.b().ws_ok(&away_token).await;
    assert!(
        late.nothing_within(Duration::from_millis(500)).await,
        "no stale offer, and no order.taken for an offer never seen"
    );
}
