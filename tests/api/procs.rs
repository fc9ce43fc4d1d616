//! Processes the tests own: `locallife serve` replicas, and redis-servers.

use std::time::Duration;

use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{binary_listening, free_port, TestApp};
use crate::ws_client::{WsClient, WAIT};

/// A `locallife serve` process sharing `peer`'s database, Redis and prefix.
pub struct Replica {
    pub child: Child,
    pub address: String,
}

impl Replica {
    pub async fn start(peer: &TestApp, extra: &[(&str, &str)]) -> Replica {
        let replica = Self::spawn(
            &peer.db.url,
            &peer.config.redis_key_prefix,
            free_port(),
            extra,
        );
        replica.wait_ready().await;
        replica
    }

    /// A replica on `port` of database `db_url` and Redis prefix `prefix`, started but
    /// not waited for (`REDIS_URL` in `extra` overrides the shared Redis).
    pub fn spawn(db_url: &str, prefix: &str, port: u16, extra: &[(&str, &str)]) -> Replica {
        let mut cmd = binary_listening(db_url, port);
        cmd.env("REDIS_URL", crate::helpers::redis_url())
            .env("REDIS_KEY_PREFIX", prefix)
            .env("RUST_LOG", "warn")
            .arg("serve");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("the binary starts");
        Replica {
            child,
            address: format!("127.0.0.1:{port}"),
        }
    }

    pub async fn wait_ready(&self) {
        assert!(
            self.ready_within(Duration::from_secs(30)).await,
            "the replica at {} becomes ready",
            self.address
        );
    }

    /// Whether `/readyz` answers 200 within `within`.
    pub async fn ready_within(&self, within: Duration) -> bool {
        let url = format!("http://{}/readyz", self.address);
        let http = reqwest::Client::new();
        tokio::time::timeout(within, async {
            loop {
                if let Ok(r) = http.get(&url).send().await {
                    if r.status() == 200 {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .is_ok()
    }

    pub async fn ws(&self, token: &str) -> WsClient {
        let url = format!("ws://{}/v1/ws?token={token}&protocol=2", self.address);
        WsClient::connect(url.into_client_request().unwrap())
            .await
            .unwrap_or_else(|r| panic!("refused: {r:?}"))
    }

    pub fn signal(&self, signal: &str) {
        send_signal(&self.child, signal);
    }
}

/// Sends `signal` (`-KILL`, `-TERM`, `-STOP`, `-CONT`) to a running child.
fn send_signal(child: &Child, signal: &str) {
    let pid = child.id().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {signal} {pid}");
}

/// A redis-server of this test's own, on its own port, with nothing on disk.
pub struct OwnRedis {
    child: Child,
}

impl OwnRedis {
    /// Sends `signal` (`-STOP`, `-CONT`) to the server.
    pub fn signal(&self, signal: &str) {
        send_signal(&self.child, signal);
    }

    /// A server of its own and an app using it; the server's port.
    pub async fn with_app() -> (OwnRedis, TestApp, u16) {
        let port = crate::helpers::stable_port();
        let redis = OwnRedis::start(port).await;
        let app = crate::helpers::spawn_app_with(|env| {
            env.insert("REDIS_URL".into(), format!("redis://127.0.0.1:{port}"));
        })
        .await;
        (redis, app, port)
    }
}

impl OwnRedis {
    /// A server with nothing on disk: a restart starts empty.
    pub async fn start(port: u16) -> OwnRedis {
        Self::start_with(port, &["--save", "", "--appendonly", "no"]).await
    }

    /// A server that logs every write to an append-only file in `dir` (written on each
    /// write, fsynced every second): a restart after kill -9 loses nothing written.
    pub async fn start_aof(port: u16, dir: &std::path::Path) -> OwnRedis {
        let dir = dir.display().to_string();
        Self::start_with(
            port,
            &[
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--dir",
                &dir,
            ],
        )
        .await
    }

    async fn start_with(port: u16, options: &[&str]) -> OwnRedis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(options)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (scripts/services.sh installs it)");
        let redis = OwnRedis { child };
        tokio::time::timeout(WAIT, async {
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("redis-server listens");
        redis
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}
