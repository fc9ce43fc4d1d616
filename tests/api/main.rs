//! One integration-test binary: every test starts the real application on port 0 with
//! a fresh PostgreSQL database of its own. See `helpers.rs`.

/// Runs each behaviour test once per engine, as `case::memory` and `case::redis`.
macro_rules! on_both_engines {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn memory() {
                super::$case(crate::helpers::EngineKind::Memory).await
            }
            #[tokio::test]
            async fn redis() {
                super::$case(crate::helpers::EngineKind::Redis).await
            }
            #[tokio::test]
            async fn redis_cluster() {
                super::$case(crate::helpers::EngineKind::Cluster).await
            }
        }
    )*};
}

mod abuse;
mod admission;
mod chaos;
mod cli;
mod clock_skew;
mod closing;
mod cluster;
mod connections;
mod console;
mod delivery;
mod docs;
mod fake_pay;
mod fake_wechat;
mod flows;
mod health;
mod helpers;
mod idempotency;
mod keys;
mod login;
mod me;
mod migrations;
mod openapi;
mod ops;
mod pg_tls;
mod process;
mod procs;
mod protocols;
mod receipts;
mod redis_modes;
mod sdk;
mod seed_client;
mod subscriptions;
mod suspension;
mod upgrade;
mod ws;
mod ws_client;
