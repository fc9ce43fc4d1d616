//! LocalLife realtime: the WebSocket notification hub and business API of a
//! local-delivery platform, run as N identical stateless replicas.
//!
//! # Layout
//!
//! Layers, lowest first. A module imports only from modules above it in this list
//! (never from below), and no file imports a file that imports it back.
//!
//! 1. Foundations: [`config`] (every setting of SPEC §5, read once, validated, secrets
//!    redacted), [`domain`] (types valid by construction: [`domain::UserId`],
//!    [`domain::Role`], [`domain::OrderStatus`], [`domain::Approval`]), [`time`],
//!    [`telemetry`] (logs and the metrics recorder), [`tasks`] (every background task
//!    is spawned through one owner, cancelled and awaited on shutdown).
//! 2. Outside systems: [`store`] (PostgreSQL: pool, migrations, one file of queries per
//!    aggregate), [`engine`] (moves events between replicas: Redis, or in-process for a
//!    single node; Redis keys in [`engine::keys`]; the one wire format of a notification
//!    in [`engine::wire`]), [`wechat`] (code2Session, WeChat Pay), [`auth`] (HS256
//!    tokens, and where a request carries one).
//! 3. Real-time: [`hub`] (this replica's sockets: registry and fan-out, subscription
//!    manager, sweeper), [`notify`] (publishing the notifications of SPEC §3, and the
//!    system alerts a replica raises), [`limits`] (this replica's request rate limits
//!    and the logouts it has read; their middleware is [`http::limits`]).
//! 4. [`state`]: [`state::AppState`], what handlers, sessions and flows share.
//! 5. [`service`]: business flows (orders, payments, riders, dispatch, platform
//!    notices, the payment-timeout sweeper), called by handlers, sessions and timers.
//! 6. [`error`]: [`error::ApiError`] and every mapping of a lower error into it.
//! 7. Edges: [`ws`] (`GET /v1/ws`: admission, protocol, one session per socket),
//!    [`http`] (routes and thin handlers, the [`http::Caller`] extractor).
//! 8. [`app`] builds a replica and runs it until shutdown; [`cli`] is the `locallife`
//!    command (`serve`, `migrate`, `token`, `user create`, `demo`, `listen`,
//!    `simulate-payment`), with [`demo`] and [`client`] behind the last three.

pub mod app;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod demo;
pub mod domain;
pub mod engine;
pub mod error;
mod fuzz;
pub mod http;
pub mod hub;
pub mod limits;
pub mod notify;
pub mod service;
pub mod state;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod wechat;
pub mod ws;
