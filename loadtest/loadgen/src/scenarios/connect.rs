//! `loadgen connect`: opens the sockets, reports the connect rate, holds them idle
//! (bench.sh reads the server's memory and CPU meanwhile).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::clients::{connect_all, load_users, Common, Tally};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 10)]
    hold_secs: u64,
}

pub async fn run(Args { common, hold_secs }: Args) -> anyhow::Result<Value> {
    let (_, users) = load_users(&common)?;
    let tally = Arc::new(Tally::default());
    let secs = connect_all(&common, common.server, &users, &tally, false).await?;
    println!(
        "{}",
        json!({"event": "connected", "sockets": users.len(), "connect_s": secs})
    );
    tokio::time::sleep(Duration::from_secs(hold_secs)).await;
    Ok(json!({
        "sockets": users.len(),
        "connect_s": secs,
        "connect_rate_per_s": users.len() as f64 / secs,
        "closed_while_idle": tally.closed.load(Ordering::Relaxed),
    }))
}
