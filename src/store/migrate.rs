//! Schema migrations: the SQL files in `migrations/`, embedded in the binary and applied
//! by refinery.
//!
//! Why the advisory lock: every replica runs migrations at start-up, and a rollout
//! starts several at the same moment. refinery alone would let two of them race to
//! apply the same file. Holding a session-level advisory lock on a dedicated connection
//! makes the others wait, then find nothing left to do.

use anyhow::Context;

use crate::config::DatabaseConfig;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Arbitrary but fixed: `'locallif'` as a big-endian i64.
const MIGRATION_LOCK_KEY: i64 = 0x6c6f_6361_6c6c_6966;

/// Applies every pending migration; returns the versions it applied.
pub async fn run(config: &DatabaseConfig) -> anyhow::Result<Vec<i64>> {
    let (mut client, connection) = super::connect_one(config)
        .await
        .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
    // The one spawn outside `Tasks`: it runs before a replica (and its tasks) exists,
    // also under `locallife migrate`, and it is joined below before returning.
    let conn_task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "migration connection closed with an error");
        }
    });

    let result = async {
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await
            .context("cannot take the migration lock")?;
        let report = embedded::migrations::runner()
            .run_async(&mut client)
            .await
            .context("migration failed");
        // Unlock even when a migration failed; closing the session would release it too.
        let _ = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
            .await;
        let report = report?;
        Ok(report
            .applied_migrations()
            .iter()
            .map(|m| i64::from(m.version()))
            .collect())
    }
    .await;

    drop(client);
    let _ = conn_task.await;
    result
}
