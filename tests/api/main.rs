//! One integration-test binary: every test starts the real application on port 0 with
//! a fresh PostgreSQL database of its own. What the tests stand on is in `support/`;
//! every other module is a topic.

/// Runs each behaviour test once per engine, as `case::memory` and `case::redis`.
macro_rules! on_both_engines {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn memory() {
                super::$case(crate::support::EngineKind::Memory).await
            }
            #[tokio::test]
            async fn redis() {
                super::$case(crate::support::EngineKind::Redis).await
            }
            #[tokio::test]
            async fn redis_cluster() {
                super::$case(crate::support::EngineKind::Cluster).await
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
mod flows;
mod health;
mod idempotency;
mod keys;
mod login;
mod me;
mod migrations;
mod openapi;
mod ops;
mod overload;
mod pg_failover;
mod pg_outage;
mod pg_tls;
mod process;
mod protocols;
mod receipts;
mod redis_modes;
mod rolling;
mod sdk;
mod seed_client;
mod subscriptions;
mod support;
mod suspension;
mod upgrade;
mod ws;
