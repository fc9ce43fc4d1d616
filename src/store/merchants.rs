//! Merchants, their admins, and products.

use serde::Serialize;

use super::suspensions::Approve;
use super::StoreError;
use crate::domain::{Approval, Role, UserId};

type Pool = deadpool_postgres::Pool;

#[derive(Debug, Clone, Serialize)]
pub struct Merchant {
    pub id: i64,
    pub name: String,
    pub status: Approval,
    pub lat: f64,
    pub lng: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Product {
    pub id: i64,
    pub merchant_id: i64,
    pub name: String,
    pub price_fen: i64,
    pub stock: i32,
    pub low_stock_threshold: i32,
}

fn product(r: &tokio_postgres::Row) -> Product {
    Product {
        id: r.get("id"),
        merchant_id: r.get("merchant_id"),
        name: r.get("name"),
        price_fen: r.get("price_fen"),
        stock: r.get("stock"),
        low_stock_threshold: r.get("low_stock_threshold"),
    }
}

/// Creates a pending merchant; the creator becomes its admin (and a merchant).
pub async fn create(
    db: &Pool,
    by: UserId,
    name: &str,
    address: &str,
    lat: f64,
    lng: f64,
) -> Result<i64, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO merchants (name, address, lat, lng, created_by)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[&name, &address, &lat, &lng, &by.0],
        )
        .await?
        .get(0);
    tx.execute(
        "INSERT INTO merchant_admins (merchant_id, user_id) VALUES ($1, $2)",
        &[&id, &by.0],
    )
    .await?;
    tx.execute(
        "INSERT INTO user_roles (user_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&by.0, &Role::Merchant.as_str()],
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Approves a merchant (pending, rejected, or approved already). A suspended merchant is
/// not approved so: it is reinstated.
/// `by`: the member of staff, or `None` for a service key.
pub async fn approve(db: &Pool, id: i64, by: Option<UserId>) -> Result<Approve, StoreError> {
    let client = db.get().await?;
    let n = client
        .execute(
            "UPDATE merchants SET status = 'approved', approved_at = COALESCE(approved_at, now()),
                    approved_by = $2, updated_at = now()
             WHERE id = $1 AND status <> 'suspended'",
            &[&id, &by.map(|u| u.0)],
        )
        .await?;
    if n == 1 {
        return Ok(Approve::Done);
    }
    let exists = client
        .query_opt("SELECT 1 FROM merchants WHERE id = $1", &[&id])
        .await?
        .is_some();
    Ok(if exists {
        Approve::Suspended
    } else {
        Approve::NotFound
    })
}

pub async fn get(db: &Pool, id: i64) -> Result<Option<Merchant>, StoreError> {
    let client = db.get().await?;
    Ok(client
        .query_opt(
            "SELECT id, name, status, lat, lng FROM merchants WHERE id = $1",
            &[&id],
        )
        .await?
        .map(|r| Merchant {
            id: r.get(0),
            name: r.get(1),
            status: r.get(2),
            lat: r.get(3),
            lng: r.get(4),
        }))
}

/// `None` when the merchant does not exist; else whether `user` administers it.
pub async fn is_admin(db: &Pool, merchant: i64, user: UserId) -> Result<Option<bool>, StoreError> {
    let client = db.get().await?;
    let row = client
        .query_opt(
            "SELECT EXISTS (SELECT 1 FROM merchant_admins WHERE merchant_id = m.id AND user_id = $2)
             FROM merchants m WHERE m.id = $1",
            &[&merchant, &user.0],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

pub async fn admins(db: &Pool, merchant: i64) -> Result<Vec<UserId>, StoreError> {
    let client = db.get().await?;
    Ok(client
        .query(
            "SELECT user_id FROM merchant_admins WHERE merchant_id = $1 ORDER BY user_id",
            &[&merchant],
        )
        .await?
        .iter()
        .map(|r| UserId(r.get(0)))
        .collect())
}

pub async fn create_product(
    db: &Pool,
    merchant: i64,
    name: &str,
    price_fen: i64,
    stock: i32,
    low_stock_threshold: i32,
) -> Result<Product, StoreError> {
    let client = db.get().await?;
    let row = client
        .query_one(
            "INSERT INTO products (merchant_id, name, price_fen, stock, low_stock_threshold)
             VALUES ($1, $2, $3, $4, $5) RETURNING *",
            &[&merchant, &name, &price_fen, &stock, &low_stock_threshold],
        )
        .await?;
    Ok(product(&row))
}

/// Changes the given fields; `None` when the product is not this merchant's.
pub async fn update_product(
    db: &Pool,
    merchant: i64,
    id: i64,
    name: Option<&str>,
    price_fen: Option<i64>,
    stock: Option<i32>,
    low_stock_threshold: Option<i32>,
) -> Result<Option<Product>, StoreError> {
    let client = db.get().await?;
    let row = client
        .query_opt(
            "UPDATE products SET name = COALESCE($3, name), price_fen = COALESCE($4, price_fen),
                    stock = COALESCE($5, stock),
                    low_stock_threshold = COALESCE($6, low_stock_threshold), updated_at = now()
             WHERE id = $2 AND merchant_id = $1 RETURNING *",
            &[
                &merchant,
                &id,
                &name,
                &price_fen,
                &stock,
                &low_stock_threshold,
            ],
        )
        .await?;
    Ok(row.as_ref().map(product))
}
