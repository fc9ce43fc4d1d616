//! `spawn_app()`: the real application on port 0, with a fresh database of its own, a
//! fake WeChat beside it, and typed helpers for what tests do often.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use locallife::app::Application;
use locallife::auth::Tokens;
use locallife::config::Config;
use locallife::domain::{Role, UserId};
use locallife::state::AppState;
use serde_json::Value;
use tokio::sync::{oneshot, OnceCell};
use tokio_postgres::types::{FromSqlOwned, ToSql};

use crate::fake_wechat::{self, FakeWechat};

pub const JWT_SECRET: &str = "test-secret-0123456789abcdef-0123456789";

/// The database the tests connect to in order to create their own.
pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://locallife:locallife@127.0.0.1:5432/locallife".into())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The Redis Cluster the behaviour tests also run on: three primaries, three replicas,
/// started by `scripts/test.sh` with `scripts/redis-cluster.sh`.
pub fn redis_cluster_url() -> String {
    std::env::var("TEST_REDIS_CLUSTER_URL").expect(
        "TEST_REDIS_CLUSTER_URL is not set: run the tests with scripts/test.sh, or start a \
         cluster with `scripts/redis-cluster.sh up DIR` and export the REDIS_URL it prints",
    )
}

/// A free port below the kernel's ephemeral range (32768 and up): for a server that is
/// restarted on the same port while clients come and go, whose outgoing connections
/// could otherwise take that port in between.
pub fn stable_port() -> u16 {
    loop {
        let port = 20_000 + (rand::random::<u16>() % 12_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A port that was free a moment ago: for a process to listen on, or to find nothing
/// listening there.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `locallife` binary with nothing in its environment but `PATH`, `DATABASE_URL` and
/// `JWT_SECRET`; killed when dropped.
pub fn binary(db_url: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_locallife"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db_url)
        .env("JWT_SECRET", JWT_SECRET)
        .kill_on_drop(true);
    cmd
}

/// [`binary`] set to listen on `127.0.0.1:port`, with metrics on any free port.
pub fn binary_listening(db_url: &str, port: u16) -> tokio::process::Command {
    let mut cmd = binary(db_url);
    cmd.env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("ORDERS_UNPAID_MAX", TEST_ORDERS_UNPAID_MAX)
        .env("HTTP_RATE_USER", TEST_RATE)
        .env("HTTP_RATE_ADDRESS", TEST_RATE)
        .env("HTTP_RATE_BACK_OFFICE", TEST_RATE)
        .env("HTTP_RATE_LOGIN", TEST_RATE)
        .env("MAX_CONNECTIONS_PER_ADDRESS", "4000");
    cmd
}

async fn admin_client() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&admin_database_url(), tokio_postgres::NoTls)
        .await
        .expect("connect to TEST_DATABASE_URL (run the tests through scripts/test.sh)");
    tokio::spawn(conn);
    client
}

/// Test databases are named `ll_test_<unix seconds>_<random>`; ones left behind by a run
/// that was killed are dropped by the next run once they are an hour old.
async fn sweep_stale_databases(admin: &tokio_postgres::Client) {
    let cutoff = now_secs().saturating_sub(3600);
    let rows = admin
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'll_test_%'",
            &[],
        )
        .await
        .unwrap_or_default();
    for row in rows {
        let name: String = row.get(0);
        let born = name
            .split('_')
            .nth(2)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        if born < cutoff {
            let _ = admin
                .execute(
                    &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                    &[],
                )
                .await;
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A fresh, empty database; dropped when the guard is.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        static SWEPT: OnceCell<()> = OnceCell::const_new();
        let admin = admin_client().await;
        SWEPT.get_or_init(|| sweep_stale_databases(&admin)).await;
        let name = format!("ll_test_{}_{:016x}", now_secs(), rand::random::<u64>());
        admin
            .execute(&format!("CREATE DATABASE \"{name}\""), &[])
            .await
            .expect("create the test database (the role needs CREATEDB)");
        let mut url = url::Url::parse(&admin_database_url()).unwrap();
        url.set_path(&format!("/{name}"));
        Self {
            name,
            url: url.to_string(),
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }

    /// The first column of the one row `sql` returns.
    pub async fn scalar<T: FromSqlOwned>(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> T {
        self.client()
            .await
            .query_one(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// Runs one statement; how many rows it touched.
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> u64 {
        self.client()
            .await
            .execute(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Drops the database now, connections and all (to simulate losing it).
    pub async fn drop_now(&self) {
        admin_client()
            .await
            .execute(
                &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
                &[],
            )
            .await
            .unwrap();
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on; a short-lived
        // thread with its own runtime drops the database.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&admin_database_url(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .execute(
                            &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                            &[],
                        )
                        .await;
                }
            });
        })
        .join();
    }
}

/// The settings every test app gets; tests add or override through `spawn_app_with`.
pub fn base_env(db: &TestDatabase, wechat: &FakeWechat) -> HashMap<String, String> {
    HashMap::from([
        ("DATABASE_URL".into(), db.url.clone()),
        ("JWT_SECRET".into(), JWT_SECRET.into()),
        ("LISTEN_ADDR".into(), "127.0.0.1:0".into()),
        ("METRICS_ADDR".into(), "127.0.0.1:0".into()),
        ("WECHAT_APPID".into(), fake_wechat::APPID.into()),
        ("WECHAT_SECRET".into(), fake_wechat::SECRET.into()),
        ("WECHAT_API_BASE".into(), wechat.base.clone()),
        ("DATABASE_POOL_SIZE".into(), "4".into()),
        // Even on a Redis of its own: two tests' servers can never cross-talk.
        ("REDIS_KEY_PREFIX".into(), unique_prefix()),
        ("ORDERS_UNPAID_MAX".into(), TEST_ORDERS_UNPAID_MAX.into()),
        ("HTTP_RATE_USER".into(), TEST_RATE.into()),
        ("HTTP_RATE_ADDRESS".into(), TEST_RATE.into()),
        ("HTTP_RATE_BACK_OFFICE".into(), TEST_RATE.into()),
        ("HTTP_RATE_LOGIN".into(), TEST_RATE.into()),
        ("MAX_CONNECTIONS_PER_ADDRESS".into(), "4000".into()),
        // Many replicas share this process's open-file limit; the cap has its own test.
        ("MAX_CONNECTIONS".into(), "4000".into()),
    ])
}

/// Tests hammer the API from one address; the rate limits have tests of their own.
pub const TEST_RATE: &str = "100000";

/// Tests place many orders for one consumer; the cap has a test of its own.
pub const TEST_ORDERS_UNPAID_MAX: &str = "1000";

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

/// Which engine a behaviour test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Memory,
    Redis,
    /// The local Redis Cluster `scripts/test.sh` starts (`TEST_REDIS_CLUSTER_URL`).
    Cluster,
}

/// A Redis key prefix of one's own, so tests sharing a Redis never see each other.
pub fn unique_prefix() -> String {
    format!("t{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// Applies `kind` to an app's environment.
pub fn use_engine(env: &mut HashMap<String, String>, kind: EngineKind) {
    let url = match kind {
        EngineKind::Memory => return,
        EngineKind::Redis => redis_url(),
        EngineKind::Cluster => redis_cluster_url(),
    };
    env.insert("REDIS_URL".into(), url);
    env.entry("REDIS_KEY_PREFIX".into())
        .or_insert_with(unique_prefix);
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
    let db = Arc::new(TestDatabase::create().await);
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
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let (got, body) = self.get("/readyz", None).await;
                if got == status {
                    return body;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("/readyz never answered {status}"))
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

    /// `POST /v1/platform/notifications` with `token` (platform staff's, to publish).
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

/// Sends `req` with an optional bearer token; the status and the JSON body.
async fn send(mut req: reqwest::RequestBuilder, token: Option<&str>) -> (u16, Value) {
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    into_parts(req.send().await.unwrap()).await
}

pub async fn into_parts(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("body is not JSON: {text:?}"))
    };
    (status, body)
}

/// Asserts an error answer: the status and `{"code", "message"}` with that code.
#[track_caller]
pub fn assert_error(answer: &(u16, Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "unexpected status, body {}", answer.1);
    assert_eq!(answer.1["code"], code, "unexpected body {}", answer.1);
    assert!(
        answer.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error without a message: {}",
        answer.1
    );
}

/// The project's Python tools (scripts/venv.sh, created on first use): schemathesis,
/// openapi-spec-validator, Playwright.
pub fn venv() -> std::path::PathBuf {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(format!("{root}/scripts/venv.sh"))
        .output()
        .expect("scripts/venv.sh runs");
    assert!(
        out.status.success(),
        "scripts/venv.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
