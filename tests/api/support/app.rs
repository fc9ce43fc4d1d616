//! [`TestApp`]: one real replica on port 0, with a fresh database of its own and a fake
//! WeChat beside it ([`spawn_app`] and friends), and the one `impl` of what tests do
//! with it: HTTP calls, sockets, users of every role, merchants, products, orders and
//! WeChat Pay notifications, and notifications published straight to the engine.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use locallife::app::Application;
use locallife::auth::Tokens;
use locallife::config::Config;
use locallife::domain::{Role, UserId};
use locallife::notify::{self, Kind, Notification};
use locallife::state::AppState;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::db::TestDatabase;
use crate::support::env::{base_env, redis_url, unique_prefix, use_engine, EngineKind};
use crate::support::eventually::eventually;
use crate::support::fake_pay;
use crate::support::fake_wechat::FakeWechat;
use crate::support::http::{into_parts, send};
use crate::support::ws_client::{Refused, WsClient, WAIT};

/// Where the test merchant is; riders and delivery addresses are placed relative to it.
pub const SHOP: (f64, f64) = (31.2304, 121.4737);

pub struct TestApp {
    pub address: String,
    /// Where `/metrics` is served.
    pub metrics_address: String,
    pub http: reqwest::Client,
    pub wechat: FakeWechat,
    pub tokens: Tokens,
    pub config: Config,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    // Last: dropped after the server has been told to stop.
    pub db: Arc<TestDatabase>,
}

pub async fn spawn_app_on(kind: EngineKind) -> TestApp {
    spawn_app_with(|env| use_engine(env, kind)).await
}

/// `n` replicas sharing one database, one Redis prefix and one fake WeChat.
pub async fn spawn_cluster(n: usize) -> Vec<TestApp> {
    spawn_cluster_with(n, |_| {}).await
}

/// [`spawn_cluster`] with every replica's environment edited by `customise`.
pub async fn spawn_cluster_with(
    n: usize,
    customise: impl Fn(&mut HashMap<String, String>),
) -> Vec<TestApp> {
    spawn_cluster_on(Arc::new(TestDatabase::create().await), n, customise).await
}

/// [`spawn_cluster_with`] on database `db` (one on a server of the test's own).
pub async fn spawn_cluster_on(
    db: Arc<TestDatabase>,
    n: usize,
    customise: impl Fn(&mut HashMap<String, String>),
) -> Vec<TestApp> {
    let wechat = FakeWechat::start().await;
    let prefix = unique_prefix();
    let mut apps = Vec::new();
    for _ in 0..n {
        let mut env = base_env(&db, &wechat);
        env.insert("REDIS_URL".into(), redis_url());
        env.insert("REDIS_KEY_PREFIX".into(), prefix.clone());
        customise(&mut env);
        apps.push(start(env, db.clone(), wechat.clone()).await);
    }
    apps
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts an app after `customise` has edited its environment.
pub async fn spawn_app_with(customise: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
    let db = Arc::new(TestDatabase::create().await);
    let wechat = FakeWechat::start().await;
    let mut env = base_env(&db, &wechat);
    customise(&mut env);
    start(env, db, wechat).await
}

async fn start(env: HashMap<String, String>, db: Arc<TestDatabase>, wechat: FakeWechat) -> TestApp {
    // `TEST_LOG=locallife=debug` prints the replicas' logs (with `--nocapture`).
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    let config = Config::from_lookup(|k| env.get(k).cloned()).expect("test config is valid");
    let app = Application::build(config.clone())
        .await
        .expect("the application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let metrics_address = format!("http://{}", app.metrics_addr());
    let state = app.state().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        metrics_address,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        wechat,
        tokens: Tokens::new(&config.jwt),
        config,
        state,
        stop: Some(stop),
        server: Some(server),
        db,
    }
}

impl TestApp {
    /// Waits (20 s at most) until `/readyz` answers `status`; its body then.
    pub async fn wait_readyz(&self, status: u16) -> serde_json::Value {
        let what = format!("/readyz answers {status}");
        eventually(Duration::from_secs(20), &what, async || {
            let (got, body) = self.get("/readyz", None).await;
            (got == status).then_some(body)
        })
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// GET with an optional bearer token; the status and the JSON body (Null if none).
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        send(self.http.get(self.url(path)), token).await
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        send(self.http.post(self.url(path)).json(body), token).await
    }

    pub async fn patch_json(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        send(self.http.patch(self.url(path)).json(body), token).await
    }

    /// Logs in through the fake WeChat as `openid`.
    pub async fn login(&self, openid: &str) -> (u16, Value) {
        self.login_with_code(&self.wechat.issue_code(openid)).await
    }

    /// `POST /v1/auth/wechat-login` with `code`, whether WeChat issued it or not.
    pub async fn login_with_code(&self, code: &str) -> (u16, Value) {
        self.post_json(
            "/v1/auth/wechat-login",
            None,
            &serde_json::json!({ "code": code }),
        )
        .await
    }

    /// What `/metrics` serves (the test process's one recorder).
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.metrics_address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// POSTs `body` to `path` with an `Idempotency-Key`.
    pub async fn post_with_key(
        &self,
        path: &str,
        token: &str,
        key: &str,
        body: &Value,
    ) -> (u16, Value) {
        let req = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(body);
        into_parts(req.send().await.unwrap()).await
    }

    /// `POST /v1/platform/notifications` with `token` (platform staff's, to publish).
    pub async fn post_notification(&self, token: &str, body: &Value) -> (u16, Value) {
        self.post_json("/v1/platform/notifications", Some(token), body)
            .await
    }

    /// A user with `role`, made as `locallife user create` makes one, and a token.
    pub async fn user_with_role(&self, openid: &str, role: Role) -> (UserId, String) {
        let pool = locallife::store::connect_pool(&self.config.database).unwrap();
        let id = locallife::store::users::ensure_with_role(&pool, openid, role)
            .await
            .unwrap();
        (id, self.fresh_token(id).await)
    }

    /// A token for `user` as a login now mints it: with their current token epoch.
    pub async fn fresh_token(&self, user: UserId) -> String {
        let epoch: i64 = self
            .db
            .scalar("SELECT token_epoch FROM users WHERE id = $1", &[&user.0])
            .await;
        let subject = locallife::auth::jwt::Subject {
            user,
            epoch: epoch as u64,
        };
        self.tokens.mint(subject).token
    }

    /// How many notifications `user`'s inbox holds (as the engine has it).
    pub async fn inbox_len(&self, user: UserId) -> usize {
        self.state.engine().inbox(user).await.unwrap().len()
    }

    /// Waits ([`WAIT`] at most) until `user`'s inbox holds `n` notifications; `what`
    /// names the wait.
    pub async fn until_inbox(&self, user: UserId, n: usize, what: &str) {
        eventually(WAIT, what, async || {
            (self.inbox_len(user).await == n).then_some(())
        })
        .await
    }

    /// A service key named `name` with `scopes`, made by `staff` (or by a key with the
    /// `admin` scope); its id and the key.
    pub async fn service_key(&self, staff: &str, name: &str, scopes: &[&str]) -> (i64, String) {
        let (status, body) = self
            .post_json(
                "/v1/platform/keys",
                Some(staff),
                &json!({"name": name, "scopes": scopes}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let key = body["key"].as_str().unwrap().to_owned();
        assert!(key.starts_with(&format!("llk_{}_", body["id"])), "{key}");
        (body["id"].as_i64().unwrap(), key)
    }

    // Sockets.

    /// The socket URL for `token`, protocol 2 (explicit acks): the test client acks
    /// what it means to, and tokio-tungstenite answers every Ping, which under protocol
    /// 1 would confirm everything written.
    pub fn ws_url(&self, token: &str) -> String {
        format!(
            "{}/v1/ws?token={token}&protocol=2",
            self.address.replace("http://", "ws://")
        )
    }

    /// Connects with protocol 1 (the seed's clients: no `protocol` parameter); the
    /// client answers Pings.
    pub async fn ws_v1(&self, token: &str) -> WsClient {
        let url = format!(
            "{}/v1/ws?token={token}",
            self.address.replace("http://", "ws://")
        );
        WsClient::connect(url.into_client_request().unwrap())
            .await
            .unwrap_or_else(|r| panic!("socket refused: {r:?}"))
    }

    /// Connects with `?token=` and waits for `welcome`.
    pub async fn ws(&self, token: &str) -> Result<WsClient, Refused> {
        WsClient::connect(self.ws_url(token).into_client_request().unwrap()).await
    }

    /// Like [`TestApp::ws`], panicking on refusal.
    pub async fn ws_ok(&self, token: &str) -> WsClient {
        self.ws(token)
            .await
            .unwrap_or_else(|r| panic!("socket refused: {r:?}"))
    }

    /// Connects with `token`, expecting the handshake to be refused with `status` and
    /// the error `code`.
    pub async fn ws_refused(&self, token: &str, status: u16, code: &str) -> Refused {
        let refused = self.ws(token).await.err().expect("the socket is refused");
        assert_eq!(
            (refused.status, refused.body["code"].as_str()),
            (status, Some(code)),
            "{:?}",
            refused.body
        );
        refused
    }

    /// A user who may connect as `role`, and their token.
    pub async fn socket_user(&self, role: Role) -> (UserId, String) {
        let openid = format!("{role}-{:x}", rand::random::<u64>());
        match role {
            Role::Rider => self.online_rider(&openid).await,
            Role::Merchant => self.merchant_admin(&openid, true).await.0,
            _ => self.user_with_role(&openid, role).await,
        }
    }

    /// An approved rider, online at a position.
    pub async fn online_rider(&self, openid: &str) -> (UserId, String) {
        let (id, token) = self.rider(openid, "approved").await;
        self.db
            .execute(
                "UPDATE riders SET online = true, last_lat = 31.23, last_lng = 121.47,
                 location_updated_at = now(), online_changed_at = now() WHERE user_id = $1",
                &[&id.0],
            )
            .await;
        (id, token)
    }

    /// A rider who applied, with `status` `pending` or `approved` (offline).
    pub async fn rider(&self, openid: &str, status: &str) -> (UserId, String) {
        let (id, token) = self.user_with_role(openid, Role::Rider).await;
        self.db
            .execute(
                "INSERT INTO riders (user_id, name, phone, status, approved_at)
                 VALUES ($1, 'Rider', '13800000000', $2,
                         CASE WHEN $2 = 'approved' THEN now() END)",
                &[&id.0, &status],
            )
            .await;
        (id, token)
    }

    /// A merchant admin; the merchant approved or not. Returns the merchant id too.
    pub async fn merchant_admin(&self, openid: &str, approved: bool) -> ((UserId, String), i64) {
        let (id, token) = self.user_with_role(openid, Role::Merchant).await;
        let status = if approved { "approved" } else { "pending" };
        let merchant = self.merchant_of(id, "Shop", status).await;
        ((id, token), merchant)
    }

    /// A merchant named `name` with `status` `pending` or `approved`, created by `owner`,
    /// who administers it; its id.
    pub async fn merchant_of(&self, owner: UserId, name: &str, status: &str) -> i64 {
        let merchant: i64 = self
            .db
            .scalar(
                "INSERT INTO merchants (name, address, lat, lng, status, approved_at, created_by)
                 VALUES ($1, 'Road 1', 31.23, 121.47, $2,
                         CASE WHEN $2 = 'approved' THEN now() END, $3) RETURNING id",
                &[&name, &status, &owner.0],
            )
            .await;
        self.db
            .execute(
                "INSERT INTO merchant_admins (merchant_id, user_id) VALUES ($1, $2)",
                &[&merchant, &owner.0],
            )
            .await;
        merchant
    }

    // The business: merchants, products, riders and orders, as their users make them.

    /// A merchant `owner` applied for at the shop; pending approval.
    pub async fn apply_for_merchant(&self, owner: &str, name: &str) -> i64 {
        let (status, m) = self
            .post_json(
                "/v1/merchants",
                Some(owner),
                &json!({"name": name, "lat": SHOP.0, "lng": SHOP.1, "address": "南京路 1 号"}),
            )
            .await;
        assert_eq!(status, 201, "{m}");
        assert_eq!(m["status"], "pending");
        m["id"].as_i64().unwrap()
    }

    /// A merchant `owner` applied for at the shop, approved by `staff`.
    pub async fn approved_merchant(&self, owner: &str, staff: &str, name: &str) -> i64 {
        let merchant = self.apply_for_merchant(owner, name).await;
        let (status, body) = self
            .post_json(
                &format!("/v1/platform/merchants/{merchant}/approve"),
                Some(staff),
                &json!({}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        merchant
    }

    pub async fn apply_as_rider(&self, token: &str, name: &str, phone: &str) -> (u16, Value) {
        self.post_json(
            "/v1/rider/apply",
            Some(token),
            &json!({"name": name, "phone": phone}),
        )
        .await
    }

    /// The consumer orders `items` from `merchant`, delivered near the shop.
    pub async fn place_order(&self, consumer: &str, merchant: i64, items: Value) -> (u16, Value) {
        self.post_json(
            "/v1/orders",
            Some(consumer),
            &json!({
                "merchant_id": merchant,
                "items": items,
                "address": {"lat": 31.2400, "lng": 121.4800, "detail": "人民广场 2 号"},
            }),
        )
        .await
    }

    /// The rider takes `step` (`accept`, `pickup`, `deliver`) on order `id`.
    pub async fn rider_step(&self, rider: &str, id: i64, step: &str) -> (u16, Value) {
        self.post_json(
            &format!("/v1/rider/orders/{id}/{step}"),
            Some(rider),
            &json!({}),
        )
        .await
    }

    pub async fn product(
        &self,
        owner: &str,
        merchant: i64,
        price: i64,
        stock: i32,
        threshold: i32,
    ) -> i64 {
        let (status, p) = self
            .post_json(
                &format!("/v1/merchants/{merchant}/products"),
                Some(owner),
                &json!({"name": "牛肉面", "price_fen": price, "stock": stock, "low_stock_threshold": threshold}),
            )
            .await;
        assert_eq!(status, 201, "{p}");
        p["id"].as_i64().unwrap()
    }

    pub async fn order_status(&self, token: &str, id: i64) -> String {
        let (status, o) = self.get(&format!("/v1/orders/{id}"), Some(token)).await;
        assert_eq!(status, 200, "{o}");
        o["status"].as_str().unwrap().to_owned()
    }

    // Notifications published straight to the engine, as business flows publish them
    // (no HTTP, no staff).

    /// Publishes a platform notice titled `title` (no content) to `user` through this
    /// replica's engine; its message id.
    pub async fn publish(&self, user: UserId, title: &str) -> String {
        let n = Notification::new(Kind::PlatformNotice, title, "");
        self.publish_notification(user, &n).await
    }

    /// Publishes `n` to `user` through this replica's engine; its message id.
    pub async fn publish_notification(&self, user: UserId, n: &Notification) -> String {
        notify::to_user(&**self.state.engine(), user, n)
            .await
            .expect("published")
    }

    // WeChat Pay.

    /// Posts a notification; the status and body.
    pub async fn notify_payment(&self, n: &fake_pay::Notification) -> (u16, Value) {
        let mut req = self
            .http
            .post(self.url("/v1/webhooks/wechat-pay/notify"))
            .header("content-type", "application/json")
            .body(n.body.clone());
        for (k, v) in &n.headers {
            req = req.header(*k, v);
        }
        into_parts(req.send().await.unwrap()).await
    }

    /// Stops the server and waits for it to return.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.server.take() {
            Some(server) => server.await.unwrap(),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
