//! Suspension is a state (SPEC §4, issue #29 item 5): platform staff suspend an approved
//! rider or merchant, recorded with who, when and why; the refused client learns that it
//! is suspended (`rider_suspended`, `merchant_suspended`) over HTTP and on the socket;
//! approving is not the way back (409), reinstating is, and is recorded too.

use std::time::Duration;

use locallife::domain::Role;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{assert_error, into_parts, spawn_app, spawn_cluster, TestApp, WsClient};

/// A protocol-1 connect (plain HTTP refusal): its status and JSON body.
async fn refused_v1(app: &TestApp, token: &str) -> (u16, Value) {
    let url = format!(
        "{}/v1/ws?token={token}",
        app.address.replace("http://", "ws://")
    );
    let refused = WsClient::connect(url.into_client_request().unwrap())
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.close_code, None, "protocol 1 is refused over HTTP");
    (refused.status, refused.body)
}

/// `POST path` with no body at all (no content type either).
async fn post_bare(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let answer = app
        .http
        .post(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    into_parts(answer).await
}

/// An RFC 3339 time within the last minute.
fn recent(at: &Value) {
    let at = chrono::DateTime::parse_from_rfc3339(at.as_str().expect("a time")).unwrap();
    let age = chrono::Utc::now().signed_duration_since(at);
    assert!(age.num_seconds().abs() < 60, "{at}");
}

#[tokio::test]
async fn a_rider_is_suspended_with_who_when_and_why_refused_as_such_and_reinstated() {
    let apps = spawn_cluster(2).await;
    let (a, b) = (&apps[0], &apps[1]);
    let (staff_id, staff) = a.user_with_role("staff", Role::Platform).await;
    let (rider, token) = b.socket_user(Role::Rider).await;
    let mut socket = b.ws_ok(&token).await;
    let suspend = format!("/v1/platform/riders/{}/suspend", rider.0);

    let (status, body) = a
        .post_json(
            &suspend,
            Some(&staff),
            &json!({"reason": "  多次超时未送达 "}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], rider.0);
    assert_eq!(body["status"], "suspended");
    let suspension = &body["suspension"];
    assert_eq!(suspension["action"], "suspend");
    assert_eq!(suspension["by"], json!({"user_id": staff_id.0}));
    assert_eq!(suspension["reason"], "多次超时未送达");
    recent(&suspension["at"]);

    // Every socket admitted as that rider, on every replica, closes within 5 s.
    let code = tokio::time::timeout(Duration::from_secs(5), socket.closed_with())
        .await
        .expect("closed within 5 s");
    assert_eq!(code, 4003);

    // The rider sees the state, when and why (not which member of staff).
    let (status, me) = b.get("/v1/me", Some(&token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["rider"]["status"], "suspended");
    assert_eq!(me["rider"]["online"], false);
    assert_eq!(
        me["rider"]["suspension"],
        json!({"at": suspension["at"], "reason": "多次超时未送达"})
    );

    // Refused as suspended, not as "not approved": over HTTP...
    let position = json!({"lat": 31.23, "lng": 121.47});
    for path in ["/v1/rider/online", "/v1/rider/location"] {
        assert_error(
            &b.post_json(path, Some(&token), &position).await,
            403,
            "rider_suspended",
        );
    }
    assert_error(
        &b.post_json("/v1/rider/orders/1/accept", Some(&token), &json!({}))
            .await,
        403,
        "rider_suspended",
    );
    // ...and on the socket: protocol 2 closes with 4003 and the code as the reason,
    // protocol 1 answers 403.
    let refused = b.ws_refused(&token, 403, "rider_suspended").await;
    assert_eq!(refused.close_code, Some(4003));
    assert_error(&refused_v1(b, &token).await, 403, "rider_suspended");

    // Approving is not the way back; suspending again changes nothing.
    assert_error(
        &a.post_json(
            &format!("/v1/platform/riders/{}/approve", rider.0),
            Some(&staff),
            &json!({}),
        )
        .await,
        409,
        "rider_suspended",
    );
    let (status, again) = post_bare(a, &suspend, &staff).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["suspension"], *suspension, "the standing suspension");

    // Reinstated, recorded too; the rider goes online and connects again.
    let reinstate = format!("/v1/platform/riders/{}/reinstate", rider.0);
    let (status, body) = post_bare(a, &reinstate, &staff).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"user_id": rider.0, "status": "approved"}));
    let (_, me) = b.get("/v1/me", Some(&token)).await;
    assert_eq!(me["rider"]["status"], "approved");
    assert_eq!(me["rider"]["suspension"], Value::Null);
    b.ws_refused(&token, 403, "rider_offline").await;
    let (status, _) = b
        .post_json("/v1/rider/online", Some(&token), &position)
        .await;
    assert_eq!(status, 200);
    b.ws_ok(&token).await;
    // Reinstating an approved rider changes nothing.
    assert_eq!(post_bare(a, &reinstate, &staff).await.0, 200);

    // Staff read the whole history, newest first.
    let (status, history) = a
        .get(
            &format!("/v1/platform/riders/{}/suspensions", rider.0),
            Some(&staff),
        )
        .await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["user_id"], rider.0);
    assert_eq!(history["status"], "approved");
    let events = history["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{history}");
    assert_eq!(events[0]["action"], "reinstate");
    assert_eq!(events[0]["by"], json!({"user_id": staff_id.0}));
    assert_eq!(events[0]["reason"], Value::Null);
    recent(&events[0]["at"]);
    assert_eq!(events[1], *suspension);
}

#[tokio::test]
async fn a_merchant_is_suspended_with_who_when_and_why_refused_as_such_and_reinstated() {
    let apps = spawn_cluster(2).await;
    let (a, b) = (&apps[0], &apps[1]);
    let (staff_id, staff) = a.user_with_role("staff", Role::Platform).await;
    let ((_, token), merchant) = b.merchant_admin("shop-owner", true).await;
    let mut shop = b.ws_ok(&token).await;

    let (status, body) = a
        .post_json(
            &format!("/v1/platform/merchants/{merchant}/suspend"),
            Some(&staff),
            &json!({"reason": "食品安全检查未通过"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["id"], &body["status"]),
        (&json!(merchant), &json!("suspended"))
    );
    let suspension = body["suspension"].clone();
    assert_eq!(suspension["by"], json!({"user_id": staff_id.0}));
    assert_eq!(suspension["reason"], "食品安全检查未通过");
    let code = tokio::time::timeout(Duration::from_secs(5), shop.closed_with())
        .await
        .expect("closed within 5 s");
    assert_eq!(code, 4003);

    let (_, me) = b.get("/v1/me", Some(&token)).await;
    assert_eq!(me["merchants"][0]["status"], "suspended");
    assert_eq!(
        me["merchants"][0]["suspension"],
        json!({"at": suspension["at"], "reason": "食品安全检查未通过"})
    );
    let refused = b.ws_refused(&token, 403, "merchant_suspended").await;
    assert_eq!(refused.close_code, Some(4003));
    assert_error(&refused_v1(b, &token).await, 403, "merchant_suspended");
    assert_error(
        &a.post_json(
            &format!("/v1/platform/merchants/{merchant}/approve"),
            Some(&staff),
            &json!({}),
        )
        .await,
        409,
        "merchant_suspended",
    );

    let (status, body) = post_bare(
        a,
        &format!("/v1/platform/merchants/{merchant}/reinstate"),
        &staff,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"id": merchant, "status": "approved"}));
    b.ws_ok(&token).await;
    let (_, me) = b.get("/v1/me", Some(&token)).await;
    assert_eq!(me["merchants"][0]["status"], "approved");
    assert_eq!(me["merchants"][0]["suspension"], Value::Null);
    let (status, history) = a
        .get(
            &format!("/v1/platform/merchants/{merchant}/suspensions"),
            Some(&staff),
        )
        .await;
    assert_eq!(status, 200, "{history}");
    let actions: Vec<&Value> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["action"])
        .collect();
    assert_eq!(actions, [&json!("reinstate"), &json!("suspend")]);
}

/// What may be suspended and reinstated, by whom, and with what reason.
#[tokio::test]
async fn only_staff_suspend_only_approved_accounts_with_a_one_line_reason() {
    let app = spawn_app().await;
    let (_, staff) = app.user_with_role("staff", Role::Platform).await;
    let (rider, token) = app.socket_user(Role::Rider).await;
    let (pending, _) = app.rider("pending-rider", "pending").await;
    let ((_, _), pending_shop) = app.merchant_admin("pending-owner", false).await;
    let suspend = format!("/v1/platform/riders/{}/suspend", rider.0);

    assert_error(
        &app.post_json(&suspend, Some(&token), &json!({})).await,
        403,
        "forbidden",
    );
    for (reason, code) in [
        (json!(""), "invalid_reason"),
        (json!("两行\n原因"), "invalid_reason"),
        (json!("x".repeat(201)), "invalid_reason"),
        (json!("nul\u{0}"), "invalid_body"),
        (json!(42), "invalid_body"),
    ] {
        assert_error(
            &app.post_json(&suspend, Some(&staff), &json!({ "reason": reason }))
                .await,
            422,
            code,
        );
    }
    // Nothing was suspended by a refused request.
    let (_, me) = app.get("/v1/me", Some(&token)).await;
    assert_eq!(me["rider"]["status"], "approved");

    assert_error(
        &app.post_json(
            &format!("/v1/platform/riders/{}/suspend", pending.0),
            Some(&staff),
            &json!({}),
        )
        .await,
        409,
        "rider_not_approved",
    );
    assert_error(
        &post_bare(
            &app,
            &format!("/v1/platform/riders/{}/reinstate", pending.0),
            &staff,
        )
        .await,
        409,
        "rider_not_suspended",
    );
    assert_error(
        &app.post_json(
            &format!("/v1/platform/merchants/{pending_shop}/suspend"),
            Some(&staff),
            &json!({}),
        )
        .await,
        409,
        "merchant_not_approved",
    );
    assert_error(
        &post_bare(
            &app,
            &format!("/v1/platform/merchants/{pending_shop}/reinstate"),
            &staff,
        )
        .await,
        409,
        "merchant_not_suspended",
    );
    for path in [
        "/v1/platform/riders/999999/suspend",
        "/v1/platform/riders/999999/reinstate",
        "/v1/platform/merchants/999999/suspend",
        "/v1/platform/merchants/999999/reinstate",
    ] {
        assert_error(&post_bare(&app, path, &staff).await, 404, "not_found");
    }
    for path in [
        "/v1/platform/riders/999999/suspensions",
        "/v1/platform/merchants/999999/suspensions",
    ] {
        assert_error(&app.get(path, Some(&staff)).await, 404, "not_found");
    }
    // Without a reason: recorded without one.
    let (status, body) = post_bare(&app, &suspend, &staff).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["suspension"]["reason"], Value::Null);
}
