//! One integration-test binary: every test starts the real application on port 0 with
//! a fresh PostgreSQL database of its own. See `helpers.rs`.

mod cli;
mod cluster;
mod delivery;
mod fake_pay;
mod fake_wechat;
mod flows;
mod health;
mod helpers;
mod login;
mod me;
mod migrations;
mod ops;
mod process;
mod ws;
mod ws_client;
