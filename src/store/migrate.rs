//! Schema migrations: the SQL files in `migrations/`, embedded in the binary and applied
//! by refinery.
//!
//! Why the advisory lock: every replica runs migrations at start-up, and a rollout
//! starts several at the same moment. refinery alone would let two of them race to
//! apply the same file. Holding a session-level advisory lock on a dedicated connection
//! makes the others wait, then find nothing left to do.
//!
//! Why a check of our own before refinery's: during a rolling upgrade or a rollback a
//! replica of the previous release may start on a database that a newer release has
//! already migrated. refinery refuses any applied version its binary does not embed;
//! here versions above the highest embedded one are accepted (migrations only add while
//! two releases may run, `docs/operations.md`), while a gap (an embedded version below
//! the highest applied one that was never applied) or an unknown version below it stays
//! an error.

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
        let applied = applied_versions(&client).await?;
        let embedded: Vec<i64> = embedded::migrations::runner()
            .get_migrations()
            .iter()
            .map(|m| i64::from(m.version()))
            .collect();
        let newer = check_history(&embedded, &applied)?;
        if !newer.is_empty() {
            tracing::warn!(
                versions = ?newer,
                "the database holds migrations of a newer release; running on the schema this release knows"
            );
        }
        let report = embedded::migrations::runner()
            // The cases refinery would refuse are decided by `check_history` above.
            .set_abort_missing(newer.is_empty())
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

/// The versions recorded as applied, oldest first; none before the first migration.
async fn applied_versions(client: &tokio_postgres::Client) -> anyhow::Result<Vec<i64>> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .context("cannot read the migration history")?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT version::bigint FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .await
        .context("cannot read the migration history")?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Judges the applied history against the embedded migrations: returns the applied
/// versions above the highest embedded one (a newer release's, accepted), or an error
/// for an applied version this binary does not know below that, or an embedded one
/// skipped below the highest applied one.
fn check_history(embedded: &[i64], applied: &[i64]) -> anyhow::Result<Vec<i64>> {
    let highest = embedded.iter().copied().max().unwrap_or(0);
    let newer: Vec<i64> = applied.iter().copied().filter(|v| *v > highest).collect();
    if let Some(unknown) = applied
        .iter()
        .find(|v| **v <= highest && !embedded.contains(v))
    {
        anyhow::bail!("the database holds migration V{unknown}, which this release does not know");
    }
    let last_applied = applied.iter().copied().max().unwrap_or(0);
    if let Some(skipped) = embedded
        .iter()
        .find(|v| **v < last_applied && !applied.contains(v))
    {
        anyhow::bail!("migration V{skipped} was never applied, but later ones were");
    }
    Ok(newer)
}

#[cfg(test)]
mod tests {
    use super::check_history;

    #[test]
    fn a_newer_releases_migrations_are_accepted() {
        assert_eq!(check_history(&[1, 2, 3], &[1, 2, 3, 4, 5]).unwrap(), [4, 5]);
        assert!(check_history(&[1, 2, 3], &[1, 2, 3]).unwrap().is_empty());
        assert!(check_history(&[1, 2, 3], &[1]).unwrap().is_empty());
        assert!(check_history(&[1, 2, 3], &[]).unwrap().is_empty());
    }

    #[test]
    fn gaps_and_unknown_versions_are_refused() {
        assert!(check_history(&[1, 2, 3], &[1, 3]).is_err());
        assert!(check_history(&[1, 3, 4], &[1, 2, 3]).is_err());
    }
}
