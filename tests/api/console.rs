//! `GET /console` in a real browser: Debian's Chromium, headless, driven by Playwright
//! (tests/console/drive.py). The page signs in with a platform token, counts two
//! sockets as they connect, sends an announcement they receive, and shows a receipt
//! turning `acked`. The screenshot lands in `target/console.png` (the README's copy is
//! `docs/console.png`).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::spawn_app;
use locallife::domain::Role;

const STEP: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_console_counts_sockets_sends_an_announcement_and_follows_a_receipt() {
    let app = spawn_app().await;
    let (_, staff) = app.user_with_role("console-staff", Role::Platform).await;
    let (rider_id, rider_token) = app.socket_user(Role::Rider).await;
    let (_, other_token) = app.socket_user(Role::Rider).await;

    let root = env!("CARGO_MANIFEST_DIR");
    let python = crate::support::venv().join("bin/python");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: scripts/services.sh --with-test-tools installs Debian's chromium"
    );
    let screenshot = format!("{root}/target/console.png");
    let mut driver = tokio::process::Command::new(python)
        .arg(format!("{root}/tests/console/drive.py"))
        .args([&app.url(""), &staff, &chromium, &screenshot])
        // Playwright must use the browser given, never fetch one.
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut to_page = driver.stdin.take().unwrap();
    let mut from_page = BufReader::new(driver.stdout.take().unwrap()).lines();
    let mut hear = async move |word: &str| -> Vec<String> {
        let line = tokio::time::timeout(STEP, from_page.next_line())
            .await
            .unwrap_or_else(|_| panic!("no {word} from the browser within {STEP:?}"))
            .unwrap()
            .unwrap_or_default();
        let mut parts = line.split_whitespace().map(str::to_owned);
        assert_eq!(
            parts.next().as_deref(),
            Some(word),
            "the browser said: {line}"
        );
        parts.collect()
    };

    let before: u64 = hear("READY").await[0].parse().unwrap();
    let mut rider = app.ws_ok(&rider_token).await;
    let mut other = app.ws_ok(&other_token).await;
    to_page
        .write_all(format!("CONNECTED {}\n", before + 2).as_bytes())
        .await
        .unwrap();
    hear("COUNTED").await;

    // The announcement the page sent reaches both sockets.
    let sent = hear("SENT").await;
    for socket in [&mut rider, &mut other] {
        let n = socket.next_event("announcement").await;
        assert_eq!(n["data"]["title"], "Console announcement");
        assert_eq!(n["data"]["message_id"].as_str(), Some(sent[0].as_str()));
    }

    // A notification to one rider, acked: the page shows its receipt become `acked`.
    let (status, body) = app
        .post_notification(
            &staff,
            &serde_json::json!({"user_id": rider_id.0, "title": "Receipt", "content": "look me up"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let n = rider.next_event("platform.notice").await;
    rider.ack(&n).await;
    rider.roundtrip().await;
    let message_id = body["message_id"].as_str().unwrap();
    to_page
        .write_all(format!("LOOKUP {message_id}\n").as_bytes())
        .await
        .unwrap();
    hear("DONE").await;
    let status = tokio::time::timeout(STEP, driver.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
}

#[tokio::test]
async fn the_console_is_static_and_locked_to_its_origin() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    for (path, kind) in [
        ("/console", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
    ] {
        let res = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let headers = res.headers();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind));
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("connect-src 'self'") && policy.contains("script-src 'self'"));
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
    let text = |path: &str| {
        let request = client.get(app.url(path));
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let page = text("/console").await;
    assert!(page.contains(r#"<label for="token">token</label>"#));
    let script = text("/console/console.js").await;
    for kept in ["localStorage", "sessionStorage", "document.cookie"] {
        assert!(!script.contains(kept), "the console must not use {kept}");
    }
}
