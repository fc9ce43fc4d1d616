//! The users file: what `loadgen seed` writes and every scenario reads (`--users`): a
//! platform user's token, approved online riders and merchant admins with theirs, and
//! (`--consumers`) consumers and a product of each merchant to order.

#[derive(serde::Deserialize, serde::Serialize)]
pub struct Users {
    pub platform: String,
    pub riders: Vec<User>,
    #[serde(default)]
    pub merchants: Vec<MerchantAdmin>,
    #[serde(default)]
    pub consumers: Vec<User>,
    /// One product per merchant, when there are consumers to order it.
    #[serde(default)]
    pub products: Vec<Product>,
}

#[derive(serde::Deserialize, serde::Serialize, Clone)]
pub struct Product {
    pub merchant_id: i64,
    pub product_id: i64,
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
