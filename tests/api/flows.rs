//! Business flows of SPEC §3–4 from their real triggers: the seed's two sequence
//! diagrams end to end across two replicas, WeChat Pay notifications (forged, tampered,
//! stale, wrong merchant, wrong amount, repeated), stock, accept and sweeper races.

use std::collections::HashSet;
use std::time::Duration;

use locallife::domain::{Role, UserId};
use serde_json::{json, Value};

use crate::support::fake_pay::{self, FakePay};
use crate::support::fake_wechat;
use crate::support::{
    assert_error, eventually, spawn_cluster_with, TestApp, WsClient, SHOP, WAIT,
};

/// A small world on `replicas` replicas sharing Redis and the database, with WeChat
/// Pay configured against the fake.
pub(crate) struct World {
    pub(crate) apps: Vec<TestApp>,
    pay: FakePay,
    pub(crate) staff: String,
    pub(crate) owner: String,
    pub(crate) merchant: i64,
    pub(crate) product: i64,
    pub(crate) consumer: String,
}

impl World {
    pub(crate) async fn new(replicas: usize, extra: &[(&str, &str)]) -> World {
        let pay = FakePay::start().await;
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let apps = spawn_cluster_with(replicas, |env| {
            pay.env(env);
            for (k, v) in &extra {
                env.insert(k.clone(), v.clone());
            }
            // An empty REDIS_URL asks for the in-process engine.
            if env.get("REDIS_URL").is_some_and(String::is_empty) {
                env.remove("REDIS_URL");
            }
        })
        .await;
        let a = &apps[0];
        let (_, staff) = a.user_with_role("staff", Role::Platform).await;
        let owner = token(a.login("owner").await);
        let merchant = a.approved_merchant(&owner, &staff, "老王面馆").await;
        let product = a.product(&owner, merchant, 1500, 100, 5).await;
        let consumer = token(a.login("consumer").await);
        World {
            apps,
            pay,
            staff,
            owner,
            merchant,
            product,
            consumer,
        }
    }

    pub(crate) fn a(&self) -> &TestApp {
        &self.apps[0]
    }

    pub(crate) fn b(&self) -> &TestApp {
        &self.apps[self.apps.len() - 1]
    }

    /// A rider who logged in, applied, was approved and went online `offset` degrees
    /// of latitude north of the shop (0.001° ≈ 111 m).
    pub(crate) async fn rider(&self, name: &str, offset: f64) -> (UserId, String) {
        let a = self.a();
        let login = a.login(name).await;
        let id = UserId(login.1["user"]["id"].as_i64().unwrap());
        let token = token(login);
        let (status, body) = a.apply_as_rider(&token, name, "13800000000").await;
        assert_eq!(status, 201, "{body}");
        let (status, _) = a
            .post_json(
                &format!("/v1/platform/riders/{}/approve", id.0),
                Some(&self.staff),
                &json!({}),
            )
            .await;
        assert_eq!(status, 200);
        let (status, body) = a
            .post_json(
                "/v1/rider/online",
                Some(&token),
                &json!({"lat": SHOP.0 + offset, "lng": SHOP.1}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        (id, token)
    }

    /// Places an order for `quantity` of the product on replica `app`.
    pub(crate) async fn order(&self, app: &TestApp, quantity: i32) -> (u16, Value) {
        self.order_items(
            app,
            json!([{"product_id": self.product, "quantity": quantity}]),
        )
        .await
    }

    /// Places an order for `items` of the merchant on replica `app`.
    async fn order_items(&self, app: &TestApp, items: Value) -> (u16, Value) {
        app.place_order(&self.consumer, self.merchant, items).await
    }

    pub(crate) async fn paid_order(&self) -> Value {
        let (status, order) = self.order(self.b(), 1).await;
        assert_eq!(status, 201, "{order}");
        let n = fake_pay::notification(&transaction_for(&order));
        assert_eq!(self.b().notify_payment(&n).await.0, 204);
        order
    }

    /// The consumer urges order `id`.
    async fn urge(&self, id: i64) -> (u16, Value) {
        self.a()
            .post_json(
                &format!("/v1/orders/{id}/urge"),
                Some(&self.consumer),
                &json!({}),
            )
            .await
    }

    /// Staff dispatch order `id` to `rider`, on the last replica.
    pub(crate) async fn dispatch(&self, id: i64, rider: UserId) -> (u16, Value) {
        self.b()
            .post_json(
                &format!("/v1/platform/orders/{id}/dispatch"),
                Some(&self.staff),
                &json!({"rider_id": rider.0}),
            )
            .await
    }

    /// How many payments the database has recorded.
    async fn payments(&self) -> i64 {
        self.a()
            .db
            .scalar("SELECT count(*) FROM payments", &[])
            .await
    }

    /// The stock of `product` as the database has it.
    pub(crate) async fn stock(&self, product: i64) -> i32 {
        self.a()
            .db
            .scalar("SELECT stock FROM products WHERE id = $1", &[&product])
            .await
    }
}

/// The successful WeChat Pay transaction that pays `order` in full.
fn transaction_for(order: &Value) -> Value {
    fake_pay::transaction(
        order["out_trade_no"].as_str().unwrap(),
        order["total_fen"].as_i64().unwrap(),
    )
}

pub(crate) fn token(login: (u16, Value)) -> String {
    assert_eq!(login.0, 200, "{}", login.1);
    login.1["access_token"].as_str().unwrap().to_owned()
}


pub(crate) async fn expect_event(socket: &mut WsClient, event: &str) -> Value {
    let n = socket.next_notification().await;
    assert_eq!(n["data"]["event"], event, "{n}");
    n
}

/// Seed diagram 4.1: a rider logs in, goes online, connects, and is pushed a new order
/// near them; published on one replica, received on the other.
#[tokio::test]
async fn seed_flow_rider_order_push() {
    let w = World::new(2, &[]).await;
    let (rider, rider_token) = w.rider("rider-li", 0.002).await;
    let mut socket = w.a().ws_ok(&rider_token).await;
    assert_eq!(socket.welcome["data"]["roles"], json!(["rider"]));

    let order = w.paid_order().await;
    let n = expect_event(&mut socket, "order.recommend").await;
    assert_eq!(n["data"]["title"], "新订单推荐");
    assert_eq!(n["data"]["content"], "您有新的推荐订单");
    assert_eq!(n["data"]["order_id"], order["id"]);
    assert_eq!(n["data"]["requires_ack"], true);
    let distance = n["data"]["distance_m"].as_f64().unwrap();
    assert!((200.0..250.0).contains(&distance), "{distance}");
    socket.ack(&n).await;

    let id = order["id"].as_i64().unwrap();
    let (status, accepted) = w.a().rider_step(&rider_token, id, "accept").await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["status"], "dispatched");
    assert_eq!(accepted["rider_id"], rider.0);
    for step in ["pickup", "deliver"] {
        let (status, o) = w.b().rider_step(&rider_token, id, step).await;
        assert_eq!(status, 200, "{o}");
    }
    assert_eq!(w.a().order_status(&w.consumer, id).await, "delivered");
}

/// Seed diagram 4.2: the merchant's admin is connected; a consumer orders, WeChat Pay
/// calls back, and the admin is told of the new paid order.
#[tokio::test]
async fn seed_flow_merchant_new_order_after_wechat_pay() {
    let w = World::new(2, &[]).await;
    let mut merchant_socket = w.a().ws_ok(&w.owner).await;
    assert_eq!(
        merchant_socket.welcome["data"]["roles"],
        json!(["merchant"])
    );

    let (status, order) = w.order(w.b(), 2).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "pending_payment");
    assert_eq!(order["total_fen"], 3000);
    // JSAPI prepay went out correctly signed; the client gets wx.requestPayment params.
    let prepays = w.pay.prepays();
    assert_eq!(
        (prepays.len(), w.pay.rejected()),
        (1, 0),
        "one correctly signed prepay"
    );
    assert_eq!(prepays[0]["out_trade_no"], order["out_trade_no"]);
    assert_eq!(prepays[0]["amount"]["total"], 3000);
    assert_eq!(prepays[0]["payer"]["openid"], "consumer");
    let payment = &order["payment"];
    assert!(payment["package"]
        .as_str()
        .unwrap()
        .starts_with("prepay_id=wx"));
    assert_eq!(payment["signType"], "RSA");
    assert!(
        fake_pay::pay_sign_is_valid(fake_wechat::APPID, payment),
        "{payment}"
    );

    let n = fake_pay::notification(&fake_pay::transaction(
        order["out_trade_no"].as_str().unwrap(),
        3000,
    ));
    let (status, body) = w.b().notify_payment(&n).await;
    assert_eq!(status, 204, "{body}");
    let paid = expect_event(&mut merchant_socket, "order.paid").await;
    assert_eq!(paid["data"]["title"], "新订单通知");
    assert_eq!(paid["data"]["content"], "您有新的已支付订单，请及时处理");
    assert_eq!(paid["data"]["order_id"], order["id"]);
    assert_eq!(
        w.a()
            .order_status(&w.owner, order["id"].as_i64().unwrap())
            .await,
        "paid"
    );
}

/// WeChat Pay's API answers are believed only when signed with its key (the same
/// check as notifications) and only up to 64 KiB: a forged, tampered, replayed or huge
/// answer gives no `paySign`, and the order is closed with its stock returned.
#[tokio::test]
async fn wechat_pay_answers_that_do_not_verify_are_not_trusted() {
    let w = World::new(1, &[]).await;
    let before = w.stock(w.product).await;
    for mode in [
        fake_pay::Answer::Unsigned,
        fake_pay::Answer::OtherKey,
        fake_pay::Answer::Tampered,
        fake_pay::Answer::Stale,
        fake_pay::Answer::Huge(50 * 1024 * 1024),
    ] {
        w.pay.answer_next(mode);
        let (status, body) = w.order(w.a(), 1).await;
        assert_eq!(status, 502, "{mode:?}: {body}");
        assert!(!body.to_string().contains("ATTACKER"), "{body}");
        assert_eq!(w.stock(w.product).await, before, "{mode:?}: stock kept");
    }
    assert!(
        w.pay.streamed() < 8 * 1024 * 1024,
        "{} bytes of the huge answer taken",
        w.pay.streamed()
    );
    assert!(
        w.a()
            .metrics_text()
            .await
            .contains("locallife_wechatpay_answers_refused_total"),
        "refusals are counted"
    );
    // A signed answer still works.
    let (status, order) = w.order(w.a(), 1).await;
    assert_eq!(status, 201, "{order}");
    assert!(fake_pay::pay_sign_is_valid(
        fake_wechat::APPID,
        &order["payment"]
    ));
}

/// Anyone can post junk to the webhook: refusals are counted, and staff are not alerted
/// by a handful of them (unknown key ids alert only at a sustained rate). An oversize
/// body is refused in WeChat Pay's own shape.
#[tokio::test]
async fn anonymous_junk_on_the_webhook_alerts_nobody_and_oversize_is_fail_413() {
    let w = World::new(1, &[]).await;
    let mut staff_socket = w.a().ws_ok(&w.staff).await;
    let (_, order) = w.order(w.a(), 1).await;
    let mut unknown_key = fake_pay::notification(&transaction_for(&order));
    unknown_key.headers[3].1 = "PUB_KEY_ID_NOBODY".into();
    for _ in 0..10 {
        assert_eq!(w.a().notify_payment(&unknown_key).await.0, 401);
    }
    assert!(
        staff_socket
            .nothing_within(Duration::from_millis(500))
            .await,
        "no alert from ten anonymous requests"
    );
    let metrics = w.a().metrics_text().await;
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("locallife_webhook_refused_total{reason=\"unknown_serial\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    // (Counters are per process; other tests' refusals may add to it.)
    assert!(refused >= 10.0, "refusals counted: {refused}");

    let mut huge = fake_pay::notification(&transaction_for(&order));
    huge.body = format!("{{\"pad\":\"{}\"}}", "x".repeat(100 * 1024));
    let (status, body) = w.a().notify_payment(&huge).await;
    assert_eq!(status, 413);
    assert_eq!(body["code"], "FAIL", "{body}");
}

#[tokio::test]
async fn bad_payment_notifications_are_refused_and_change_nothing() {
    let w = World::new(1, &[]).await;
    let mut merchant_socket = w.a().ws_ok(&w.owner).await;
    let (_, order) = w.order(w.a(), 1).await;
    let total = order["total_fen"].as_i64().unwrap();
    let good = transaction_for(&order);

    let forged = fake_pay::forged(&good);
    let mut tampered = fake_pay::notification(&good);
    tampered.body = tampered
        .body
        .replace("TRANSACTION.SUCCESS", "TRANSACTION.SUCCESs");
    let stale = fake_pay::notification_at(&good, chrono::Utc::now().timestamp() - 301);
    // Well past the window: a slow test run brings "now" closer to it.
    let future = fake_pay::notification_at(&good, chrono::Utc::now().timestamp() + 360);
    let mut wrong_serial = fake_pay::notification(&good);
    wrong_serial.headers[3].1 = "PUB_KEY_ID_SOMEONE_ELSE".into();
    let mut unsigned = fake_pay::notification(&good);
    unsigned.headers.remove(2);
    let mut other_mchid = good.clone();
    other_mchid["mchid"] = json!("1900000999");
    let mut wrong_amount = good.clone();
    wrong_amount["amount"]["total"] = json!(total - 1);
    let mut other_appid = good.clone();
    other_appid["appid"] = json!("wx-someone-else");
    let mut garbage = fake_pay::notification(&good);
    garbage.body = "{\"resource\":".into();

    for (label, n) in [
        ("forged", forged),
        ("tampered", tampered),
        ("stale", stale),
        ("future", future),
        ("wrong serial", wrong_serial),
        ("unsigned", unsigned),
        ("wrong merchant", fake_pay::notification(&other_mchid)),
        ("wrong amount", fake_pay::notification(&wrong_amount)),
        ("another appid", fake_pay::notification(&other_appid)),
        ("garbage", garbage),
    ] {
        let (status, body) = w.a().notify_payment(&n).await;
        assert!((400..500).contains(&status), "{label}: {status} {body}");
        assert_eq!(body["code"], "FAIL", "{label}");
    }
    assert!(
        merchant_socket
            .nothing_within(Duration::from_millis(300))
            .await,
        "nothing sent"
    );
    assert_eq!(
        w.a()
            .order_status(&w.consumer, order["id"].as_i64().unwrap())
            .await,
        "pending_payment"
    );
    assert_eq!(w.payments().await, 0);
}

#[tokio::test]
async fn ten_copies_of_a_notification_pay_once_and_notify_once() {
    let w = World::new(2, &[]).await;
    let mut merchant_socket = w.a().ws_ok(&w.owner).await;
    let (_, order) = w.order(w.a(), 1).await;
    let tx = transaction_for(&order);
    let copies: Vec<_> = (0..10).map(|_| fake_pay::notification(&tx)).collect();
    let answers = futures::future::join_all(
        copies
            .iter()
            .enumerate()
            .map(|(i, n)| w.apps[i % 2].notify_payment(n)),
    )
    .await;
    assert!(answers.iter().all(|(s, _)| *s == 204), "{answers:?}");
    let paid = expect_event(&mut merchant_socket, "order.paid").await;
    merchant_socket.ack(&paid).await;
    assert!(
        merchant_socket
            .nothing_within(Duration::from_millis(500))
            .await,
        "one order.paid"
    );
    assert_eq!(w.payments().await, 1);
}

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
async fn unpaid_orders_close_once_with_one_alert_each_across_replicas() {
    let w = World::new(2, &[("PAYMENT_TIMEOUT", "1s")]).await;
    let mut staff_socket = w.a().ws_ok(&w.staff).await;
    let mut ids = HashSet::new();
    for i in 0..5 {
        let (status, o) = w.order(&w.apps[i % 2], 2).await;
        assert_eq!(status, 201, "{o}");
        ids.insert(o["id"].as_i64().unwrap());
    }
    let mut alerted = HashSet::new();
    for _ in 0..5 {
        let n = expect_event(&mut staff_socket, "alert.payment_timeout").await;
        assert_eq!(n["data"]["title"], "支付超时");
        assert!(
            alerted.insert(n["data"]["order_id"].as_i64().unwrap()),
            "one alert per order"
        );
        staff_socket.ack(&n).await;
    }
    assert_eq!(alerted, ids);
    assert!(
        staff_socket
            .nothing_within(Duration::from_millis(1500))
            .await,
        "no second alert"
    );
    for id in ids {
        assert_eq!(w.b().order_status(&w.consumer, id).await, "closed");
    }
    assert_eq!(w.stock(w.product).await, 100, "stock returned");
}

#[tokio::test]
async fn a_payment_for_a_closed_order_is_recorded_and_alerted_not_reopened() {
    let w = World::new(1, &[("PAYMENT_TIMEOUT", "300ms")]).await;
    let mut staff_socket = w.a().ws_ok(&w.staff).await;
    let (_, order) = w.order(w.a(), 1).await;
    let id = order["id"].as_i64().unwrap();
    expect_event(&mut staff_socket, "alert.payment_timeout").await;
    let n = fake_pay::notification(&transaction_for(&order));
    assert_eq!(w.a().notify_payment(&n).await.0, 204);
    let alert = expect_event(&mut staff_socket, "alert.system_error").await;
    assert_eq!(alert["data"]["kind"], "late_payment");
    assert_eq!(w.a().order_status(&w.consumer, id).await, "closed");
    let outcome: String = w
        .a()
        .db
        .scalar("SELECT outcome FROM payments WHERE order_id = $1", &[&id])
        .await;
    assert_eq!(outcome, "late");
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

#[tokio::test]
async fn without_merchant_credentials_orders_carry_no_payment() {
    let app = crate::support::spawn_app().await;
    let (_, staff) = app.user_with_role("staff", Role::Platform).await;
    let owner = token(app.login("owner").await);
    let merchant = app.approved_merchant(&owner, &staff, "店").await;
    let product = app.product(&owner, merchant, 500, 3, 0).await;
    let consumer = token(app.login("c").await);
    let (status, order) = app
        .place_order(
            &consumer,
            merchant,
            json!([{"product_id": product, "quantity": 2}]),
        )
        .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["payment"], Value::Null);
    assert_eq!(order["total_fen"], 1000);
    assert!(order["pay_deadline"].is_string());
    // And notifications cannot be verified: refused, and staff are alerted once they
    // keep coming (WeChat Pay's retries), not on the first.
    let mut staff_socket = app.ws_ok(&staff).await;
    let n = fake_pay::notification(&fake_pay::transaction(
        order["out_trade_no"].as_str().unwrap(),
        1000,
    ));
    let (status, body) = app.notify_payment(&n).await;
    // 404: this deployment takes no WeChat Pay notifications (a 5xx would say the
    // server failed; nothing did).
    assert_eq!((status, body["code"].as_str()), (404, Some("FAIL")));
    assert!(
        staff_socket
            .nothing_within(Duration::from_millis(300))
            .await
    );
    for _ in 0..4 {
        assert_eq!(app.notify_payment(&n).await.0, 404);
    }
    let alert = expect_event(&mut staff_socket, "alert.system_error").await;
    assert_eq!(alert["data"]["kind"], "wechatpay_not_configured");
}

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

/// Reads `socket` until every `(event, field, value)` has arrived, in any order; the
/// matching notifications, in the order asked.
async fn expect_all(socket: &mut WsClient, wanted: &[(&str, &str, Value)]) -> Vec<Value> {
    let mut found: Vec<Option<Value>> = vec![None; wanted.len()];
    while found.iter().any(Option::is_none) {
        let n = socket.next_notification().await;
        for (i, (event, key, value)) in wanted.iter().enumerate() {
            if found[i].is_none() && n["data"]["event"] == *event && n["data"][*key] == *value {
                found[i] = Some(n.clone());
            }
        }
    }
    found.into_iter().flatten().collect()
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
    w.a()
        .until_inbox(away, 0, "the offer is withdrawn")
        .await;
    let mut late = w.b().ws_ok(&away_token).await;
    assert!(
        late.nothing_within(Duration::from_millis(500)).await,
        "no stale offer, and no order.taken for an offer never seen"
    );
}

/// Every frame `socket` receives until a notification of `event`, kept in `frames`;
/// notifications that need one are acked. The notification of `event`.
async fn collect_until(socket: &mut WsClient, event: &str, frames: &mut Vec<Value>) -> Value {
    loop {
        let frame = socket.next_json().await;
        frames.push(frame.clone());
        if frame["type"] == "notification" {
            if frame["data"]["requires_ack"] == true {
                socket.ack(&frame).await;
            }
            if frame["data"]["event"] == event {
                return frame;
            }
        }
    }
}

/// `docs/asyncapi.yaml` is valid AsyncAPI 3.0, its examples fit its schemas, and every
/// frame of a real session (the business flows of SPEC §3 and the session messages of
/// §2.1) fits exactly one of its messages, none of which allows an undeclared field.
/// `alert.system_error` needs a fault and is checked by its example only.
#[tokio::test]
async fn asyncapi_describes_every_frame_of_a_real_session() {
    let w = World::new(1, &[("PAYMENT_TIMEOUT", "2s")]).await;
    let a = w.a();
    let mut frames: Vec<Value> = Vec::new();
    let (rider1, rider1_token) = w.rider("asyncapi-rider-1", 0.001).await;
    let (rider2, rider2_token) = w.rider("asyncapi-rider-2", 0.002).await;
    let mut r1 = a.ws_ok(&rider1_token).await;
    let mut r2 = a.ws_ok(&rider2_token).await;
    let mut merchant = a.ws_ok(&w.owner).await;
    let mut staff = a.ws_ok(&w.staff).await;
    for s in [&r1, &r2, &merchant, &staff] {
        frames.push(s.welcome.clone());
    }
    // Protocol 1 too: its welcome says so.
    frames.push(a.ws_v1(&w.staff).await.welcome.clone());

    // Session messages: pong, error, auth_ok.
    r1.send_json(json!({"type": "ping", "data": {}})).await;
    frames.push(r1.next_json().await);
    r1.send_text("not json").await;
    frames.push(r1.next_json().await);
    r1.send_json(json!({"type": "auth", "data": {"token": rider1_token}}))
        .await;
    frames.push(r1.next_json().await);
    for (frame, kind) in frames[5..].iter().zip(["pong", "error", "auth_ok"]) {
        assert_eq!(frame["type"], kind, "{frame}");
    }

    // order.paid to the merchant, order.recommend to both riders; one accepts, the
    // other is told order.taken; the consumer urges.
    let order = w.paid_order().await;
    let id = order["id"].as_i64().unwrap();
    collect_until(&mut merchant, "order.paid", &mut frames).await;
    collect_until(&mut r1, "order.recommend", &mut frames).await;
    collect_until(&mut r2, "order.recommend", &mut frames).await;
    assert_eq!(a.rider_step(&rider1_token, id, "accept").await.0, 200);
    collect_until(&mut r2, "order.taken", &mut frames).await;
    assert_eq!(w.urge(id).await.0, 202);
    collect_until(&mut merchant, "order.urged", &mut frames).await;

    // order.dispatched: staff give a second paid order to rider 2.
    let second = w.paid_order().await["id"].as_i64().unwrap();
    collect_until(&mut merchant, "order.paid", &mut frames).await;
    collect_until(&mut r2, "order.recommend", &mut frames).await;
    assert_eq!(w.dispatch(second, rider2).await.0, 200);
    collect_until(&mut r2, "order.dispatched", &mut frames).await;

    // inventory.low (the stock falls under 5), then alert.payment_timeout when that
    // order stays unpaid for 2 s.
    let left = w.stock(w.product).await;
    assert_eq!(w.order(a, left - 3).await.0, 201);
    collect_until(&mut merchant, "inventory.low", &mut frames).await;
    collect_until(&mut staff, "alert.payment_timeout", &mut frames).await;

    // Staff's own: rider.command, platform.notice (with data fields), announcement.
    let (status, body) = a
        .post_json(
            &format!("/v1/platform/riders/{}/commands", rider1.0),
            Some(&w.staff),
            &json!({"title": "去新店取餐", "content": "人民广场店", "data": {"order_id": id}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    collect_until(&mut r1, "rider.command", &mut frames).await;
    let (status, body) = a
        .post_notification(
            &w.staff,
            &json!({"user_id": rider1.0, "title": "维护", "content": "今晚", "data": {"level": "info"}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    collect_until(&mut r1, "platform.notice", &mut frames).await;
    let (status, body) = a
        .post_notification(
            &w.staff,
            &json!({"role": "rider", "title": "公告", "content": "大家好"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    collect_until(&mut r1, "announcement", &mut frames).await;

    let root = env!("CARGO_MANIFEST_DIR");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&frames).unwrap()).unwrap();
    let out = std::process::Command::new(crate::support::venv().join("bin/python"))
        .arg(format!("{root}/tests/asyncapi/check.py"))
        .arg(format!("{root}/docs/asyncapi.yaml"))
        .arg(file.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: HashSet<&str> = report
        .lines()
        .filter_map(|l| l.strip_prefix("seen "))
        .collect();
    let expected: HashSet<&str> = [
        "welcome",
        "pong",
        "authOk",
        "error",
        "orderRecommend",
        "orderDispatched",
        "orderTaken",
        "riderCommand",
        "orderPaid",
        "orderUrged",
        "inventoryLow",
        "alertPaymentTimeout",
        "platformNotice",
        "announcement",
    ]
    .into();
    assert_eq!(seen, expected, "{report}");
}
