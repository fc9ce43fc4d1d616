//! Operations: Prometheus metrics from real traffic (checked by `promtool`), logs that
//! never hold a token, and `locallife demo` printing commands that work as printed.

use std::process::Stdio;
use std::time::Duration;

use locallife::domain::Role;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use crate::support::{
    binary_listening, eventually, eventually_every, free_port, spawn_app_on, EngineKind,
    TestDatabase, JWT_SECRET,
};

#[tokio::test]
async fn metrics_show_real_traffic_and_pass_promtool() {
    let app = spawn_app_on(EngineKind::Redis).await;
    let (_, staff) = app.socket_user(Role::Platform).await;
    let (rider, token) = app.socket_user(Role::Rider).await;
    let mut socket = app.ws_ok(&token).await;
    let _ = app.ws("not-a-token").await;
    let (status, _) = app
        .post_notification(
            &staff,
            &json!({"user_id": rider.0, "title": "t", "content": "c"}),
        )
        .await;
    assert_eq!(status, 202);
    let n = socket.next_notification().await;
    socket.ack(&n).await;
    socket.roundtrip().await;
    assert_eq!(app.get("/v1/orders/1", Some(&staff)).await.0, 404);

    let text = app.metrics_text().await;
    for expected in [
        "locallife_ws_sockets{role=\"rider\"}",
        "locallife_ws_connects_total{result=\"accepted\"}",
        "locallife_ws_connects_total{result=\"unauthorized\"}",
        "locallife_messages_sent_total{type=\"welcome\"}",
        "locallife_messages_sent_total{type=\"notification\"}",
        "locallife_messages_sent_total{type=\"pong\"}",
        "locallife_notifications_published_total{event=\"platform.notice\"}",
        "locallife_acks_total",
        "locallife_delivery_latency_seconds_bucket",
        "locallife_pubsub_lag_seconds_bucket",
        "locallife_notification_stage_seconds_bucket{stage=\"stored\"",
        "locallife_notification_stage_seconds_bucket{stage=\"received\"",
        "locallife_notification_stage_seconds_bucket{stage=\"confirmed\"",
        "route=\"/v1/platform/notifications\"",
        "route=\"/v1/orders/{id}\"",
        "locallife_http_request_duration_seconds_bucket",
        "# HELP locallife_acks_total",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    // Written to the socket is recorded once, as the delivery latency.
    assert!(
        !text.contains("stage=\"written\""),
        "written is the delivery latency"
    );
    // Low cardinality: no ids, no tokens.
    assert!(!text.contains(&token) && !text.contains(&staff));
    assert!(!text.contains("/v1/orders/1\""), "routes are templates");
    // Label names are a fixed, small set; none identifies a user, order or token.
    for line in text.lines().filter(|l| l.starts_with("locallife_")) {
        let Some(labels) = line.split_once('{').map(|(_, rest)| rest) else {
            continue;
        };
        for pair in labels.split("\",") {
            let key = pair
                .split('=')
                .next()
                .unwrap_or_default()
                .trim_start_matches(',');
            assert!(
                [
                    "role", "result", "type", "event", "code", "method", "route", "status",
                    "reason", "le", "task", "protocol", "kind", "stage", "cap"
                ]
                .contains(&key),
                "unexpected label {key:?} in {line}"
            );
        }
    }

    // The exposition format itself, as Prometheus' own linter sees it.
    let promtool = std::process::Command::new("promtool")
        .arg("--version")
        .output();
    if promtool.is_err() {
        assert!(
            std::env::var("REQUIRE_PROMTOOL").is_err(),
            "promtool is required (Debian package prometheus)"
        );
        eprintln!("promtool not installed: exposition lint skipped");
        return;
    }
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .await
        .unwrap();
    let out = check.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The binary with every crate at trace level, JSON logs to a pipe.
#[tokio::test]
async fn no_token_appears_in_any_log_line() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let mut child = binary_listening(&db.url, port)
        .env("REDIS_URL", crate::support::redis_url())
        .env("REDIS_KEY_PREFIX", crate::support::unique_prefix())
        .env("WS_DRAIN_PERIOD", "200ms")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "trace")
        .arg("serve")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all).await;
        all
    });
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(30), "ready", async || {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .ok()
            .map(drop)
    })
    .await;

    let pool = locallife::store::connect_pool(&locallife::config::DatabaseConfig {
        url: secrecy::SecretString::from(db.url.clone()),
        pool_size: 1,
        tls: locallife::config::PgTls::Plain,
    })
    .unwrap();
    let user = locallife::store::users::ensure_with_role(&pool, "ops", Role::Platform)
        .await
        .unwrap();
    let tokens = locallife::auth::Tokens::new(&locallife::config::JwtConfig {
        secret: secrecy::SecretString::from(JWT_SECRET.to_owned()),
        issuer: "locallife".into(),
        audience: "locallife".into(),
        access_token_ttl: Duration::from_secs(600),
    });
    let token = tokens.mint(user).token;
    let expired = tokens.mint_with_ttl(user, Duration::ZERO).token;
    let forged = format!("{}x", &token[..token.len() - 1]);

    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let ws = |t: &str| format!("ws://127.0.0.1:{port}/v1/ws?token={t}");
    let mut socket = crate::support::WsClient::connect(ws(&token).into_client_request().unwrap())
        .await
        .expect("admitted");
    socket.send_text("{not json").await;
    socket.roundtrip().await;
    let _ = crate::support::WsClient::connect(ws(&forged).into_client_request().unwrap()).await;
    let _ = crate::support::WsClient::connect(ws(&expired).into_client_request().unwrap()).await;
    let me = http
        .get(format!("{base}/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let _ = http
        .get(format!("{base}/v1/me"))
        .bearer_auth(&forged)
        .send()
        .await;
    drop(socket);

    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
    let logs = logs.await.unwrap();
    assert!(logs.lines().count() > 20, "trace logging produced output");
    for secret in [&token, &forged, &expired, JWT_SECRET] {
        // The signature part alone must not appear either.
        let tail = &secret[secret.len() - 20..];
        assert!(!logs.contains(tail), "a token leaked into the logs");
    }
    assert!(!logs.contains(JWT_SECRET));
    let request_lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "request")
        .collect();
    assert!(
        request_lines
            .iter()
            .any(|v| v["route"] == "/v1/ws" && v["status"] == 101 && v["latency_ms"].is_number()),
        "one JSON line per request with route template, status and latency"
    );
    assert!(request_lines
        .iter()
        .any(|v| v["route"] == "/v1/me" && v["status"] == 401));
}

#[tokio::test]
async fn demo_prints_commands_that_work_as_printed() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let wechat = crate::support::fake_wechat::FakeWechat::start().await;
    let mut demo = binary_listening(&db.url, port)
        .env("RUST_LOG", "warn")
        .env("WECHAT_APPID", crate::support::fake_wechat::APPID)
        .env("WECHAT_SECRET", crate::support::fake_wechat::SECRET)
        .env("WECHAT_API_BASE", &wechat.base)
        .env("PUSH_FALLBACK_AFTER", "1s")
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line == "Ready." {
                return;
            }
            printed.push(line);
        }
        panic!("demo ended before it was ready: {printed:?}");
    })
    .await
    .expect("demo gets ready");
    let listens: Vec<&String> = printed
        .iter()
        .filter(|l| l.contains(" listen --url "))
        .collect();
    assert_eq!(listens.len(), 2, "{printed:?}");
    let order = printed
        .iter()
        .find(|l| l.starts_with("order=$(curl"))
        .expect("order command");
    let pay = printed
        .iter()
        .find(|l| l.contains(" simulate-payment "))
        .expect("payment command");

    // Run the printed lines through a shell, exactly as printed.
    let spawn = |line: &str| {
        Command::new("bash")
            .args(["-c", line])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let mut watchers = Vec::new();
    for line in &listens {
        let mut child = spawn(line);
        let out = BufReader::new(child.stdout.take().unwrap()).lines();
        watchers.push((child, out));
    }
    // Each watcher is connected once it printed its welcome.
    for (_, out) in watchers.iter_mut() {
        let first = tokio::time::timeout(Duration::from_secs(20), out.next_line())
            .await
            .expect("welcome")
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&first).unwrap()["type"],
            "welcome"
        );
    }
    let script = format!("set -e\n{order}\n{pay}\n");
    let out = Command::new("bash")
        .args(["-c", &script])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "order and payment commands: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    expect_event("order.paid", &mut watchers[0].1).await;
    expect_event("order.recommend", &mut watchers[1].1).await;

    // Step 4: the merchant's app closes; the next order.paid falls back to a WeChat
    // subscription message, and its receipt says so.
    let receipt = printed
        .iter()
        .find(|l| l.contains("/notifications -H"))
        .expect("receipt command");
    drop(watchers.remove(0));
    let out = Command::new("bash")
        .args(["-c", &format!("set -e\n{order}\n{pay}\n")])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let placed = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let script = format!("order={}\n{receipt}\n", shell_quote(&placed));
    let pushed = eventually_every(
        Duration::from_secs(30),
        Duration::from_millis(200),
        "the receipt shows pushed_at",
        async || {
            let out = Command::new("bash")
                .args(["-c", &script])
                .output()
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains("pushed_at").then_some(text)
        },
    )
    .await;
    assert!(pushed.contains("order.paid"), "{pushed}");
    let sends = wechat.accepted_sends();
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0].body["template_id"], "DEMO_TPL_ORDER_PAID");
    assert_eq!(sends[0].body["data"]["thing1"]["value"], "新订单通知");
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

async fn expect_event(
    event: &str,
    out: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = out.next_line().await.unwrap() {
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["data"]["event"] == event {
                return;
            }
        }
        panic!("watcher ended before {event}");
    })
    .await
    .unwrap_or_else(|_| panic!("no {event}"));
}
