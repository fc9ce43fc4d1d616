//! PostgreSQL going away under a replica (SPEC §11, `docs/operations.md`): the
//! replica reaches the database through a TCP proxy the test cuts (every connection
//! reset, new ones refused) and restores. Meanwhile each entry point answers honestly
//! (a webhook non-2xx so WeChat retries, a platform send 503 `database_unavailable`, a
//! socket connect 503/1013, never a 500), open sockets keep working, and afterwards the
//! retried webhook and new sends go through: nothing answered 2xx is lost.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use locallife::domain::Role;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

use crate::support::db::admin_database_url;
use crate::support::fake_pay::{self, FakePay};
use crate::support::world::token;
use crate::support::{eventually, spawn_cluster_with, TestApp};

/// A TCP proxy to PostgreSQL that can be cut and restored.
struct PgProxy {
    address: String,
    up: Arc<Mutex<bool>>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accept: JoinHandle<()>,
}

impl PgProxy {
    async fn start(upstream: String) -> PgProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let up = Arc::new(Mutex::new(true));
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept = {
            let (up, links) = (up.clone(), links.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !*up.lock().unwrap() {
                        drop(client);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let link = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    links.lock().unwrap().push(link.abort_handle());
                }
            })
        };
        PgProxy {
            address,
            up,
            links,
            accept,
        }
    }

    /// Resets every open connection and refuses new ones.
    fn cut(&self) {
        *self.up.lock().unwrap() = false;
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        *self.up.lock().unwrap() = true;
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// `host:port` of the PostgreSQL the tests use.
fn pg_address() -> String {
    let url = admin_database_url();
    let after_at = url.rsplit('@').next().unwrap_or(&url);
    let host_port = after_at.split('/').next().unwrap_or(after_at);
    host_port.to_owned()
}

fn is_2xx(status: u16) -> bool {
    (200..300).contains(&status)
}

#[tokio::test]
async fn a_database_outage_is_answered_honestly_and_loses_nothing_answered_2xx() {
    let pay = FakePay::start().await;
    let pg = pg_address();
    let proxy = PgProxy::start(pg.clone()).await;
    let apps = spawn_cluster_with(1, |env| {
        pay.env(env);
        let url = env["DATABASE_URL"].replacen(&pg, &proxy.address, 1);
        env.insert("DATABASE_URL".into(), url);
    })
    .await;
    let app: &TestApp = &apps[0];
    let (_, staff) = app.user_with_role("staff", Role::Platform).await;
    let owner = token(app.login("owner").await);
    let merchant = app.approved_merchant(&owner, &staff, "面馆").await;
    let product = app.product(&owner, merchant, 1500, 100, 5).await;
    let consumer = token(app.login("consumer").await);
    let (rider, rider_token) = app.socket_user(Role::Rider).await;
    let mut socket = app.ws_ok(&rider_token).await;
    let mut shop = app.ws_ok(&owner).await;
    let (status, order) = app
        .post_json(
            "/v1/orders",
            Some(&consumer),
            &json!({
                "merchant_id": merchant,
                "items": [{"product_id": product, "quantity": 1}],
                "address": {"lat": 31.24, "lng": 121.48, "detail": "人民广场 2 号"},
            }),
        )
        .await;
    assert_eq!(status, 201, "{order}");
    let payment = fake_pay::notification(&fake_pay::transaction(
        order["out_trade_no"].as_str().unwrap(),
        order["total_fen"].as_i64().unwrap(),
    ));

    proxy.cut();

    // WeChat Pay's notification: not 2xx, so WeChat sends it again later.
    let (status, body) = app.notify_payment(&payment).await;
    assert_eq!(status, 503, "webhook: {body}");
    // A platform send: it writes its receipts first, so it says 503 honestly.
    let (status, body) = app
        .post_notification(
            &staff,
            &json!({"user_id": rider.0, "title": "during", "content": ""}),
        )
        .await;
    assert_eq!(status, 503, "platform send: {body}");
    assert_eq!(body["code"], "database_unavailable", "{body}");
    // A read: 503, not 500.
    let (status, body) = app
        .get(&format!("/v1/orders/{}", order["id"]), Some(&consumer))
        .await;
    assert_eq!(status, 503, "order read: {body}");
    // A new socket: refused with 503 (1013 under protocol 2), to be tried again.
    let refused = app
        .ws(&rider_token)
        .await
        .err()
        .expect("no admission without the database");
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    // The socket that was open keeps working.
    socket.roundtrip().await;
    shop.roundtrip().await;

    proxy.restore();

    // WeChat's retry is taken: the order is paid, once.
    let retried = eventually(
        Duration::from_secs(20),
        "the webhook taken again after the database's return",
        async || {
            let (status, body) = app.notify_payment(&payment).await;
            assert_ne!(status, 500, "webhook after the outage: {body}");
            is_2xx(status).then_some(status)
        },
    )
    .await;
    assert_eq!(retried, 204);
    let paid: i64 = app.db.scalar("SELECT count(*) FROM payments", &[]).await;
    assert_eq!(paid, 1);
    // The outbox relay, whose connections were cut too, tells the merchant.
    let new_order = shop.next_event("order.paid").await;
    assert_eq!(new_order["data"]["order_id"], order["id"], "{new_order}");
    // Sends work again and reach the socket that stayed open.
    let (status, body) = app
        .post_notification(
            &staff,
            &json!({"user_id": rider.0, "title": "after", "content": ""}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let n: Value = socket.next_notification().await;
    assert_eq!(n["data"]["title"], "after");
    // And new sockets are admitted.
    app.ws_ok(&rider_token).await;
}
