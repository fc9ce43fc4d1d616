//! Property tests over arbitrary input for every parser that sees untrusted bytes and is
//! not covered next to its code: durations and sizes from the environment, message ids,
//! pub/sub payloads, and token extraction plus verification. They run with the unit
//! tests (`PROPTEST_CASES` raises the count for a longer run). The client-frame parser
//! (`ws::protocol`), whole client frames (`ws::session`) and the log redaction
//! (`telemetry`) have theirs beside their code.

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, Uri};
    use bytes::Bytes;
    use proptest::prelude::*;

    use crate::auth::{token_from, TokenSource, Tokens};
    use crate::config::{parse_duration, parse_size, JwtConfig};
    use crate::engine::wire::Event;
    use crate::engine::MsgId;

    fn tokens() -> Tokens {
        Tokens::new(&JwtConfig {
            secret: secrecy::SecretString::from("0123456789abcdef0123456789abcdef".to_owned()),
            issuer: "locallife".into(),
            audience: "locallife".into(),
            access_token_ttl: std::time::Duration::from_secs(600),
        })
    }

    proptest! {
        #[test]
        fn durations_and_sizes_never_panic(s in ".{0,40}") {
            let _ = parse_duration(&s);
            let _ = parse_size(&s);
        }

        #[test]
        fn message_ids_never_panic_and_round_trip(s in ".{0,60}", ms in any::<u64>(), seq in any::<u64>()) {
            let _ = s.parse::<MsgId>();
            let id = MsgId { ms, seq };
            prop_assert_eq!(id.to_string().parse::<MsgId>().ok(), Some(id));
        }

        #[test]
        fn pubsub_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Event::decode(Bytes::from(bytes));
        }

        #[test]
        fn token_extraction_and_verification_never_panic(
            query in "[ -~]{0,200}",
            header in "[ -~]{0,200}",
            token in "[A-Za-z0-9_.=-]{0,300}",
        ) {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&header) {
                headers.insert(axum::http::header::AUTHORIZATION, v);
            }
            if let Ok(uri) = format!("/v1/ws?{query}").parse::<Uri>() {
                let _ = token_from(&headers, &uri, TokenSource::HeaderOrQuery);
            }
            prop_assert!(tokens().verify(&token).is_err());
        }
    }
}
