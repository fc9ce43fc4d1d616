//! `loadgen rig cpu`: the CPU a run's servers used, sampled before and after the
//! measured part of a scenario. A process's is read from /proc (user + system ticks of
//! all its threads); a Redis server's from its own `INFO cpu` (used_cpu_user +
//! used_cpu_sys), which holds wherever Redis runs. `--user` prints user-space time
//! only (the kernel's share, its `send`s and `recv`s, is the rest).

use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(clap::Args)]
pub struct Args {
    /// A Redis server (host:port) whose CPU to add after the processes'; repeatable.
    #[arg(long)]
    redis: Vec<String>,
    /// User-space CPU only (utime; Redis's used_cpu_user).
    #[arg(long)]
    user: bool,
    /// Processes whose CPU to print, in this order.
    pids: Vec<u32>,
}

/// CPU seconds process `pid` has used in user space and in the kernel.
pub fn process_times(pid: u32) -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("no process {pid}"))?;
    // Fields after the command name, which is in parentheses and may hold spaces:
    // utime and stime are the 14th and 15th fields of the line, the 12th and 13th here.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("/proc stat without a command")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .context("/proc stat too short")?
            .parse::<u64>()
            .context("/proc stat field")
    };
    // SAFETY: sysconf only reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    anyhow::ensure!(per_second > 0, "no clock ticks per second");
    let per_second = per_second as f64;
    Ok((
        ticks(11)? as f64 / per_second,
        ticks(12)? as f64 / per_second,
    ))
}

/// CPU seconds a Redis server reports (INFO cpu: its main thread and its others): the
/// fields `keys`, added up.
async fn redis_cpu(addr: &str, keys: &[&str]) -> anyhow::Result<f64> {
    let ask = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await?;
        conn.write_all(b"INFO cpu\r\n").await?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        // A bulk string: "$<len>\r\n<text>\r\n".
        loop {
            let n = conn.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "Redis closed the connection");
            reply.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&reply);
            if let Some((head, body)) = text.split_once("\r\n") {
                let len: usize = head
                    .strip_prefix('$')
                    .context("INFO did not answer a bulk string")?
                    .parse()?;
                if body.len() >= len {
                    return Ok(body[..len].to_owned());
                }
            }
        }
    };
    let info: String = tokio::time::timeout(Duration::from_secs(5), ask)
        .await
        .context("Redis did not answer INFO in 5 s")??;
    Ok(info
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| keys.contains(k))
        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
        .sum())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for pid in &args.pids {
        let (user, system) = process_times(*pid)?;
        let cpu = if args.user { user } else { user + system };
        out.push(format!("{cpu:.6}"));
    }
    let keys: &[&str] = if args.user {
        &["used_cpu_user"]
    } else {
        &["used_cpu_sys", "used_cpu_user"]
    };
    for addr in &args.redis {
        let cpu = redis_cpu(addr, keys).await.with_context(|| addr.clone())?;
        out.push(format!("{cpu:.6}"));
    }
    println!("{}", out.join(" "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::process_times;

    #[test]
    fn reads_this_process() {
        let (user, system) = process_times(std::process::id()).expect("own /proc stat");
        assert!(user >= 0.0 && system >= 0.0);
        assert!(process_times(u32::MAX).is_err());
    }
}
