//! WeChat Pay from its real triggers: answers that do not verify, notifications forged,
//! tampered, stale, for the wrong merchant or amount, repeated, late (for an order the
//! sweeper closed) or for a deployment without merchant credentials, and the sweeper
//! that closes unpaid orders.

use std::collections::HashSet;
use std::time::Duration;

use locallife::domain::Role;
use serde_json::{json, Value};

use crate::support::fake_pay;
use crate::support::fake_wechat;
use crate::support::world::{expect_event, token, transaction_for, World};

/// WeChat Pay's API answers are believed only when signed with its key (the same
/// check as notifications) and only up to 64 KiB: a forged, tampered, replayed or huge
/// answer gives no `paySign`, and the order is closed with its stock returned.
#[tokio::test]
async fn wechat_pay_answers_that_do_not_verify_are_not_trusted() {
    let w = World::new(1, &[]).await;
    let before = w.stock(w.product).await;
    for mode in [
        fake_pay::Answer::Unsigned,
        fake_pay::Answer::OtherKey,
        fake_pay::Answer::Tampered,
        fake_pay::Answer::Stale,
        fake_pay::Answer::Huge(50 * 1024 * 1024),
    ] {
        w.pay.answer_next(mode);
        let (status, body) = w.order(w.a(), 1).await;
        assert_eq!(status, 502, "{mode:?}: {body}");
        assert!(!body.to_string().contains("ATTACKER"), "{body}");
        assert_eq!(w.stock(w.product).await, before, "{mode:?}: stock kept");
    }
    assert!(
        w.pay.streamed() < 8 * 1024 * 1024,
        "{} bytes of the huge answer taken",
        w.pay.streamed()
    );
    assert!(
        w.a()
            .metrics_text()
            .await
            .contains("locallife_wechatpay_answers_refused_total"),
        "refusals are counted"
    );
    // A signed answer still works.
    let (status, order) = w.order(w.a(), 1).await;
    assert_eq!(status, 201, "{order}");
    assert!(fake_pay::pay_sign_is_valid(
        fake_wechat::APPID,
        &order["payment"]
    ));
}

/// Anyone can post junk to the webhook: refusals are counted, and staff are not alerted
/// by a handful of them (unknown key ids alert only at a sustained rate). An oversize
/// body is refused in WeChat Pay's own shape.
#[tokio::test]
async fn anonymous_junk_on_the_webhook_alerts_nobody_and_oversize_is_fail_413() {
    let w = World::new(1, &[]).await;
    let mut staff_socket = w.a().ws_ok(&w.staff).await;
    let (_, order) = w.order(w.a(), 1).await;
    let mut unknown_key = fake_pay::notification(&transaction_for(&order));
    unknown_key.headers[3].1 = "PUB_KEY_ID_NOBODY".into();
    for _ in 0..10 {
        assert_eq!(w.a().notify_payment(&unknown_key).await.0, 401);
    }
    assert!(
        staff_socket
            .nothing_within(Duration::from_millis(500))
            .await,
        "no alert from ten anonymous requests"
    );
    let metrics = w.a().metrics_text().await;
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("locallife_webhook_refused_total{reason=\"unknown_serial\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    // (Counters are per process; other tests' refusals may add to it.)
    assert!(refused >= 10.0, "refusals counted: {refused}");

    let mut huge = fake_pay::notification(&transaction_for(&order));
    huge.body = format!("{{\"pad\":\"{}\"}}", "x".repeat(100 * 1024));
    let (status, body) = w.a().notify_payment(&huge).await;
    assert_eq!(status, 413);
    assert_eq!(body["code"], "FAIL", "{body}");
}

#[tokio::test]
async fn bad_payment_notifications_are_refused_and_change_nothing() {
    let w = World::new(1, &[]).await;
    let mut merchant_socket = w.a().ws_ok(&w.owner).await;
    let (_, order) = w.order(w.a(), 1).await;
    let total = order["total_fen"].as_i64().unwrap();
    let good = transaction_for(&order);

    let forged = fake_pay::forged(&good);
    let mut tampered = fake_pay::notification(&good);
    tampered.body = tampered
        .body
        .replace("TRANSACTION.SUCCESS", "TRANSACTION.SUCCESs");
    let stale = fake_pay::notification_at(&good, chrono::Utc::now().timestamp() - 301);
    // Well past the window: a slow test run brings "now" closer to it.
    let future = fake_pay::notification_at(&good, chrono::Utc::now().timestamp() + 360);
    let mut wrong_serial = fake_pay::notification(&good);
    wrong_serial.headers[3].1 = "PUB_KEY_ID_SOMEONE_ELSE".into();
    let mut unsigned = fake_pay::notification(&good);
    unsigned.headers.remove(2);
    let mut other_mchid = good.clone();
    other_mchid["mchid"] = json!("1900000999");
    let mut wrong_amount = good.clone();
    wrong_amount["amount"]["total"] = json!(total - 1);
    let mut other_appid = good.clone();
    other_appid["appid"] = json!("wx-someone-else");
    let mut garbage = fake_pay::notification(&good);
    garbage.body = "{\"resource\":".into();

    for (label, n) in [
        ("forged", forged),
        ("tampered", tampered),
        ("stale", stale),
        ("future", future),
        ("wrong serial", wrong_serial),
        ("unsigned", unsigned),
        ("wrong merchant", fake_pay::notification(&other_mchid)),
        ("wrong amount", fake_pay::notification(&wrong_amount)),
        ("another appid", fake_pay::notification(&other_appid)),
        ("garbage", garbage),
    ] {
        let (status, body) = w.a().notify_payment(&n).await;
        assert!((400..500).contains(&status), "{label}: {status} {body}");
        assert_eq!(body["code"], "FAIL", "{label}");
    }
    assert!(
        merchant_socket
            .nothing_within(Duration::from_millis(300))
            .await,
        "nothing sent"
    );
    assert_eq!(
        w.a()
            .order_status(&w.consumer, order["id"].as_i64().unwrap())
            .await,
        "pending_payment"
    );
    assert_eq!(w.payments().await, 0);
}

#[tokio::test]
async fn ten_copies_of_a_notification_pay_once_and_notify_once() {
    let w = World::new(2, &[]).await;
    let mut merchant_socket = w.a().ws_ok(&w.owner).await;
    let (_, order) = w.order(w.a(), 1).await;
    let tx = transaction_for(&order);
    let copies: Vec<_> = (0..10).map(|_| fake_pay::notification(&tx)).collect();
    let answers = futures::future::join_all(
        copies
            .iter()
            .enumerate()
            .map(|(i, n)| w.apps[i % 2].notify_payment(n)),
    )
    .await;
    assert!(answers.iter().all(|(s, _)| *s == 204), "{answers:?}");
    let paid = expect_event(&mut merchant_socket, "order.paid").await;
    merchant_socket.ack(&paid).await;
    assert!(
        merchant_socket
            .nothing_within(Duration::from_millis(500))
            .await,
        "one order.paid"
    );
    assert_eq!(w.payments().await, 1);
}

#[tokio::test]
async fn unpaid_orders_close_once_with_one_alert_each_across_replicas() {
    let w = World::new(2, &[("PAYMENT_TIMEOUT", "1s")]).await;
    let mut staff_socket = w.a().ws_ok(&w.staff).await;
    let mut ids = HashSet::new();
    for i in 0..5 {
        let (status, o) = w.order(&w.apps[i % 2], 2).await;
        assert_eq!(status, 201, "{o}");
        ids.insert(o["id"].as_i64().unwrap());
    }
    let mut alerted = HashSet::new();
    for _ in 0..5 {
        let n = expect_event(&mut staff_socket, "alert.payment_timeout").await;
        assert_eq!(n["data"]["title"], "支付超时");
        assert!(
            alerted.insert(n["data"]["order_id"].as_i64().unwrap()),
            "one alert per order"
        );
        staff_socket.ack(&n).await;
    }
    assert_eq!(alerted, ids);
    assert!(
        staff_socket
            .nothing_within(Duration::from_millis(1500))
            .await,
        "no second alert"
    );
    for id in ids {
        assert_eq!(w.b().order_status(&w.consumer, id).await, "closed");
    }
    assert_eq!(w.stock(w.product).await, 100, "stock returned");
}

#[tokio::test]
async fn a_payment_for_a_closed_order_is_recorded_and_alerted_not_reopened() {
    let w = World::new(1, &[("PAYMENT_TIMEOUT", "300ms")]).await;
    let mut staff_socket = w.a().ws_ok(&w.staff).await;
    let (_, order) = w.order(w.a(), 1).await;
    let id = order["id"].as_i64().unwrap();
    expect_event(&mut staff_socket, "alert.payment_timeout").await;
    let n = fake_pay::notification(&transaction_for(&order));
    assert_eq!(w.a().notify_payment(&n).await.0, 204);
    let alert = expect_event(&mut staff_socket, "alert.system_error").await;
    assert_eq!(alert["data"]["kind"], "late_payment");
    assert_eq!(w.a().order_status(&w.consumer, id).await, "closed");
    let outcome: String = w
        .a()
        .db
        .scalar("SELECT outcome FROM payments WHERE order_id = $1", &[&id])
        .await;
    assert_eq!(outcome, "late");
}

#[tokio::test]
async fn without_merchant_credentials_orders_carry_no_payment() {
    let app = crate::support::spawn_app().await;
    let (_, staff) = app.user_with_role("staff", Role::Platform).await;
    let owner = token(app.login("owner").await);
    let merchant = app.approved_merchant(&owner, &staff, "店").await;
    let product = app.product(&owner, merchant, 500, 3, 0).await;
    let consumer = token(app.login("c").await);
    let (status, order) = app
        .place_order(
            &consumer,
            merchant,
            json!([{"product_id": product, "quantity": 2}]),
        )
        .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["payment"], Value::Null);
    assert_eq!(order["total_fen"], 1000);
    assert!(order["pay_deadline"].is_string());
    // And notifications cannot be verified: refused, and staff are alerted once they
    // keep coming (WeChat Pay's retries), not on the first.
    let mut staff_socket = app.ws_ok(&staff).await;
    let n = fake_pay::notification(&fake_pay::transaction(
        order["out_trade_no"].as_str().unwrap(),
        1000,
    ));
    let (status, body) = app.notify_payment(&n).await;
    // 404: this deployment takes no WeChat Pay notifications (a 5xx would say the
    // server failed; nothing did).
    assert_eq!((status, body["code"].as_str()), (404, Some("FAIL")));
    assert!(
        staff_socket
            .nothing_within(Duration::from_millis(300))
            .await
    );
    for _ in 0..4 {
        assert_eq!(app.notify_payment(&n).await.0, 404);
    }
    let alert = expect_event(&mut staff_socket, "alert.system_error").await;
    assert_eq!(alert["data"]["kind"], "wechatpay_not_configured");
}
