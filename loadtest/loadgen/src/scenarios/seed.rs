//! `loadgen seed`: the users of a run, written straight into the database in one round
//! of SQL (approved online riders near one point, merchants each with an admin, a
//! platform user), and their tokens, minted as the service verifies them.

use std::time::Duration;

use serde_json::{json, Value};

use crate::users::{MerchantAdmin, User, Users};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[arg(long, env = "JWT_SECRET")]
    jwt_secret: String,
    #[arg(long)]
    riders: usize,
    /// Approved merchants, each with one admin (for the merchant flow).
    #[arg(long, default_value_t = 20)]
    merchants: usize,
    #[arg(long)]
    out: std::path::PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<Value> {
    seed(
        &args.database_url,
        &args.jwt_secret,
        args.riders,
        args.merchants,
        &args.out,
    )
    .await
}

/// Creates `riders` approved online riders (near one point) and a platform user in one
/// round of SQL, and writes `{platform, riders: [{user_id, token}]}`.
async fn seed(
    database_url: &str,
    jwt_secret: &str,
    riders: usize,
    merchants: usize,
    out: &std::path::Path,
) -> anyhow::Result<Value> {
    let (client, conn) = tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let run = format!("{:x}", rand::random::<u32>());
    let platform: i64 = client
        .query_one(
            "WITH u AS (INSERT INTO users (openid) VALUES ($1) RETURNING id)
             INSERT INTO user_roles (user_id, role) SELECT id, 'platform' FROM u RETURNING user_id",
            &[&format!("bench-platform-{run}")],
        )
        .await?
        .get(0);
    let ids: Vec<i64> = client
        .query(
            "WITH u AS (
                INSERT INTO users (openid)
                SELECT 'bench-' || $1::text || '-' || g FROM generate_series(1, $2::int) g
                RETURNING id
             ), r AS (INSERT INTO user_roles (user_id, role) SELECT id, 'rider' FROM u)
             INSERT INTO riders (user_id, name, phone, status, approved_at, online, last_lat, last_lng)
             SELECT id, 'bench', '13800000000', 'approved', now(), true, 31.2304, 121.4737 FROM u
             RETURNING user_id",
            &[&run, &(riders as i32)],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let admins: Vec<(i64, i64)> = client
        .query(
            "WITH u AS (
                INSERT INTO users (openid)
                SELECT 'bench-m-' || $1::text || '-' || g FROM generate_series(1, $2::int) g
                RETURNING id
             ), r AS (INSERT INTO user_roles (user_id, role) SELECT id, 'merchant' FROM u),
             m AS (
                INSERT INTO merchants (name, address, lat, lng, status, approved_at, created_by)
                SELECT 'bench shop', 'bench', 31.2304, 121.4737, 'approved', now(), id FROM u
                RETURNING id, created_by
             )
             INSERT INTO merchant_admins (merchant_id, user_id) SELECT id, created_by FROM m
             RETURNING user_id, merchant_id",
            &[&run, &(merchants as i32)],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let tokens = locallife::auth::Tokens::new(&locallife::config::JwtConfig {
        secret: secrecy::SecretString::from(jwt_secret.to_owned()),
        issuer: std::env::var("JWT_ISSUER").unwrap_or_else(|_| "locallife".into()),
        audience: std::env::var("JWT_AUDIENCE").unwrap_or_else(|_| "locallife".into()),
        access_token_ttl: Duration::from_secs(6 * 3600),
    });
    let users = Users {
        platform: tokens.mint(locallife::domain::UserId(platform)).token,
        riders: ids
            .iter()
            .map(|id| User {
                user_id: *id,
                token: tokens.mint(locallife::domain::UserId(*id)).token,
            })
            .collect(),
        merchants: admins
            .iter()
            .map(|(user, merchant)| MerchantAdmin {
                user_id: *user,
                merchant_id: *merchant,
                token: tokens.mint(locallife::domain::UserId(*user)).token,
            })
            .collect(),
    };
    std::fs::write(out, serde_json::to_vec(&users)?)?;
    Ok(json!({"riders": ids.len(), "merchants": admins.len(), "platform_user": platform}))
}
