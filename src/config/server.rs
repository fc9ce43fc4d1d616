//! The replica's listeners (`LISTEN_ADDR`, `METRICS_ADDR`) and its logs (`LOG_FORMAT`;
//! `RUST_LOG` is read by the log filter itself).

use std::net::SocketAddr;

use super::vars::{ConfigError, Vars};

/// Where each log line goes and how it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Where the replica listens.
pub(super) struct Listeners {
    /// `LISTEN_ADDR`: the HTTP API and WebSocket.
    pub(super) listen_addr: SocketAddr,
    /// `METRICS_ADDR`: Prometheus `/metrics`.
    pub(super) metrics_addr: SocketAddr,
}

/// The listeners section.
pub(super) fn listeners<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<Listeners, ConfigError> {
    Ok(Listeners {
        listen_addr: vars.addr("LISTEN_ADDR", "0.0.0.0:8080")?,
        metrics_addr: vars.addr("METRICS_ADDR", "0.0.0.0:9090")?,
    })
}

/// The logs section.
pub(super) fn log_format<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<LogFormat, ConfigError> {
    match vars.or("LOG_FORMAT", "pretty").trim() {
        "pretty" => Ok(LogFormat::Pretty),
        "json" => Ok(LogFormat::Json),
        other => Err(ConfigError::new(
            "LOG_FORMAT",
            format!("expected json or pretty, got {other:?}"),
        )),
    }
}
