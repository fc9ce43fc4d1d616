//! LocalLife realtime: the WebSocket notification hub and business API of a
//! local-delivery platform, run as N identical stateless replicas.
//!
//! # Layout
//!
//! Layers, lowest first. A module imports only from modules above it in this list
//! (never from below, nor from one after it in its own layer), and no file imports a
//! file that imports it back. The list is data, [`LAYERS`], and a test
//! (`src/architecture.rs`) reads every import of every file under `src/` and fails,
//! naming the file, line and path, on an import that reaches up or a circle between
//! files; it also holds this list to [`LAYERS`].
//!
//! 1. Foundations: [`domain`] (types valid by construction: [`domain::UserId`],
//!    [`domain::Role`], [`domain::OrderStatus`], [`domain::Approval`], the events of
//!    SPEC §3 [`domain::Kind`], a service key's [`domain::Scope`]), [`time`],
//!    [`config`] (every setting of SPEC §5, read once, validated, secrets redacted; the
//!    subscription templates file in [`config::templates`]), [`tls`] (the TLS client
//!    settings of PostgreSQL and Redis), [`telemetry`] (logs and the metrics recorder),
//!    [`tasks`] (every background task is spawned through one owner, cancelled and
//!    awaited on shutdown).
//! 2. Outside systems: [`store`] (PostgreSQL: pool, migrations, one file of queries per
//!    aggregate), [`engine`] (moves events between replicas: [`engine::redis`], a room
//!    per job, or [`engine::memory`] for a single node; [`engine::Engine`] is the sum of
//!    the facets [`engine::Broker`], [`engine::Inbox`], [`engine::Shared`],
//!    [`engine::RiderIndex`], [`engine::Places`]; Redis keys in [`engine::keys`]; the one
//!    wire format of a notification in [`engine::wire`]), [`wechat`] (code2Session,
//!    WeChat Pay, subscription messages), [`auth`] (HS256 tokens, service keys, and
//!    where a request carries one).
//! 3. Real-time: [`hub`] (this replica's sockets: registry and fan-out, subscription
//!    manager, sweeper), [`notify`] (publishing the notifications of SPEC §3, and the
//!    system alerts a replica raises), [`limits`] (this replica's request rate limits
//!    and the logouts it has read; their middleware is [`http::limits`]).
//! 4. [`state`]: [`state::AppState`], what handlers, sessions and flows share.
//! 5. [`service`]: business flows (orders, payments, riders, dispatch, platform
//!    notices, the payment-timeout sweeper), called by handlers, sessions and timers.
//! 6. [`error`]: [`error::ApiError`], the one error body [`error::Body`] (the OpenAPI
//!    `Error`), and every mapping of a lower error into it.
//! 7. Edges: [`ws`] (`GET /v1/ws`: admission, protocol, one session per socket),
//!    [`http`] (routes and thin handlers, the [`http::Caller`] extractor).
//! 8. [`app`] builds a replica and runs it until shutdown; [`client`] (the `listen`
//!    and `simulate-payment` commands) and [`demo`] are behind [`cli`], the `locallife`
//!    command (`serve`, `migrate`, `token`, `user create`, `demo`, `listen`,
//!    `simulate-payment`).
//! 9. Tests only: `fuzz` (property tests of every parser of untrusted bytes) and
//!    `architecture` (the check of this list).
//!
//! `main.rs`, the binary, is no module of this crate: it calls [`cli`] by the crate's
//! name.

pub mod app;
#[cfg(test)]
mod architecture;
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

/// The layers of the `# Layout` list above, lowest first: each top-level module of
/// `src/`, placed once. A module may import one listed before it (in a lower layer, or
/// earlier in its own) and none listed after it: the test in `src/architecture.rs`
/// checks every import under `src/` against this, and the list above against this.
pub const LAYERS: &[&[&str]] = &[
    &["domain", "time", "config", "tls", "telemetry", "tasks"],
    &["store", "engine", "wechat", "auth"],
    &["hub", "notify", "limits"],
    &["state"],
    &["service"],
    &["error"],
    &["ws", "http"],
    &["app", "client", "demo", "cli"],
    &["fuzz", "architecture"],
];

/// The imports allowed to reach up anyway, at most one, each as (importing file under
/// `src/`, the path as written, why). None today: a module that needs something from
/// above it gets that thing moved down instead.
pub const UPWARD: &[(&str, &str, &str)] = &[];
