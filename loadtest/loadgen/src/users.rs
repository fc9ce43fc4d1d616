//! The users file: what `loadgen seed` writes and every scenario reads (`--users`): a
//! platform user's token, approved online riders and merchant admins with theirs.

#[derive(serde::Deserialize, serde::Serialize)]
pub struct Users {
    pub platform: String,
    pub riders: Vec<User>,
    #[serde(default)]
    pub merchants: Vec<MerchantAdmin>,
}

#[derive(serde::Deserialize, serde::Serialize, Clone)]
pub struct MerchantAdmin {
    pub user_id: i64,
    pub merchant_id: i64,
    pub token: String,
}

#[derive(serde::Deserialize, serde::Serialize, Clone)]
pub struct User {
    pub user_id: i64,
    pub token: String,
}
