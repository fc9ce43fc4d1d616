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
        let port = free_port();
        let mut cmd = binary_listening(&peer.db.url, port);
        cmd.env("REDIS_URL", crate::helpers::redis_url())
            .env("REDIS_KEY_PREFIX", &peer.config.redis_key_prefix)
            .env("RUST_LOG", "warn")
            .arg("serve");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("the binary starts");
        let replica = Replica {
            child,
            address: format!("127.0.0.1:{port}"),
        };
        replica.wait_ready().await;
        replica
    }

    pub async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.address);
        let http = reqwest::Client::new();
        tokio::time::timeout(Duration::from_secs(30), async {
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
        .expect("the replica becomes ready");
    }

    pub async fn ws(&self, token: &str) -> WsClient {
        let url = format!("ws://{}/v1/ws?token={token}", self.address);
        WsClient::connect(url.into_client_request().unwrap())
            .await
            .unwrap_or_else(|r| panic!("refused: {r:?}"))
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal} {pid}");
    }
}

/// A redis-server of this test's own, on its own port, with nothing on disk.
pub struct OwnRedis {
    child: Child,
}

impl OwnRedis {
    /// Sends `signal` (`-STOP`, `-CONT`) to the server.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal} {pid}");
    }
}

impl OwnRedis {
    pub async fn start(port: u16) -> OwnRedis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
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
