//! Publishing through the server under test: one notification (personal, or a role
//! broadcast) per request, or one request for many (the batch endpoints). Each carries
//! its publish time (`sent_at`) and a label unique across the run.

use serde_json::{json, Value};

use crate::clients::Proto;
use crate::figures::now_us;

/// Publishes one notification to `user` (or a role broadcast when `user` is None).
pub async fn publish(
    http: &reqwest::Client,
    proto: Proto,
    base: &str,
    platform: &str,
    user: Option<i64>,
    id: &str,
) -> bool {
    let answer = publish_answer(http, proto, base, platform, user, id).await;
    matches!(answer, Some(s) if (200..300).contains(&s))
}

/// [`publish`], with the status of the answer (`None`: no answer).
pub async fn publish_answer(
    http: &reqwest::Client,
    proto: Proto,
    base: &str,
    platform: &str,
    user: Option<i64>,
    id: &str,
) -> Option<u16> {
    let sent_at = now_us();
    let req = match (proto, user) {
        (Proto::Locallife, Some(u)) => http
            .post(format!("{base}/v1/platform/notifications"))
            .bearer_auth(platform)
            .json(&json!({"user_id": u, "title": "bench", "content": id, "data": {"sent_at": sent_at}})),
        (Proto::Locallife, None) => http
            .post(format!("{base}/v1/platform/notifications"))
            .bearer_auth(platform)
            .json(&json!({"role": "rider", "title": "bench", "content": id, "data": {"sent_at": sent_at, "round": id}})),
        (Proto::Socketio, Some(u)) => http
            .post(format!("{base}/publish"))
            .json(&json!({"user": u.to_string(), "id": id, "sent_at": sent_at})),
        (Proto::Socketio, None) => http
            .post(format!("{base}/broadcast"))
            .json(&json!({"role": "rider", "id": id, "sent_at": sent_at})),
    };
    req.send().await.ok().map(|r| r.status().as_u16())
}

/// Publishes one notification to each of `users` in one request (the batch endpoint).
pub async fn publish_batch(
    http: &reqwest::Client,
    proto: Proto,
    base: &str,
    platform: &str,
    users: &[(i64, String)],
) -> bool {
    matches!(batch_answer(http, proto, base, platform, users).await, Some(s) if (200..300).contains(&s))
}

/// [`publish_batch`], with the status of the answer (`None`: no answer).
pub async fn batch_answer(
    http: &reqwest::Client,
    proto: Proto,
    base: &str,
    platform: &str,
    users: &[(i64, String)],
) -> Option<u16> {
    let sent_at = now_us();
    let req = match proto {
        Proto::Locallife => {
            let items: Vec<Value> = users
                .iter()
                .map(|(u, id)| json!({"user_id": u, "title": "bench", "content": id, "data": {"sent_at": sent_at}}))
                .collect();
            http.post(format!("{base}/v1/platform/notifications/batch"))
                .bearer_auth(platform)
                .json(&json!({ "notifications": items }))
        }
        Proto::Socketio => {
            let items: Vec<Value> = users
                .iter()
                .map(|(u, id)| json!({"user": u.to_string(), "id": id, "sent_at": sent_at}))
                .collect();
            http.post(format!("{base}/publish-batch"))
                .json(&json!({ "items": items }))
        }
    };
    req.send().await.ok().map(|r| r.status().as_u16())
}
