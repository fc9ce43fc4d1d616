//! `loadgen seed`: the users of a run, written straight into the database in one round
//! of SQL (approved online riders near one point, merchants each with an admin, a
//! platform user; with `--consumers`, consumers and a product of each merchant), and
//! their tokens, minted as the service verifies them.

use std::time::Duration;

use serde_json::{json, Value};

use crate::users::{MerchantAdmin, Product, User, Users};

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
    /// Consumers (for orders: `loadgen soak`); with any, each merchant gets a product
    /// of ample stock.
    #[arg(long, default_value_t = 0)]
    consumers: usize,
    #[arg(long)]
    out: std::path::PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<Value> {
    seed(
        &args.database_url,
        &args.jwt_secret,
        args.riders,
        args.merchants,
        args.consumers,
        &args.out,
    )
    .await
}

/// Creates `riders` approved online riders (near one point) and a platform user in one
/// round of SQL, and writes `{platform, riders: [{user_id, token}]}` (and merchants,
/// consumers and products).
async fn seed(
    database_url: &str,
    jwt_secret: &str,
    riders: usize,
    merchants: usize,
    consumers: usize,
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
    let consumer_ids: Vec<i64> = client
        .query(
            "WITH u AS (
                INSERT INTO users (openid)
                SELECT 'bench-c-' || $1::text || '-' || g FROM generate_series(1, $2::int) g
                RETURNING id
             )
             INSERT INTO user_roles (user_id, role) SELECT id, 'consumer' FROM u RETURNING user_id",
            &[&run, &(consumers as i32)],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let products: Vec<Product> = if consumers == 0 {
        Vec::new()
    } else {
        client
            .query(
                "INSERT INTO products (merchant_id, name, price_fen, stock)
                 SELECT m, 'bench noodles', 1800, 1000000000 FROM unnest($1::bigint[]) m
                 RETURNING merchant_id, id",
                &[&admins.iter().map(|(_, m)| *m).collect::<Vec<i64>>()],
            )
            .await?
            .iter()
            .map(|r| Product {
                merchant_id: r.get(0),
                product_id: r.get(1),
            })
            .collect()
    };
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
        consumers: consumer_ids
            .iter()
            .map(|id| User {
                user_id: *id,
                token: tokens.mint(locallife::domain::UserId(*id)).token,
            })
            .collect(),
        products,
    };
    std::fs::write(out, serde_json::to_vec(&users)?)?;
    Ok(
        json!({"riders": ids.len(), "merchants": admins.len(), "consumers": consumer_ids.len(),
              "platform_user": platform}),
    )
}
