//! Closing a paid order that will not be delivered (SPEC §4): staff close it
//! (`POST /v1/platform/orders/{id}/close`), or its merchant refuses it while no rider has
//! taken it (`POST /v1/orders/{id}/refuse`). Its stock comes back, its offers are
//! withdrawn as when a rider takes it (`order.taken` to riders connected, nothing stale
//! for one who connects later), and the consumer reads who closed it and why.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::world::{expect_event, token, World};
use crate::support::{assert_error, eventually, TestApp, WAIT};

/// Staff close order `id` on the last replica.
async fn close(w: &World, id: i64, reason: &str) -> (u16, Value) {
    w.b()
        .post_json(
            &format!("/v1/platform/orders/{id}/close"),
            Some(&w.staff),
            &json!({ "reason": reason }),
        )
        .await
}

/// `token`'s caller refuses order `id`.
async fn refuse(app: &TestApp, token: &str, id: i64, body: &Value) -> (u16, Value) {
    app.post_json(&format!("/v1/orders/{id}/refuse"), Some(token), body)
        .await
}

async fn user_id(app: &TestApp, token: &str) -> i64 {
    let (status, me) = app.get("/v1/me", Some(token)).await;
    assert_eq!(status, 200, "{me}");
    me["id"].as_i64().unwrap()
}

/// How many notifications wait in `user`'s inbox.
#[tokio::test]
async fn staff_close_a_paid_order_its_offers_are_withdrawn_and_its_stock_returned() {
    let w = World::new(2, &[]).await;
    let (near, near_token) = w.rider("near", 0.001).await;
    let (away, away_token) = w.rider("away", 0.002).await;
    let mut near_socket = w.a().ws_ok(&near_token).await;
    let stock = w.stock(w.product).await;
    let order = w.paid_order().await;
    let id = order["id"].as_i64().unwrap();
    assert_eq!(w.stock(w.product).await, stock - 1);

    // Offered to both: live to the connected rider (who does not ack), kept in the
    // inbox of the one away.
    let offer = expect_event(&mut near_socket, "order.recommend").await;
    assert_eq!(offer["data"]["order_id"], id);
    w.b()
        .until_inbox(away, 1, "the offer reaches the away rider's inbox")
        .await;
    assert_eq!(w.a().inbox_len(near).await, 1);

    let (status, closed) = close(&w, id, "  顾客电话取消  ").await;
    assert_eq!(status, 200, "{closed}");
    let staff_id = user_id(w.a(), &w.staff).await;
    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["close_reason"], "顾客电话取消", "trimmed");
    assert_eq!(
        closed["closed_by"],
        json!({"role": "platform", "user_id": staff_id})
    );
    assert!(closed["closed_at"].is_string());
    assert!(closed["paid_at"].is_string(), "it was paid, and stays so");
    assert_eq!(w.stock(w.product).await, stock, "the stock is back");

    // The connected rider hears it is gone, and the offer leaves both inboxes.
    let taken = expect_event(&mut near_socket, "order.taken").await;
    assert_eq!(taken["data"]["order_id"], id);
    assert_eq!(taken["data"]["requires_ack"], false);
    w.a()
        .until_inbox(near, 0, "the offer leaves the connected rider's inbox")
        .await;
    w.a()
        .until_inbox(away, 0, "the offer leaves the away rider's inbox")
        .await;
    let mut late = w.b().ws_ok(&away_token).await;
    assert!(
        late.nothing_within(Duration::from_millis(500)).await,
        "no stale offer, and no order.taken for an offer never seen"
    );

    // The consumer sees who closed it and why.
    let (status, seen) = w
        .a()
        .get(&format!("/v1/orders/{id}"), Some(&w.consumer))
        .await;
    assert_eq!(status, 200);
    assert_eq!(seen["status"], "closed");
    assert_eq!(seen["close_reason"], "顾客电话取消");
    assert_eq!(seen["closed_by"]["role"], "platform");

    // The offer's receipts say withdrawn.
    let path = format!("/v1/orders/{id}/notifications");
    eventually(WAIT, "both riders' offers show withdrawn", async || {
        let (_, body) = w.a().get(&path, Some(&w.staff)).await;
        let withdrawn = body["notifications"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["event"] == "order.recommend")
            .flat_map(|r| r["recipients"].as_array().unwrap().clone())
            .filter(|p| p["state"] == "withdrawn")
            .count();
        (withdrawn == 2).then_some(())
    })
    .await;

    // Closed is final: not closed twice, not taken.
    assert_error(&close(&w, id, "again").await, 409, "order_not_closable");
    assert_error(
        &w.a().rider_step(&near_token, id, "accept").await,
        409,
        "order_not_available",
    );
    assert_eq!(w.stock(w.product).await, stock, "returned once");
}

#[tokio::test]
async fn the_merchant_refuses_a_paid_order_only_while_no_rider_has_it() {
    let w = World::new(1, &[]).await;
    let a = w.a();
    let (_, rider_token) = w.rider("rider", 0.001).await;
    let stock = w.stock(w.product).await;
    let order = w.paid_order().await;
    let id = order["id"].as_i64().unwrap();
    let stranger = token(a.login("stranger").await);

    // Who may not: 404 for whoever may not see the order, 403 for a party that is not
    // the merchant's admin, 403 for anyone but staff on the platform route.
    let why = json!({"reason": "今日食材用完"});
    assert_error(&refuse(a, &stranger, id, &why).await, 404, "not_found");
    assert_error(&refuse(a, &w.owner, 999_999, &why).await, 404, "not_found");
    assert_error(
        &refuse(a, &w.consumer, id, &why).await,
        403,
        "not_merchant_admin",
    );
    assert_error(
        &a.post_json(
            &format!("/v1/platform/orders/{id}/close"),
            Some(&w.owner),
            &why,
        )
        .await,
        403,
        "forbidden",
    );
    assert_error(&close(&w, 999_999, "x").await, 404, "not_found");

    // The reason: required, one line of 1 to 200 characters.
    let long = "长".repeat(201);
    for body in [
        json!({}),
        json!({"reason": 5}),
        json!({"reason": ""}),
        json!({"reason": "   "}),
        json!({"reason": long}),
        json!({"reason": "第一行\n第二行"}),
        json!({"reason": "bell\u{7}"}),
    ] {
        let answer = refuse(a, &w.owner, id, &body).await;
        assert_eq!(answer.0, 422, "{body}: {}", answer.1);
        assert!(
            ["invalid_reason", "invalid_body"].contains(&answer.1["code"].as_str().unwrap()),
            "{body}: {}",
            answer.1
        );
    }
    assert_error(
        &close(&w, id, &"长".repeat(201)).await,
        422,
        "invalid_reason",
    );
    assert_eq!(w.stock(w.product).await, stock - 1, "nothing changed");

    let owner_id = user_id(a, &w.owner).await;
    let (status, refused) = refuse(a, &w.owner, id, &json!({"reason": &"长".repeat(200)})).await;
    assert_eq!(status, 200, "{refused}");
    assert_eq!(refused["status"], "closed");
    assert_eq!(refused["close_reason"], "长".repeat(200));
    assert_eq!(
        refused["closed_by"],
        json!({"role": "merchant", "user_id": owner_id})
    );
    assert_eq!(w.stock(w.product).await, stock, "the stock is back");
    assert_error(
        &refuse(a, &w.owner, id, &why).await,
        409,
        "order_not_closable",
    );

    // Taken by a rider: the merchant can no longer refuse it.
    let taken = w.paid_order().await;
    let taken_id = taken["id"].as_i64().unwrap();
    assert_eq!(a.rider_step(&rider_token, taken_id, "accept").await.0, 200);
    let (status, body) = refuse(a, &w.owner, taken_id, &why).await;
    assert_error(&(status, body.clone()), 409, "order_not_closable");
    assert!(
        body["message"].as_str().unwrap().contains("platform staff"),
        "{body}"
    );
    // Not paid yet: nothing to refuse (the payment deadline closes it).
    let (status, unpaid) = w.order(w.a(), 1).await;
    assert_eq!(status, 201, "{unpaid}");
    let unpaid_id = unpaid["id"].as_i64().unwrap();
    assert_error(
        &refuse(a, &w.owner, unpaid_id, &why).await,
        409,
        "order_not_closable",
    );
    assert_error(&close(&w, unpaid_id, "x").await, 409, "order_not_closable");
}

/// Staff may close an order a rider already has: the rider gets `rider.command` with
/// the reason; the stock comes back only while the goods are still at the merchant.
#[tokio::test]
async fn staff_close_an_order_a_rider_has_and_the_rider_is_told() {
    let w = World::new(1, &[]).await;
    let a = w.a();
    let (rider, rider_token) = w.rider("rider", 0.001).await;
    let mut socket = a.ws_ok(&rider_token).await;
    let stock = w.stock(w.product).await;

    // Dispatched, not picked up: the goods are at the merchant.
    let dispatched = w.paid_order().await["id"].as_i64().unwrap();
    assert_eq!(w.dispatch(dispatched, rider).await.0, 200);
    let (status, closed) = close(&w, dispatched, "商家临时停业").await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["rider_id"], rider.0, "the history keeps the rider");
    let told = socket.next_event("rider.command").await;
    assert_eq!(told["data"]["order_id"], dispatched);
    assert_eq!(told["data"]["reason"], "商家临时停业");
    socket.ack(&told).await;
    assert_eq!(w.stock(w.product).await, stock, "the stock is back");
    assert_error(
        &a.rider_step(&rider_token, dispatched, "pickup").await,
        409,
        "invalid_order_status",
    );

    // Picked up: the goods left the shop, so no stock comes back.
    let picked = w.paid_order().await["id"].as_i64().unwrap();
    assert_eq!(a.rider_step(&rider_token, picked, "accept").await.0, 200);
    assert_eq!(a.rider_step(&rider_token, picked, "pickup").await.0, 200);
    let (status, closed) = close(&w, picked, "顾客拒收").await;
    assert_eq!(status, 200, "{closed}");
    let told = socket.next_event("rider.command").await;
    assert_eq!(told["data"]["order_id"], picked);
    assert_eq!(
        w.stock(w.product).await,
        stock - 1,
        "picked up: not returned"
    );
    assert_error(
        &a.rider_step(&rider_token, picked, "deliver").await,
        409,
        "invalid_order_status",
    );

    // Delivered: too late to close.
    let delivered = w.paid_order().await["id"].as_i64().unwrap();
    for step in ["accept", "pickup", "deliver"] {
        assert_eq!(a.rider_step(&rider_token, delivered, step).await.0, 200);
    }
    assert_error(&close(&w, delivered, "x").await, 409, "order_not_closable");
}

/// A service key made by staff with `scopes`: its id and the whole key.
/// A back-office service closes with a key that has the `admin` scope (SPEC §10); the
/// order names the key.
#[tokio::test]
async fn a_service_key_with_the_admin_scope_closes_and_is_named() {
    let w = World::new(1, &[]).await;
    let a = w.a();
    let (_, notify_only) = w
        .a()
        .service_key(&w.staff, "order-system", &["notify"])
        .await;
    let (admin_id, admin) = w
        .a()
        .service_key(&w.staff, "order-system", &["admin"])
        .await;
    let id = w.paid_order().await["id"].as_i64().unwrap();
    let path = format!("/v1/platform/orders/{id}/close");
    let why = json!({"reason": "系统对账异常"});
    assert_error(
        &a.post_json(&path, Some(&notify_only), &why).await,
        403,
        "missing_scope",
    );
    let (status, closed) = a.post_json(&path, Some(&admin), &why).await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(
        closed["closed_by"],
        json!({"role": "platform", "user_id": null, "key": admin_id})
    );
}
