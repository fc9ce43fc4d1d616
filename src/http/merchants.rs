//! `/v1/merchants/...`: create a merchant, manage its products.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::openapi::IdStatus;

use super::caller::Caller;
use super::json::ApiJson;
use super::path::ApiPath;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::merchants::{self, Product};

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"name": "老王面馆", "lat": 31.2304, "lng": 121.4737, "address": "南京东路 100 号"}))]
pub struct NewMerchant {
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    #[schema(minimum = -85.05112878, maximum = 85.05112878)]
    lat: f64,
    #[schema(minimum = -180, maximum = 180)]
    lng: f64,
    #[schema(max_length = 200)]
    address: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"name": "牛肉面", "price_fen": 1800, "stock": 50, "low_stock_threshold": 5}))]
pub struct NewProduct {
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    #[schema(minimum = 0, maximum = 100000000)]
    price_fen: i64,
    #[schema(minimum = 0)]
    stock: i32,
    #[serde(default)]
    #[schema(minimum = 0)]
    low_stock_threshold: i32,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"stock": 3}))]
pub struct ProductPatch {
    #[schema(min_length = 1, max_length = 100)]
    name: Option<String>,
    #[schema(minimum = 0, maximum = 100000000)]
    price_fen: Option<i64>,
    #[schema(minimum = 0)]
    stock: Option<i32>,
    #[schema(minimum = 0)]
    low_stock_threshold: Option<i32>,
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let n = name.trim().chars().count();
    if n == 0 || n > 100 {
        return Err(ApiError::unprocessable(
            "invalid_name",
            "name must be 1 to 100 characters",
        ));
    }
    Ok(())
}

fn check_numbers(
    price: Option<i64>,
    stock: Option<i32>,
    threshold: Option<i32>,
) -> Result<(), ApiError> {
    if price.is_some_and(|p| !(0..=100_000_000).contains(&p)) {
        return Err(ApiError::unprocessable(
            "invalid_price",
            "price_fen must be 0 to 100000000",
        ));
    }
    if stock.is_some_and(|s| s < 0) {
        return Err(ApiError::unprocessable(
            "invalid_stock",
            "stock cannot be negative",
        ));
    }
    if threshold.is_some_and(|t| t < 0) {
        return Err(ApiError::unprocessable(
            "invalid_threshold",
            "low_stock_threshold cannot be negative",
        ));
    }
    Ok(())
}

/// Creates a merchant, pending approval; the caller becomes its admin.
#[utoipa::path(post, path = "/merchants", operation_id = "create_merchant", tag = "merchants", security(("bearer" = [])),
    request_body = NewMerchant,
    responses((status = 201, description = "Created, pending approval", body = IdStatus)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewMerchant>,
) -> Result<(StatusCode, Json<IdStatus>), ApiError> {
    check_name(&body.name)?;
    if !crate::domain::valid_position(body.lat, body.lng) {
        return Err(ApiError::unprocessable(
            "invalid_position",
            "lat must be within ±90 and lng within ±180",
        ));
    }
    if body.address.chars().count() > 200 {
        return Err(ApiError::unprocessable(
            "invalid_address",
            "address is at most 200 characters",
        ));
    }
    let id = merchants::create(
        state.db(),
        caller.id,
        body.name.trim(),
        body.address.trim(),
        body.lat,
        body.lng,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(IdStatus {
            id,
            status: "pending",
        }),
    ))
}

/// 404 for a merchant that does not exist, 403 for one the caller does not administer.
async fn require_admin(state: &AppState, merchant: i64, caller: &Caller) -> Result<(), ApiError> {
    match merchants::is_admin(state.db(), merchant, caller.id).await? {
        None => Err(ApiError::not_found()),
        Some(false) => Err(ApiError::forbidden(
            "not_merchant_admin",
            "only this merchant's admins may do that",
        )),
        Some(true) => Ok(()),
    }
}

/// Adds a product; only the merchant's admins.
#[utoipa::path(post, path = "/merchants/{id}/products", operation_id = "create_product", tag = "merchants", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The merchant")),
    request_body = NewProduct,
    responses(
        (status = 201, description = "Created", body = Product),
        (status = 403, description = "`not_merchant_admin`", body = crate::error::Body),
    ))]
pub async fn create_product(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(merchant): ApiPath<i64>,
    ApiJson(body): ApiJson<NewProduct>,
) -> Result<(StatusCode, Json<Product>), ApiError> {
    require_admin(&state, merchant, &caller).await?;
    check_name(&body.name)?;
    check_numbers(
        Some(body.price_fen),
        Some(body.stock),
        Some(body.low_stock_threshold),
    )?;
    let product = merchants::create_product(
        state.db(),
        merchant,
        body.name.trim(),
        body.price_fen,
        body.stock,
        body.low_stock_threshold,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(product)))
}

/// Changes any of a product's fields; only the merchant's admins. (`inventory.low` is
/// sent when an order takes the stock to its threshold, not when the merchant sets it.)
#[utoipa::path(patch, path = "/merchants/{id}/products/{product_id}", tag = "merchants", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The merchant"), ("product_id" = i64, Path, description = "The product")),
    request_body = ProductPatch,
    responses(
        (status = 200, description = "The product", body = Product),
        (status = 403, description = "`not_merchant_admin`", body = crate::error::Body),
    ))]
pub async fn update_product(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((merchant, product)): ApiPath<(i64, i64)>,
    ApiJson(body): ApiJson<ProductPatch>,
) -> Result<Json<Product>, ApiError> {
    require_admin(&state, merchant, &caller).await?;
    if let Some(name) = &body.name {
        check_name(name)?;
    }
    check_numbers(body.price_fen, body.stock, body.low_stock_threshold)?;
    merchants::update_product(
        state.db(),
        merchant,
        product,
        body.name.as_deref().map(str::trim),
        body.price_fen,
        body.stock,
        body.low_stock_threshold,
    )
    .await?
    .map(Json)
    .ok_or_else(ApiError::not_found)
}
