//! The `locallife` binary itself: commands print only what they promise, and bad
//! configuration stops start-up with one line naming the variable.

use std::process::Output;

use serde_json::Value;
use tokio::process::Command;

use crate::support::{binary, eventually, free_port, spawn_app, TestDatabase};

fn command(db_url: &str) -> Command {
    let mut cmd = binary(db_url);
    cmd.env("RUST_LOG", "warn");
    cmd
}

async fn run(mut cmd: Command, args: &[&str]) -> Output {
    cmd.args(args).output().await.expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn user_create_prints_only_the_id_and_is_repeatable() {
    let db = TestDatabase::create().await;
    let out = run(
        command(&db.url),
        &["user", "create", "--openid", "ops-1", "--role", "platform"],
    )
    .await;
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let printed = stdout(&out);
    let id: i64 = printed
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not an id: {printed:?}"));
    assert_eq!(printed, format!("{id}\n"));

    let again = run(
        command(&db.url),
        &["user", "create", "--openid", "ops-1", "--role", "platform"],
    )
    .await;
    assert_eq!(stdout(&again), printed);

    let bad = run(
        command(&db.url),
        &["user", "create", "--openid", "ops-2", "--role", "admin"],
    )
    .await;
    assert!(!bad.status.success());
    assert!(stdout(&bad).is_empty());
}

#[tokio::test]
async fn a_minted_token_works_on_the_running_service() {
    let app = spawn_app().await;
    let created = run(
        command(&app.db.url),
        &["user", "create", "--openid", "ops-3", "--role", "platform"],
    )
    .await;
    assert!(created.status.success(), "stderr: {}", stderr(&created));
    let id = stdout(&created).trim().to_owned();

    let out = run(
        command(&app.db.url),
        &["token", "--user-id", &id, "--ttl", "30m"],
    )
    .await;
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let printed = stdout(&out);
    let token = printed.trim_end();
    assert_eq!(printed, format!("{token}\n"), "only the token is printed");

    let (_, claims) = app.tokens.verify(token).expect("a valid token");
    assert_eq!(claims.exp - claims.iat, 1800);
    let (status, me) = app.get("/v1/me", Some(token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["id"].to_string(), id);
    assert_eq!(me["roles"], serde_json::json!(["platform"]));
}

#[tokio::test]
async fn token_for_an_unknown_user_fails() {
    let app = spawn_app().await;
    let out = run(command(&app.db.url), &["token", "--user-id", "424242"]).await;
    assert!(!out.status.success());
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains("no user with id 424242"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn concurrent_migrate_commands_all_succeed() {
    let db = TestDatabase::create().await;
    let runs = (0..4).map(|_| run(command(&db.url), &["migrate"]));
    for out in futures::future::join_all(runs).await {
        assert!(out.status.success(), "stderr: {}", stderr(&out));
    }
    let rows = db
        .client()
        .await
        .query(
            "SELECT version, count(*) FROM refinery_schema_history GROUP BY version",
            &[],
        )
        .await
        .unwrap();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r.get::<_, i64>(1) == 1));
}

/// Start-up with one bad variable: non-zero exit, one line naming it, no secret echoed.
async fn refused(db: &TestDatabase, var: &str, value: Option<&str>) -> String {
    let mut cmd = command(&db.url);
    cmd.env("LISTEN_ADDR", "127.0.0.1:0")
        .env("METRICS_ADDR", "127.0.0.1:0");
    match value {
        Some(v) => cmd.env(var, v),
        None => cmd.env_remove(var),
    };
    let out = run(cmd, &["serve"]).await;
    assert!(!out.status.success(), "{var}: serve should refuse to start");
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{var}: expected one line, got {err:?}");
    assert!(lines[0].contains(var), "{var} is not named in {err:?}");
    err
}

#[tokio::test]
async fn bad_configuration_stops_start_up_with_one_line() {
    let db = TestDatabase::create().await;
    refused(&db, "JWT_SECRET", None).await;
    let short = refused(&db, "JWT_SECRET", Some("too-short-secret")).await;
    assert!(!short.contains("too-short-secret"));
    refused(&db, "DATABASE_URL", None).await;
    refused(&db, "WS_PING_INTERVAL", Some("fast")).await;
    refused(&db, "WECHAT_APPID", Some("wx-appid-without-secret")).await;
    refused(&db, "LOG_FORMAT", Some("yaml")).await;
}

#[tokio::test]
async fn serve_migrates_then_answers_and_exits_zero_on_sigterm() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let mut child = command(&db.url)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("WS_DRAIN_PERIOD", "1s")
        .arg("serve")
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/readyz");
    // Wait for readiness (an event), bounded.
    let ready = eventually(
        std::time::Duration::from_secs(20),
        "the replica becomes ready",
        async || match http.get(&url).send().await {
            Ok(r) if r.status() == 200 => Some(r.json::<Value>().await.unwrap()),
            _ => None,
        },
    )
    .await;
    assert_eq!(ready["checks"]["postgres"], "ok");

    let pid = child.id().unwrap() as i32;
    // Through the `kill` command, which keeps this test free of unsafe code.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
}

/// `locallife user revoke` on a Redis deployment: the user's socket admitted through
/// that role (their only one) closes with 4003 within 5 s, and the role is gone; a
/// role the user does not have is an error.
#[tokio::test]
async fn user_revoke_takes_the_role_from_open_sockets() {
    let app = crate::support::spawn_app_on(crate::support::EngineKind::Redis).await;
    let (user, token) = app
        .user_with_role("revoked-staff", locallife::domain::Role::Platform)
        .await;
    let mut socket = app.ws_ok(&token).await;
    let mut cmd = command(&app.db.url);
    cmd.env("REDIS_URL", crate::support::redis_url())
        .env("REDIS_KEY_PREFIX", &app.config.redis_key_prefix);
    let out = run(
        cmd,
        &[
            "user",
            "revoke",
            "--user-id",
            &user.0.to_string(),
            "--role",
            "platform",
        ],
    )
    .await;
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let code = tokio::time::timeout(std::time::Duration::from_secs(5), socket.closed_with())
        .await
        .expect("closed within 5 s");
    assert_eq!(code, 4003);
    assert_eq!(
        app.get("/v1/me", Some(&token)).await.1["roles"],
        serde_json::json!([])
    );

    let again = run(
        command(&app.db.url),
        &[
            "user",
            "revoke",
            "--user-id",
            &user.0.to_string(),
            "--role",
            "platform",
        ],
    )
    .await;
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("does not have"),
        "{}",
        stderr(&again)
    );
}
