//! A local stand-in for WeChat's `code2Session`, for trying logins without WeChat.
//!
//! `cargo run --example fake_wechat -- 127.0.0.1:8099`, then point `WECHAT_API_BASE` at
//! it with `WECHAT_APPID=wx-test-appid` and `WECHAT_SECRET=wechat-test-app-secret`
//! (`scripts/dev.sh` does all of this). Any code logs in once, as openid `dev-<code>`.

#[allow(dead_code)]
#[path = "../tests/api/fake_wechat.rs"]
mod fake_wechat;

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8099".into());
    let fake = fake_wechat::FakeWechat::start_on(&addr, true).await;
    eprintln!(
        "fake WeChat code2Session on {} (appid {}, any code logs in once as dev-<code>)",
        fake.base,
        fake_wechat::APPID
    );
    std::future::pending::<()>().await;
}
