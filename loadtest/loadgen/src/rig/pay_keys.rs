//! `loadgen rig pay-keys DIR`: WeChat Pay's side of a load run, as `locallife demo` plays
//! it: a platform key pair (its private half signs the payment notifications `loadgen
//! soak` sends), an APIv3 key, a merchant id and a key id, written to DIR under the
//! names `locallife simulate-payment` reads. Prints the settings that make a replica
//! verify those notifications, one `NAME=VALUE` a line.

use anyhow::Context;
use locallife::client::PayKeys;
use locallife::wechat::rsa_keys::PemKeyPair;
use rand::distributions::Alphanumeric;
use rand::Rng;

#[derive(clap::Args)]
pub struct Args {
    /// Where the key files go (created if missing).
    dir: std::path::PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let key = PemKeyPair::generate()?;
    let apiv3: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let (mchid, key_id) = ("1900000109", "PUB_KEY_ID_SOAK");
    let public = args.dir.join(PayKeys::PLATFORM_PUBLIC);
    for (name, text) in [
        (PayKeys::PLATFORM_PRIVATE, key.private.as_str()),
        (PayKeys::PLATFORM_PUBLIC, key.public.as_str()),
        (PayKeys::APIV3_KEY, apiv3.as_str()),
        (PayKeys::MCHID, mchid),
        (PayKeys::KEY_ID, key_id),
    ] {
        std::fs::write(args.dir.join(name), text)
            .with_context(|| format!("cannot write {name}"))?;
    }
    println!("WECHATPAY_MCHID={mchid}");
    println!("WECHATPAY_APIV3_KEY={apiv3}");
    println!("WECHATPAY_PUBLIC_KEY_ID={key_id}");
    println!("WECHATPAY_PUBLIC_KEY_FILE={}", public.display());
    Ok(())
}
