//! A small world for the business flows: a shop (approved, with one product) on N
//! replicas sharing Redis and the database, with its staff, owner and consumer, WeChat
//! Pay configured against the fake, and the steps its people take.

use locallife::domain::{Role, UserId};
use serde_json::{json, Value};

use crate::support::app::{spawn_cluster_with, TestApp, SHOP};
use crate::support::fake_pay::{self, FakePay};
use crate::support::ws_client::WsClient;

/// A small world on `replicas` replicas sharing Redis and the database, with WeChat
/// Pay configured against the fake.
pub struct World {
    pub apps: Vec<TestApp>,
    pub pay: FakePay,
    pub staff: String,
    pub owner: String,
    pub merchant: i64,
    pub product: i64,
    pub consumer: String,
}

impl World {
    pub async fn new(replicas: usize, extra: &[(&str, &str)]) -> World {
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

    pub fn a(&self) -> &TestApp {
        &self.apps[0]
    }

    pub fn b(&self) -> &TestApp {
        &self.apps[self.apps.len() - 1]
    }

    /// A rider who logged in, applied, was approved and went online `offset` degrees
    /// of latitude north of the shop (0.001° ≈ 111 m).
    pub async fn rider(&self, name: &str, offset: f64) -> (UserId, String) {
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
    pub async fn order(&self, app: &TestApp, quantity: i32) -> (u16, Value) {
        self.order_items(
            app,
            json!([{"product_id": self.product, "quantity": quantity}]),
        )
        .await
    }

    /// Places an order for `items` of the merchant on replica `app`.
    pub async fn order_items(&self, app: &TestApp, items: Value) -> (u16, Value) {
        app.place_order(&self.consumer, self.merchant, items).await
    }

    pub async fn paid_order(&self) -> Value {
        let (status, order) = self.order(self.b(), 1).await;
        assert_eq!(status, 201, "{order}");
        let n = fake_pay::notification(&transaction_for(&order));
        assert_eq!(self.b().notify_payment(&n).await.0, 204);
        order
    }

    /// The consumer urges order `id`.
    pub async fn urge(&self, id: i64) -> (u16, Value) {
        self.a()
            .post_json(
                &format!("/v1/orders/{id}/urge"),
                Some(&self.consumer),
                &json!({}),
            )
            .await
    }

    /// Staff dispatch order `id` to `rider`, on the last replica.
    pub async fn dispatch(&self, id: i64, rider: UserId) -> (u16, Value) {
        self.b()
            .post_json(
                &format!("/v1/platform/orders/{id}/dispatch"),
                Some(&self.staff),
                &json!({"rider_id": rider.0}),
            )
            .await
    }

    /// How many payments the database has recorded.
    pub async fn payments(&self) -> i64 {
        self.a()
            .db
            .scalar("SELECT count(*) FROM payments", &[])
            .await
    }

    /// The stock of `product` as the database has it.
    pub async fn stock(&self, product: i64) -> i32 {
        self.a()
            .db
            .scalar("SELECT stock FROM products WHERE id = $1", &[&product])
            .await
    }
}

/// The successful WeChat Pay transaction that pays `order` in full.
pub fn transaction_for(order: &Value) -> Value {
    fake_pay::transaction(
        order["out_trade_no"].as_str().unwrap(),
        order["total_fen"].as_i64().unwrap(),
    )
}

pub fn token(login: (u16, Value)) -> String {
    assert_eq!(login.0, 200, "{}", login.1);
    login.1["access_token"].as_str().unwrap().to_owned()
}

pub async fn expect_event(socket: &mut WsClient, event: &str) -> Value {
    let n = socket.next_notification().await;
    assert_eq!(n["data"]["event"], event, "{n}");
    n
}

/// Reads `socket` until every `(event, field, value)` has arrived, in any order; the
/// matching notifications, in the order asked.
pub async fn expect_all(socket: &mut WsClient, wanted: &[(&str, &str, Value)]) -> Vec<Value> {
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
