//! Orders and their items, from creation to delivery or closing. What a payment does to
//! an order is [`super::payments`]; the riders it was offered to, [`super::offers`].
//!
//! Every state change is one conditional `UPDATE ... WHERE status = ...` so that races
//! (two riders accepting, ten copies of one payment notification, two sweepers) are
//! decided by the database, once.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;

use super::outbox::{self, NewRow};
use super::StoreError;
use crate::domain::{OrderStatus, Role, UserId};

type Pool = deadpool_postgres::Pool;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Item {
    pub product_id: i64,
    pub name: String,
    pub unit_price_fen: i64,
    pub quantity: i32,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Address {
    pub lat: f64,
    pub lng: f64,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Order {
    pub id: i64,
    pub out_trade_no: String,
    pub status: OrderStatus,
    pub consumer_id: i64,
    pub merchant_id: i64,
    pub rider_id: Option<i64>,
    pub total_fen: i64,
    pub items: Vec<Item>,
    pub address: Address,
    pub pay_deadline: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub picked_up_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    /// Why a paid order was closed, as whoever closed it wrote it; null for an unpaid
    /// order the service closed (payment deadline passed, prepay failed).
    pub close_reason: Option<String>,
    /// Who closed a paid order; null for an unpaid order the service closed.
    pub closed_by: Option<ClosedBy>,
    pub created_at: DateTime<Utc>,
}

/// Who closed an order: platform staff (a person, or a back-office service with a
/// key), or an admin of the order's merchant refusing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ClosedBy {
    /// `platform` (staff closed it) or `merchant` (the merchant refused it).
    pub role: Role,
    /// The user who did; null for a service key, or once that user no longer exists.
    pub user_id: Option<i64>,
    /// The service key's id, when a back-office service closed it (SPEC §10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<i64>,
}

/// The columns [`load`] reads, for every query that returns an order.
pub(super) const ORDER_COLUMNS: &str =
    "id, out_trade_no, status, consumer_id, merchant_id, rider_id, total_fen,
    delivery_lat, delivery_lng, delivery_detail, pay_deadline, paid_at, dispatched_at,
    picked_up_at, delivered_at, closed_at, close_reason, closed_by, closed_by_key, closed_as,
    created_at";

/// The order of `row` (read with [`ORDER_COLUMNS`]), its items read through `c`.
pub(super) async fn load<C: GenericClient>(
    c: &C,
    row: &tokio_postgres::Row,
) -> Result<Order, StoreError> {
    let id: i64 = row.get("id");
    let items = c
        .query(
            "SELECT product_id, name, unit_price_fen, quantity FROM order_items
             WHERE order_id = $1 ORDER BY id",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| Item {
            product_id: r.get(0),
            name: r.get(1),
            unit_price_fen: r.get(2),
            quantity: r.get(3),
        })
        .collect();
    Ok(Order {
        id,
        out_trade_no: row.get("out_trade_no"),
        status: row.get("status"),
        consumer_id: row.get("consumer_id"),
        merchant_id: row.get("merchant_id"),
        rider_id: row.get("rider_id"),
        total_fen: row.get("total_fen"),
        items,
        address: Address {
            lat: row.get("delivery_lat"),
            lng: row.get("delivery_lng"),
            detail: row.get("delivery_detail"),
        },
        pay_deadline: row.get("pay_deadline"),
        paid_at: row.get("paid_at"),
        dispatched_at: row.get("dispatched_at"),
        picked_up_at: row.get("picked_up_at"),
        delivered_at: row.get("delivered_at"),
        closed_at: row.get("closed_at"),
        close_reason: row.get("close_reason"),
        closed_by: row
            .get::<_, Option<&str>>("closed_as")
            .and_then(|role| role.parse().ok())
            .map(|role| ClosedBy {
                role,
                user_id: row.get("closed_by"),
                key: row.get("closed_by_key"),
            }),
        created_at: row.get("created_at"),
    })
}

pub async fn get(db: &Pool, id: i64) -> Result<Option<Order>, StoreError> {
    let client = db.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"),
            &[&id],
        )
        .await?;
    match row {
        Some(row) => Ok(Some(load(&client, &row).await?)),
        None => Ok(None),
    }
}

/// A product whose stock a reservation brought to or below its threshold.
#[derive(Debug, Clone)]
pub struct LowStock {
    pub product_id: i64,
    pub name: String,
    pub stock: i32,
    pub threshold: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("no such merchant, or not approved")]
    MerchantUnavailable,
    #[error("product {0} is not this merchant's")]
    UnknownProduct(i64),
    #[error("not enough stock of product {0}")]
    InsufficientStock(i64),
    #[error("the consumer already holds {0} unpaid orders")]
    TooManyUnpaid(u32),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<tokio_postgres::Error> for CreateError {
    fn from(e: tokio_postgres::Error) -> Self {
        CreateError::Store(e.into())
    }
}

/// An order to create.
#[derive(Debug, Clone)]
pub struct NewOrder<'a> {
    pub consumer: UserId,
    pub merchant: i64,
    /// (product, quantity), each product once.
    pub items: &'a [(i64, i32)],
    pub address: &'a Address,
    pub pay_deadline: DateTime<Utc>,
    pub out_trade_no: &'a str,
    /// Unpaid orders the consumer may hold, this one included.
    pub unpaid_max: u32,
}

/// Creates an order and reserves its stock in one transaction: all of it, or none. The
/// outbox rows `notes` builds from it (and the products it brought low) are written in
/// the same transaction.
pub async fn create(
    db: &Pool,
    new: &NewOrder<'_>,
    notes: impl FnOnce(&Order, &[LowStock]) -> Vec<NewRow>,
) -> Result<(Order, Vec<LowStock>), CreateError> {
    let NewOrder {
        consumer,
        merchant,
        items,
        address,
        pay_deadline,
        out_trade_no,
        unpaid_max,
    } = *new;
    let mut client = db.get().await.map_err(StoreError::from)?;
    let tx = client.transaction().await?;
    // The consumer's row is locked first: their concurrent orders count one at a time,
    // so the cap holds under a burst, and nothing is reserved when it is reached.
    tx.query_opt(
        "SELECT 1 FROM users WHERE id = $1 FOR UPDATE",
        &[&consumer.0],
    )
    .await?;
    let unpaid: i64 = tx
        .query_one(
            "SELECT count(*) FROM orders WHERE consumer_id = $1 AND status = 'pending_payment'",
            &[&consumer.0],
        )
        .await?
        .get(0);
    if unpaid >= i64::from(unpaid_max) {
        return Err(CreateError::TooManyUnpaid(unpaid_max));
    }
    let approved = tx
        .query_opt(
            "SELECT 1 FROM merchants WHERE id = $1 AND status = 'approved'",
            &[&merchant],
        )
        .await?;
    if approved.is_none() {
        return Err(CreateError::MerchantUnavailable);
    }
    // Lock rows in product-id order so concurrent orders cannot deadlock.
    let mut sorted = items.to_vec();
    sorted.sort_unstable();
    let mut reserved = Vec::with_capacity(sorted.len());
    let mut low = Vec::new();
    for (product, quantity) in &sorted {
        let row = tx
            .query_opt(
                "UPDATE products SET stock = stock - $3, updated_at = now()
                 WHERE id = $1 AND merchant_id = $2 AND stock >= $3
                 RETURNING name, price_fen, stock, low_stock_threshold",
                &[product, &merchant, quantity],
            )
            .await?;
        let Some(row) = row else {
            let exists = tx
                .query_opt(
                    "SELECT 1 FROM products WHERE id = $1 AND merchant_id = $2",
                    &[product, &merchant],
                )
                .await?;
            return Err(match exists {
                Some(_) => CreateError::InsufficientStock(*product),
                None => CreateError::UnknownProduct(*product),
            });
        };
        let (name, price, stock, threshold): (String, i64, i32, i32) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        // Alert when this reservation crossed the threshold, not on every order after.
        if stock <= threshold && stock + quantity > threshold {
            low.push(LowStock {
                product_id: *product,
                name: name.clone(),
                stock,
                threshold,
            });
        }
        reserved.push((*product, name, price, *quantity));
    }
    let total: i64 = reserved.iter().map(|(_, _, p, q)| p * i64::from(*q)).sum();
    if total <= 0 {
        // A free order cannot go through WeChat Pay; refuse it as a bad basket.
        return Err(CreateError::UnknownProduct(0));
    }
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO orders (out_trade_no, consumer_id, merchant_id, total_fen,
                    delivery_lat, delivery_lng, delivery_detail, pay_deadline)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {ORDER_COLUMNS}"
            ),
            &[
                &out_trade_no,
                &consumer.0,
                &merchant,
                &total,
                &address.lat,
                &address.lng,
                &address.detail,
                &pay_deadline,
            ],
        )
        .await?;
    let order_id: i64 = row.get("id");
    for (product, name, price, quantity) in &reserved {
        tx.execute(
            "INSERT INTO order_items (order_id, product_id, name, unit_price_fen, quantity)
             VALUES ($1, $2, $3, $4, $5)",
            &[&order_id, product, name, price, quantity],
        )
        .await?;
    }
    let order = load(&tx, &row).await?;
    outbox::insert(&tx, &notes(&order, &low)).await?;
    tx.commit().await?;
    Ok((order, low))
}

/// Whether `user` may see `order` (consumer, assigned rider, merchant admin); platform
/// staff are decided by the caller.
pub async fn visible_to(db: &Pool, order: &Order, user: UserId) -> Result<bool, StoreError> {
    if order.consumer_id == user.0 || order.rider_id == Some(user.0) {
        return Ok(true);
    }
    let client = db.get().await?;
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM merchant_admins WHERE merchant_id = $1 AND user_id = $2)",
            &[&order.merchant_id, &user.0],
        )
        .await?;
    Ok(row.get(0))
}

#[derive(Debug, PartialEq, Eq)]
pub enum UrgeOutcome {
    Urged,
    NotFound,
    /// Not paid yet, closed, or delivered already.
    NotUrgeable,
    TooSoon,
}

/// Records an urge by the order's consumer, at most once per 5 minutes, with the
/// outbox rows `notes` builds from the order's merchant id.
pub async fn urge(
    db: &Pool,
    order: i64,
    consumer: UserId,
    notes: impl FnOnce(i64) -> Vec<NewRow>,
) -> Result<UrgeOutcome, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await?;
    let urged = tx
        .query_opt(
            "UPDATE orders SET last_urged_at = now(), updated_at = now()
             WHERE id = $1 AND consumer_id = $2 AND status IN ('paid', 'dispatched', 'picked_up')
               AND (last_urged_at IS NULL OR last_urged_at <= now() - interval '5 minutes')
             RETURNING merchant_id",
            &[&order, &consumer.0],
        )
        .await?;
    if let Some(row) = urged {
        outbox::insert(&tx, &notes(row.get(0))).await?;
        tx.commit().await?;
        return Ok(UrgeOutcome::Urged);
    }
    drop(tx);
    let row = client
        .query_opt(
            "SELECT status FROM orders WHERE id = $1 AND consumer_id = $2",
            &[&order, &consumer.0],
        )
        .await?;
    Ok(match row.map(|r| r.get::<_, OrderStatus>(0)) {
        None => UrgeOutcome::NotFound,
        Some(OrderStatus::Paid | OrderStatus::Dispatched | OrderStatus::PickedUp) => {
            UrgeOutcome::TooSoon
        }
        Some(_) => UrgeOutcome::NotUrgeable,
    })
}

#[derive(Debug)]
pub enum Transition {
    Done(Box<Order>),
    NotFound,
    /// The order is not in a state that allows this (taken by another rider, not paid...).
    Refused(OrderStatus),
}

/// Assigns a paid order to a rider: the first of concurrent calls wins.
/// Gives a paid order to `rider`; the outbox rows `notes` builds from the assigned
/// order are written in the same transaction.
pub async fn assign(
    db: &Pool,
    order: i64,
    rider: UserId,
    notes: impl FnOnce(&Order) -> Vec<NewRow>,
) -> Result<Transition, StoreError> {
    transition(
        db,
        order,
        "UPDATE orders SET status = 'dispatched', rider_id = $2, dispatched_at = now(),
                updated_at = now()
         WHERE id = $1 AND status = 'paid'",
        rider,
        false,
        notes,
    )
    .await
}

pub async fn pick_up(db: &Pool, order: i64, rider: UserId) -> Result<Transition, StoreError> {
    transition(
        db,
        order,
        "UPDATE orders SET status = 'picked_up', picked_up_at = now(), updated_at = now()
         WHERE id = $1 AND status = 'dispatched' AND rider_id = $2",
        rider,
        true,
        |_| Vec::new(),
    )
    .await
}

pub async fn deliver(db: &Pool, order: i64, rider: UserId) -> Result<Transition, StoreError> {
    transition(
        db,
        order,
        "UPDATE orders SET status = 'delivered', delivered_at = now(), updated_at = now()
         WHERE id = $1 AND status = 'picked_up' AND rider_id = $2",
        rider,
        true,
        |_| Vec::new(),
    )
    .await
}

/// Runs a conditional update; when it does not apply, says why. With `assigned_only`,
/// an order assigned to another rider is `NotFound` (riders see only their orders).
async fn transition(
    db: &Pool,
    order: i64,
    update: &str,
    rider: UserId,
    assigned_only: bool,
    notes: impl FnOnce(&Order) -> Vec<NewRow>,
) -> Result<Transition, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await?;
    let sql = format!("{update} RETURNING {ORDER_COLUMNS}");
    if let Some(row) = tx.query_opt(&sql, &[&order, &rider.0]).await? {
        let order = load(&tx, &row).await?;
        outbox::insert(&tx, &notes(&order)).await?;
        tx.commit().await?;
        return Ok(Transition::Done(Box::new(order)));
    }
    drop(tx);
    let status = client
        .query_opt(
            "SELECT status, rider_id FROM orders WHERE id = $1",
            &[&order],
        )
        .await?;
    Ok(match status {
        None => Transition::NotFound,
        Some(r) if assigned_only && r.get::<_, Option<i64>>(1) != Some(rider.0) => {
            Transition::NotFound
        }
        Some(r) => Transition::Refused(r.get(0)),
    })
}

/// An order the sweeper closed.
#[derive(Debug, Clone)]
pub struct Closed {
    pub id: i64,
    pub out_trade_no: String,
    pub merchant_id: i64,
    pub total_fen: i64,
}

/// Closes up to `limit` unpaid orders past their deadline and returns their stock.
/// `FOR UPDATE SKIP LOCKED`: replicas sweeping at once each close different orders,
/// so every order is closed (and alerted) exactly once.
/// Each closed order's outbox rows (`notes`) are written in the same transaction.
pub async fn close_expired(
    db: &Pool,
    limit: i64,
    notes: impl Fn(&Closed) -> Vec<NewRow>,
) -> Result<Vec<Closed>, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await?;
    let rows = tx
        .query(
            "WITH due AS (
                SELECT id FROM orders
                WHERE status = 'pending_payment' AND pay_deadline <= now()
                ORDER BY pay_deadline LIMIT $1
                FOR UPDATE SKIP LOCKED
             )
             UPDATE orders o SET status = 'closed', closed_at = now(), updated_at = now()
             FROM due WHERE o.id = due.id
             RETURNING o.id, o.out_trade_no, o.merchant_id, o.total_fen",
            &[&limit],
        )
        .await?;
    let closed: Vec<Closed> = rows
        .iter()
        .map(|r| Closed {
            id: r.get(0),
            out_trade_no: r.get(1),
            merchant_id: r.get(2),
            total_fen: r.get(3),
        })
        .collect();
    if !closed.is_empty() {
        let ids: Vec<i64> = closed.iter().map(|c| c.id).collect();
        tx.execute(
            "UPDATE products p SET stock = p.stock + s.quantity, updated_at = now()
             FROM (SELECT product_id, sum(quantity)::int AS quantity FROM order_items
                   WHERE order_id = ANY($1) GROUP BY product_id) s
             WHERE p.id = s.product_id",
            &[&ids],
        )
        .await?;
        let rows: Vec<NewRow> = closed.iter().flat_map(&notes).collect();
        outbox::insert(&tx, &rows).await?;
    }
    tx.commit().await?;
    Ok(closed)
}

/// Closes one unpaid order now (its prepay failed) and returns its stock.
pub async fn close_now(db: &Pool, order: i64) -> Result<(), StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await?;
    let n = tx
        .execute(
            "UPDATE orders SET status = 'closed', closed_at = now(), updated_at = now()
             WHERE id = $1 AND status = 'pending_payment'",
            &[&order],
        )
        .await?;
    if n == 1 {
        return_stock(&tx, order).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Puts the order's items back in stock (the caller's transaction closed the order).
async fn return_stock<C: GenericClient>(c: &C, order: i64) -> Result<(), StoreError> {
    c.execute(
        "UPDATE products p SET stock = p.stock + i.quantity, updated_at = now()
         FROM order_items i WHERE i.order_id = $1 AND p.id = i.product_id",
        &[&order],
    )
    .await?;
    Ok(())
}

/// Who closes a paid order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closer {
    /// A member of platform staff.
    Staff(UserId),
    /// A back-office service, by its key's id (SPEC §10).
    Key(i64),
    /// An admin of the order's merchant, refusing it.
    MerchantAdmin(UserId),
}

impl Closer {
    /// The role it closes as (`closed_as`).
    pub fn role(self) -> Role {
        match self {
            Closer::Staff(_) | Closer::Key(_) => Role::Platform,
            Closer::MerchantAdmin(_) => Role::Merchant,
        }
    }

    fn user(self) -> Option<i64> {
        match self {
            Closer::Staff(u) | Closer::MerchantAdmin(u) => Some(u.0),
            Closer::Key(_) => None,
        }
    }

    fn key(self) -> Option<i64> {
        match self {
            Closer::Key(k) => Some(k),
            _ => None,
        }
    }
}

/// Whether the order's goods are still at the merchant in `status`: closing it then
/// puts them back in stock. Once picked up they have left the shop.
pub fn goods_at_merchant(status: OrderStatus) -> bool {
    matches!(
        status,
        OrderStatus::PendingPayment | OrderStatus::Paid | OrderStatus::Dispatched
    )
}

/// Closes a paid order that will not be delivered, if its status is one of `from`:
/// records who closed it (`closer`) and why, and returns its stock while the goods are still at
/// the merchant ([`goods_at_merchant`]). The outbox rows `notes` builds from the closed
/// order and the status it was closed from are written in the same transaction.
///
/// The order's row is locked first, so a rider accepting at the same moment either
/// takes it before (the close then sees `dispatched`) or finds it closed.
pub async fn close(
    db: &Pool,
    order: i64,
    closer: Closer,
    reason: &str,
    from: &[OrderStatus],
    notes: impl FnOnce(&Order, OrderStatus) -> Vec<NewRow>,
) -> Result<Transition, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await?;
    let Some(row) = tx
        .query_opt(
            "SELECT status FROM orders WHERE id = $1 FOR UPDATE",
            &[&order],
        )
        .await?
    else {
        return Ok(Transition::NotFound);
    };
    let before: OrderStatus = row.get(0);
    if !from.contains(&before) {
        return Ok(Transition::Refused(before));
    }
    let row = tx
        .query_one(
            &format!(
                "UPDATE orders SET status = 'closed', closed_at = now(), close_reason = $2,
                        closed_by = $3, closed_by_key = $4, closed_as = $5, updated_at = now()
                 WHERE id = $1 RETURNING {ORDER_COLUMNS}"
            ),
            &[
                &order,
                &reason,
                &closer.user(),
                &closer.key(),
                &closer.role().as_str(),
            ],
        )
        .await?;
    if goods_at_merchant(before) {
        return_stock(&tx, order).await?;
    }
    let closed = load(&tx, &row).await?;
    outbox::insert(&tx, &notes(&closed, before)).await?;
    tx.commit().await?;
    Ok(Transition::Done(Box::new(closed)))
}
