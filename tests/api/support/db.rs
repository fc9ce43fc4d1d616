//! PostgreSQL for tests: a fresh database per test, created through the admin role of
//! `TEST_DATABASE_URL` and dropped with its guard; ones left by a killed run are swept.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::OnceCell;
use tokio_postgres::types::{FromSqlOwned, ToSql};

/// The database the tests connect to in order to create their own.
pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://locallife:locallife@127.0.0.1:5432/locallife".into())
}

async fn admin_client() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&admin_database_url(), tokio_postgres::NoTls)
        .await
        .expect("connect to TEST_DATABASE_URL (run the tests through scripts/test.sh)");
    tokio::spawn(conn);
    client
}

/// Test databases are named `ll_test_<unix seconds>_<random>`; ones left behind by a run
/// that was killed are dropped by the next run once they are an hour old.
async fn sweep_stale_databases(admin: &tokio_postgres::Client) {
    let cutoff = now_secs().saturating_sub(3600);
    let rows = admin
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'll_test_%'",
            &[],
        )
        .await
        .unwrap_or_default();
    for row in rows {
        let name: String = row.get(0);
        let born = name
            .split('_')
            .nth(2)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        if born < cutoff {
            let _ = admin
                .execute(
                    &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                    &[],
                )
                .await;
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A fresh, empty database; dropped when the guard is.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    /// Whether it is on the shared server, from which the guard drops it; one on a
    /// server of the test's own goes with that server.
    shared: bool,
}

impl TestDatabase {
    pub async fn create() -> Self {
        static SWEPT: OnceCell<()> = OnceCell::const_new();
        let admin = admin_client().await;
        SWEPT.get_or_init(|| sweep_stale_databases(&admin)).await;
        let name = format!("ll_test_{}_{:016x}", now_secs(), rand::random::<u64>());
        admin
            .execute(&format!("CREATE DATABASE \"{name}\""), &[])
            .await
            .expect("create the test database (the role needs CREATEDB)");
        let mut url = url::Url::parse(&admin_database_url()).unwrap();
        url.set_path(&format!("/{name}"));
        Self {
            name,
            url: url.to_string(),
            shared: true,
        }
    }

    /// Database `name`, reached at `url`, on a server of the test's own (which removes
    /// it when it goes): the guard leaves it alone.
    pub fn on_own_server(name: &str, url: String) -> Self {
        Self {
            name: name.to_owned(),
            url,
            shared: false,
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }

    /// The first column of the one row `sql` returns.
    pub async fn scalar<T: FromSqlOwned>(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> T {
        self.client()
            .await
            .query_one(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// Runs one statement; how many rows it touched.
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> u64 {
        self.client()
            .await
            .execute(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Drops the database now, connections and all (to simulate losing it).
    pub async fn drop_now(&self) {
        admin_client()
            .await
            .execute(
                &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
                &[],
            )
            .await
            .unwrap();
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if !self.shared {
            return;
        }
        // Drop runs inside the test's runtime, which cannot be blocked on; a short-lived
        // thread with its own runtime drops the database.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&admin_database_url(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .execute(
                            &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                            &[],
                        )
                        .await;
                }
            });
        })
        .join();
    }
}
