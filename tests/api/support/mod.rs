//! What the tests stand on, one room per idea: [`app`] (a real replica on port 0 and the
//! one `impl` of [`TestApp`]), [`env`] (its settings and engine), [`db`] (a fresh
//! database per test), [`http`] (answers as tests read them), [`ws_client`] (socket
//! clients), [`processes`] (the binary, replicas and redis-servers as processes),
//! [`eventually`] (waiting for a condition, bounded), [`own_pg`] (a PostgreSQL primary
//! and standby of a test's own, to stop and fail over), the fakes of WeChat
//! ([`fake_wechat`]) and WeChat Pay ([`fake_pay`]), and [`world`] (a shop with its
//! staff, owner, product and consumer, for the business flows).
//!
//! The names tests use most are re-exported here; the fakes are used by their module.

pub mod app;
pub mod db;
pub mod env;
pub mod eventually;
pub mod fake_pay;
pub mod fake_wechat;
pub mod http;
pub mod own_pg;
pub mod processes;
pub mod world;
pub mod ws_client;

pub use app::{
    spawn_app, spawn_app_on, spawn_app_with, spawn_cluster, spawn_cluster_on, spawn_cluster_with,
    TestApp, SHOP,
};
pub use db::TestDatabase;
pub use env::{redis_url, unique_prefix, use_engine, EngineKind, JWT_SECRET};
pub use eventually::{eventually, eventually_every, eventually_sync, within};
pub use http::{assert_error, into_parts};
pub use processes::{
    binary, binary_listening, free_port, stable_port, venv, OwnRedis, Replica, WedgeProxy,
};
pub use ws_client::{RawClient, WsClient, WAIT};
