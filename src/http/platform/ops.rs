//! What staff watch (SPEC §8): sockets across replicas, this replica's view of its
//! dependencies and the outbox, and the recent alerts.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use crate::domain::Scope;
use crate::error::ApiError;
use crate::http::caller::Staff;
use crate::http::health;
use crate::http::openapi::{Alerts, Connections, PlatformStatus};
use crate::hub::CENSUS_STALE;
use crate::state::AppState;
use crate::store;

/// `GET /v1/platform/connections`: sockets by role, across replicas and per replica.
#[utoipa::path(get, path = "/platform/connections", tag = "platform", security(("bearer" = []), ("service_key" = ["read"])),
    responses(
        (status = 200, description = "Sockets by role, in all and per replica", body = Connections),
        (status = 403, description = "`forbidden`: requires the platform role; `missing_scope`: a service key without `read`", body = crate::error::Body),
    ))]
pub async fn connections(
    State(state): State<AppState>,
    staff: Staff,
) -> Result<Json<Connections>, ApiError> {
    staff.require(Scope::Read)?;
    let hub = state.hub();
    let fresh_after = crate::time::unix_ms().saturating_sub(CENSUS_STALE.as_millis() as u64);
    let mut replicas = state.engine().censuses(fresh_after).await?;
    // This replica's own figures are read now rather than from its last report.
    replicas.retain(|r| *r.replica_id != **hub.replica_id());
    replicas.push(crate::engine::ReplicaCensus {
        replica_id: hub.replica_id().to_string(),
        census: hub.census(),
        reported_at_ms: crate::time::unix_ms(),
    });
    replicas.sort_by(|a, b| a.replica_id.cmp(&b.replica_id));
    let mut total = crate::engine::Census::default();
    for r in &replicas {
        total.sockets += r.census.sockets;
        for (role, n) in &r.census.by_role {
            *total.by_role.entry(role.clone()).or_default() += n;
        }
    }
    Ok(Json(Connections {
        replica_id: hub.replica_id().to_string(),
        total,
        replicas,
    }))
}

/// `GET /v1/platform/status`: what the console shows beside the sockets.
#[utoipa::path(get, path = "/platform/status", operation_id = "platform_status", tag = "platform", security(("bearer" = []), ("service_key" = ["read"])),
    responses(
        (status = 200, description = "This replica's view of PostgreSQL, Redis and the outbox", body = PlatformStatus),
        (status = 403, description = "`forbidden`: requires the platform role; `missing_scope`: a service key without `read`", body = crate::error::Body),
    ))]
pub async fn status(
    State(state): State<AppState>,
    staff: Staff,
) -> Result<Json<PlatformStatus>, ApiError> {
    staff.require(Scope::Read)?;
    let (_, checks) = health::probe(&state).await;
    Ok(Json(PlatformStatus {
        replica_id: state.hub().replica_id().to_string(),
        postgres: checks.postgres,
        redis: checks.redis,
        pubsub: checks.pubsub,
        draining: state.is_draining(),
        outbox: store::outbox::status(state.db()).await?,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// How many, newest first: 1 to 100 (default 20).
    limit: Option<i64>,
}

/// `GET /v1/platform/alerts`: the most recent `alert.*` notifications.
#[utoipa::path(get, path = "/platform/alerts", tag = "platform", security(("bearer" = []), ("service_key" = ["read"])),
    params(AlertsQuery),
    responses(
        (status = 200, description = "Newest first", body = Alerts),
        (status = 400, description = "`invalid_query`", body = crate::error::Body),
        (status = 403, description = "`forbidden`: requires the platform role; `missing_scope`: a service key without `read`", body = crate::error::Body),
        (status = 422, description = "`invalid_limit`: limit must be 1 to 100", body = crate::error::Body),
    ))]
pub async fn alerts(
    State(state): State<AppState>,
    staff: Staff,
    query: Result<axum::extract::Query<AlertsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Alerts>, ApiError> {
    staff.require(Scope::Read)?;
    let axum::extract::Query(query) =
        query.map_err(|_| ApiError::bad_request("invalid_query", "limit must be a number"))?;
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::unprocessable(
            "invalid_limit",
            "limit must be 1 to 100",
        ));
    }
    Ok(Json(Alerts {
        alerts: store::outbox::recent_alerts(state.db(), limit).await?,
    }))
}
