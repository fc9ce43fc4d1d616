//! `loadgen rig start`: one server of a run (a locallife replica, or the Socket.IO
//! peer) on a free port, started and waited for: the script gets its pid and ports
//! only once it answers its readiness path, and the server keeps running after this
//! command exits (the script kills it).

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;

#[derive(clap::Args)]
pub struct Args {
    /// Where the server's stdout and stderr go (appended).
    #[arg(long)]
    log: std::path::PathBuf,
    /// The path that answers 2xx once the server is ready.
    #[arg(long, default_value = "/readyz")]
    ready: String,
    /// Give METRICS_ADDR a free port too (otherwise port 0: any).
    #[arg(long)]
    metrics: bool,
    /// The port to listen on (default: a free one), e.g. a replica restarted where its
    /// clients will reconnect.
    #[arg(long)]
    port: Option<u16>,
    /// Seconds to wait for readiness.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// The server's command line.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// A port no one listens on, below the kernel's ephemeral range (32768 and up), which
/// the generators' thousands of client sockets use: a port picked there could be taken
/// between this check and the server's start.
fn free_port(taken: &[u16]) -> anyhow::Result<u16> {
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let port = rng.gen_range(20000..32000);
        if !taken.contains(&port) && TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port in 20000..32000")
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let port = match args.port {
        Some(port) => port,
        None => free_port(&[])?,
    };
    let metrics = if args.metrics { free_port(&[port])? } else { 0 };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log)
        .with_context(|| format!("cannot open {}", args.log.display()))?;
    let (program, rest) = args.command.split_first().context("no command to start")?;
    let mut child = std::process::Command::new(program)
        .args(rest)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("METRICS_ADDR", format!("127.0.0.1:{metrics}"))
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let url = format!("http://127.0.0.1:{port}{}", args.ready);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let until = Instant::now() + Duration::from_secs(args.timeout_secs);
    loop {
        if matches!(http.get(&url).send().await, Ok(r) if r.status().is_success()) {
            break;
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "{program} exited ({status}) before {url} answered; its log: {}",
                args.log.display()
            );
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "{url} never answered in {} s; the log: {}",
                args.timeout_secs,
                args.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("{} {port} {metrics}", child.id());
    Ok(())
}
