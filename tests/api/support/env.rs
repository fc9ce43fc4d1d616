//! The settings a test replica runs with: the base environment every test app gets,
//! the Redis it uses (none, a single server, or the local cluster), and the secrets and
//! limits the tests share.

use std::collections::HashMap;

use crate::support::db::TestDatabase;
use crate::support::fake_wechat::{self, FakeWechat};

pub const JWT_SECRET: &str = "test-secret-0123456789abcdef-0123456789";

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
        // Debug builds on a shared machine take tens of milliseconds per send: the
        // latency target would measure the machine. It has its own tests (overload.rs).
        ("PUBLISH_TARGET_LATENCY".into(), "off".into()),
    ])
}

/// Tests hammer the API from one address; the rate limits have tests of their own.
pub const TEST_RATE: &str = "100000";

/// Tests place many orders for one consumer; the cap has a test of its own.
pub const TEST_ORDERS_UNPAID_MAX: &str = "1000";

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
