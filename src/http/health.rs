//! `/healthz` (the process is alive) and `/readyz` (it can serve: PostgreSQL and Redis
//! answer, this replica's pub/sub canary came back within the last 5 s, and it is not
//! draining).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::state::AppState;
use crate::store;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let postgres = store::ping(state.db()).await.is_ok();
    let engine = state.hub().engine();
    let redis = match engine.kind() {
        "redis" => Some(engine.ping().await),
        _ => None,
    };
    let pubsub = engine.pubsub_live();
    let draining = state.is_draining();
    let ready = postgres && redis.unwrap_or(true) && pubsub.unwrap_or(true) && !draining;
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "draining": draining,
        "checks": {
            "postgres": word(postgres),
            "redis": redis.map_or("disabled", word),
            "pubsub": pubsub.map_or("disabled", word),
        }
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
