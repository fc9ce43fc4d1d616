//! Orders and stock: no overselling under races, the unpaid-orders cap, quantity caps,
//! low-stock announcements, who may see an order and its receipts, and urging.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::fake_pay;
use crate::support::world::{expect_event, token, transaction_for, World};
use crate::support::{assert_error, eventually, WAIT};

#[tokio::test]
async fn concurrent_orders_never_oversell() {
    let w = World::new(2, &[]).await;
    let product = w.a().product(&w.owner, w.merchant, 100, 10, 0).await;
    let items = json!([{"product_id": product, "quantity": 1}]);
    let attempts = (0..30).map(|i| w.order_items(&w.apps[i % 2], items.clone()));
    let answers = futures::future::join_all(attempts).await;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    let refused = answers
        .iter()
        .filter(|(s, b)| *s == 409 && b["code"] == "insufficient_stock")
        .count();
    assert_eq!((created, refused), (10, 20), "{answers:?}");
    assert_eq!(w.stock(product).await, 0);
}

/// `ORDERS_UNPAID_MAX`: a consumer holding that many unpaid orders is refused the next
/// (409 `too_many_unpaid_orders`, nothing reserved), even when the orders race across
/// replicas; once one is paid, the next goes through.
#[tokio::test]
async fn a_consumer_holds_at_most_orders_unpaid_max_unpaid_orders() {
    let w = World::new(2, &[("ORDERS_UNPAID_MAX", "2")]).await;
    let attempts = (0..6).map(|i| w.order(&w.apps[i % 2], 1));
    let answers = futures::future::join_all(attempts).await;
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 2, "{answers:?}");
    for answer in answers.iter().filter(|(s, _)| *s != 201) {
        assert_error(answer, 409, "too_many_unpaid_orders");
    }
    assert_eq!(w.stock(w.product).await, 98, "the refused reserved nothing");
    let n = fake_pay::notification(&transaction_for(created[0]));
    assert_eq!(w.b().notify_payment(&n).await.0, 204);
    let (status, body) = w.order(w.a(), 1).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_failed_order_reserves_nothing_and_low_stock_is_announced() {
    let w = World::new(1, &[]).await;
    let mut merchant_socket = w.a().ws_ok(&w.owner).await;
    let scarce = w.a().product(&w.owner, w.merchant, 100, 1, 0).await;
    let answer = w
        .order_items(
            w.a(),
            json!([{"product_id": w.product, "quantity": 3}, {"product_id": scarce, "quantity": 2}]),
        )
        .await;
    assert_error(&answer, 409, "insufficient_stock");
    assert_eq!(w.stock(w.product).await, 100, "nothing reserved");
    assert!(
        merchant_socket
            .nothing_within(Duration::from_millis(200))
            .await
    );

    // 100 → 5 crosses the threshold of 5: one inventory.low.
    let (status, _) = w.order(w.a(), 95).await;
    assert_eq!(status, 201);
    let low = expect_event(&mut merchant_socket, "inventory.low").await;
    assert_eq!(low["data"]["title"], "库存预警");
    assert_eq!(low["data"]["product_id"], w.product);
    assert_eq!(low["data"]["stock"], 5);
    merchant_socket.ack(&low).await;
    // Already below: the next order does not repeat it.
    assert_eq!(w.order(w.a(), 1).await.0, 201);
    assert!(
        merchant_socket
            .nothing_within(Duration::from_millis(300))
            .await
    );
}

/// Lines of one product are added up before the per-product cap (999) and an order
/// holds at most 2,000 units: repeating a line cannot move a shop's stock.
#[tokio::test]
async fn repeated_lines_cannot_get_round_the_quantity_caps() {
    let w = World::new(1, &[]).await;
    let big = w.a().product(&w.owner, w.merchant, 100, 200_000, 0).await;
    let fifty = Value::Array(vec![json!({"product_id": big, "quantity": 999}); 50]);
    assert_error(&w.order_items(w.a(), fifty).await, 422, "invalid_items");
    let split = json!([{"product_id": big, "quantity": 600}, {"product_id": big, "quantity": 600}]);
    assert_error(&w.order_items(w.a(), split).await, 422, "invalid_items");
    assert_eq!(w.stock(big).await, 200_000, "nothing reserved");
    let (status, order) = w
        .order_items(
            w.a(),
            json!([{"product_id": big, "quantity": 2}, {"product_id": big, "quantity": 3}]),
        )
        .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(w.stock(big).await, 200_000 - 5);
}

/// An order's receipts, as its merchant's admins see them: only what was sent to the
/// merchant's admins, never the riders offered the order; staff see everything.
#[tokio::test]
async fn a_merchant_sees_only_its_own_receipts_of_an_order() {
    let w = World::new(1, &[]).await;
    let (rider, rider_token) = w.rider("nearby", 0.001).await;
    let mut rider_socket = w.a().ws_ok(&rider_token).await;
    let order = w.paid_order().await;
    let id = order["id"].as_i64().unwrap();
    expect_event(&mut rider_socket, "order.recommend").await;
    let path = format!("/v1/orders/{id}/notifications");
    let staff_view = eventually(WAIT, "staff see the order's receipts", async || {
        let (_, body) = w.a().get(&path, Some(&w.staff)).await;
        let events: Vec<&str> = body["notifications"]
            .as_array()
            .map(|n| n.iter().filter_map(|r| r["event"].as_str()).collect())
            .unwrap_or_default();
        let both = events.contains(&"order.paid") && events.contains(&"order.recommend");
        both.then_some(body.clone())
    })
    .await;
    let rider_listed = staff_view["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["recipients"].as_array().unwrap())
        .any(|p| p["user_id"] == rider.0);
    assert!(rider_listed, "{staff_view}");
    let (_, me) = w.a().get("/v1/me", Some(&w.owner)).await;
    let owner = me["id"].as_i64().unwrap();
    let (status, merchant_view) = w.a().get(&path, Some(&w.owner)).await;
    assert_eq!(status, 200);
    let receipts = merchant_view["notifications"].as_array().unwrap();
    assert!(!receipts.is_empty());
    for r in receipts {
        assert_eq!(r["event"], "order.paid", "{merchant_view}");
        for p in r["recipients"].as_array().unwrap() {
            assert_eq!(p["user_id"], owner, "{merchant_view}");
        }
    }
}

#[tokio::test]
async fn orders_are_visible_to_their_parties_only_and_urged_once_per_five_minutes() {
    let w = World::new(1, &[]).await;
    let (_, rider_token) = w.rider("rider-u", 0.001).await;
    let stranger = token(w.a().login("stranger").await);
    let (_, unpaid) = w.order(w.a(), 1).await;
    let unpaid_id = unpaid["id"].as_i64().unwrap();
    assert_error(&w.urge(unpaid_id).await, 409, "order_not_urgeable");
    let order = w.paid_order().await;
    let id = order["id"].as_i64().unwrap();
    for t in [&w.consumer, &w.owner, &w.staff] {
        assert_eq!(w.a().get(&format!("/v1/orders/{id}"), Some(t)).await.0, 200);
    }
    for t in [&stranger, &rider_token] {
        assert_error(
            &w.a().get(&format!("/v1/orders/{id}"), Some(t)).await,
            404,
            "not_found",
        );
    }
    assert_error(
        &w.a().get("/v1/orders/abc", Some(&w.consumer)).await,
        404,
        "not_found",
    );

    let mut merchant_socket = w.a().ws_ok(&w.owner).await;
    // The merchant may have order.paid pending from the payment: skip to the urge.
    let (status, body) = w.urge(id).await;
    assert_eq!(status, 202, "{body}");
    let n = merchant_socket.next_event("order.urged").await;
    assert_eq!(n["data"]["title"], "催单");
    assert_eq!(n["data"]["order_id"], id);
    assert_error(&w.urge(id).await, 429, "urge_too_frequent");
}
