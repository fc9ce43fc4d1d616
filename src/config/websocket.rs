//! WebSocket tuning (`WS_*`): keep-alive, redelivery, frame and socket bounds, drain.

use std::time::Duration;

use super::vars::{parse_size, ConfigError, Vars};

/// WebSocket tuning (SPEC §2.2, §3).
#[derive(Debug, Clone)]
pub struct WsConfig {
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub ack_timeout: Duration,
    pub max_redeliveries: u32,
    pub max_frame: usize,
    pub max_sockets_per_user: usize,
    pub drain_period: Duration,
    /// `WS_ADMISSION_RECHECK` (default 60 s): how often open sockets' admission is read
    /// again from the database, so a change made by any means takes effect.
    pub admission_recheck: Duration,
}

/// The WebSocket section.
pub(super) fn read<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<WsConfig, ConfigError> {
    let ws = WsConfig {
        ping_interval: vars.duration("WS_PING_INTERVAL", Duration::from_secs(54))?,
        idle_timeout: vars.duration("WS_IDLE_TIMEOUT", Duration::from_secs(60))?,
        ack_timeout: vars.duration("WS_ACK_TIMEOUT", Duration::from_secs(10))?,
        max_redeliveries: vars.number("WS_MAX_REDELIVERIES", 5, |_| true, "a whole number")?,
        max_frame: match vars.get("WS_MAX_FRAME") {
            None => 4096,
            Some(v) => parse_size(&v)
                .filter(|n| (128..=16 * 1024 * 1024).contains(n))
                .ok_or_else(|| {
                    ConfigError::new(
                        "WS_MAX_FRAME",
                        format!(
                            "expected a size from 128 B to 16 MiB like 4096 or 4KiB, got {v:?}"
                        ),
                    )
                })?,
        },
        max_sockets_per_user: vars.number(
            "WS_MAX_SOCKETS_PER_USER",
            5,
            |n| *n >= 1,
            "a whole number of at least 1",
        )?,
        drain_period: vars.duration("WS_DRAIN_PERIOD", Duration::from_secs(10))?,
        admission_recheck: vars.duration("WS_ADMISSION_RECHECK", Duration::from_secs(60))?,
    };
    if ws.idle_timeout <= ws.ping_interval {
        return Err(ConfigError::new(
            "WS_IDLE_TIMEOUT",
            "must be longer than WS_PING_INTERVAL, or answered pings could not keep a socket alive",
        ));
    }
    Ok(ws)
}
