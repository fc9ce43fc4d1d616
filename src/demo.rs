//! `locallife demo`: a small world to try the service with, and the commands to try it.
//!
//! Migrates, seeds (idempotently: running it twice reuses the same users) a platform
//! user, an approved merchant with a product, an approved rider online 180 m from it, and
//! a consumer; plays WeChat Pay with a key pair of its own (unless WeChat Pay settings are
//! given), kept in a private (0700), randomly named directory removed at exit; prints
//! tokens and copy-paste commands; then serves. The ports are bound before anything is
//! seeded: a taken port is an error that changes nothing.
//!
//! With WeChat settings (`scripts/dev.sh` points them at its local fake) and no
//! `WECHAT_SUBSCRIBE_FILE`, it also configures a subscription-message template for
//! `order.paid`, gives the merchant one accepted send, and prints how to see the
//! fallback fire (`PUSH_FALLBACK_AFTER`, 10 s in the demo) for a merchant whose app is
//! closed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use secrecy::SecretString;

use crate::app::Application;
use crate::auth::Tokens;
use crate::client::PayKeys;
use crate::config::Config;
use crate::domain::{Role, UserId};
use crate::store::{self, merchants, riders, users};
use crate::wechat::rsa_keys::PemKeyPair;

const SHOP: (f64, f64) = (31.2304, 121.4737);
/// The demo's subscription-message template for `order.paid`.
const DEMO_TEMPLATE: &str = "DEMO_TPL_ORDER_PAID";
const DEMO_TEMPLATES: &str = r#"{"order.paid": {"template_id": "DEMO_TPL_ORDER_PAID",
  "page": "pages/orders/detail?id={order_id}",
  "data": {"thing1": "{title}", "character_string2": "{out_trade_no}", "amount3": "{total_fen}"}}}"#;
const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

struct World {
    platform: UserId,
    owner: UserId,
    rider: UserId,
    consumer: UserId,
    merchant: i64,
    product: i64,
}

async fn seed(db: &deadpool_postgres::Pool) -> anyhow::Result<World> {
    let platform = users::ensure_with_role(db, "demo-platform", Role::Platform).await?;
    let owner = users::ensure_with_role(db, "demo-merchant", Role::Consumer).await?;
    let rider = users::ensure_with_role(db, "demo-rider", Role::Consumer).await?;
    let consumer = users::ensure_with_role(db, "demo-consumer", Role::Consumer).await?;
    let client = db.get().await?;
    let existing = client
        .query_opt(
            "SELECT merchant_id FROM merchant_admins WHERE user_id = $1 ORDER BY merchant_id LIMIT 1",
            &[&owner.0],
        )
        .await?;
    let merchant = match existing {
        Some(r) => r.get(0),
        None => {
            merchants::create(
                db,
                owner,
                "LocalLife Demo Kitchen",
                "1 Nanjing Road",
                SHOP.0,
                SHOP.1,
            )
            .await?
        }
    };
    merchants::approve(db, merchant, Some(platform)).await?;
    let product = client
        .query_opt(
            "SELECT id FROM products WHERE merchant_id = $1 ORDER BY id LIMIT 1",
            &[&merchant],
        )
        .await?;
    let product = match product {
        Some(r) => r.get(0),
        None => {
            merchants::create_product(db, merchant, "Beef noodles", 1800, 50, 5)
                .await?
                .id
        }
    };
    riders::apply(db, rider, "Demo Rider", "13800000000").await?;
    riders::approve(db, rider, Some(platform)).await?;
    riders::go_online(db, rider, SHOP.0 + 0.0016, SHOP.1).await?;
    Ok(World {
        platform,
        owner,
        rider,
        consumer,
        merchant,
        product,
    })
}

/// WeChat Pay's side for the demo: a platform key pair and an APIv3 key, kept in `dir`.
fn pay_keys(dir: &Path) -> anyhow::Result<()> {
    let key = PemKeyPair::generate()?;
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).with_context(|| format!("cannot write {name}"))
    };
    write(PayKeys::PLATFORM_PRIVATE, &key.private)?;
    write(PayKeys::PLATFORM_PUBLIC, &key.public)?;
    let apiv3: String = {
        use rand::distributions::Alphanumeric;
        use rand::Rng;
        rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(32)
            .map(char::from)
            .collect()
    };
    write(PayKeys::APIV3_KEY, &apiv3)?;
    write(PayKeys::MCHID, "1900000109")?;
    write(PayKeys::KEY_ID, "PUB_KEY_ID_DEMO")?;
    Ok(())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub async fn run(
    mut config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Private to this user (tempfile creates it 0700), unguessable, removed on return.
    let keys_tmp = tempfile::Builder::new()
        .prefix("locallife-demo-")
        .tempdir()
        .context("cannot create the demo's key directory")?;
    let keys_dir: PathBuf = keys_tmp.path().to_owned();
    let pay = &mut config.wechat_pay;
    let plays_wechat_pay = pay.mchid.is_none()
        && pay.apiv3_key.is_none()
        && pay.public_key_file.is_none()
        && pay.public_key_id.is_none();
    if plays_wechat_pay {
        pay_keys(&keys_dir)?;
        if let Some(wechat) = &config.wechat {
            // The service checks that a payment is for its own mini-program.
            std::fs::write(keys_dir.join(PayKeys::APPID), &wechat.appid)?;
        }
        let keys = PayKeys(&keys_dir);
        let read = |name| std::fs::read_to_string(keys_dir.join(name)).map(|s| s.trim().to_owned());
        pay.mchid = Some(read(PayKeys::MCHID)?);
        pay.apiv3_key = Some(SecretString::from(read(PayKeys::APIV3_KEY)?));
        pay.public_key_file = Some(keys.0.join(PayKeys::PLATFORM_PUBLIC));
        pay.public_key_id = Some(read(PayKeys::KEY_ID)?);
    }
    // A taken port stops here, before any seeding (the rider must be seeded before the
    // app starts: its start-up builds the riders' geo index).
    for (var, addr) in [
        ("LISTEN_ADDR", config.listen_addr),
        ("METRICS_ADDR", config.metrics_addr),
    ] {
        if addr.port() != 0 {
            std::net::TcpListener::bind(addr)
                .with_context(|| format!("cannot listen on {var} {addr}"))?;
        }
    }
    // The subscription fallback, shown for order.paid, when WeChat can be reached.
    let shows_fallback = config.subscribe.is_none() && config.wechat.is_some();
    if shows_fallback {
        let fallback_after = match std::env::var("PUSH_FALLBACK_AFTER") {
            Ok(v) => crate::config::parse_duration(&v)
                .map_err(|e| anyhow::anyhow!("PUSH_FALLBACK_AFTER: {e}"))?,
            Err(_) => Duration::from_secs(10),
        };
        config.subscribe = Some(crate::config::SubscribeConfig {
            templates: crate::config::templates::Templates::parse(DEMO_TEMPLATES.as_bytes())
                .map_err(|e| anyhow::anyhow!("the demo's templates: {e}"))?,
            fallback_after,
        });
    }
    store::migrate::run(&config.database).await?;
    let db = store::connect_pool(&config.database)?;
    let world = seed(&db).await.context("cannot seed the demo data")?;
    if shows_fallback {
        // As if the merchant had tapped "accept" once in wx.requestSubscribeMessage.
        store::subscriptions::add(&db, world.owner, DEMO_TEMPLATE, 1).await?;
    }
    // Each user's current token epoch: on a database used before, they may have logged
    // out, and a token of an earlier epoch is refused.
    let mut epochs = std::collections::HashMap::new();
    for user in [world.platform, world.owner, world.rider, world.consumer] {
        epochs.insert(user, users::token_epoch(&db, user).await?.unwrap_or(0));
    }
    db.close();
    let tokens = Tokens::new(&config.jwt);
    let token = |user: UserId| {
        let epoch = epochs.get(&user).copied().unwrap_or(0);
        tokens
            .mint_with_ttl(crate::auth::jwt::Subject { user, epoch }, TOKEN_TTL)
            .token
    };

    let app = Application::build(config.clone()).await?;
    let mut addr = app.local_addr();
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let exe = std::env::current_exe()
        .map(|p| shell_quote(&p.display().to_string()))
        .unwrap_or_else(|_| "locallife".into());
    let http = format!("http://{addr}");
    let ws = format!("ws://{addr}/v1/ws");
    let order_body = format!(
        r#"{{"merchant_id":{},"items":[{{"product_id":{},"quantity":2}}],"address":{{"lat":31.2400,"lng":121.4800,"detail":"Renmin Square 2"}}}}"#,
        world.merchant, world.product
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "LocalLife demo: serving on {http} ({} engine)\n",
        app.state().hub().engine().kind()
    );
    let _ = writeln!(out, "Users (tokens valid 24 h):");
    let _ = writeln!(
        out,
        "  platform  user {}  {}",
        world.platform,
        token(world.platform)
    );
    let _ = writeln!(
        out,
        "  merchant  user {}  admin of merchant {}  {}",
        world.owner,
        world.merchant,
        token(world.owner)
    );
    let _ = writeln!(
        out,
        "  rider     user {}  online 180 m from the merchant  {}",
        world.rider,
        token(world.rider)
    );
    let _ = writeln!(
        out,
        "  consumer  user {}  {}\n",
        world.consumer,
        token(world.consumer)
    );
    let _ = writeln!(out, "1. Watch the merchant's notifications (one terminal):");
    let _ = writeln!(
        out,
        "{exe} listen --url {ws} --token {}\n",
        token(world.owner)
    );
    let _ = writeln!(
        out,
        "2. Watch the rider's notifications (another terminal):"
    );
    let _ = writeln!(
        out,
        "{exe} listen --url {ws} --token {}\n",
        token(world.rider)
    );
    let _ = writeln!(
        out,
        "3. Place an order as the consumer, then pay it as WeChat Pay would (a third terminal):"
    );
    let _ = writeln!(
        out,
        "order=$(curl -s -X POST {http}/v1/orders -H 'authorization: Bearer {}' -H 'content-type: application/json' -d {}); echo \"$order\"",
        token(world.consumer),
        shell_quote(&order_body)
    );
    if plays_wechat_pay {
        let _ = writeln!(
            out,
            "{exe} simulate-payment --url {http} --keys {} --order \"$order\"",
            shell_quote(&keys_dir.display().to_string())
        );
        let _ = writeln!(
            out,
            "\nThe merchant then sees order.paid and the rider order.recommend."
        );
        if let Some(subscribe) = config.subscribe.as_ref().filter(|_| shows_fallback) {
            let _ = writeln!(
                out,
                "\n4. When the merchant's app is closed: stop the merchant's watcher (Ctrl-C in step 1), then place and pay another order with the two lines of step 3. {} later the order.paid is still unconfirmed, so the merchant (who accepted one message of template {DEMO_TEMPLATE}) is sent a WeChat subscription message (the local fake WeChat prints it), and the order's receipt shows pushed_at:",
                humantime::format_duration(subscribe.fallback_after)
            );
            let _ = writeln!(
                out,
                "curl -s {http}/v1/orders/$(printf '%s' \"$order\" | sed -E 's/^\\{{\"id\":([0-9]+).*/\\1/')/notifications -H 'authorization: Bearer {}'",
                token(world.platform)
            );
            let _ = writeln!(
                out,
                "Starting the watcher again delivers the order.paid in the app as well."
            );
        }
    } else {
        let _ = writeln!(
            out,
            "\n(WeChat Pay settings are configured: pay the order for real to see order.paid.)"
        );
    }
    let _ = writeln!(out, "\nReady.");
    print!("{out}");
    let served = app.run_until_stopped(shutdown).await;
    drop(keys_tmp);
    served
}
