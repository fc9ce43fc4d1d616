//! The OpenAPI 3.1 description: current in `docs/openapi.json`, valid, complete, and
//! true of the running server under schemathesis' generated requests.

use serde_json::Value;

use crate::support::{spawn_app, spawn_app_with, venv};
use locallife::domain::Role;

#[test]
fn docs_openapi_json_is_the_generated_description() {
    let generated = locallife::http::openapi::to_json(&locallife::http::openapi());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is stale: run `cargo run -- openapi --out docs/openapi.json`"
    );
}

/// Every endpoint of SPEC §4, with `/healthz` and `/readyz`.
const ENDPOINTS: &[(&str, &str)] = &[
    ("post", "/v1/auth/wechat-login"),
    ("post", "/v1/auth/logout"),
    ("get", "/v1/me"),
    ("post", "/v1/me/subscriptions"),
    ("get", "/v1/me/subscriptions"),
    ("get", "/v1/ws"),
    ("post", "/v1/rider/apply"),
    ("post", "/v1/rider/online"),
    ("post", "/v1/rider/offline"),
    ("post", "/v1/rider/location"),
    ("post", "/v1/rider/orders/{id}/accept"),
    ("post", "/v1/rider/orders/{id}/pickup"),
    ("post", "/v1/rider/orders/{id}/deliver"),
    ("post", "/v1/merchants"),
    ("post", "/v1/merchants/{id}/products"),
    ("patch", "/v1/merchants/{id}/products/{product_id}"),
    ("post", "/v1/orders"),
    ("get", "/v1/orders/{id}"),
    ("post", "/v1/orders/{id}/urge"),
    ("post", "/v1/orders/{id}/refuse"),
    ("get", "/v1/orders/{id}/notifications"),
    ("post", "/v1/webhooks/wechat-pay/notify"),
    ("post", "/v1/platform/riders/{user_id}/approve"),
    ("post", "/v1/platform/merchants/{id}/approve"),
    ("post", "/v1/platform/orders/{id}/dispatch"),
    ("post", "/v1/platform/orders/{id}/close"),
    ("post", "/v1/platform/riders/{user_id}/commands"),
    ("post", "/v1/platform/notifications"),
    ("post", "/v1/platform/notifications/batch"),
    ("get", "/v1/platform/notifications/{message_id}"),
    ("post", "/v1/platform/riders/{user_id}/suspend"),
    ("post", "/v1/platform/merchants/{id}/suspend"),
    ("post", "/v1/platform/riders/{user_id}/reinstate"),
    ("post", "/v1/platform/merchants/{id}/reinstate"),
    ("get", "/v1/platform/riders/{user_id}/suspensions"),
    ("get", "/v1/platform/merchants/{id}/suspensions"),
    ("get", "/v1/platform/connections"),
    ("get", "/v1/platform/status"),
    ("get", "/v1/platform/alerts"),
    ("post", "/v1/platform/keys"),
    ("get", "/v1/platform/keys"),
    ("delete", "/v1/platform/keys/{id}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

/// Each `$ref` in `value` names a schema in `components.schemas`.
fn check_refs(value: &Value, schemas: &serde_json::Map<String, Value>, at: &str) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
                assert!(schemas.contains_key(name), "{at}: dangling $ref {r}");
            }
            for (k, v) in map {
                check_refs(v, schemas, &format!("{at}/{k}"));
            }
        }
        Value::Array(items) => items.iter().for_each(|v| check_refs(v, schemas, at)),
        _ => {}
    }
}

#[tokio::test]
async fn openapi_json_is_valid_openapi_3_1_and_describes_every_endpoint() {
    let app = spawn_app().await;
    let (status, doc) = app.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "{}",
        doc["openapi"]
    );
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    check_refs(&doc, schemas, "");
    let paths = doc["paths"].as_object().unwrap();
    let public = ["/v1/auth/wechat-login", "/v1/webhooks/wechat-pay/notify"];
    for (method, path) in ENDPOINTS {
        let op = &paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is not described"))[*method];
        assert!(op.is_object(), "{method} {path} is not described");
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('2') || s == "101"),
            "{method} {path}: no success answer"
        );
        if path.starts_with("/v1/") && !public.contains(path) {
            assert_eq!(
                op["security"][0]["bearer"],
                serde_json::json!([]),
                "{method} {path}: bearer auth"
            );
            assert!(responses.contains_key("401"), "{method} {path}: no 401");
        }
        // Platform routes take a service key too, and say which scope (SPEC §10).
        if path.starts_with("/v1/platform/") {
            let scopes = op["security"]
                .as_array()
                .and_then(|s| s.iter().find_map(|r| r.get("service_key")))
                .and_then(Value::as_array)
                .unwrap_or_else(|| panic!("{method} {path}: no service_key security"));
            assert!(
                scopes.len() == 1
                    && ["notify", "read", "admin"].contains(&scopes[0].as_str().unwrap()),
                "{method} {path}: {scopes:?}"
            );
        }
        for (status, answer) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                assert!(
                    answer["content"]["application/json"]["schema"].is_object(),
                    "{method} {path} {status}: no body schema"
                );
            }
        }
        // (The webhook answers malformed bodies in WeChat Pay's shape: 400/401.)
        if op.get("requestBody").is_some() && !public.contains(path) {
            for s in ["400", "422"] {
                assert!(responses.contains_key(s), "{method} {path}: no {s}");
            }
        }
    }
    // Nothing is described that the server does not route.
    let described: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(described, ENDPOINTS.len(), "{:?}", paths.keys());
    // The webhook's WeChat Pay headers.
    let webhook = &paths["/v1/webhooks/wechat-pay/notify"]["post"]["parameters"];
    for header in [
        "Wechatpay-Timestamp",
        "Wechatpay-Nonce",
        "Wechatpay-Signature",
        "Wechatpay-Serial",
    ] {
        assert!(
            webhook
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == header && p["in"] == "header"),
            "the webhook's {header} header"
        );
    }

    // And a validator that is not ours agrees it is OpenAPI 3.1.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = std::process::Command::new(venv().join("bin/python"))
        .args([
            "-c",
            "import json, sys\n\
             from openapi_spec_validator import validate\n\
             from openapi_spec_validator.validation import OpenAPIV31SpecValidator\n\
             validate(json.load(open(sys.argv[1])), cls=OpenAPIV31SpecValidator)\n\
             print('valid')",
        ])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Schemathesis (v4) generates requests for every operation from the description and
/// checks each answer: never a 5xx, a status the operation declares, and a body that
/// matches its schema. With a platform token, so the calls get past authentication.
/// `SCHEMATHESIS_EXAMPLES` (default 25) bounds the examples per operation.
#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_off_its_schema() {
    let app = spawn_app_with(|env| {
        // Generous limits: schemathesis is one user at one address, sending fast.
        env.insert("HTTP_RATE_USER".into(), "100000".into());
        env.insert("HTTP_RATE_ADDRESS".into(), "100000".into());
    })
    .await;
    let (_, token) = app.user_with_role("schemathesis", Role::Platform).await;
    let examples = std::env::var("SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "25".into());
    let report = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(venv().join("bin/schemathesis"))
        // Its cache (.schemathesis/) goes there too, not into the checkout.
        .current_dir(report.path())
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1")
        .args([
            "run",
            &app.url("/openapi.json"),
            "--url",
            &app.url(""),
            "--header",
            &format!("Authorization: Bearer {token}"),
            "--checks",
            "not_a_server_error,status_code_conformance,response_schema_conformance",
            "--max-examples",
            &examples,
            "--seed",
            "1",
            // One worker: CPython 3.11's `ast` is not safe across schemathesis'
            // threads ("AST constructor recursion depth mismatch").
            "--workers",
            "1",
            // Logging out would revoke the token the run uses; tests/api cover it.
            "--exclude-path",
            "/v1/auth/logout",
            "--report-dir",
        ])
        .arg(report.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The phases' totals, for the log.
    for line in stdout.lines().filter(|l| l.contains("passed")) {
        println!("schemathesis: {}", line.trim());
    }
}
