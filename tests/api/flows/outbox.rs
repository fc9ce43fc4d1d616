//! SPEC §3, "nothing decided is lost": business notifications are outbox rows committed
//! with each change and published by the relay, through a Redis outage and the death of
//! the replica that decided them, and on the in-process engine alike.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::fake_pay;
use crate::support::world::{expect_all, transaction_for, World};
use crate::support::{eventually, SHOP};

/// A replica seen only from outside: its address.
struct Remote {
    address: String,
    http: reqwest::Client,
}

impl Remote {
    async fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        let req = self
            .http
            .post(format!("http://{}{path}", self.address))
            .bearer_auth(token)
            .json(body);
        crate::support::into_parts(req.send().await.unwrap()).await
    }

    async fn notify_payment(&self, n: &fake_pay::Notification) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!(
                "http://{}/v1/webhooks/wechat-pay/notify",
                self.address
            ))
            .header("content-type", "application/json")
            .body(n.body.clone());
        for (k, v) in &n.headers {
            req = req.header(*k, v);
        }
        crate::support::into_parts(req.send().await.unwrap()).await
    }
}

/// Waits until `sql` (one boolean) holds.
async fn until_db(w: &World, sql: &str, what: &str) {
    eventually(Duration::from_secs(20), what, async || {
        w.a().db.scalar::<bool>(sql, &[]).await.then_some(())
    })
    .await
}

/// SPEC §3, "nothing decided is lost": with Redis down, a replica takes a payment, an
/// urge, a dispatch, an order that brings stock low, and its sweeper closes an unpaid
/// order, while its dependency watcher raises an alert. Then that replica is killed
/// (SIGKILL), and Redis comes back empty. Every one of those notifications, and the
/// riders' recommendation of the paid order, still reaches its recipients, relayed by
/// the surviving replica.
#[tokio::test]
async fn nothing_decided_is_lost_when_the_replica_dies_during_a_redis_outage() {
    use crate::support::{OwnRedis, Replica};
    let port = crate::support::free_port();
    let redis = OwnRedis::start(port).await;
    let redis_url = format!("redis://127.0.0.1:{port}");
    let w = World::new(1, &[("REDIS_URL", &redis_url)]).await;
    let a = w.a();
    let (rider, rider_token) = w.rider("rider", 0.001).await;
    let scarce = a.product(&w.owner, w.merchant, 800, 6, 5).await;
    // Before the outage: an order to pay during it, one already paid (to dispatch),
    // and one that will expire unpaid.
    let (_, to_pay) = w.order(a, 1).await;
    let paid = w.paid_order().await;
    let (_, to_expire) = w.order(a, 1).await;
    let id = |o: &Value| o["id"].as_i64().unwrap();

    let mut env = std::collections::HashMap::new();
    w.pay.env(&mut env);
    env.insert("REDIS_URL".to_owned(), redis_url.clone());
    let extra: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut doomed = Replica::start(a, &extra).await;
    let p = Remote {
        address: doomed.address.clone(),
        http: reqwest::Client::new(),
    };

    redis.stop().await;
    // Every business call still succeeds: PostgreSQL holds the decision.
    let n = fake_pay::notification(&transaction_for(&to_pay));
    assert_eq!(p.notify_payment(&n).await.0, 204, "paid");
    let urge = p
        .post(
            &format!("/v1/orders/{}/urge", id(&to_pay)),
            &w.consumer,
            &json!({}),
        )
        .await;
    assert_eq!(urge.0, 202, "{}", urge.1);
    let dispatch = p
        .post(
            &format!("/v1/platform/orders/{}/dispatch", id(&paid)),
            &w.staff,
            &json!({"rider_id": rider.0}),
        )
        .await;
    assert_eq!(dispatch.0, 200, "{}", dispatch.1);
    let low = p
        .post(
            "/v1/orders",
            &w.consumer,
            &json!({"merchant_id": w.merchant, "items": [{"product_id": scarce, "quantity": 1}],
                    "address": {"lat": SHOP.0, "lng": SHOP.1, "detail": "1号楼"}}),
        )
        .await;
    assert_eq!(low.0, 201, "{}", low.1);
    w.a()
        .db
        .execute(
            "UPDATE orders SET pay_deadline = now() - interval '1 second' WHERE id = $1",
            &[&id(&to_expire)],
        )
        .await;
    until_db(
        &w,
        &format!(
            "SELECT status = 'closed' FROM orders WHERE id = {}",
            id(&to_expire)
        ),
        "the sweeper closes the expired order",
    )
    .await;
    until_db(
        &w,
        "SELECT EXISTS (SELECT 1 FROM outbox WHERE event = 'alert.system_error'
                        AND payload->'fields'->>'kind' = 'redis_unreachable')",
        "the outage alert is decided",
    )
    .await;
    // Nothing could be published yet.
    assert!(
        w.a()
            .db
            .scalar::<bool>(
                "SELECT count(*) >= 6 FROM outbox WHERE state = 'pending'",
                &[]
            )
            .await
    );

    doomed.signal("-KILL");
    let _ = tokio::time::timeout(Duration::from_secs(10), doomed.child.wait()).await;
    // Redis comes back with nothing in it (no persistence): no inbox, no rider index.
    let _redis = OwnRedis::start(port).await;

    let mut owner = a.ws_ok(&w.owner).await;
    let mut staff = a.ws_ok(&w.staff).await;
    let mut rider_socket = a.ws_ok(&rider_token).await;
    let order = json!(id(&to_pay));
    expect_all(
        &mut owner,
        &[
            ("order.paid", "order_id", order.clone()),
            ("order.urged", "order_id", order.clone()),
            ("inventory.low", "product_id", json!(scarce)),
        ],
    )
    .await;
    let got = expect_all(
        &mut rider_socket,
        &[
            ("order.recommend", "order_id", order),
            ("order.dispatched", "order_id", json!(id(&paid))),
        ],
    )
    .await;
    assert_eq!(got[0]["data"]["merchant_name"], "老王面馆");
    expect_all(
        &mut staff,
        &[
            ("alert.payment_timeout", "order_id", json!(id(&to_expire))),
            ("alert.system_error", "kind", json!("redis_unreachable")),
        ],
    )
    .await;
}

/// The in-process engine has no Redis to lose, but its notifications take the same
/// path: outbox rows committed with each change, published by the relay.
#[tokio::test]
async fn business_notifications_go_through_the_outbox_on_the_in_process_engine() {
    let w = World::new(1, &[("REDIS_URL", "")]).await;
    let a = w.a();
    assert_eq!(a.state.engine().kind(), "memory");
    let (rider, rider_token) = w.rider("rider", 0.001).await;
    let scarce = a.product(&w.owner, w.merchant, 800, 6, 5).await;
    let mut owner = a.ws_ok(&w.owner).await;
    let mut staff = a.ws_ok(&w.staff).await;
    let mut rider_socket = a.ws_ok(&rider_token).await;
    let (_, to_expire) = w.order(a, 1).await;
    let paid = w.paid_order().await;
    let id = |o: &Value| o["id"].as_i64().unwrap();
    assert_eq!(w.urge(id(&paid)).await.0, 202);
    let (_, low) = w
        .order_items(a, json!([{"product_id": scarce, "quantity": 1}]))
        .await;
    assert!(low["id"].is_i64(), "{low}");
    let second = w.paid_order().await;
    assert_eq!(w.dispatch(id(&second), rider).await.0, 200);
    a.db.execute(
        "UPDATE orders SET pay_deadline = now() - interval '1 second' WHERE id = $1",
        &[&id(&to_expire)],
    )
    .await;
    expect_all(
        &mut owner,
        &[
            ("order.paid", "order_id", json!(id(&paid))),
            ("order.urged", "order_id", json!(id(&paid))),
            ("inventory.low", "product_id", json!(scarce)),
        ],
    )
    .await;
    expect_all(
        &mut rider_socket,
        &[
            ("order.recommend", "order_id", json!(id(&paid))),
            ("order.dispatched", "order_id", json!(id(&second))),
        ],
    )
    .await;
    expect_all(
        &mut staff,
        &[("alert.payment_timeout", "order_id", json!(id(&to_expire)))],
    )
    .await;
    let done: i64 =
        a.db.scalar("SELECT count(*) FROM outbox WHERE state = 'done'", &[])
            .await;
    assert!(
        done >= 6,
        "every notification went through the outbox: {done}"
    );
}
