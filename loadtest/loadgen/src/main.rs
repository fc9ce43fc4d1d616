//! `loadgen`: many real WebSocket clients against locallife or the Socket.IO peer, for
//! the benchmarks `loadtest/bench.sh` runs. One process stays under the open-file limit
//! (run several, with different `--src` addresses, for more sockets); every scenario
//! prints one JSON object of figures on stdout.
//!
//! Protocols: `locallife` (`/v1/ws?token=`, `welcome`, `notification`, `ack`) and
//! `socketio` (Engine.IO 4 over a raw WebSocket: `0{..}` open, `40{auth}` connect,
//! `42["notification",{..}]`, `42["ack",{"id":..}]`, `2`/`3` heartbeat).
//!
//! # Layout
//!
//! `main` parses the command line and hands it to one of [`scenarios`] (one file per
//! command), which use [`clients`] (the sockets and what they saw), [`publish`] (the
//! requests that publish), [`figures`] (clock, percentiles, waits), [`users`] (the
//! users file `seed` writes) and [`answers`] (every answer a load got, to a file).
//! [`rig`] (`loadgen rig ...`) is no scenario: it is the set-up
//! the load scripts share (servers started on free ports and waited for, CPU samples,
//! figures read from results), called by `scripts/lib/rig.sh`.

mod answers;
mod clients;
mod figures;
mod publish;
mod rig;
mod scenarios;
mod users;

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create approved online riders and a platform user; write their tokens.
    Seed(scenarios::seed::Args),
    /// Open sockets, report the connect rate, hold them idle.
    Connect(scenarios::connect::Args),
    /// Publish personal notifications on another replica; count acked deliveries.
    Personal(scenarios::personal::Args),
    /// One role announcement to every socket, several rounds.
    Broadcast(scenarios::broadcast::Args),
    /// Unacked notifications, a killed replica, reconnect elsewhere, redelivery.
    Storm(scenarios::storm::Args),
    /// Twice the capacity, then half: what is accepted, refused, and the recovery.
    Overload(scenarios::overload::Args),
    /// Steady mixed load on several replicas: sockets coming and going, publishes,
    /// orders paid through WeChat Pay notifications.
    Soak(scenarios::soak::Args),
    /// The load scripts' set-up: start a server and wait for it, sample CPU, read figures.
    #[command(subcommand)]
    Rig(rig::Command),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let out = match Cli::parse().command {
        // No JSON of figures of its own: each rig command prints what the script reads.
        Command::Rig(command) => return rig::run(command).await,
        Command::Seed(args) => scenarios::seed::run(args).await?,
        Command::Connect(args) => scenarios::connect::run(args).await?,
        Command::Personal(args) => scenarios::personal::run(args).await?,
        Command::Broadcast(args) => scenarios::broadcast::run(args).await?,
        Command::Storm(args) => scenarios::storm::run(args).await?,
        Command::Overload(args) => scenarios::overload::run(args).await?,
        Command::Soak(args) => scenarios::soak::run(args).await?,
    };
    println!("{out}");
    Ok(())
}
