//! `/healthz` (the process is alive) and `/readyz` (it can serve: PostgreSQL and Redis
//! answer, this replica's pub/sub canary came back within the last 5 s on the subscriber
//! connection it holds now, and it is not draining).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::openapi::{Health, Ready, ReadyChecks};

use crate::state::AppState;
use crate::store;

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Ready to serve: PostgreSQL and Redis answer, the pub/sub canary came back within
/// 5 s on the current subscriber connection, not draining.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Not ready: the checks say why", body = Ready),
    ))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Ready>) {
    let (ready, checks) = probe(&state).await;
    let draining = state.is_draining();
    let ready = ready && !draining;
    let body = Ready {
        status: if ready { "ready" } else { "not_ready" },
        draining,
        checks,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// PostgreSQL, Redis and this replica's pub/sub canary, as `/readyz` and the console's
/// status report them: whether all are well, and each as `ok`, `unavailable` or
/// `disabled` (the in-process engine has no Redis).
pub async fn probe(state: &AppState) -> (bool, ReadyChecks) {
    let postgres = store::ping(state.db()).await.is_ok();
    let engine = state.hub().engine();
    let redis = match engine.kind() {
        "redis" => Some(engine.ping().await),
        _ => None,
    };
    let pubsub = engine.pubsub_live();
    let ready = postgres && redis.unwrap_or(true) && pubsub.unwrap_or(true);
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    (
        ready,
        ReadyChecks {
            postgres: word(postgres),
            redis: redis.map_or("disabled", word),
            pubsub: pubsub.map_or("disabled", word),
        },
    )
}
