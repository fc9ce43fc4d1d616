//! Processes the tests own: the `locallife` binary (and the ports it listens on),
//! `locallife serve` replicas, redis-servers, a proxy that wedges or cuts Redis
//! connections, and the project's Python tools.

use std::time::Duration;

use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::app::{spawn_app_with, TestApp};
use crate::support::env::{redis_url, JWT_SECRET, TEST_ORDERS_UNPAID_MAX, TEST_RATE};
use crate::support::eventually::{eventually_every, within, POLL};
use crate::support::ws_client::{WsClient, WAIT};

/// A free port below the kernel's ephemeral range (32768 and up): for a server that is
/// restarted on the same port while clients come and go, whose outgoing connections
/// could otherwise take that port in between.
pub fn stable_port() -> u16 {
    loop {
        let port = 20_000 + (rand::random::<u16>() % 12_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A port that was free a moment ago: for a process to listen on, or to find nothing
/// listening there.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `locallife` binary with nothing in its environment but `PATH`, `DATABASE_URL` and
/// `JWT_SECRET`; killed when dropped.
pub fn binary(db_url: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_locallife"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db_url)
        .env("JWT_SECRET", JWT_SECRET)
        .kill_on_drop(true);
    cmd
}

/// [`binary`] set to listen on `127.0.0.1:port`, with metrics on any free port.
pub fn binary_listening(db_url: &str, port: u16) -> tokio::process::Command {
    let mut cmd = binary(db_url);
    cmd.env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("ORDERS_UNPAID_MAX", TEST_ORDERS_UNPAID_MAX)
        .env("HTTP_RATE_USER", TEST_RATE)
        .env("HTTP_RATE_ADDRESS", TEST_RATE)
        .env("HTTP_RATE_BACK_OFFICE", TEST_RATE)
        .env("HTTP_RATE_LOGIN", TEST_RATE)
        .env("MAX_CONNECTIONS_PER_ADDRESS", "4000")
        // As in base_env: the latency target has its own tests.
        .env("PUBLISH_TARGET_LATENCY", "off");
    cmd
}

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
        cmd.env("REDIS_URL", redis_url())
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

    /// Whether `/readyz` answers 200 within `limit`.
    pub async fn ready_within(&self, limit: Duration) -> bool {
        let url = format!("http://{}/readyz", self.address);
        let http = reqwest::Client::new();
        within(limit, POLL, async || {
            let answer = http.get(&url).send().await;
            answer.is_ok_and(|r| r.status() == 200).then_some(())
        })
        .await
        .is_some()
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
    /// Its working directory (a replica's full sync writes an RDB file there).
    _dir: tempfile::TempDir,
}

impl OwnRedis {
    /// Sends `signal` (`-STOP`, `-CONT`) to the server.
    pub fn signal(&self, signal: &str) {
        send_signal(&self.child, signal);
    }

    /// A server of its own and an app using it; the server's port.
    pub async fn with_app() -> (OwnRedis, TestApp, u16) {
        let port = stable_port();
        let redis = OwnRedis::start(port).await;
        let app = spawn_app_with(|env| {
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

    /// A replica of the server on `primary`, with nothing on disk.
    pub async fn start_replica_of(port: u16, primary: u16) -> OwnRedis {
        let primary = primary.to_string();
        Self::start_with(
            port,
            &[
                "--save",
                "",
                "--appendonly",
                "no",
                "--replicaof",
                "127.0.0.1",
                &primary,
            ],
        )
        .await
    }

    /// A server answering TLS only, on `port`, with the certificate and key files in `dir`
    /// (`server.pem`, `server.key`); clients need no certificate of their own.
    pub async fn start_tls(port: u16, dir: &std::path::Path) -> OwnRedis {
        let file = |name: &str| dir.join(name).display().to_string();
        Self::start_with_ports(
            &["--port", "0", "--tls-port", &port.to_string()],
            port,
            &[
                "--save",
                "",
                "--appendonly",
                "no",
                "--tls-cert-file",
                &file("server.pem"),
                "--tls-key-file",
                &file("server.key"),
                "--tls-ca-cert-file",
                &file("ca.pem"),
                "--tls-auth-clients",
                "no",
            ],
        )
        .await
    }

    async fn start_with(port: u16, options: &[&str]) -> OwnRedis {
        Self::start_with_ports(&["--port", &port.to_string()], port, options).await
    }

    async fn start_with_ports(ports: &[&str], port: u16, options: &[&str]) -> OwnRedis {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(ports)
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir.path())
            .args(options)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (scripts/services.sh installs it)");
        let redis = OwnRedis { child, _dir: dir };
        eventually_every(
            WAIT,
            Duration::from_millis(20),
            "redis-server listens",
            async || {
                let connected = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
                connected.is_ok().then_some(())
            },
        )
        .await;
        // A port another test's server took between the caller's check and this start
        // would look like ours: the server that answers must be this process.
        let mut redis = redis;
        assert!(
            matches!(redis.child.try_wait(), Ok(None)),
            "redis-server on port {port} exited at once (port taken?)"
        );
        let info = std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string(), "INFO", "server"])
            .output();
        if let (Ok(info), Some(pid)) = (info, redis.child.id()) {
            let text = String::from_utf8_lossy(&info.stdout);
            if text.contains("process_id:") {
                assert!(
                    text.contains(&format!("process_id:{pid}\r")),
                    "port {port} is answered by another redis-server than the one started"
                );
            }
        }
        redis
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

/// A TCP proxy in front of a Redis that can wedge pub/sub: after
/// [`WedgeProxy::wedge_subscribers`], every connection that had subscribed stays open but
/// passes nothing more from Redis to the client, as a failover that strands a
/// subscription does; other connections, and new ones, pass everything. It can also cut
/// connections: the subscribers at once ([`WedgeProxy::cut_subscribers`]), or the ones
/// that send a given SUBSCRIBE ([`WedgeProxy::cut_subscribes_of`]).
pub struct WedgeProxy {
    pub port: u16,
    connections: std::sync::Arc<std::sync::Mutex<Vec<std::sync::Arc<ProxiedConnection>>>>,
    /// A connection that sends a SUBSCRIBE naming this is cut, this many times more.
    cut_on: std::sync::Arc<std::sync::Mutex<Option<(String, usize)>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct ProxiedConnection {
    subscribed: std::sync::atomic::AtomicBool,
    wedged: std::sync::atomic::AtomicBool,
    cut: tokio_util::sync::CancellationToken,
}

impl WedgeProxy {
    pub async fn start(upstream: u16) -> WedgeProxy {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections: std::sync::Arc<std::sync::Mutex<Vec<_>>> = Default::default();
        let cut_on: std::sync::Arc<std::sync::Mutex<Option<(String, usize)>>> = Default::default();
        let (registry, cuts) = (connections.clone(), cut_on.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    continue;
                };
                let state = std::sync::Arc::new(ProxiedConnection::default());
                registry.lock().unwrap().push(state.clone());
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let (up, cuts) = (state.clone(), cuts.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = tokio::select! {
                            Ok(n @ 1..) = client_read.read(&mut buf) => n,
                            _ = up.cut.cancelled() => break,
                            else => break,
                        };
                        let text = String::from_utf8_lossy(&buf[..n]).to_ascii_uppercase();
                        if text.contains("SUBSCRIBE") {
                            up.subscribed.store(true, Ordering::Relaxed);
                            if let Some((needle, left @ 1..)) = &mut *cuts.lock().unwrap() {
                                if text.contains(needle.as_str()) {
                                    *left -= 1;
                                    up.cut.cancel();
                                    break;
                                }
                            }
                        }
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = tokio::select! {
                            Ok(n @ 1..) = server_read.read(&mut buf) => n,
                            _ = state.cut.cancelled() => break,
                            else => break,
                        };
                        if state.wedged.load(Ordering::Relaxed) {
                            continue;
                        }
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        WedgeProxy {
            port,
            connections,
            cut_on,
            task,
        }
    }

    /// Calls `f` on every open connection that has subscribed so far; how many.
    fn subscribers(&self, f: impl Fn(&ProxiedConnection)) -> usize {
        use std::sync::atomic::Ordering;
        let connections = self.connections.lock().unwrap();
        let subscribers = connections
            .iter()
            .filter(|c| c.subscribed.load(Ordering::Relaxed) && !c.cut.is_cancelled());
        subscribers.map(|c| f(c)).count()
    }

    /// Strands every connection that has subscribed so far; how many.
    pub fn wedge_subscribers(&self) -> usize {
        self.subscribers(|c| c.wedged.store(true, std::sync::atomic::Ordering::Relaxed))
    }

    /// Closes every connection that has subscribed so far; how many.
    pub fn cut_subscribers(&self) -> usize {
        self.subscribers(|c| c.cut.cancel())
    }

    /// The next `times` connections that send a SUBSCRIBE naming `needle` (matched
    /// without regard to case) are closed instead of passing it on.
    pub fn cut_subscribes_of(&self, needle: &str, times: usize) {
        *self.cut_on.lock().unwrap() = Some((needle.to_ascii_uppercase(), times));
    }

    /// How many of the cuts asked for are still to come.
    pub fn cuts_left(&self) -> usize {
        self.cut_on.lock().unwrap().as_ref().map_or(0, |c| c.1)
    }
}

impl Drop for WedgeProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The project's Python tools (scripts/venv.sh, created on first use): schemathesis,
/// openapi-spec-validator, Playwright.
pub fn venv() -> std::path::PathBuf {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(format!("{root}/scripts/venv.sh"))
        .output()
        .expect("scripts/venv.sh runs");
    assert!(
        out.status.success(),
        "scripts/venv.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
