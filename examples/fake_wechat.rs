//! A local stand-in for WeChat's `code2Session`, for trying logins without WeChat.
//!
//! `cargo run --example fake_wechat -- 127.0.0.1:8099`, then point `WECHAT_API_BASE` at
//! it with `WECHAT_APPID=wx-test-appid` and `WECHAT_SECRET=wechat-test-app-secret`
//! (`scripts/dev.sh` does all of this, on `FAKE_WECHAT_ADDR`). Any code logs in once,
//! as openid `dev-<code>`. A taken address is a one-line error and exit status 1.

#[allow(dead_code)]
#[path = "../tests/api/support/fake_wechat.rs"]
mod fake_wechat;

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8099".into());
    let fake = match fake_wechat::FakeWechat::try_start_on(&addr, true).await {
        Ok(fake) => fake,
        Err(e) => {
            eprintln!("fake_wechat: error: cannot listen on {addr}: {e} (set FAKE_WECHAT_ADDR to another address)");
            std::process::exit(1);
        }
    };
    eprintln!(
        "fake WeChat code2Session on {} (appid {}, any code logs in once as dev-<code>)",
        fake.base,
        fake_wechat::APPID
    );
    std::future::pending::<()>().await;
}
