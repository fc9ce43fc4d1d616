//! The mini-program SDK (`sdk/miniprogram`, built to `dist/`) in Node under its `wx`
//! stand-in (`test/harness.js`), against real replicas: exactly-once handling through
//! replica deaths, drains and restarts (Redis) and network drops (both engines), in-band
//! token refresh, 4003 stopping, dedup across an app restart, and backoff. Needs
//! `npm ci && npm run build` in `sdk/miniprogram` (scripts/test.sh runs it).

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use locallife::auth::Tokens;
use locallife::domain::{Role, UserId};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, Mutex};

use crate::support::{
    spawn_app_with, spawn_cluster_with, use_engine, EngineKind, Replica, TestApp,
};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/miniprogram");

/// The SDK's harness process; token requests are answered with fresh tokens of `user`.
struct Sdk {
    _child: tokio::process::Child,
    stdin: Arc<Mutex<tokio::process::ChildStdin>>,
    lines: mpsc::UnboundedReceiver<Value>,
}

impl Sdk {
    fn start(backends: &[String], tokens: Tokens, user: UserId, ttl: Duration) -> Sdk {
        assert!(
            std::path::Path::new(DIR).join("dist/index.js").exists(),
            "run `npm ci && npm run build` in sdk/miniprogram first (scripts/test.sh does)"
        );
        let mut child = tokio::process::Command::new("node")
            .arg(format!("{DIR}/test/harness.js"))
            .arg(backends.join(","))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node is installed");
        let stdin = Arc::new(Mutex::new(child.stdin.take().unwrap()));
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let (tx, lines) = mpsc::unbounded_channel();
        let answer = stdin.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                let v: Value = serde_json::from_str(&line).unwrap();
                if v["kind"] == "need_token" {
                    let token = tokens.mint_with_ttl(user, ttl).token;
                    let cmd = json!({"cmd": "token", "token": token}).to_string() + "\n";
                    let _ = answer.lock().await.write_all(cmd.as_bytes()).await;
                }
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Sdk {
            _child: child,
            stdin,
            lines,
        }
    }

    async fn cmd(&self, cmd: Value) {
        let line = cmd.to_string() + "\n";
        self.stdin
            .lock()
            .await
            .write_all(line.as_bytes())
            .await
            .unwrap();
    }

    /// The next line within `within`, if any.
    async fn next_within(&mut self, within: Duration) -> Option<Value> {
        tokio::time::timeout(within, self.lines.recv())
            .await
            .ok()
            .flatten()
    }

    /// Reads lines until one matches `pred` (within `within`), handing every line read
    /// to `seen` first.
    async fn until(
        &mut self,
        within: Duration,
        mut seen: impl FnMut(&Value),
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = self
                .next_within(left)
                .await
                .unwrap_or_else(|| panic!("nothing matching within {within:?}"));
            seen(&v);
            if pred(&v) {
                return v;
            }
        }
    }

    async fn state(&mut self) -> Value {
        self.cmd(json!({"cmd": "state"})).await;
        self.until(Duration::from_secs(5), |_| {}, |v| v["kind"] == "state")
            .await
    }
}

fn is_event(v: &Value, ty: &str) -> bool {
    v["kind"] == "event" && v["type"] == ty
}

/// Counts of handled notifications, by title.
#[derive(Default)]
struct Handled(HashMap<String, usize>);

impl Handled {
    fn see(&mut self, v: &Value) {
        if v["kind"] == "handled" {
            *self
                .0
                .entry(v["title"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }

    fn assert_exactly_once(&self, titles: &[String]) {
        let missing: Vec<_> = titles.iter().filter(|t| !self.0.contains_key(*t)).collect();
        assert!(missing.is_empty(), "never handled: {missing:?}");
        let twice: Vec<_> = self.0.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "handled more than once: {twice:?}");
        assert_eq!(self.0.len(), titles.len(), "handled: {:?}", self.0);
    }
}

/// Publishes `titles` to `user` through `app`, one every `every`, on a task of its own.
fn stream(
    app: Arc<TestApp>,
    user: UserId,
    titles: Vec<String>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for t in titles {
            app.publish(user, &t).await;
            tokio::time::sleep(every).await;
        }
    })
}

/// Two replica processes on Redis: one SIGKILLed and started again, the other drained
/// (SIGTERM) and started again, while 60 notifications stream in. Each is handled once,
/// none is missing, and the client never held two sockets.
#[tokio::test]
async fn exactly_once_while_replicas_are_killed_drained_and_restarted() {
    let peer = Arc::new(
        spawn_cluster_with(1, |env| {
            env.insert("WS_ACK_TIMEOUT".into(), "2s".into());
        })
        .await
        .remove(0),
    );
    let extra = [("WS_ACK_TIMEOUT", "2s"), ("WS_DRAIN_PERIOD", "1s")];
    let mut replicas = [
        Replica::start(&peer, &extra).await,
        Replica::start(&peer, &extra).await,
    ];
    let backends: Vec<String> = replicas.iter().map(|r| r.address.clone()).collect();
    let (user, _) = peer.socket_user(Role::Merchant).await;
    let mut sdk = Sdk::start(
        &backends,
        Tokens::new(&peer.config.jwt),
        user,
        Duration::from_secs(3600),
    );
    let mut handled = Handled::default();
    sdk.until(
        Duration::from_secs(15),
        |v| handled.see(v),
        |v| is_event(v, "open"),
    )
    .await;

    let titles: Vec<String> = (0..60).map(|i| format!("n{i}")).collect();
    let publisher = stream(
        peer.clone(),
        user,
        titles.clone(),
        Duration::from_millis(100),
    );
    for (i, signal) in [(0usize, "-KILL"), (1, "-TERM")] {
        // Let some arrive, then the fault, then the replica comes back on its port.
        sdk.until(
            Duration::from_secs(30),
            |v| handled.see(v),
            |v| v["kind"] == "handled",
        )
        .await;
        replicas[i].signal(signal);
        let _ = tokio::time::timeout(Duration::from_secs(15), replicas[i].child.wait()).await;
        let port: u16 = backends[i].rsplit(':').next().unwrap().parse().unwrap();
        let again = Replica::spawn(&peer.db.url, &peer.config.redis_key_prefix, port, &extra);
        again.wait_ready().await;
        replicas[i] = again;
    }
    publisher.await.unwrap();
    // Everything handled, then quiet long enough for any repeat (redelivery after the
    // 2 s ack timeout, a replay) to show.
    while handled.0.len() < titles.len() {
        sdk.until(
            Duration::from_secs(30),
            |v| handled.see(v),
            |v| v["kind"] == "handled",
        )
        .await;
    }
    while let Some(v) = sdk.next_within(Duration::from_secs(5)).await {
        handled.see(&v);
    }
    handled.assert_exactly_once(&titles);
    let state = sdk.state().await;
    assert_eq!(state["state"], "open", "{state}");
    assert_eq!(state["max_open"], 1, "never two sockets at once: {state}");
    // All acked: nothing waits in the inbox.
    assert!(peer.state.engine().inbox(user).await.unwrap().is_empty());
}

/// `host:port` of an in-process app.
fn host(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// One replica per engine; `WS_ACK_TIMEOUT` short so that redelivery shows quickly.
async fn app(kind: EngineKind) -> Arc<TestApp> {
    Arc::new(
        spawn_app_with(|env| {
            use_engine(env, kind);
            env.insert("WS_ACK_TIMEOUT".into(), "1s".into());
        })
        .await,
    )
}

async fn sdk_for(app: &TestApp, role: Role, ttl: Duration) -> (UserId, Sdk) {
    let (user, _) = app.socket_user(role).await;
    let sdk = Sdk::start(&[host(app)], Tokens::new(&app.config.jwt), user, ttl);
    (user, sdk)
}

/// The network drops the socket twice, and the app goes to the background and comes
/// back, while 40 notifications stream in: each is handled once. A handler that throws
/// is not acked: its notification comes back and is handled then.
async fn exactly_once_through_network_drops_and_a_throwing_handler(kind: EngineKind) {
    let app = app(kind).await;
    let (user, mut sdk) = sdk_for(&app, Role::Merchant, Duration::from_secs(3600)).await;
    let mut handled = Handled::default();
    sdk.until(
        Duration::from_secs(15),
        |v| handled.see(v),
        |v| is_event(v, "open"),
    )
    .await;
    sdk.cmd(json!({"cmd": "fail_next", "n": 1})).await;
    let titles: Vec<String> = (0..40).map(|i| format!("m{i}")).collect();
    let publisher = stream(app.clone(), user, titles.clone(), Duration::from_millis(50));
    let threw = sdk
        .until(
            Duration::from_secs(15),
            |v| handled.see(v),
            |v| v["kind"] == "threw",
        )
        .await;
    for fault in ["drop", "hide", "drop"] {
        sdk.until(
            Duration::from_secs(15),
            |v| handled.see(v),
            |v| v["kind"] == "handled",
        )
        .await;
        sdk.cmd(json!({"cmd": fault})).await;
        if fault == "hide" {
            sdk.until(
                Duration::from_secs(15),
                |v| handled.see(v),
                |v| is_event(v, "close"),
            )
            .await;
            sdk.cmd(json!({"cmd": "show"})).await;
        }
    }
    publisher.await.unwrap();
    while handled.0.len() < titles.len() {
        sdk.until(
            Duration::from_secs(20),
            |v| handled.see(v),
            |v| v["kind"] == "handled",
        )
        .await;
    }
    while let Some(v) = sdk.next_within(Duration::from_secs(3)).await {
        handled.see(&v);
    }
    handled.assert_exactly_once(&titles);
    assert!(
        handled.0.contains_key(threw["title"].as_str().unwrap()),
        "the notification whose handler threw came back"
    );
    assert_eq!(sdk.state().await["max_open"], 1);
}

/// Tokens that live 4 s, kept fresh in-band (`auth`) for 20 s: no reconnect, and the
/// socket still delivers at the end.
async fn a_short_token_is_refreshed_in_band_without_reconnecting(kind: EngineKind) {
    let app = app(kind).await;
    let (user, mut sdk) = sdk_for(&app, Role::Merchant, Duration::from_secs(4)).await;
    sdk.until(Duration::from_secs(15), |_| {}, |v| is_event(v, "open"))
        .await;
    let mut refreshes = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Some(v) = sdk
        .next_within(until.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        assert!(!is_event(&v, "close"), "the socket closed: {v}");
        if v["kind"] == "need_token" {
            refreshes += 1;
        }
    }
    assert!(refreshes >= 4, "{refreshes} token refreshes in 20 s");
    app.publish(user, "still here").await;
    sdk.until(
        Duration::from_secs(5),
        |_| {},
        |v| v["kind"] == "handled" && v["title"] == "still here",
    )
    .await;
    assert_eq!(sdk.state().await["opened"], 1, "one socket all along");
}

/// A rider who is not admitted (not approved) is closed with 4003 in-band: the SDK
/// reports it and stops, until `connect()` is called again.
async fn not_admitted_4003_stops_until_connect(kind: EngineKind) {
    let app = app(kind).await;
    let (rider, _) = app.user_with_role("unapproved-rider", Role::Rider).await;
    let mut sdk = Sdk::start(
        &[host(&app)],
        Tokens::new(&app.config.jwt),
        rider,
        Duration::from_secs(3600),
    );
    let stopped = sdk
        .until(Duration::from_secs(15), |_| {}, |v| is_event(v, "stopped"))
        .await;
    assert_eq!(stopped["code"], 4003, "{stopped}");
    assert!(
        stopped["reason"]
            .as_str()
            .unwrap()
            .contains("rider_not_approved"),
        "{stopped}"
    );
    // Nothing more: no token asked for, no connect.
    while let Some(v) = sdk.next_within(Duration::from_secs(3)).await {
        assert_ne!(v["kind"], "need_token", "connected again after 4003: {v}");
    }
    let state = sdk.state().await;
    assert_eq!(
        (state["state"].as_str(), state["opened"].as_u64()),
        (Some("stopped"), Some(1))
    );
    sdk.cmd(json!({"cmd": "connect"})).await;
    let again = sdk
        .until(Duration::from_secs(15), |_| {}, |v| is_event(v, "stopped"))
        .await;
    assert_eq!(again["code"], 4003);
}

/// Handled, its ack lost, the app restarted (a new client, the same storage): the
/// notification the server delivers again is not handed to the handler again, and is
/// acked, so it leaves the inbox.
async fn a_notification_handled_before_an_app_restart_is_not_handled_again(kind: EngineKind) {
    let app = app(kind).await;
    let (user, mut sdk) = sdk_for(&app, Role::Merchant, Duration::from_secs(3600)).await;
    sdk.until(Duration::from_secs(15), |_| {}, |v| is_event(v, "open"))
        .await;
    sdk.cmd(json!({"cmd": "lose_acks", "value": true})).await;
    app.publish(user, "once").await;
    let mut handled = Handled::default();
    sdk.until(
        Duration::from_secs(10),
        |v| handled.see(v),
        |v| v["kind"] == "handled",
    )
    .await;
    assert_eq!(app.state.engine().inbox(user).await.unwrap().len(), 1);
    sdk.cmd(json!({"cmd": "lose_acks", "value": false})).await;
    sdk.cmd(json!({"cmd": "restart"})).await;
    sdk.until(
        Duration::from_secs(15),
        |v| handled.see(v),
        |v| is_event(v, "open"),
    )
    .await;
    // Replayed on connect, recognised, acked: the inbox empties.
    app.until_inbox(user, 0, "the repeat is acked").await;
    while let Some(v) = sdk.next_within(Duration::from_secs(2)).await {
        handled.see(&v);
    }
    handled.assert_exactly_once(&["once".to_owned()]);
}

/// Against an address where nothing listens: reconnect delays grow (full jitter, with
/// the random draw pinned near 1 so each delay is its ceiling), and the app coming to
/// the foreground cuts the wait.
#[tokio::test]
async fn backoff_grows_and_app_show_cuts_the_wait() {
    let app = app(EngineKind::Memory).await;
    let nowhere = format!("127.0.0.1:{}", crate::support::free_port());
    let (user, _) = app.socket_user(Role::Merchant).await;
    let mut sdk = Sdk::start(
        &[nowhere],
        Tokens::new(&app.config.jwt),
        user,
        Duration::from_secs(3600),
    );
    sdk.cmd(json!({"cmd": "random", "value": 0.999})).await;
    let mut delays = Vec::new();
    while delays.len() < 5 {
        let v = sdk
            .until(
                Duration::from_secs(30),
                |_| {},
                |v| is_event(v, "reconnecting"),
            )
            .await;
        delays.push(v["delay_ms"].as_u64().unwrap());
    }
    // The first may come before the pinned draw: from the second on, each doubles.
    for w in delays[1..].windows(2) {
        assert!(w[1] > w[0] * 3 / 2, "delays grow: {delays:?}");
    }
    // The next wait is long (the sixth: about 16 s); the app shows: a connect at once.
    let v = sdk
        .until(
            Duration::from_secs(30),
            |_| {},
            |v| is_event(v, "reconnecting"),
        )
        .await;
    assert!(v["delay_ms"].as_u64().unwrap() >= 8_000, "{v}");
    sdk.cmd(json!({"cmd": "show"})).await;
    sdk.until(
        Duration::from_secs(2),
        |_| {},
        |v| v["kind"] == "need_token",
    )
    .await;
}

on_both_engines!(
    exactly_once_through_network_drops_and_a_throwing_handler,
    a_short_token_is_refreshed_in_band_without_reconnecting,
    not_admitted_4003_stops_until_connect,
    a_notification_handled_before_an_app_restart_is_not_handled_again,
);

/// `requestSubscriptions` (a merchant taps "notify me of new orders"): it asks WeChat
/// for the templates the server names for the events given, and reports each answer;
/// an accept adds one send, a reject none.
#[tokio::test]
async fn the_subscription_helper_asks_for_the_named_templates_and_reports_the_answers() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        r#"{"order.paid": {"template_id": "TPL_PAID", "data": {"thing1": "{title}"}},
            "order.urged": {"template_id": "TPL_URGE", "data": {"thing1": "{title}"}},
            "platform.notice": {"template_id": "TPL_NOTICE", "data": {"thing1": "{title}"}}}"#,
    )
    .unwrap();
    let path = file.path().display().to_string();
    let app = spawn_app_with(|env| {
        env.insert("WECHAT_SUBSCRIBE_FILE".into(), path);
    })
    .await;
    let (user, mut sdk) = sdk_for(&app, Role::Merchant, Duration::from_secs(3600)).await;
    for round in 1..=2 {
        sdk.cmd(
            json!({"cmd": "subscribe", "answers": {"TPL_URGE": "reject"},
                       "events": ["order.paid", "order.urged"]}),
        )
        .await;
        let done = sdk
            .until(
                Duration::from_secs(10),
                |_| {},
                |v| v["kind"] == "subscribed" || v["kind"] == "subscribe_failed",
            )
            .await;
        assert_eq!(done["kind"], "subscribed", "{done}");
        assert_eq!(done["prompts"][round - 1], json!(["TPL_PAID", "TPL_URGE"]));
        assert_eq!(
            done["results"],
            json!([{"template_id": "TPL_PAID", "answer": "accept", "remaining": round},
                   {"template_id": "TPL_URGE", "answer": "reject", "remaining": 0}])
        );
    }
    let token = Tokens::new(&app.config.jwt).mint(user).token;
    let (status, list) = app.get("/v1/me/subscriptions", Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(
        list[0],
        json!({"template_id": "TPL_NOTICE", "remaining": 0, "events": ["platform.notice"]})
    );
    assert_eq!(list[1]["remaining"], 2);
}
