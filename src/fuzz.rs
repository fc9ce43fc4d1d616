//! Fuzz targets for every parser that sees untrusted bytes: client frames, the WeChat
//! Pay webhook (signature check, then decryption), pub/sub payloads (with and without
//! a version mark), inbox entries as Redis returns them, token extraction plus verification, `code2Session` answers, and
//! durations and sizes from the environment.
//!
//! They are proptest properties on the stable toolchain (no `cargo fuzz`, which needs
//! nightly): each target runs batches of generated cases, shrinking any failure to a
//! minimal input. With the unit tests they run one batch each (256 cases, or
//! `PROPTEST_CASES`); `FUZZ_SECONDS=N` keeps each target generating fresh batches for
//! N seconds (`scripts/test.sh` gives them 10 s each in CI; `scripts/fuzz.sh` longer).

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use axum::http::{HeaderMap, HeaderValue, Uri};
    use bytes::Bytes;
    use fred::types::Value;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    use crate::auth::{token_from, TokenSource, Tokens};
    use crate::config::{parse_duration, parse_size, JwtConfig};
    use crate::engine::wire::events::{Unread, MARK_BELOW, VERSION};
    use crate::engine::wire::Event;
    use crate::engine::MsgId;
    use crate::wechat::pay::{self, NotifyHeaders, NotifyVerifier, PlatformKey};
    use crate::wechat::rsa_keys::{PemKeyPair, SigningKey, VerifyingKey};

    /// Runs `test` over `strategy`: one batch, or fresh batches until `FUZZ_SECONDS`
    /// have passed. Prints how many cases ran.
    fn fuzz<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
    where
        S: Strategy,
        S::Value: std::fmt::Debug,
    {
        let seconds: u64 = std::env::var("FUZZ_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut cases = 0u64;
        loop {
            let config = Config::default();
            cases += u64::from(config.cases);
            // A new runner per batch: a new random seed, so batches do not repeat.
            let mut runner = TestRunner::new(config);
            if let Err(failure) = runner.run(&strategy, &test) {
                panic!("fuzz target {name}: {failure}");
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        if seconds > 0 {
            eprintln!("fuzz target {name}: {cases} cases in {seconds} s, no failure");
        }
    }

    fn tokens() -> Tokens {
        Tokens::new(&JwtConfig {
            secret: secrecy::SecretString::from("0123456789abcdef0123456789abcdef".to_owned()),
            issuer: "locallife".into(),
            audience: "locallife".into(),
            access_token_ttl: Duration::from_secs(600),
        })
    }

    const APIV3: &str = "0123456789abcdef0123456789abcdef";
    const KEY_ID: &str = "PUB_KEY_ID_FUZZ";

    /// WeChat Pay's side for the webhook target: a key pair made once, the verifier the
    /// service would build from it, and a signer to make valid signatures.
    fn webhook() -> &'static (NotifyVerifier, SigningKey) {
        static KEYS: OnceLock<(NotifyVerifier, SigningKey)> = OnceLock::new();
        KEYS.get_or_init(|| {
            let keys = PemKeyPair::generate().unwrap();
            let verifier = NotifyVerifier::new(
                "1900000109",
                PlatformKey::new(
                    KEY_ID,
                    VerifyingKey::from_public_key_pem(&keys.public).unwrap(),
                ),
                secrecy::SecretString::from(APIV3.to_owned()),
            );
            let signer = SigningKey::from_pkcs8_pem(&keys.private).unwrap();
            (verifier, signer)
        })
    }

    #[test]
    fn client_frames() {
        fuzz("client_frames", ".{0,300}", |s| {
            let _ = crate::ws::protocol::parse(&s);
            Ok(())
        });
        // JSON-shaped text reaches the deeper branches.
        let shaped = (
            prop::sample::select(vec!["ack", "ping", "auth", "location", "x", ""]),
            "[ -~]{0,40}",
            any::<i64>(),
        )
            .prop_map(|(t, s, n)| {
                format!(
                    r#"{{"type":"{t}","message_id":"{s}","data":{{"token":"{s}","lat":{n},"lng":"{s}"}}}}"#
                )
            });
        fuzz("client_frames_shaped", shaped, |s| {
            let _ = crate::ws::protocol::parse(&s);
            Ok(())
        });
    }

    #[test]
    fn webhook_open_and_decrypt() {
        let (verifier, signer) = webhook();
        let now = 1_700_000_000i64;
        // Anything at all in the four headers and the body: refused, never a panic.
        let junk = (
            proptest::option::of("[ -~]{0,20}"),
            proptest::option::of("[ -~]{0,40}"),
            proptest::option::of("[A-Za-z0-9+/=]{0,400}"),
            proptest::option::of(prop::sample::select(vec![KEY_ID, "OTHER", ""])),
            proptest::collection::vec(any::<u8>(), 0..400),
        );
        fuzz("webhook_junk", junk, |(ts, nonce, sig, serial, body)| {
            let headers = NotifyHeaders {
                timestamp: ts.as_deref(),
                nonce: nonce.as_deref(),
                signature: sig.as_deref(),
                serial,
            };
            prop_assert!(verifier.open(&headers, &body, now).is_err());
            Ok(())
        });
        // Correctly signed bodies with arbitrary resources reach the decryption, which
        // refuses all of them without a panic.
        let signed = (
            "[ -~]{0,24}",
            "[ -~]{0,24}",
            "[A-Za-z0-9+/=]{0,200}",
            any::<bool>(),
        );
        fuzz(
            "webhook_signed",
            signed,
            |(nonce, aad, ciphertext, shaped)| {
                let body = if shaped {
                    serde_json::json!({"resource": {"nonce": nonce, "associated_data": aad, "ciphertext": ciphertext}})
                    .to_string()
                } else {
                    format!("{nonce}{aad}{ciphertext}")
                };
                let ts = now.to_string();
                let signature = signer.sign(format!("{ts}\n{nonce}\n{body}\n").as_bytes());
                let headers = NotifyHeaders {
                    timestamp: Some(&ts),
                    nonce: Some(&nonce),
                    signature: Some(&signature),
                    serial: Some(KEY_ID),
                };
                prop_assert!(verifier.open(&headers, body.as_bytes(), now).is_err());
                Ok(())
            },
        );
        // And the decryption alone, with any key, nonce, AAD and ciphertext.
        let raw = (
            proptest::collection::vec(any::<u8>(), 0..40),
            "[ -~]{0,16}",
            "[ -~]{0,16}",
            "[ -~]{0,120}",
        );
        fuzz("webhook_decrypt", raw, |(key, nonce, aad, ct)| {
            let _ = pay::decrypt(&key, &nonce, &aad, &ct);
            Ok(())
        });
    }

    #[test]
    fn pubsub_payloads() {
        fuzz(
            "pubsub_payloads",
            proptest::collection::vec(any::<u8>(), 0..300),
            |bytes| {
                let _ = Event::decode(Bytes::from(bytes));
                Ok(())
            },
        );
    }

    /// A payload after any first byte: a newer version's mark is skipped as newer, the
    /// mark of this version reads as the unmarked payload, anything else as version 1.
    #[test]
    fn versioned_pubsub_payloads() {
        let body = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            (any::<u64>(), any::<u64>(), any::<u64>(), "[ -~]{0,40}").prop_map(
                |(ms, seq, exp, frame)| format!("N{} {exp}\n{frame}", MsgId { ms, seq })
                    .into_bytes()
            ),
            (any::<u64>(), any::<u64>())
                .prop_map(|(ms, seq)| format!("A{}", MsgId { ms, seq }).into_bytes()),
        ];
        fuzz(
            "versioned_pubsub_payloads",
            (any::<u8>(), body),
            |(first, body)| {
                let payload = Bytes::from([&[first][..], &body].concat());
                let read = Event::read(payload.clone());
                if first < MARK_BELOW && first > VERSION {
                    prop_assert_eq!(read, Err(Unread::Newer(first)));
                    prop_assert_eq!(Event::decode(payload), None);
                } else if first == VERSION {
                    let marked_again = body.first().is_none_or(|b| *b < MARK_BELOW);
                    let unmarked = Event::read(Bytes::from(body));
                    if marked_again {
                        prop_assert_eq!(read, Err(Unread::Foreign));
                    } else {
                        prop_assert_eq!(read, unmarked);
                    }
                } else if let Ok(event) = read {
                    prop_assert!(first >= MARK_BELOW);
                    prop_assert_eq!(Event::decode(event.encode()), Some(event));
                }
                Ok(())
            },
        );
    }

    #[test]
    fn inbox_entries() {
        let value = prop_oneof![
            any::<i64>().prop_map(Value::Integer),
            "[ -~]{0,40}".prop_map(|s| Value::String(s.into())),
            (any::<u64>(), any::<u64>())
                .prop_map(|(ms, seq)| Value::String(MsgId { ms, seq }.to_string().into())),
            (any::<u64>(), "[ -~]{0,30}")
                .prop_map(|(exp, tail)| Value::String(format!("{exp} {tail}").into())),
            Just(Value::Null),
        ];
        fuzz(
            "inbox_entries",
            proptest::collection::vec(value, 0..12),
            |raw| {
                let _ = crate::engine::redis::parse_inbox(raw);
                Ok(())
            },
        );
    }

    #[test]
    fn tokens_from_requests() {
        let input = ("[ -~]{0,200}", "[ -~]{0,200}", "[A-Za-z0-9_.=-]{0,300}");
        fuzz("tokens", input, |(query, header, token)| {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&header) {
                headers.insert(axum::http::header::AUTHORIZATION, v);
            }
            if let Ok(uri) = format!("/v1/ws?{query}").parse::<Uri>() {
                let _ = token_from(&headers, &uri, TokenSource::HeaderOrQuery);
            }
            prop_assert!(tokens().verify(&token).is_err());
            Ok(())
        });
    }

    #[test]
    fn code2session_answers() {
        fuzz(
            "code2session_bytes",
            proptest::collection::vec(any::<u8>(), 0..200),
            |body| {
                let _ = crate::wechat::login::interpret(&body);
                Ok(())
            },
        );
        let shaped = (
            proptest::option::of(".{0,150}"),
            proptest::option::of(any::<i64>()),
        );
        fuzz("code2session_shaped", shaped, |(openid, errcode)| {
            let body =
                serde_json::json!({"openid": openid, "errcode": errcode, "session_key": "k"});
            // An openid is accepted only when short and printable.
            if let Ok(id) = crate::wechat::login::interpret(body.to_string().as_bytes()) {
                prop_assert!(id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()));
            }
            Ok(())
        });
    }

    #[test]
    fn durations_sizes_and_message_ids() {
        fuzz("durations_and_sizes", ".{0,40}", |s| {
            let _ = parse_duration(&s);
            let _ = parse_size(&s);
            let _ = s.parse::<MsgId>();
            Ok(())
        });
        fuzz(
            "message_ids_round_trip",
            (any::<u64>(), any::<u64>()),
            |(ms, seq)| {
                let id = MsgId { ms, seq };
                prop_assert_eq!(id.to_string().parse::<MsgId>().ok(), Some(id));
                Ok(())
            },
        );
    }

    #[test]
    fn http_method_tokens() {
        // Any token a client can send as a method: one of ten labels, never its own.
        fuzz("method_tokens", "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}", |m| {
            if let Ok(method) = axum::http::Method::from_bytes(m.as_bytes()) {
                let label = crate::http::log::method_label(&method);
                prop_assert!(
                    label == "other" || label == method.as_str(),
                    "{} labelled {}",
                    m,
                    label
                );
            }
            Ok(())
        });
    }

    #[test]
    fn forwarded_for_headers() {
        // Whatever a client writes, the key is the right-most entry when it parses,
        // else nothing (the peer counts): never an earlier entry.
        fuzz(
            "forwarded_for",
            proptest::collection::vec("[0-9a-fA-F:.\\[\\], ]{0,48}|unknown", 0..4),
            |entries| {
                let mut headers = HeaderMap::new();
                for e in &entries {
                    if let Ok(v) = HeaderValue::from_str(e) {
                        headers.append("x-forwarded-for", v);
                    }
                }
                let got = crate::limits::forwarded_for(&headers);
                // Only the right-most entry decides.
                let last = headers
                    .get_all("x-forwarded-for")
                    .iter()
                    .next_back()
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.rsplit(',').next())
                    .map(str::to_owned);
                let mut alone = HeaderMap::new();
                if let Some(v) = last.as_deref().and_then(|l| HeaderValue::from_str(l).ok()) {
                    alone.insert("x-forwarded-for", v);
                }
                prop_assert_eq!(crate::limits::forwarded_for(&alone), got);
                if let Some(ip) = got {
                    let key = crate::limits::address_key(ip);
                    prop_assert_eq!(crate::limits::address_key(key), key);
                }
                Ok(())
            },
        );
    }

    #[test]
    fn order_lines() {
        // Merged lines hold each product once, within the caps; nothing overflows.
        fuzz(
            "order_lines",
            proptest::collection::vec((0i64..5, any::<i32>()), 0..60),
            |lines| {
                if let Ok(merged) = crate::http::orders::merged_lines_of(&lines) {
                    let mut products: Vec<i64> = merged.iter().map(|(p, _)| *p).collect();
                    products.sort_unstable();
                    products.dedup();
                    prop_assert_eq!(products.len(), merged.len());
                    prop_assert!(merged.iter().all(|(_, q)| (1..=999).contains(q)));
                    prop_assert!(merged.iter().map(|(_, q)| i64::from(*q)).sum::<i64>() <= 2_000);
                    let asked: i64 = lines.iter().map(|(_, q)| i64::from(*q)).sum();
                    let got: i64 = merged.iter().map(|(_, q)| i64::from(*q)).sum();
                    prop_assert_eq!(asked, got, "nothing dropped or added");
                }
                Ok(())
            },
        );
    }

    #[test]
    fn control_characters_in_bodies() {
        // A body whose text holds a control character (other than tab, line feed,
        // carriage return) is always found, whatever its nesting.
        fuzz(
            "control_characters",
            (".{0,20}", 0u32..0x20, 0usize..4),
            |(text, control, depth)| {
                let control = char::from_u32(control).unwrap_or('\0');
                let mut value = serde_json::Value::String(format!("{text}{control}"));
                for i in 0..depth {
                    value = if i % 2 == 0 {
                        serde_json::json!({ "k": value })
                    } else {
                        serde_json::json!([1, value])
                    };
                }
                let found = crate::http::json::control_character_at(&value);
                let forbidden = crate::http::json::forbidden_control(control)
                    || text.chars().any(crate::http::json::forbidden_control);
                prop_assert_eq!(found.is_some(), forbidden);
                Ok(())
            },
        );
    }
}
