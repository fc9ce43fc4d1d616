//! TLS to PostgreSQL (SPEC §5 `DATABASE_URL`): `sslmode=require`/`verify-full` means a
//! verified TLS connection, never plaintext. Tested against a private instance of the
//! local PostgreSQL started here with a certificate made here (the shared server is
//! left as it is).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use secrecy::SecretString;

use locallife::config::{DatabaseConfig, PgTls};

/// A PostgreSQL server of this test's own, with TLS on: its data directory, the CA that
/// signed its certificate (for `localhost` only), and its port.
struct TlsPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    ca: PathBuf,
    port: u16,
}

fn postgres_bin() -> Option<PathBuf> {
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    if dir.join("initdb").exists() {
        return Some(dir);
    }
    // Debian's pg_config may come from a newer client package than the server.
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

fn as_postgres(bin: &Path, tool: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--"]).arg(bin.join(tool));
    cmd
}

/// Runs `pg_ctl` to its end. Its output goes to the server's log file, never to a pipe:
/// the server it starts would hold a pipe open for its whole life.
fn pg_ctl(dir: &Path, bin: &Path, args: &[&str]) -> bool {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("pg_ctl.out"))
        .unwrap();
    as_postgres(bin, "pg_ctl")
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-l")
        .arg(dir.join("log"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .is_ok_and(|s| s.success())
}

impl TlsPostgres {
    /// `None` (and a note) where this cannot run: not root, or no server binaries.
    fn start() -> Option<Self> {
        use std::os::unix::fs::{chown, PermissionsExt};
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("pg_tls: skipped: starting a private PostgreSQL needs root");
            return None;
        }
        let Some(bin) = postgres_bin() else {
            eprintln!("pg_tls: skipped: no PostgreSQL server binaries");
            return None;
        };
        let uid = id("-u")?;
        let gid = id("-g")?;
        let dir = tempfile::Builder::new()
            .prefix("locallife-pgtls-")
            .tempdir()
            .unwrap();
        chown(dir.path(), Some(uid), Some(gid)).unwrap();

        // A CA, and a server certificate for localhost only (not 127.0.0.1).
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca_cert, &ca_key)
            .unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca_cert.pem()).unwrap();
        for (name, text) in [
            ("server.crt", server.pem()),
            ("server.key", key.serialize_pem()),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            chown(&path, Some(uid), Some(gid)).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }

        let initdb = as_postgres(&bin, "initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(dir.path().join("data"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(initdb.status.success(), "initdb: {initdb:?}");
        let port = crate::support::free_port();
        let options = format!(
            "-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c ssl=on \
             -c ssl_cert_file={sock}/server.crt -c ssl_key_file={sock}/server.key",
            sock = dir.path().display()
        );
        assert!(
            pg_ctl(
                dir.path(),
                &bin,
                &["-w", "-t", "30", "-o", &options, "start"]
            ),
            "pg_ctl start failed"
        );
        Some(TlsPostgres {
            dir,
            bin,
            ca: ca_path,
            port,
        })
    }

    fn config(&self, host: &str, query: &str, tls: PgTls) -> DatabaseConfig {
        DatabaseConfig {
            url: SecretString::from(format!(
                "postgres://postgres@{host}:{}/postgres{query}",
                self.port
            )),
            pool_size: 1,
            tls,
        }
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        pg_ctl(self.dir.path(), &self.bin, &["-m", "immediate", "stop"]);
    }
}

fn id(flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

/// Whether this connection is encrypted, as the server sees it; `Err` when no
/// connection could be had.
async fn connection_is_tls(config: &DatabaseConfig) -> Result<bool, String> {
    let pool = locallife::store::connect_pool(config).map_err(|e| e.to_string())?;
    let client = tokio::time::timeout(Duration::from_secs(10), pool.get())
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

/// Reads a `DATABASE_URL` as the replica does.
fn parsed(url: &str, root: Option<&Path>) -> DatabaseConfig {
    let root = root.map(|p| p.display().to_string());
    locallife::config::Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.to_owned()),
        "JWT_SECRET" => Some("0123456789abcdef0123456789abcdef".into()),
        "PGSSLROOTCERT" => root.clone(),
        _ => None,
    })
    .unwrap()
    .database
}

#[tokio::test]
async fn verify_full_connects_over_tls_and_never_falls_back_to_plaintext() {
    let Some(pg) = TlsPostgres::start() else {
        return;
    };
    let url = |host: &str, mode: &str| {
        format!(
            "postgres://postgres@{host}:{}/postgres?sslmode={mode}",
            pg.port
        )
    };

    // The certificate verifies against the test's CA: TLS, as the server sees it; the
    // pool, migrations and the LISTEN connection all go through it.
    let verified = parsed(&url("localhost", "verify-full"), Some(&pg.ca));
    assert_eq!(connection_is_tls(&verified).await, Ok(true));
    locallife::store::migrate::run(&verified)
        .await
        .expect("migrations over TLS");
    let (client, connection) = locallife::store::connect_one(&verified)
        .await
        .expect("a single connection over TLS");
    let driver = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the LISTEN connection is TLS");
    drop(client);
    let _ = driver.await;
    // `require` verifies too.
    assert_eq!(
        connection_is_tls(&parsed(&url("localhost", "require"), Some(&pg.ca))).await,
        Ok(true)
    );

    // Not signed by a trusted root (the system's): refused, not plaintext.
    let untrusted = parsed(&url("localhost", "verify-full"), None);
    assert!(connection_is_tls(&untrusted).await.is_err());
    // The certificate names localhost, not 127.0.0.1: refused.
    let wrong_host = parsed(&url("127.0.0.1", "verify-full"), Some(&pg.ca));
    assert!(connection_is_tls(&wrong_host).await.is_err());

    // Without sslmode the connection is plain, even to a server that offers TLS.
    assert_eq!(
        connection_is_tls(&pg.config("localhost", "", PgTls::Plain)).await,
        Ok(false)
    );
}

/// `sslmode=require` against a server without TLS fails rather than going plain.
#[tokio::test]
async fn require_against_a_server_without_tls_is_refused() {
    let Some(pg) = TlsPostgres::start() else {
        return;
    };
    // The same server with TLS switched off.
    let options = format!(
        "-p {} -k {} -c listen_addresses=127.0.0.1 -c ssl=off",
        pg.port,
        pg.dir.path().display()
    );
    assert!(
        pg_ctl(
            pg.dir.path(),
            &pg.bin,
            &["-w", "-t", "30", "-o", &options, "restart"]
        ),
        "pg_ctl restart failed"
    );
    let plain = pg.config("localhost", "", PgTls::Plain);
    assert_eq!(connection_is_tls(&plain).await, Ok(false));
    let required = pg.config(
        "localhost",
        "",
        PgTls::Verified {
            root_cert: Some(pg.ca.clone()),
        },
    );
    assert!(connection_is_tls(&required).await.is_err());
}
