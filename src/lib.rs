//! LocalLife realtime: the WebSocket notification hub and business API of a
//! local-delivery platform, run as N identical stateless replicas.
//!
//! # Layout
//!
//! - [`cli`]: the `locallife` commands (`serve`, `migrate`, `token`, `user create`,
//!   `demo`, `listen`, `simulate-payment`); [`demo`] and [`client`] implement the last three.
//! - [`config`]: every setting of SPEC §5, read once, validated, secrets redacted.
//! - [`app`]: [`app::Application`] builds a replica (migrations, pools, listener) and
//!   runs it until shutdown; [`app::AppState`] is what handlers share.
//! - [`http`]: routes and thin handlers; every error is JSON ([`error::ApiError`]).
//! - [`auth`]: HS256 access tokens and the [`auth::Caller`] extractor that loads the
//!   caller's roles from the database on each request.
//! - [`wechat`]: clients of WeChat's servers (mini-program login).
//! - [`store`]: PostgreSQL: pool, migrations (`migrations/*.sql`), queries.
//! - [`engine`]: moves events between replicas: Redis pub/sub, or in-process for a
//!   single node; all Redis key and channel names are built in [`engine::keys`].
//! - [`hub`]: this replica's sockets by user and role, fan-out, subscriptions,
//!   keep-alive sweeps.
//! - [`ws`]: `GET /v1/ws`: admission, the message protocol, one session per socket.
//! - [`notify`]: building and publishing notifications (the events of SPEC §3).
//! - [`service`]: business flows (orders, payment, dispatch, alerts, the payment-timeout
//!   sweeper) between handlers and the store.
//! - [`domain`]: types valid by construction ([`domain::Role`], [`domain::UserId`]).
//! - [`time`]: clock helpers.
//! - [`telemetry`]: logging (stderr, pretty or JSON).

pub mod app;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod demo;
pub mod domain;
pub mod engine;
pub mod error;
pub mod http;
pub mod hub;
pub mod notify;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod wechat;
pub mod ws;
