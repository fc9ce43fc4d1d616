//! PostgreSQL: the connection pool, migrations, and one file of queries per aggregate.
//!
//! Queries return [`StoreError`], which separates "the database is unreachable" (a
//! replica answers 503 and `/readyz` fails; retrying later helps) from "this query
//! failed" (a bug or a constraint we did not expect; 500).

pub mod admissions;
pub mod keys;
pub mod merchants;
pub mod migrate;
pub mod offers;
pub mod orders;
pub mod outbox;
pub mod payments;
pub mod receipts;
pub mod riders;
pub mod subscriptions;
pub mod suspensions;
pub mod users;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{ConfigError, DatabaseConfig, PgTls};

/// How long a request waits for a pooled connection, or for a new one to open, before
/// the database counts as unavailable.
const POOL_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had: the server is down, unreachable, or the pool is
    /// exhausted for longer than `POOL_TIMEOUT`.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The statement itself failed.
    #[error("query failed: {0}")]
    Query(tokio_postgres::Error),
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // A statement that failed inside the server carries a database error; anything
        // else (closed connection, I/O) means the server went away mid-request. Some
        // database errors say the same: the server is stopping or is a standby.
        let unavailable = match e.as_db_error() {
            Some(db) => means_unavailable(db.code()),
            None => e.is_closed() || std::error::Error::source(&e).is_some(),
        };
        if unavailable {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Query(e)
        }
    }
}

/// Whether a database error says the server cannot serve us now, rather than that the
/// statement was wrong: a `pg_ctl stop -m fast` (or a restart) ends every session with
/// FATAL 57P01 `admin_shutdown`, also in the middle of a request; a crash of another
/// backend gives 57P02; a server starting up or shutting down refuses with 57P03; a
/// server that is (or became) a standby refuses writes with 25006
/// `read_only_sql_transaction`; class 08 is a connection failure. Retrying later, or
/// on the promoted standby, helps: 503, not 500.
fn means_unavailable(code: &tokio_postgres::error::SqlState) -> bool {
    use tokio_postgres::error::SqlState;
    code.code().starts_with("08")
        || [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::READ_ONLY_SQL_TRANSACTION,
        ]
        .contains(code)
}

/// Domain states are read from their text columns here, at the boundary: a value the
/// database's CHECK constraint would not allow is a query error, not a string that
/// travels up.
macro_rules! text_column {
    ($t:ty) => {
        impl<'a> tokio_postgres::types::FromSql<'a> for $t {
            fn from_sql(
                ty: &tokio_postgres::types::Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                let text = <&str as tokio_postgres::types::FromSql>::from_sql(ty, raw)?;
                Ok(text.parse::<$t>()?)
            }

            fn accepts(ty: &tokio_postgres::types::Type) -> bool {
                <&str as tokio_postgres::types::FromSql>::accepts(ty)
            }
        }
    };
}

text_column!(crate::domain::OrderStatus);
text_column!(crate::domain::Approval);

impl StoreError {
    /// The SQLSTATE of a failed statement, to map constraint violations.
    pub fn sqlstate(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            StoreError::Query(e) => e.code(),
            StoreError::Unavailable(_) => None,
        }
    }
}

/// The TLS side of a PostgreSQL connection. Used only when `sslmode` asks for TLS
/// (`pg_config` sets the driver's mode to match); then the server's certificate must
/// verify, or the connection fails.
pub fn tls_connector(config: &DatabaseConfig) -> Result<MakeRustlsConnect, ConfigError> {
    let root_cert = match &config.tls {
        PgTls::Plain => None,
        PgTls::Verified { root_cert } => root_cert.as_deref(),
    };
    let tls = crate::tls::client_config(root_cert, "PGSSLROOTCERT").map_err(|e| ConfigError {
        var: "DATABASE_URL",
        reason: e.to_string(),
    })?;
    Ok(MakeRustlsConnect::new(tls))
}

/// Connects one connection outside the pool (migrations, `LISTEN`).
pub async fn connect_one(
    config: &DatabaseConfig,
) -> anyhow::Result<(
    tokio_postgres::Client,
    tokio_postgres::Connection<
        tokio_postgres::Socket,
        <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream,
    >,
)> {
    let pg = config.pg_config()?;
    Ok(pg.connect(tls_connector(config)?).await?)
}

/// Builds the pool. Connections open lazily, so a replica can start (and report not
/// ready) while PostgreSQL is still coming up.
pub fn connect_pool(config: &DatabaseConfig) -> Result<Pool, ConfigError> {
    let mut pg = config.pg_config()?;
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(POOL_TIMEOUT);
    }
    if pg.get_application_name().is_none() {
        pg.application_name("locallife");
    }
    let manager = Manager::from_config(
        pg,
        tls_connector(config)?,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(config.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_TIMEOUT))
        .create_timeout(Some(POOL_TIMEOUT))
        .recycle_timeout(Some(POOL_TIMEOUT))
        .build()
        .map_err(|e| ConfigError {
            var: "DATABASE_URL",
            reason: format!("cannot build the connection pool: {e}"),
        })
}

/// `SELECT 1` through the pool: what `/readyz` asks.
pub async fn ping(pool: &Pool) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio_postgres::error::SqlState;

    use super::means_unavailable;

    #[test]
    fn a_stopping_server_or_a_standby_is_unavailable_not_a_failed_query() {
        for code in [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::READ_ONLY_SQL_TRANSACTION,
            SqlState::CONNECTION_FAILURE,
            SqlState::CONNECTION_EXCEPTION,
        ] {
            assert!(means_unavailable(&code), "{}", code.code());
        }
        for code in [
            SqlState::UNIQUE_VIOLATION,
            SqlState::SYNTAX_ERROR,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::QUERY_CANCELED,
        ] {
            assert!(!means_unavailable(&code), "{}", code.code());
        }
    }
}
