//! `docs/asyncapi.yaml` against the frames of a real session.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::support::world::World;
use crate::support::WsClient;

/// Every frame `socket` receives until a notification of `event`, kept in `frames`;
/// notifications that need one are acked. The notification of `event`.
async fn collect_until(socket: &mut WsClient, event: &str, frames: &mut Vec<Value>) -> Value {
    loop {
        let frame = socket.next_json().await;
        frames.push(frame.clone());
        if frame["type"] == "notification" {
            if frame["data"]["requires_ack"] == true {
                socket.ack(&frame).await;
            }
            if frame["data"]["event"] == event {
                return frame;
            }
        }
    }
}

/// `docs/asyncapi.yaml` is valid AsyncAPI 3.0, its examples fit its schemas, and every
/// frame of a real session (the business flows of SPEC §3 and the session messages of
/// §2.1) fits exactly one of its messages, none of which allows an undeclared field.
/// `alert.system_error` needs a fault and is checked by its example only.
#[tokio::test]
async fn asyncapi_describes_every_frame_of_a_real_session() {
    let w = World::new(1, &[("PAYMENT_TIMEOUT", "2s")]).await;
    let a = w.a();
    let mut frames: Vec<Value> = Vec::new();
    let (rider1, rider1_token) = w.rider("asyncapi-rider-1", 0.001).await;
    let (rider2, rider2_token) = w.rider("asyncapi-rider-2", 0.002).await;
    let mut r1 = a.ws_ok(&rider1_token).await;
    let mut r2 = a.ws_ok(&rider2_token).await;
    let mut merchant = a.ws_ok(&w.owner).await;
    let mut staff = a.ws_ok(&w.staff).await;
    for s in [&r1, &r2, &merchant, &staff] {
        frames.push(s.welcome.clone());
    }
    // Protocol 1 too: its welcome says so.
    frames.push(a.ws_v1(&w.staff).await.welcome.clone());

    // Session messages: pong, error, auth_ok.
    r1.send_json(json!({"type": "ping", "data": {}})).await;
    frames.push(r1.next_json().await);
    r1.send_text("not json").await;
    frames.push(r1.next_json().await);
    r1.send_json(json!({"type": "auth", "data": {"token": rider1_token}}))
        .await;
    frames.push(r1.next_json().await);
    for (frame, kind) in frames[5..].iter().zip(["pong", "error", "auth_ok"]) {
        assert_eq!(frame["type"], kind, "{frame}");
    }

    // order.paid to the merchant, order.recommend to both riders; one accepts, the
    // other is told order.taken; the consumer urges.
    let order = w.paid_order().await;
    let id = order["id"].as_i64().unwrap();
    collect_until(&mut merchant, "order.paid", &mut frames).await;
    collect_until(&mut r1, "order.recommend", &mut frames).await;
    collect_until(&mut r2, "order.recommend", &mut frames).await;
    assert_eq!(a.rider_step(&rider1_token, id, "accept").await.0, 200);
    collect_until(&mut r2, "order.taken", &mut frames).await;
    assert_eq!(w.urge(id).await.0, 202);
    collect_until(&mut merchant, "order.urged", &mut frames).await;

    // order.dispatched: staff give a second paid order to rider 2.
    let second = w.paid_order().await["id"].as_i64().unwrap();
    collect_until(&mut merchant, "order.paid", &mut frames).await;
    collect_until(&mut r2, "order.recommend", &mut frames).await;
    assert_eq!(w.dispatch(second, rider2).await.0, 200);
    collect_until(&mut r2, "order.dispatched", &mut frames).await;

    // inventory.low (the stock falls under 5), then alert.payment_timeout when that
    // order stays unpaid for 2 s.
    let left = w.stock(w.product).await;
    assert_eq!(w.order(a, left - 3).await.0, 201);
    collect_until(&mut merchant, "inventory.low", &mut frames).await;
    collect_until(&mut staff, "alert.payment_timeout", &mut frames).await;

    // Staff's own: rider.command, platform.notice (with data fields), announcement.
    let (status, body) = a
        .post_json(
            &format!("/v1/platform/riders/{}/commands", rider1.0),
            Some(&w.staff),
            &json!({"title": "去新店取餐", "content": "人民广场店", "data": {"order_id": id}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    collect_until(&mut r1, "rider.command", &mut frames).await;
    let (status, body) = a
        .post_notification(
            &w.staff,
            &json!({"user_id": rider1.0, "title": "维护", "content": "今晚", "data": {"level": "info"}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    collect_until(&mut r1, "platform.notice", &mut frames).await;
    let (status, body) = a
        .post_notification(
            &w.staff,
            &json!({"role": "rider", "title": "公告", "content": "大家好"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    collect_until(&mut r1, "announcement", &mut frames).await;

    let root = env!("CARGO_MANIFEST_DIR");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&frames).unwrap()).unwrap();
    let out = std::process::Command::new(crate::support::venv().join("bin/python"))
        .arg(format!("{root}/tests/asyncapi/check.py"))
        .arg(format!("{root}/docs/asyncapi.yaml"))
        .arg(file.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: HashSet<&str> = report
        .lines()
        .filter_map(|l| l.strip_prefix("seen "))
        .collect();
    let expected: HashSet<&str> = [
        "welcome",
        "pong",
        "authOk",
        "error",
        "orderRecommend",
        "orderDispatched",
        "orderTaken",
        "riderCommand",
        "orderPaid",
        "orderUrged",
        "inventoryLow",
        "alertPaymentTimeout",
        "platformNotice",
        "announcement",
    ]
    .into();
    assert_eq!(seen, expected, "{report}");
}
