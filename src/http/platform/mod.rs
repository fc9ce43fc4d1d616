//! Platform staff endpoints (role `platform`, or a service key): their routes, one file
//! per kind of work. `notifications.rs` sends (to a user, a role, a batch, a rider's
//! instruction) and reads receipts; `ops.rs` is what the console watches (connections,
//! status, alerts); `admin.rs` approves riders and merchants; `dispatch.rs` gives an
//! order to a rider.

mod admin;
mod dispatch;
mod notifications;
mod ops;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The platform routes, under `/v1`, each with its OpenAPI description.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(notifications::send_notification))
        .routes(routes!(notifications::send_batch))
        .routes(routes!(notifications::receipt))
        .routes(routes!(ops::connections))
        .routes(routes!(ops::status))
        .routes(routes!(ops::alerts))
        .routes(routes!(admin::approve_rider))
        .routes(routes!(notifications::rider_command))
        .routes(routes!(admin::approve_merchant))
        .routes(routes!(dispatch::dispatch))
}
