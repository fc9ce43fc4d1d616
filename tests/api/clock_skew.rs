//! Logout without clock skew (SPEC §4, issue #29 item 6): two `locallife serve`
//! replicas whose wall clocks differ by a minute (Debian's libfaketime: one 30 s ahead,
//! one 30 s behind), beside an in-process one on the true clock, on one database and
//! one Redis. Which tokens a logout refuses is decided by the user's token epoch in the
//! database, so every replica agrees, whichever minted the token or took the logout.

use std::path::PathBuf;

use locallife::domain::Role;
use serde_json::json;

use crate::support::fake_wechat;
use crate::support::{spawn_app_on, EngineKind, Replica, TestApp};

/// Debian's libfaketime (multi-threaded flavour), which `scripts/services.sh
/// --with-test-tools` installs.
fn libfaketime() -> PathBuf {
    std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|dir| dir.path().join("faketime/libfaketimeMT.so.1"))
        .chain([PathBuf::from("/usr/lib/faketime/libfaketimeMT.so.1")])
        .find(|lib| lib.exists())
        .expect("libfaketime (apt-get install faketime, or scripts/services.sh --with-test-tools)")
}

/// A replica of `hub`'s database, Redis and fake WeChat whose wall clock is `offset`
/// (`+30s`) off; its monotonic clock is left alone, as NTP skew leaves it.
async fn skewed(hub: &TestApp, offset: &str) -> Replica {
    let lib = libfaketime();
    let env = [
        ("LD_PRELOAD", lib.to_str().unwrap()),
        ("FAKETIME", offset),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ("WECHAT_APPID", fake_wechat::APPID),
        ("WECHAT_SECRET", fake_wechat::SECRET),
        ("WECHAT_API_BASE", hub.wechat.base.as_str()),
    ];
    Replica::start(hub, &env).await
}

/// Signs in as `openid` through the replica at `base`; the access token.
async fn login(hub: &TestApp, base: &str, openid: &str) -> String {
    let answer: serde_json::Value = hub
        .http
        .post(format!("{base}/v1/auth/wechat-login"))
        .json(&json!({ "code": hub.wechat.issue_code(openid) }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {answer}"))
        .to_owned()
}

async fn post_logout(hub: &TestApp, base: &str, token: &str) -> u16 {
    let answer = hub
        .http
        .post(format!("{base}/v1/auth/logout"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    answer.status().as_u16()
}

/// The status of `GET /v1/me` with `token` on each replica.
async fn me_everywhere(hub: &TestApp, bases: &[String], token: &str) -> Vec<u16> {
    let mut statuses = Vec::new();
    for base in bases {
        let answer = hub
            .http
            .get(format!("{base}/v1/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        statuses.push(answer.status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn a_logout_refuses_older_tokens_and_only_those_across_replicas_whose_clocks_differ() {
    let hub = spawn_app_on(EngineKind::Redis).await;
    let ahead = skewed(&hub, "+30s").await;
    let behind = skewed(&hub, "-30s").await;
    let (a, b) = (
        format!("http://{}", ahead.address),
        format!("http://{}", behind.address),
    );
    let everywhere = [hub.address.clone(), a.clone(), b.clone()];
    // Platform staff, so that the socket can be tried too.
    hub.user_with_role("skewed", Role::Platform).await;

    // Minted on the replica whose clock runs ahead: works everywhere, also where the
    // clock says it was issued a minute from now.
    let first = login(&hub, &a, "skewed").await;
    assert_eq!(me_everywhere(&hub, &everywhere, &first).await, [200; 3]);

    // Logged out on the replica whose clock runs behind: by that clock the token was
    // minted after the logout, and it is refused everywhere all the same.
    assert_eq!(post_logout(&hub, &b, &first).await, 204);
    assert_eq!(me_everywhere(&hub, &everywhere, &first).await, [401; 3]);
    hub.ws_refused(&first, 401, "unauthorized").await;

    // Tokens minted after the logout, on either replica, work everywhere.
    let on_a = login(&hub, &a, "skewed").await;
    let on_b = login(&hub, &b, "skewed").await;
    for token in [&on_a, &on_b] {
        assert_eq!(me_everywhere(&hub, &everywhere, token).await, [200; 3]);
    }

    // The other way round: logged out where the clock runs ahead, then signed in at once
    // where it runs behind. The new token's clock says it was minted a minute before the
    // logout; it works everywhere, and the two older ones do not.
    assert_eq!(post_logout(&hub, &a, &on_a).await, 204);
    let after = login(&hub, &b, "skewed").await;
    assert_eq!(me_everywhere(&hub, &everywhere, &after).await, [200; 3]);
    for token in [&on_a, &on_b] {
        assert_eq!(me_everywhere(&hub, &everywhere, token).await, [401; 3]);
    }
    hub.ws_ok(&after).await;
}
