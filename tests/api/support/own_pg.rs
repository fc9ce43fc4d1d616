//! PostgreSQL of a test's own, for tests that stop or fail over the database itself: a
//! primary and a synchronous streaming standby made from it (`pg_basebackup -R`), in a
//! temporary directory, on free ports, trust authentication on 127.0.0.1. Their guard
//! stops both and removes the directory, also when the test fails (and then prints the
//! end of each server's log). The shared server is never touched.
//!
//! The binaries are PostgreSQL's (`initdb`, `pg_ctl`, `pg_basebackup`): in `PG_BIN`, or
//! the newest `/usr/lib/postgresql/*/bin`. Run as root, they run as the `postgres` OS
//! user, since initdb and postgres refuse root.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use crate::support::db::TestDatabase;
use crate::support::eventually::eventually;
use crate::support::processes::stable_port;

/// The tools this module runs.
const TOOLS: [&str; 3] = ["initdb", "pg_ctl", "pg_basebackup"];

/// A primary and its synchronous standby.
pub struct PgPair {
    bin: PathBuf,
    /// Run the tools through `runuser -u postgres` (we are root).
    as_postgres: bool,
    pub primary: u16,
    pub standby: u16,
    dir: tempfile::TempDir,
}

/// Where PostgreSQL's server binaries are: `PG_BIN`, or the newest version under
/// `/usr/lib/postgresql`, if it has every tool.
fn binaries() -> Option<PathBuf> {
    let has_tools = |dir: &Path| TOOLS.iter().all(|t| dir.join(t).is_file());
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Some(PathBuf::from(dir)).filter(|d| has_tools(d));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_tools(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

impl PgPair {
    /// Starts a primary and a standby streaming from it synchronously, and waits until
    /// the standby confirms commits. Without PostgreSQL's binaries: a panic naming them
    /// in CI (`CI=true`), elsewhere `None` and a line on stderr (the test is skipped).
    pub async fn start() -> Option<PgPair> {
        let as_postgres = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        let missing = match binaries() {
            None => Some(
                "PostgreSQL's server binaries (initdb, pg_ctl, pg_basebackup) are neither in \
                 PG_BIN nor in /usr/lib/postgresql/*/bin; scripts/services.sh installs them"
                    .to_owned(),
            ),
            Some(_) if as_postgres && !user_exists("postgres") => Some(
                "running as root, but there is no `postgres` OS user to run initdb and \
                 postgres as (Debian's postgresql package makes one)"
                    .to_owned(),
            ),
            Some(_) => None,
        };
        if let Some(why) = missing {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{why}");
            }
            eprintln!("skipped: {why}");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("locallife-pg.")
            .tempdir()
            .unwrap();
        let pair = PgPair {
            bin: binaries().unwrap(),
            as_postgres,
            primary: stable_port(),
            standby: stable_port(),
            dir,
        };
        if as_postgres {
            let chowned = std::process::Command::new("chown")
                .arg("postgres:")
                .arg(pair.dir.path())
                .status()
                .unwrap();
            assert!(chowned.success(), "chown postgres: {:?}", pair.dir.path());
        }
        pair.start_primary().await;
        pair.start_standby().await;
        Some(pair)
    }

    fn data(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    async fn start_primary(&self) {
        let data = self.data("primary");
        self.run(
            "initdb",
            &[
                "-D",
                path(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
        )
        .await;
        append(
            &data.join("postgresql.conf"),
            &format!(
                "port = {}\n\
                 listen_addresses = '127.0.0.1'\n\
                 unix_socket_directories = '{}'\n\
                 wal_level = replica\n\
                 max_wal_senders = 4\n\
                 # A test's server: what a crash of the machine would lose is not tested.\n\
                 fsync = off\n\
                 # Each COMMIT waits until the standby has flushed it: a promoted standby\n\
                 # has every transaction the primary answered.\n\
                 synchronous_standby_names = '*'\n",
                self.primary,
                self.dir.path().display()
            ),
        );
        append(
            &data.join("pg_hba.conf"),
            "host replication all 127.0.0.1/32 trust\n",
        );
        self.pg_ctl_start("primary").await;
    }

    async fn start_standby(&self) {
        let data = self.data("standby");
        let port = self.primary.to_string();
        self.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                path(&data),
                "-R",
                "-X",
                "stream",
            ],
        )
        .await;
        // Promoted, it has no standby of its own: it must not wait for one.
        append(
            &data.join("postgresql.conf"),
            &format!("port = {}\nsynchronous_standby_names = ''\n", self.standby),
        );
        self.pg_ctl_start("standby").await;
        let primary = self.admin(self.primary).await;
        eventually(
            Duration::from_secs(20),
            "the standby streams and confirms commits",
            async || {
                let row = primary
                    .query_one(
                        "SELECT count(*) FROM pg_stat_replication
                         WHERE state = 'streaming' AND sync_state = 'sync'",
                        &[],
                    )
                    .await
                    .ok()?;
                (row.get::<_, i64>(0) == 1).then_some(())
            },
        )
        .await;
    }

    async fn pg_ctl_start(&self, name: &str) {
        let (data, log) = (self.data(name), self.log(name));
        self.run(
            "pg_ctl",
            &["-D", path(&data), "-l", path(&log), "-w", "start"],
        )
        .await;
    }

    /// The service's role and database `locallife`, made on the primary, reached the
    /// way a replica reaches a primary that may fail over: one URL naming both servers,
    /// of which the driver keeps the one that takes writes.
    pub async fn database(&self) -> TestDatabase {
        let admin = self.admin(self.primary).await;
        // One statement each: CREATE DATABASE refuses to run in a transaction.
        for statement in [
            "CREATE ROLE locallife LOGIN PASSWORD 'locallife'",
            "CREATE DATABASE locallife OWNER locallife",
        ] {
            admin.batch_execute(statement).await.unwrap();
        }
        let url = format!(
            "postgres://locallife:locallife@127.0.0.1:{},127.0.0.1:{}/locallife\
             ?target_session_attrs=read-write",
            self.primary, self.standby
        );
        TestDatabase::on_own_server("locallife", url)
    }

    /// A superuser connection to the server on `port`.
    async fn admin(&self, port: u16) -> tokio_postgres::Client {
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to the test's own server on :{port}: {e}"));
        tokio::spawn(connection);
        client
    }

    /// Stops the primary as a crash would (`pg_ctl stop -m immediate`: no checkpoint,
    /// every session cut).
    pub async fn stop_primary(&self) {
        let data = self.data("primary");
        self.run(
            "pg_ctl",
            &["-D", path(&data), "-m", "immediate", "-w", "stop"],
        )
        .await;
    }

    /// Promotes the standby and waits until it takes writes.
    pub async fn promote_standby(&self) {
        let data = self.data("standby");
        self.run("pg_ctl", &["-D", path(&data), "-w", "promote"])
            .await;
    }

    /// One of PostgreSQL's tools, run to its end; panics with its output and the end of
    /// the servers' logs if it fails.
    async fn run(&self, tool: &str, args: &[&str]) {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        };
        let out = cmd
            .args(args)
            // The postgres user may not enter the test's working directory.
            .current_dir(self.dir.path())
            .kill_on_drop(true)
            .output()
            .await
            .unwrap_or_else(|e| panic!("{tool} does not start: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed ({}): {}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tails()
        );
    }

    /// The last lines of each server's log.
    fn log_tails(&self) -> String {
        ["primary", "standby"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.log(name)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(15)..].join("\n");
                format!("--- {name}.log (end)\n{tail}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for PgPair {
    /// Stops both servers at once (whichever still runs) before the directory goes.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails());
        }
        for name in ["primary", "standby"] {
            let data = self.data(name);
            if !data.join("postmaster.pid").exists() {
                continue;
            }
            let pg_ctl = self.bin.join("pg_ctl");
            let mut cmd = if self.as_postgres {
                let mut cmd = std::process::Command::new("runuser");
                cmd.args(["-u", "postgres", "--"]).arg(pg_ctl);
                cmd
            } else {
                std::process::Command::new(pg_ctl)
            };
            let _ = cmd
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "stop"])
                .current_dir(self.dir.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("the temporary directory's path is UTF-8")
}

fn user_exists(name: &str) -> bool {
    std::process::Command::new("id")
        .arg(name)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.write_all(text.as_bytes()).unwrap();
}
