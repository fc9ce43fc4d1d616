//! Migrations: idempotent, and safe when several replicas apply them at once.

use locallife::config::DatabaseConfig;
use secrecy::SecretString;

use crate::support::TestDatabase;

fn config(db: &TestDatabase) -> DatabaseConfig {
    DatabaseConfig {
        url: SecretString::from(db.url.clone()),
        pool_size: 2,
        tls: locallife::config::PgTls::Plain,
    }
}

async fn applied_versions(db: &TestDatabase) -> Vec<i32> {
    db.client()
        .await
        .query(
            "SELECT version FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn concurrent_migrations_apply_each_version_once() {
    let db = TestDatabase::create().await;
    let cfg = config(&db);
    let runs = (0..6).map(|_| locallife::store::migrate::run(&cfg));
    let results = futures::future::join_all(runs).await;
    let mut applied_total = 0;
    for r in results {
        applied_total += r.expect("every concurrent run succeeds").len();
    }
    let versions = applied_versions(&db).await;
    assert!(!versions.is_empty());
    assert_eq!(
        applied_total,
        versions.len(),
        "each version applied by exactly one run"
    );
    let mut unique = versions.clone();
    unique.dedup();
    assert_eq!(unique, versions);
    // A later run finds nothing to do.
    assert!(locallife::store::migrate::run(&cfg)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn the_schema_keeps_its_invariants() {
    let db = TestDatabase::create().await;
    locallife::store::migrate::run(&config(&db)).await.unwrap();
    let c = db.client().await;
    let user: i64 = c
        .query_one("INSERT INTO users (openid) VALUES ('o1') RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    let merchant: i64 = c
        .query_one(
            "INSERT INTO merchants (name, address, lat, lng, created_by)
             VALUES ('m', 'a', 31.0, 121.0, $1) RETURNING id",
            &[&user],
        )
        .await
        .unwrap()
        .get(0);
    // Stock can never go negative.
    c.execute(
        "INSERT INTO products (merchant_id, name, price_fen, stock) VALUES ($1, 'p', 100, 1)",
        &[&merchant],
    )
    .await
    .unwrap();
    assert!(rejected(&c, "UPDATE products SET stock = stock - 2").await);
    // One openid, one user.
    assert!(rejected(&c, "INSERT INTO users (openid) VALUES ('o1')").await);
    // Roles are the four of the spec.
    let bad_role = format!("INSERT INTO user_roles (user_id, role) VALUES ({user}, 'admin')");
    assert!(rejected(&c, &bad_role).await);
    // A rider cannot be online before approval.
    let online_pending = format!(
        "INSERT INTO riders (user_id, name, phone, online, last_lat, last_lng)
         VALUES ({user}, 'r', '1', true, 31, 121)"
    );
    assert!(rejected(&c, &online_pending).await);
}

async fn rejected(c: &tokio_postgres::Client, sql: &str) -> bool {
    c.batch_execute(sql).await.is_err()
}

/// A rollback, or a replica of the previous release restarting mid-roll, starts on a
/// database a newer release has migrated: it runs on the schema it knows.
#[tokio::test]
async fn a_database_migrated_by_a_newer_release_is_accepted() {
    let db = TestDatabase::create().await;
    let cfg = config(&db);
    locallife::store::migrate::run(&cfg).await.unwrap();
    db.client()
        .await
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
             VALUES (9999, 'from_a_newer_release', '2026-12-07T00:00:00Z', '1')",
            &[],
        )
        .await
        .unwrap();
    let applied = locallife::store::migrate::run(&cfg)
        .await
        .expect("a newer release's migrations do not stop this one");
    assert!(applied.is_empty());

    // A gap is still refused: a version of this release missing below applied ones.
    db.client()
        .await
        .execute("DELETE FROM refinery_schema_history WHERE version = 2", &[])
        .await
        .unwrap();
    let refused = locallife::store::migrate::run(&cfg).await.unwrap_err();
    assert!(
        format!("{refused:#}").contains("V2 was never applied"),
        "{refused:#}"
    );
}
