//! The names of every setting: [`SETTINGS`], and the look-alikes of them that
//! `locallife config check` warns of ([`unknown_settings`]).

/// Every environment variable the service reads: the names `locallife config check`
/// knows, and (by a test in `tests/api/docs.rs`) exactly the names the other files of
/// `src/config/` read and the rows of `docs/configuration.md`.
pub const SETTINGS: &[&str] = &[
    "ACCESS_TOKEN_TTL",
    "DATABASE_POOL_SIZE",
    "DATABASE_URL",
    "HOSTNAME",
    "HTTP_FORWARDED_FOR",
    "HTTP_HEADER_READ_TIMEOUT",
    "HTTP_IDLE_TIMEOUT",
    "HTTP_RATE_ADDRESS",
    "HTTP_RATE_BACK_OFFICE",
    "HTTP_RATE_LOGIN",
    "HTTP_RATE_USER",
    "JWT_AUDIENCE",
    "JWT_ISSUER",
    "JWT_SECRET",
    "LISTEN_ADDR",
    "LOG_FORMAT",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_ADDRESS",
    "METRICS_ADDR",
    "ORDERS_UNPAID_MAX",
    "PAYMENT_TIMEOUT",
    "PGSSLROOTCERT",
    "PUBLISH_MAX_IN_FLIGHT",
    "PUBLISH_TARGET_LATENCY",
    "PUSH_FALLBACK_AFTER",
    "REDIS_CA_FILE",
    "REDIS_KEY_PREFIX",
    "REDIS_MIN_REPLICAS_ACK",
    "REDIS_URL",
    "REDIS_WAIT_TIMEOUT",
    "RIDER_MATCH_RADIUS_M",
    "RUST_LOG",
    "WECHATPAY_APIV3_KEY",
    "WECHATPAY_API_BASE",
    "WECHATPAY_MCHID",
    "WECHATPAY_MERCHANT_PRIVATE_KEY_FILE",
    "WECHATPAY_MERCHANT_SERIAL",
    "WECHATPAY_NOTIFY_URL",
    "WECHATPAY_PUBLIC_KEY_FILE",
    "WECHATPAY_PUBLIC_KEY_ID",
    "WECHAT_API_BASE",
    "WECHAT_APPID",
    "WECHAT_SECRET",
    "WECHAT_SUBSCRIBE_FILE",
    "WS_ACK_TIMEOUT",
    "WS_ADMISSION_RECHECK",
    "WS_DRAIN_PERIOD",
    "WS_IDLE_TIMEOUT",
    "WS_MAX_FRAME",
    "WS_MAX_REDELIVERIES",
    "WS_MAX_SOCKETS_PER_USER",
    "WS_PING_INTERVAL",
];

/// Variables of the environment that look like settings of this service (they begin
/// like one: `WS_`, `HTTP_`, `REDIS_`, …) but are none: a typo such as `WS_INTERVALL`
/// would otherwise be ignored without a word. Sorted.
pub fn unknown_settings(names: impl IntoIterator<Item = String>) -> Vec<String> {
    // `RUST_*` belongs to the toolchain (`RUST_BACKTRACE`), `HTTP_PROXY` to every HTTP
    // client: neither is ours to judge.
    const OTHERS: &[&str] = &["HTTP_PROXY", "HTTP_PROXY_REQUEST_FULLURI"];
    let prefixes: std::collections::BTreeSet<&str> = SETTINGS
        .iter()
        .filter_map(|s| s.split_once('_').map(|(head, _)| head))
        .filter(|head| *head != "RUST")
        .collect();
    let mut unknown: Vec<String> = names
        .into_iter()
        .filter(|name| {
            name.split_once('_')
                .is_some_and(|(head, _)| prefixes.contains(head))
                && !SETTINGS.contains(&name.as_str())
                && !OTHERS.contains(&name.as_str())
        })
        .collect();
    unknown.sort();
    unknown
}

#[cfg(test)]
mod tests {
    #[test]
    fn lookalike_variables_are_unknown_settings() {
        let names = [
            "WS_INTERVALL",
            "WS_PING_INTERVAL",
            "REDIS_URI",
            "RUST_BACKTRACE",
            "HTTP_PROXY",
            "PATH",
            "JWT_SECRETS",
        ]
        .map(String::from);
        assert_eq!(
            super::unknown_settings(names),
            vec!["JWT_SECRETS", "REDIS_URI", "WS_INTERVALL"]
        );
    }
}
