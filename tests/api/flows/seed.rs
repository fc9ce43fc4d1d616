//! The seed's two sequence diagrams end to end across two replicas: a rider pushed a
//! new order near them (4.1), a merchant told of a new order paid through WeChat Pay
//! (4.2).

use serde_json::json;

use crate::support::fake_pay;
use crate::support::fake_wechat;
use crate::support::world::{expect_event, World};

/// Seed diagram 4.1: a rider logs in, goes online, connects, and is pushed a new order
/// near them; published on one replica, received on the other.
#[tokio::test]
async fn seed_flow_rider_order_push() {
    let w = World::new(2, &[]).await;
    let (rider, rider_token) = w.rider("rider-li", 0.002).await;
    let mut socket = w.a().ws_ok(&rider_token).await;
    assert_eq!(socket.welcome["data"]["roles"], json!(["rider"]));

    let order = w.paid_order().await;
    let n = expect_event(&mut socket, "order.recommend").await;
    assert_eq!(n["data"]["title"], "新订单推荐");
    assert_eq!(n["data"]["content"], "您有新的推荐订单");
    assert_eq!(n["data"]["order_id"], order["id"]);
    assert_eq!(n["data"]["requires_ack"], true);
    let distance = n["data"]["distance_m"].as_f64().unwrap();
    assert!((200.0..250.0).contains(&distance), "{distance}");
    socket.ack(&n).await;

    let id = order["id"].as_i64().unwrap();
    let (status, accepted) = w.a().rider_step(&rider_token, id, "accept").await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["status"], "dispatched");
    assert_eq!(accepted["rider_id"], rider.0);
    for step in ["pickup", "deliver"] {
        let (status, o) = w.b().rider_step(&rider_token, id, step).await;
        assert_eq!(status, 200, "{o}");
    }
    assert_eq!(w.a().order_status(&w.consumer, id).await, "delivered");
}

/// Seed diagram 4.2: the merchant's admin is connected; a consumer orders, WeChat Pay
/// calls back, and the admin is told of the new paid order.
#[tokio::test]
async fn seed_flow_merchant_new_order_after_wechat_pay() {
    let w = World::new(2, &[]).await;
    let mut merchant_socket = w.a().ws_ok(&w.owner).await;
    assert_eq!(
        merchant_socket.welcome["data"]["roles"],
        json!(["merchant"])
    );

    let (status, order) = w.order(w.b(), 2).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "pending_payment");
    assert_eq!(order["total_fen"], 3000);
    // JSAPI prepay went out correctly signed; the client gets wx.requestPayment params.
    let prepays = w.pay.prepays();
    assert_eq!(
        (prepays.len(), w.pay.rejected()),
        (1, 0),
        "one correctly signed prepay"
    );
    assert_eq!(prepays[0]["out_trade_no"], order["out_trade_no"]);
    assert_eq!(prepays[0]["amount"]["total"], 3000);
    assert_eq!(prepays[0]["payer"]["openid"], "consumer");
    let payment = &order["payment"];
    assert!(payment["package"]
        .as_str()
        .unwrap()
        .starts_with("prepay_id=wx"));
    assert_eq!(payment["signType"], "RSA");
    assert!(
        fake_pay::pay_sign_is_valid(fake_wechat::APPID, payment),
        "{payment}"
    );

    let n = fake_pay::notification(&fake_pay::transaction(
        order["out_trade_no"].as_str().unwrap(),
        3000,
    ));
    let (status, body) = w.b().notify_payment(&n).await;
    assert_eq!(status, 204, "{body}");
    let paid = expect_event(&mut merchant_socket, "order.paid").await;
    assert_eq!(paid["data"]["title"], "新订单通知");
    assert_eq!(paid["data"]["content"], "您有新的已支付订单，请及时处理");
    assert_eq!(paid["data"]["order_id"], order["id"]);
    assert_eq!(
        w.a()
            .order_status(&w.owner, order["id"].as_i64().unwrap())
            .await,
        "paid"
    );
}
