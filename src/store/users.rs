//! Users and their roles.

use serde::Serialize;

use super::suspensions::SuspensionNotice;
use super::StoreError;
use crate::domain::{Approval, Role, TokenEpoch, UserId};

/// Rows of `user_roles` to [`Role`]s; an unknown value (impossible while the CHECK
/// constraint holds) is skipped rather than failing the request.
fn roles_from(rows: &[tokio_postgres::Row]) -> Vec<Role> {
    let mut roles: Vec<Role> = rows
        .iter()
        .filter_map(|r| r.get::<_, &str>("role").parse().ok())
        .collect();
    roles.sort();
    roles
}

/// `users.token_epoch` and `users.tokens_valid_from` (in unix ms) as `epoch` and
/// `valid_from` of a row, read into a [`TokenEpoch`] by [`token_epoch_of`].
const TOKEN_EPOCH: &str = "u.token_epoch AS epoch,
        (extract(epoch FROM u.tokens_valid_from) * 1000)::bigint AS valid_from";

fn token_epoch_of(row: &tokio_postgres::Row) -> TokenEpoch {
    TokenEpoch {
        epoch: row.get::<_, i64>("epoch").max(0) as u64,
        valid_from_ms: row
            .get::<_, Option<i64>>("valid_from")
            .map(|ms| ms.max(0) as u64),
    }
}

/// The user's roles and where their tokens stand, or `None` when there is no such user.
pub async fn roles(
    db: &deadpool_postgres::Pool,
    user: UserId,
) -> Result<Option<(Vec<Role>, TokenEpoch)>, StoreError> {
    let client = db.get().await?;
    let rows = client
        .query(
            &client
                .prepare_cached(&format!(
                    "SELECT r.role, {TOKEN_EPOCH}
                     FROM users u LEFT JOIN user_roles r ON r.user_id = u.id WHERE u.id = $1"
                ))
                .await?,
            &[&user.0],
        )
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let tokens = token_epoch_of(&rows[0]);
    // The LEFT JOIN yields one row with a NULL role for a user without roles.
    let roles = rows
        .iter()
        .filter_map(|r| r.get::<_, Option<&str>>("role"))
        .filter_map(|s| s.parse().ok())
        .collect::<std::collections::BTreeSet<Role>>();
    Ok(Some((roles.into_iter().collect(), tokens)))
}

/// Removes `role` from `user`; whether they had it.
pub async fn revoke_role(
    db: &deadpool_postgres::Pool,
    user: UserId,
    role: Role,
) -> Result<bool, StoreError> {
    let client = db.get().await?;
    let n = client
        .execute(
            "DELETE FROM user_roles WHERE user_id = $1 AND role = $2",
            &[&user.0, &role.as_str()],
        )
        .await?;
    Ok(n == 1)
}

/// Logs `user` out everywhere: the token epoch moves on, so every token minted before
/// (with an earlier epoch) is refused from now on; `tokens_valid_from` is set from the
/// database's clock for tokens without an epoch. Where the user's tokens now stand, or
/// `None` when there is no such user.
pub async fn log_out(
    db: &deadpool_postgres::Pool,
    user: UserId,
) -> Result<Option<TokenEpoch>, StoreError> {
    let client = db.get().await?;
    let row = client
        .query_opt(
            &format!(
                "UPDATE users u SET token_epoch = token_epoch + 1, tokens_valid_from = now()
                 WHERE id = $1 RETURNING {TOKEN_EPOCH}"
            ),
            &[&user.0],
        )
        .await?;
    Ok(row.as_ref().map(token_epoch_of))
}

/// The user's current token epoch (what a token minted now carries), or `None` when
/// there is no such user.
pub async fn token_epoch(
    db: &deadpool_postgres::Pool,
    user: UserId,
) -> Result<Option<u64>, StoreError> {
    let client = db.get().await?;
    Ok(client
        .query_opt("SELECT token_epoch FROM users WHERE id = $1", &[&user.0])
        .await?
        .map(|r| r.get::<_, i64>(0).max(0) as u64))
}

/// What a WeChat login found or made.
#[derive(Debug, Clone)]
pub struct LoginUser {
    pub id: UserId,
    pub roles: Vec<Role>,
    pub created: bool,
    /// The user's token epoch, read in the login's transaction: the token to mint.
    pub epoch: u64,
}

/// Finds the user with this openid, or creates them with the `consumer` role. Safe
/// under concurrent first logins of the same openid: the unique constraint decides.
pub async fn login_by_openid(
    db: &deadpool_postgres::Pool,
    openid: &str,
) -> Result<LoginUser, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await?;
    let inserted = tx
        .query_opt(
            "INSERT INTO users (openid) VALUES ($1) ON CONFLICT (openid) DO NOTHING
             RETURNING id, token_epoch",
            &[&openid],
        )
        .await?;
    let (id, epoch, created) = match inserted {
        Some(row) => {
            let id: i64 = row.get(0);
            tx.execute(
                "INSERT INTO user_roles (user_id, role) VALUES ($1, 'consumer')",
                &[&id],
            )
            .await?;
            (id, row.get::<_, i64>(1), true)
        }
        None => {
            let row = tx
                .query_one(
                    "SELECT id, token_epoch FROM users WHERE openid = $1",
                    &[&openid],
                )
                .await?;
            (row.get(0), row.get(1), false)
        }
    };
    let rows = tx
        .query("SELECT role FROM user_roles WHERE user_id = $1", &[&id])
        .await?;
    tx.commit().await?;
    Ok(LoginUser {
        id: UserId(id),
        roles: roles_from(&rows),
        created,
        epoch: epoch.max(0) as u64,
    })
}

/// Creates a user with `role`, or grants `role` to the existing user with this openid;
/// returns the id. What `locallife user create` runs to bootstrap staff.
pub async fn ensure_with_role(
    db: &deadpool_postgres::Pool,
    openid: &str,
    role: Role,
) -> Result<UserId, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await?;
    // DO UPDATE (a no-op write) rather than DO NOTHING so RETURNING yields the id either way.
    let row = tx
        .query_one(
            "INSERT INTO users (openid) VALUES ($1)
             ON CONFLICT (openid) DO UPDATE SET openid = EXCLUDED.openid
             RETURNING id",
            &[&openid],
        )
        .await?;
    let id: i64 = row.get(0);
    tx.execute(
        "INSERT INTO user_roles (user_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&id, &role.as_str()],
    )
    .await?;
    tx.commit().await?;
    Ok(UserId(id))
}

/// Whether a user with this id exists.
pub async fn exists(db: &deadpool_postgres::Pool, user: UserId) -> Result<bool, StoreError> {
    let client = db.get().await?;
    let row = client
        .query_one(
            &client
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)")
                .await?,
            &[&user.0],
        )
        .await?;
    Ok(row.get(0))
}

/// Users this replica has seen to exist. Users are never deleted, so a yes is final and
/// a publishing request need not ask PostgreSQL again; at most [`KNOWN_MAX`] ids are
/// kept (the set starts over when full).
#[derive(Debug, Default)]
pub struct KnownUsers(std::sync::Mutex<std::collections::HashSet<i64>>);

/// About 16 MB at most.
pub const KNOWN_MAX: usize = 500_000;

impl KnownUsers {
    fn unknown(&self, users: &[UserId]) -> Vec<UserId> {
        let known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        users
            .iter()
            .filter(|u| !known.contains(&u.0))
            .copied()
            .collect()
    }

    fn remember(&self, users: impl IntoIterator<Item = i64>) {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for id in users {
            if known.len() >= KNOWN_MAX {
                known.clear();
            }
            known.insert(id);
        }
    }

    /// [`missing`], asking PostgreSQL only about users not seen before.
    pub async fn missing(
        &self,
        db: &deadpool_postgres::Pool,
        users: &[UserId],
    ) -> Result<Vec<i64>, StoreError> {
        let unknown = self.unknown(users);
        if unknown.is_empty() {
            return Ok(Vec::new());
        }
        let missing = missing(db, &unknown).await?;
        self.remember(
            unknown
                .iter()
                .map(|u| u.0)
                .filter(|id| !missing.contains(id)),
        );
        Ok(missing)
    }
}

/// Which of `users` do not exist, in the order given (each once).
pub async fn missing(
    db: &deadpool_postgres::Pool,
    users: &[UserId],
) -> Result<Vec<i64>, StoreError> {
    let ids: Vec<i64> = users.iter().map(|u| u.0).collect();
    let client = db.get().await?;
    let found: std::collections::HashSet<i64> = client
        .query(
            &client
                .prepare_cached("SELECT id FROM users WHERE id = ANY($1)")
                .await?,
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut seen = std::collections::HashSet::new();
    Ok(ids
        .into_iter()
        .filter(|id| !found.contains(id) && seen.insert(*id))
        .collect())
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RiderView {
    pub status: Approval,
    pub online: bool,
    pub name: String,
    pub phone: String,
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    /// While `suspended`: when and why (else `null`).
    pub suspension: Option<SuspensionNotice>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MerchantView {
    pub id: i64,
    pub name: String,
    pub status: Approval,
    /// While `suspended`: when and why (else `null`).
    pub suspension: Option<SuspensionNotice>,
}

/// The standing suspension of a row of `riders` or `merchants` (alias `acc`), joined as
/// `s` with `suspended_at` and `suspension_reason` when the account is suspended: the
/// newest `suspend` row of its history.
fn standing_suspension(column: &str, key: &str) -> String {
    format!(
        "LEFT JOIN LATERAL (
            SELECT created_at AS suspended_at, reason AS suspension_reason FROM suspensions
            WHERE {column} = acc.{key} AND action = 'suspend' ORDER BY id DESC LIMIT 1
         ) s ON acc.status = 'suspended'"
    )
}

fn notice(row: &tokio_postgres::Row) -> Option<SuspensionNotice> {
    row.get::<_, Option<chrono::DateTime<chrono::Utc>>>("suspended_at")
        .map(|at| SuspensionNotice {
            at,
            reason: row.get("suspension_reason"),
        })
}

/// `GET /v1/me`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Me {
    pub id: UserId,
    pub roles: Vec<Role>,
    pub rider: Option<RiderView>,
    pub merchants: Vec<MerchantView>,
}

/// The caller's own profile: roles, rider record, the merchants they administer.
pub async fn me(
    db: &deadpool_postgres::Pool,
    user: UserId,
    roles: Vec<Role>,
) -> Result<Me, StoreError> {
    let client = db.get().await?;
    let rider = client
        .query_opt(
            &format!(
                "SELECT acc.status, acc.online, acc.name, acc.phone, acc.last_lat, acc.last_lng,
                        s.suspended_at, s.suspension_reason
                 FROM riders acc {} WHERE acc.user_id = $1",
                standing_suspension("rider_id", "user_id")
            ),
            &[&user.0],
        )
        .await?
        .map(|r| RiderView {
            status: r.get("status"),
            online: r.get("online"),
            name: r.get("name"),
            phone: r.get("phone"),
            lat: r.get("last_lat"),
            lng: r.get("last_lng"),
            suspension: notice(&r),
        });
    let merchants = client
        .query(
            &format!(
                "SELECT acc.id, acc.name, acc.status, s.suspended_at, s.suspension_reason
                 FROM merchants acc JOIN merchant_admins a ON a.merchant_id = acc.id {}
                 WHERE a.user_id = $1 ORDER BY acc.id",
                standing_suspension("merchant_id", "id")
            ),
            &[&user.0],
        )
        .await?
        .iter()
        .map(|r| MerchantView {
            id: r.get("id"),
            name: r.get("name"),
            status: r.get("status"),
            suspension: notice(r),
        })
        .collect();
    Ok(Me {
        id: user,
        roles,
        rider,
        merchants,
    })
}

/// What socket admission (SPEC §2) is decided from, read in one round trip.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdmissionFacts {
    pub roles: Vec<Role>,
    /// `riders.status`, when the user applied as a rider.
    pub rider_status: Option<Approval>,
    pub rider_online: bool,
    /// Admin of any merchant at all.
    pub merchant_admin: bool,
    /// Admin of at least one approved merchant.
    pub admin_of_approved_merchant: bool,
    /// Admin of at least one suspended merchant.
    pub admin_of_suspended_merchant: bool,
    /// Which of the user's tokens their logouts refused.
    pub tokens: TokenEpoch,
}

/// What admission reads of a user (`WHERE` added by the callers).
const ADMISSION: &str = "SELECT u.id,
        ARRAY(SELECT role FROM user_roles WHERE user_id = u.id) AS roles,
        r.status AS rider_status,
        COALESCE(r.online, false) AS rider_online,
        EXISTS (SELECT 1 FROM merchant_admins a WHERE a.user_id = u.id) AS merchant_admin,
        EXISTS (SELECT 1 FROM merchant_admins a JOIN merchants m ON m.id = a.merchant_id
                WHERE a.user_id = u.id AND m.status = 'approved') AS approved_admin,
        EXISTS (SELECT 1 FROM merchant_admins a JOIN merchants m ON m.id = a.merchant_id
                WHERE a.user_id = u.id AND m.status = 'suspended') AS suspended_admin,
        u.token_epoch AS epoch,
        (extract(epoch FROM u.tokens_valid_from) * 1000)::bigint AS valid_from
     FROM users u LEFT JOIN riders r ON r.user_id = u.id";

fn admission_facts(row: &tokio_postgres::Row) -> AdmissionFacts {
    AdmissionFacts {
        roles: row
            .get::<_, Vec<String>>("roles")
            .iter()
            .filter_map(|r| r.parse().ok())
            .collect(),
        rider_status: row.get("rider_status"),
        rider_online: row.get("rider_online"),
        merchant_admin: row.get("merchant_admin"),
        admin_of_approved_merchant: row.get("approved_admin"),
        admin_of_suspended_merchant: row.get("suspended_admin"),
        tokens: token_epoch_of(row),
    }
}

/// The facts for `user`, or `None` when there is no such user.
pub async fn admission(
    db: &deadpool_postgres::Pool,
    user: UserId,
) -> Result<Option<AdmissionFacts>, StoreError> {
    let client = db.get().await?;
    let row = client
        .query_opt(
            &client
                .prepare_cached(&format!("{ADMISSION} WHERE u.id = $1"))
                .await?,
            &[&user.0],
        )
        .await?;
    Ok(row.as_ref().map(admission_facts))
}

/// [`admission`] for many users in one query (connects in rounds, [`super::admissions`],
/// and the sockets' periodic re-check); users
/// that no longer exist are missing from the answer.
pub async fn admission_many(
    db: &deadpool_postgres::Pool,
    users: &[UserId],
) -> Result<std::collections::HashMap<UserId, AdmissionFacts>, StoreError> {
    let client = db.get().await?;
    let ids: Vec<i64> = users.iter().map(|u| u.0).collect();
    let rows = client
        .query(
            &client
                .prepare_cached(&format!("{ADMISSION} WHERE u.id = ANY($1)"))
                .await?,
            &[&ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| (UserId(row.get("id")), admission_facts(row)))
        .collect())
}

/// Everyone with the platform role: who system alerts go to.
pub async fn platform_staff(db: &deadpool_postgres::Pool) -> Result<Vec<UserId>, StoreError> {
    let client = db.get().await?;
    Ok(client
        .query(
            "SELECT user_id FROM user_roles WHERE role = 'platform' ORDER BY user_id",
            &[],
        )
        .await?
        .iter()
        .map(|r| UserId(r.get(0)))
        .collect())
}

/// The user's WeChat openid (the payer of a JSAPI payment).
pub async fn openid(
    db: &deadpool_postgres::Pool,
    user: UserId,
) -> Result<Option<String>, StoreError> {
    let client = db.get().await?;
    Ok(client
        .query_opt("SELECT openid FROM users WHERE id = $1", &[&user.0])
        .await?
        .map(|r| r.get(0)))
}

#[cfg(test)]
mod known_tests {
    use super::*;

    #[test]
    fn known_users_are_remembered_up_to_the_cap() {
        let known = KnownUsers::default();
        known.remember([1, 2, 3]);
        assert_eq!(
            known.unknown(&[UserId(1), UserId(4), UserId(3), UserId(5)]),
            vec![UserId(4), UserId(5)]
        );
        known.remember(10..(10 + KNOWN_MAX as i64));
        // Full: started over, so the oldest are asked about again.
        assert_eq!(known.unknown(&[UserId(1)]), vec![UserId(1)]);
        assert!(known.0.lock().unwrap().len() <= KNOWN_MAX);
    }
}
