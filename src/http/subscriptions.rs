//! `/v1/me/subscriptions`: what the user allowed through `wx.requestSubscribeMessage`
//! (SPEC §9), and how many sends of each template are left.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::caller::Caller;
use super::json::ApiJson;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::subscriptions::{self, MAX_ACCEPTED};

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"template_id": "TPL_ORDER_PAID", "accepted": 1}))]
pub struct Report {
    /// The template the user was asked about.
    #[schema(min_length = 1, max_length = 128)]
    template_id: String,
    /// How many sends the user allowed (`wx.requestSubscribeMessage` answers `accept`
    /// once per template per call): 0 to 1000.
    #[schema(minimum = 0, maximum = 1000)]
    accepted: i32,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"template_id": "TPL_ORDER_PAID", "remaining": 2, "events": ["order.paid"]}))]
pub struct Subscription {
    template_id: String,
    /// Sends of this template the service may still make to this user.
    remaining: i32,
    /// The events this template stands in for (empty: none is configured for it).
    events: Vec<String>,
}

fn valid_template(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The events `template` stands in for (none when it is not configured).
fn events_of(state: &AppState, template: &str) -> Vec<String> {
    state
        .config()
        .subscribe
        .as_ref()
        .map_or_else(Vec::new, |c| {
            c.templates
                .pairs()
                .filter(|(_, t)| *t == template)
                .map(|(e, _)| e.to_owned())
                .collect()
        })
}

/// Each template the service uses or the user allowed: what is left, and for which
/// events. A front end asks `wx.requestSubscribeMessage` for the templates listed
/// here.
fn listing(state: &AppState, stored: Vec<(String, i32)>) -> Vec<Subscription> {
    let mut remaining: std::collections::BTreeMap<String, i32> = stored.into_iter().collect();
    if let Some(config) = &state.config().subscribe {
        for id in config.templates.template_ids() {
            remaining.entry(id).or_insert(0);
        }
    }
    remaining
        .into_iter()
        .map(|(template_id, remaining)| Subscription {
            events: events_of(state, &template_id),
            template_id,
            remaining,
        })
        .collect()
}

/// Reports what `wx.requestSubscribeMessage` answered for one template: `accepted`
/// sends are added to what is left.
#[utoipa::path(post, path = "/me/subscriptions", tag = "auth", security(("bearer" = [])),
    request_body = Report,
    responses(
        (status = 200, description = "What is left of this template", body = Subscription),
        (status = 422, description = "`invalid_template`, `invalid_accepted`, `unknown_template` (not in the service's templates file) or `too_many_templates` (over 50 per user)", body = crate::error::Body),
    ))]
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Report>,
) -> Result<Json<Subscription>, ApiError> {
    if !valid_template(&body.template_id) {
        return Err(ApiError::unprocessable(
            "invalid_template",
            "template_id must be 1 to 128 visible ASCII characters",
        ));
    }
    if !(0..=MAX_ACCEPTED).contains(&body.accepted) {
        return Err(ApiError::unprocessable(
            "invalid_accepted",
            format!("accepted must be 0 to {MAX_ACCEPTED}"),
        ));
    }
    // With a templates file, only its templates can ever be sent: any other id is
    // refused rather than stored.
    if let Some(config) = &state.config().subscribe {
        if !config.templates.template_ids().contains(&body.template_id) {
            return Err(ApiError::unprocessable(
                "unknown_template",
                "template_id is not one of the service's templates (GET /v1/me/subscriptions lists them)",
            ));
        }
    }
    let remaining = subscriptions::add(state.db(), caller.id, &body.template_id, body.accepted)
        .await?
        .ok_or_else(|| {
            ApiError::unprocessable(
                "too_many_templates",
                format!(
                    "at most {} templates per user",
                    subscriptions::MAX_TEMPLATES_PER_USER
                ),
            )
        })?;
    let mut listed = listing(&state, vec![(body.template_id.clone(), remaining)]);
    let one = listed
        .iter()
        .position(|s| s.template_id == body.template_id)
        .map(|i| listed.swap_remove(i))
        .unwrap_or(Subscription {
            template_id: body.template_id,
            remaining,
            events: Vec::new(),
        });
    Ok(Json(one))
}

/// The templates the service uses or the user allowed, with the sends left of each.
#[utoipa::path(get, path = "/me/subscriptions", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "Each template the service uses or the user allowed", body = Vec<Subscription>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Subscription>>, ApiError> {
    let stored = subscriptions::list(state.db(), caller.id).await?;
    Ok(Json(listing(&state, stored)))
}
