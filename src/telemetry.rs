//! Logs and metrics.
//!
//! **Logs**: tracing to stderr, human-readable or JSON (`LOG_FORMAT`), filtered by
//! `RUST_LOG` (default `info`). Every line passes through [`Redact`] before it is
//! written: anything shaped like an access token (`eyJ...` JWTs, the value after
//! `token=`, after `Bearer `) is replaced by `[REDACTED]`. Our own code never logs a
//! token, URI query or header; the redaction is for the lines we do not write
//! ourselves (a dependency at trace level, a panic message).
//!
//! **Metrics**: one Prometheus recorder per process, every metric named `locallife_*`,
//! with low-cardinality labels only (never a user, order or token); served as text on
//! `METRICS_ADDR` `/metrics`.

use std::io::{self, Write};
use std::sync::OnceLock;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber once; later calls (tests build many apps) are no-ops.
pub fn init(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Passed on so that disabled levels cost nothing: without a hint the global maximum
    // stays at TRACE, and every `log` record of the libraries (a few per frame) would be
    // built, bridged and filtered out one by one.
    let max = filter
        .max_level_hint()
        .unwrap_or(tracing_subscriber::filter::LevelFilter::TRACE);
    let pinned =
        tracing_subscriber::filter::filter_fn(|meta| allowed(meta.target(), *meta.level()))
            .with_max_level_hint(max);
    let layer = tracing_subscriber::fmt::layer().with_writer(|| Redact::new(io::stderr()));
    let layer = match format {
        LogFormat::Json => layer.json().flatten_event(true).boxed(),
        LogFormat::Pretty => layer.boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter).with_filter(pinned))
        .try_init();
}

/// Libraries whose debug and trace output carries what must never be logged (query
/// parameters, frames, Redis commands with their arguments): held at `info` whatever
/// `RUST_LOG` says.
pub const PINNED: [&str; 5] = [
    "tokio_postgres",
    "tungstenite",
    "tokio_tungstenite",
    "fred",
    "reqwest",
];

/// Whether an event of `target` at `level` may be logged at all: not below `info` for
/// [`PINNED`] libraries (and their modules), whatever `RUST_LOG` enables.
pub fn allowed(target: &str, level: tracing::Level) -> bool {
    let pinned = PINNED.iter().any(|p| {
        target
            .strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    });
    !(pinned && level > tracing::Level::INFO)
}

/// A writer that holds one log event and writes it redacted when dropped (the
/// subscriber makes one writer per event).
pub struct Redact<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> Redact<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(256),
        }
    }
}

impl<W: Write> Write for Redact<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let line = redact(&String::from_utf8_lossy(&self.buf));
            self.buf.clear();
            self.inner.write_all(line.as_bytes())?;
        }
        self.inner.flush()
    }
}

impl<W: Write> Drop for Redact<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '%' | '+' | '/' | '=')
}

/// Replaces token-shaped text with `[REDACTED]`.
pub fn redact(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    loop {
        // Where the earliest secret value starts: a JWT itself, or what follows
        // `token=` or `Bearer `.
        let value_start = [
            rest.find("eyJ"),
            rest.find("token=").map(|i| i + "token=".len()),
            find_ignore_case(rest, "bearer ").map(|i| i + "bearer ".len()),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(start) = value_start else {
            out.push_str(rest);
            return out;
        };
        let len = rest[start..]
            .find(|c: char| !token_char(c))
            .unwrap_or(rest.len() - start);
        out.push_str(&rest[..start]);
        if len > 0 {
            out.push_str("[REDACTED]");
        }
        // Progress is certain: a marker is at least three bytes long.
        rest = &rest[start + len..];
    }
}

fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// A stage a notification that needs an ack passes through, timed from its decision
/// (its message id's clock): `locallife_notification_stage_seconds{stage}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Written to the user's inbox in Redis (on the publishing replica; for business
    /// events this includes the outbox relay).
    Stored,
    /// Arrived over pub/sub on the replica holding a socket of the user.
    Received,
    // Written and flushed to the socket is `locallife_delivery_latency_seconds`, the
    // same measurement: recorded once, there.
    /// Acked by the client, or confirmed by its Pong (protocol 1).
    Confirmed,
}

impl Stage {
    fn label(self) -> &'static str {
        match self {
            Stage::Stored => "stored",
            Stage::Received => "received",
            Stage::Confirmed => "confirmed",
        }
    }
}

/// Records that a notification decided at `decided_ms` (Unix ms) reached `stage` now.
pub fn stage(stage: Stage, decided_ms: u64) {
    stage_at(stage, decided_ms, crate::time::unix_ms());
}

/// [`stage`] with the time already read.
pub fn stage_at(stage: Stage, decided_ms: u64, now_ms: u64) {
    metrics::histogram!("locallife_notification_stage_seconds", "stage" => stage.label())
        .record(now_ms.saturating_sub(decided_ms) as f64 / 1000.0);
}

/// The process's Prometheus recorder, installed on first use.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let buckets = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0,
        ];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may exist already (a test harness); ours still renders.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

/// HELP text for every metric, so the exposition passes `promtool check metrics`.
fn describe() {
    describe_histogram!(
        "locallife_notification_stage_seconds",
        Unit::Seconds,
        "Time from a notification's decision to each stage: stored (in the Redis inbox), received (by the replica holding the socket), confirmed (ack or Pong); written to the socket is locallife_delivery_latency_seconds."
    );
    describe_counter!(
        "locallife_wechatpay_answers_refused_total",
        "Answers from WeChat Pay's API refused because their signature, key id or timestamp did not verify."
    );
    describe_counter!(
        "locallife_http_connections_refused_total",
        "HTTP connections answered 503 and closed because MAX_CONNECTIONS were open."
    );
    describe_counter!(
        "locallife_http_connections_timed_out_total",
        "HTTP connections closed for sending their request headers too slowly (reason=headers) or sitting idle (reason=idle)."
    );
    describe_counter!(
        "locallife_socket_release_failures_total",
        "Closed sockets whose per-user place could not be given back in Redis at once; each is tried again every second until it is."
    );
    describe_counter!(
        "locallife_http_accept_errors_total",
        "Failed accepts (out of file descriptors, say), each followed by a short back-off."
    );
    describe_gauge!(
        "locallife_ws_sockets",
        "Open WebSocket sockets on this replica, by role."
    );
    describe_counter!(
        "locallife_ws_connects_total",
        "WebSocket connection attempts, by result (accepted or the refusal code)."
    );
    describe_counter!(
        "locallife_ws_server_closes_total",
        "Sockets closed by the server, by close code."
    );
    describe_counter!(
        "locallife_ws_slow_disconnects_total",
        "Sockets closed because they could not keep up."
    );
    describe_counter!(
        "locallife_messages_sent_total",
        "Messages written to sockets, by type."
    );
    describe_counter!(
        "locallife_notifications_published_total",
        "Notifications published, by event."
    );
    describe_counter!("locallife_acks_total", "Acks received from clients.");
    describe_counter!(
        "locallife_redeliveries_total",
        "Notifications sent again on a live socket because no ack came in time, by protocol (only protocol 2 redelivers)."
    );
    describe_counter!(
        "locallife_inbox_expired_total",
        "Notifications dropped undelivered because their ttl passed."
    );
    describe_counter!(
        "locallife_inbox_dropped_total",
        "Notifications dropped because a user's inbox was full."
    );
    describe_histogram!(
        "locallife_delivery_latency_seconds",
        Unit::Seconds,
        "Publish to socket write, for live notifications."
    );
    describe_histogram!(
        "locallife_pubsub_lag_seconds",
        Unit::Seconds,
        "Publish to arrival on this replica."
    );
    describe_counter!(
        "locallife_pubsub_dropped_total",
        "Pub/sub messages lost because dispatch fell behind."
    );
    describe_histogram!(
        "locallife_redis_canary_rtt_seconds",
        Unit::Seconds,
        "Round trip of this replica's pub/sub canary (published to itself every second)."
    );
    describe_histogram!(
        "locallife_redis_wait_seconds",
        Unit::Seconds,
        "WAIT for REDIS_MIN_REPLICAS_ACK replicas to confirm inbox writes (one WAIT covers every write before it)."
    );
    describe_counter!(
        "locallife_redis_wait_short_total",
        "WAITs that timed out with fewer replicas than REDIS_MIN_REPLICAS_ACK (the writes were refused, 503)."
    );
    describe_counter!(
        "locallife_pubsub_resubscribes_total",
        "Subscriber connections made again because canaries stopped coming back while Redis answered."
    );
    describe_counter!(
        "locallife_http_requests_total",
        "HTTP requests, by method, route template and status."
    );
    describe_histogram!(
        "locallife_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request duration, by method and route template."
    );
    describe_counter!(
        "locallife_redis_errors_total",
        "Failed Redis operations and health checks."
    );
    describe_counter!(
        "locallife_postgres_errors_total",
        "Failed PostgreSQL operations and health checks."
    );
    describe_histogram!(
        "locallife_drain_duration_seconds",
        Unit::Seconds,
        "Time to close every socket on shutdown."
    );
    describe_counter!(
        "locallife_webhook_refused_total",
        "Payment notifications refused, by reason."
    );
    describe_counter!(
        "locallife_alerts_dropped_total",
        "System alerts dropped because the alert queue was full."
    );
    describe_counter!(
        "locallife_alerts_suppressed_total",
        "System alerts suppressed by the per-kind rate limit."
    );
    describe_gauge!(
        "locallife_outbox_pending",
        "Outbox rows decided but not yet published (all replicas)."
    );
    describe_gauge!(
        "locallife_outbox_oldest_seconds",
        Unit::Seconds,
        "Age of the oldest unpublished outbox row (0 when none)."
    );
    describe_histogram!(
        "locallife_outbox_lag_seconds",
        Unit::Seconds,
        "From an outbox row's commit to its publication."
    );
    describe_counter!(
        "locallife_outbox_retries_total",
        "Outbox rows put back because Redis refused them."
    );
    describe_counter!(
        "locallife_outbox_failed_total",
        "Outbox rows that can never be published (marked failed with a reason)."
    );
    describe_counter!(
        "locallife_outbox_expired_total",
        "Outbox rows whose ttl passed before they could be published."
    );
    describe_counter!(
        "locallife_rate_limited_total",
        "Requests answered 429 by the request rate limits, by what was over its quota (kind: user, address)."
    );
    describe_counter!(
        "locallife_admission_rechecks_total",
        "Rounds of re-reading the open sockets' admission from the database."
    );
    describe_counter!(
        "locallife_ws_roles_revoked_total",
        "Roles taken from open sockets (suspended, offline, revoked), by role."
    );
    describe_counter!(
        "locallife_logouts_total",
        "Logouts: each refuses the user's older tokens and closes their sockets (4001)."
    );
    describe_counter!(
        "locallife_receipts_written_total",
        "Receipt marks (delivered, acked, withdrawn) written, in batches."
    );
    describe_counter!(
        "locallife_receipts_dropped_total",
        "Receipt marks or rows lost (queue full, or PostgreSQL refused the batch)."
    );
    describe_counter!(
        "locallife_offers_withdrawn_total",
        "Order recommendations taken back from riders who did not take the order."
    );
    describe_counter!(
        "locallife_confirmations_total",
        "Notifications confirmed by clients, by protocol and kind (ping: a Pong to a \
         Ping written after them, protocol 1; ack)."
    );
    describe_counter!(
        "locallife_task_panics_total",
        "Background tasks that panicked, by task."
    );
    describe_counter!(
        "locallife_task_restarts_total",
        "Supervised background tasks restarted after a panic, by task."
    );
    describe_gauge!(
        "locallife_tasks_alive",
        "Tokio tasks alive in this replica's runtime (background tasks, sessions, requests), sampled at each scrape."
    );
}

/// Figures of the Tokio runtime, set just before a scrape renders: the tasks alive
/// (every background task, socket session and request in flight), whose growth under
/// steady load would be a leak.
pub fn sample_runtime() {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        metrics::gauge!("locallife_tasks_alive").set(runtime.metrics().num_alive_tasks() as f64);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pinned_libraries_never_log_below_info() {
        use tracing::Level;
        for target in [
            "tokio_postgres",
            "tokio_postgres::query",
            "tungstenite::protocol",
            "fred::router",
        ] {
            assert!(!super::allowed(target, Level::DEBUG), "{target}");
            assert!(!super::allowed(target, Level::TRACE), "{target}");
            assert!(super::allowed(target, Level::INFO), "{target}");
        }
        assert!(super::allowed("locallife::ws", Level::TRACE));
        assert!(super::allowed("tokio_postgresql_lookalike", Level::DEBUG));
    }

    use super::*;
    use proptest::prelude::*;

    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI3In0.abc-_DEF123";

    #[test]
    fn tokens_are_redacted_wherever_they_appear() {
        for line in [
            format!("GET /v1/ws?token={JWT} HTTP/1.1"),
            format!("uri=/v1/ws?x=1&token={JWT}&y=2"),
            format!("authorization: Bearer {JWT}"),
            "authorization: bearer opaque-token-value".to_string(),
            format!("{{\"message\":\"{JWT}\"}}"),
            "token=short".to_string(),
        ] {
            let out = redact(&line);
            assert!(!out.contains(JWT), "{out}");
            assert!(
                !out.contains("opaque-token-value") && !out.contains("=short"),
                "{out}"
            );
            assert!(out.contains("[REDACTED]"), "{out}");
        }
    }

    #[test]
    fn ordinary_lines_are_untouched() {
        for line in [
            "request method=GET route=/v1/ws status=101 latency_ms=0.4",
            "the token is missing",
            "token=",
            "bearer ",
            "",
        ] {
            assert_eq!(redact(line), line);
        }
    }

    proptest! {
        #[test]
        fn redaction_never_panics_and_removes_embedded_jwts(prefix in ".{0,40}", suffix in "[ ,;\"}]{1}.{0,40}") {
            let line = format!("{prefix}{JWT}{suffix}");
            let out = redact(&line);
            prop_assert!(!out.contains(JWT));
        }
    }
}
