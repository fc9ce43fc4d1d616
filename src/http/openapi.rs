//! The OpenAPI 3.1 description of the HTTP API (`GET /openapi.json`, and
//! `docs/openapi.json` through `locallife openapi`).
//!
//! It is generated from the code: each handler carries its `#[utoipa::path]`, the
//! router is built with `utoipa_axum::routes!` (so a route without a description does
//! not compile), and request and response bodies derive `ToSchema` from the same types
//! the handlers use. What every operation shares — the error shape and the answers any
//! authenticated call, any JSON body or any path id can get — is added here once by
//! [`StandardErrors`], from what each operation declares.

use serde::Serialize;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr};
use utoipa::{Modify, ToSchema};

use crate::domain::{Role, UserId};
use crate::engine::{Census, ReplicaCensus};
use crate::store::receipts::Receipt;

/// The WeChat Pay failure shape (`code` is always `FAIL`); any failure makes WeChat Pay
/// retry the notification.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"code": "FAIL", "message": "verification failed"}))]
pub struct PayFailure {
    #[schema(example = "FAIL")]
    pub code: &'static str,
    pub message: &'static str,
}

/// A WeChat Pay API v3 notification (the body is verified byte for byte against
/// `Wechatpay-Signature`, then `resource` is decrypted with the APIv3 key).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "EV-2018022511223320873", "create_time": "2026-12-01T10:00:00+08:00",
    "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功",
    "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": "…", "associated_data": "transaction", "nonce": "fdasflkja484w"}}))]
pub struct PayNotification {
    pub id: String,
    pub create_time: String,
    pub event_type: String,
    pub resource_type: String,
    pub summary: String,
    pub resource: PayResource,
}

#[derive(Serialize, ToSchema)]
pub struct PayResource {
    /// `AEAD_AES_256_GCM`.
    pub algorithm: String,
    /// Base64 of ciphertext ‖ tag.
    pub ciphertext: String,
    pub associated_data: Option<String>,
    pub original_type: String,
    /// 12 bytes.
    pub nonce: String,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct ReadyChecks {
    /// `ok` or `unavailable`.
    pub postgres: &'static str,
    /// `ok`, `unavailable`, or `disabled` (the in-process engine).
    pub redis: &'static str,
    /// The pub/sub canary: `ok`, `unavailable` or `disabled`.
    pub pubsub: &'static str,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ready", "draining": false,
    "checks": {"postgres": "ok", "redis": "ok", "pubsub": "ok"}}))]
pub struct Ready {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    pub draining: bool,
    pub checks: ReadyChecks,
}

/// A rider's or an application's new state.
#[derive(Serialize, ToSchema)]
pub struct StatusOnly {
    #[schema(example = "online")]
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct UserStatus {
    pub user_id: UserId,
    #[schema(example = "approved")]
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct IdStatus {
    pub id: i64,
    #[schema(example = "pending")]
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"message_id": "01JD3X9Q5M2K8N7P4R6T0V1W2Y"}))]
pub struct MessageId {
    pub message_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct MessageIds {
    /// One per notification, in the order given.
    pub message_ids: Vec<Option<String>>,
}

/// 503 on a batch that Redis did not fully take: `null` marks each notification whose
/// outcome is unknown; retry with the same `Idempotency-Key`.
#[derive(Serialize, ToSchema)]
pub struct BatchPartial {
    #[schema(example = "engine_unavailable")]
    pub code: &'static str,
    pub message: String,
    pub message_ids: Vec<Option<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct Urged {
    pub order_id: i64,
}

#[derive(Serialize, ToSchema)]
pub struct OrderReceipts {
    pub order_id: i64,
    pub notifications: Vec<Receipt>,
}

#[derive(Serialize, ToSchema)]
pub struct PlatformStatus {
    /// The replica that answered.
    pub replica_id: String,
    /// `ok` or `unavailable`.
    pub postgres: &'static str,
    /// `ok`, `unavailable`, or `disabled` (the in-process engine).
    pub redis: &'static str,
    /// This replica's pub/sub canary: `ok`, `unavailable` or `disabled`.
    pub pubsub: &'static str,
    pub draining: bool,
    pub outbox: crate::store::outbox::Status,
}

#[derive(Serialize, ToSchema)]
pub struct Alerts {
    pub alerts: Vec<crate::store::outbox::AlertRow>,
}

#[derive(Serialize, ToSchema)]
pub struct Connections {
    /// The replica that answered.
    pub replica_id: String,
    pub total: Census,
    /// Every replica whose census is fresh, this one included.
    pub replicas: Vec<ReplicaCensus>,
}

/// Adds what operations share, from what each declares:
/// - bearer security → 401 `unauthorized`;
/// - under `/v1` → 429 (rate limits, with `Retry-After`) and 503 (PostgreSQL or Redis
///   unavailable, or the request timed out);
/// - a JSON request body → 400 (not JSON, or not declared as JSON), 413 and 422;
/// - a path id → 404 (the id names nothing, or nothing the caller may see).
///
/// An answer an operation declares itself is kept. The webhook answers in WeChat Pay's
/// own shape and declares all of its answers.
pub struct StandardErrors;

impl Modify for StandardErrors {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from `POST /v1/auth/wechat-login` (or `locallife token`).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "service_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("llk_<id>_<secret>")
                    .description(Some(
                        "A service key (`locallife key create`, or `POST /v1/platform/keys`), for back-office services on the platform routes. The scope an operation needs is listed with it: `notify`, `read` or `admin`.",
                    ))
                    .build(),
            ),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            let ops = [
                item.get.as_mut(),
                item.post.as_mut(),
                item.patch.as_mut(),
                item.put.as_mut(),
                item.delete.as_mut(),
            ];
            for op in ops.into_iter().flatten() {
                if path.starts_with("/v1/webhooks/") {
                    continue;
                }
                add_shared(path, op);
            }
        }
    }
}

fn error(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Error")))
                    .build(),
            )
            .build(),
    )
}

fn add_shared(path: &str, op: &mut Operation) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_body = op.request_body.is_some();
    let has_path_param = op.parameters.as_ref().is_some_and(|ps| {
        ps.iter()
            .any(|p| matches!(p.parameter_in, ParameterIn::Path))
    });
    let responses = &mut op.responses.responses;
    let mut add = |status: &str, response: RefOr<Response>| {
        responses.entry(status.to_owned()).or_insert(response);
    };
    if secured {
        add(
            "401",
            error("`unauthorized`: no token, an invalid or expired one, or one issued before the user's last logout; or a service key that is unknown, malformed, expired or revoked"),
        );
    }
    if path.starts_with("/v1/") {
        let limited = ResponseBuilder::new()
            .description("`rate_limited`: too many requests from this address or user; `Retry-After` says when to try again")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Error")))
                    .build(),
            )
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::Integer))
                    .description(Some("Seconds to wait"))
                    .build(),
            )
            .build();
        add("429", RefOr::T(limited));
        add(
            "503",
            error("PostgreSQL or Redis is unavailable (`database_unavailable`, `engine_unavailable`); safe to retry"),
        );
    }
    if has_body {
        add(
            "400",
            error("`malformed_json` or `unsupported_media_type`: the body is not JSON, or not sent as `application/json`"),
        );
        add("413", error("`body_too_large`: the body is over 64 KiB"));
        add(
            "422",
            error("`invalid_body` (a field is missing or of the wrong type) or a field's own code (`invalid_title`, …)"),
        );
    }
    if has_path_param {
        add(
            "404",
            error("`not_found`: the id names nothing, or nothing the caller may see"),
        );
    }
}

/// The description of the whole API, as served at `/openapi.json`.
pub fn document(mut doc: OpenApi) -> OpenApi {
    StandardErrors.modify(&mut doc);
    doc.info.title = "LocalLife realtime".to_owned();
    doc.info.description = Some(
        "The HTTP API of LocalLife's real-time backend. The WebSocket protocol of `/v1/ws` is described in AsyncAPI 3 (`docs/asyncapi.yaml`). Errors are `{\"code\", \"message\"}` (the codes: `docs/api.md`); money is integer fen; coordinates are WGS-84.".to_owned(),
    );
    doc.info.license = None;
    doc.info.contact = None;
    doc
}

/// `GET /openapi.json`, pretty-printed so the committed copy diffs well, tidied for
/// client generators: see [`tidy`].
pub fn to_json(doc: &OpenApi) -> String {
    let mut value = serde_json::to_value(doc).unwrap_or_default();
    tidy(&mut value);
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// The longest summary kept whole; longer ones are cut at a word.
const SUMMARY_MAX: usize = 100;

/// What the handlers' doc comments give, made fit for client generators:
/// - `servers`: this replica (relative) and a local run;
/// - the `Error` schema's `code` an enum of [`crate::error::CODES`];
/// - every operation's `summary` one line (its first sentence, without the route
///   it repeats), the whole first paragraph moved into `description`;
/// - no rustdoc link syntax (`` [`MAX_BATCH`] `` becomes `` `MAX_BATCH` ``) anywhere.
pub fn tidy(doc: &mut serde_json::Value) {
    doc["servers"] = serde_json::json!([
        {"url": "/", "description": "the replica that serves this document"},
        {"url": "http://127.0.0.1:8080", "description": "a local run (`locallife demo`, `scripts/dev.sh`)"}
    ]);
    // The codes clients switch on, as an enum.
    if let Some(code) = doc
        .pointer_mut("/components/schemas/Error/properties/code")
        .and_then(|c| c.as_object_mut())
    {
        code.insert("enum".to_owned(), serde_json::json!(crate::error::CODES));
    }
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for item in paths.values_mut() {
            let Some(ops) = item.as_object_mut() else {
                continue;
            };
            for op in ops.values_mut() {
                let Some(summary) = op.get("summary").and_then(|s| s.as_str()) else {
                    continue;
                };
                let joined = summary.split_whitespace().collect::<Vec<_>>().join(" ");
                let short = one_line(&joined);
                if short != summary {
                    let rest = op.get("description").and_then(|d| d.as_str()).unwrap_or("");
                    let description = if rest.is_empty() {
                        joined.clone()
                    } else {
                        format!("{joined}\n\n{rest}")
                    };
                    op["description"] = description.into();
                    op["summary"] = short.into();
                }
            }
        }
    }
    unlink(doc);
}

/// A summary's first sentence without a leading `` `METHOD /path` `` (or
/// `` `METHOD /path` → 204 ``) and its colon, at most [`SUMMARY_MAX`] characters.
fn one_line(text: &str) -> String {
    let mut rest = text;
    if let Some(after) = rest.strip_prefix('`') {
        if let Some(end) = after.find('`') {
            let route = &after[..end];
            if route.contains(' ') && route.contains('/') {
                rest = after[end + 1..].trim_start();
                if let Some(colon) = rest.find(": ") {
                    if rest[..colon].len() < 20 || rest.starts_with(':') {
                        rest = &rest[colon + 2..];
                    }
                }
                rest = rest.trim_start_matches(':').trim_start();
            }
        }
    }
    let sentence = rest
        .split(". ")
        .next()
        .unwrap_or(rest)
        .trim_end_matches('.');
    let mut out: String = sentence.to_owned();
    if let Some(first) = out.get(..1) {
        let upper = first.to_uppercase();
        out.replace_range(..1, &upper);
    }
    if out.chars().count() > SUMMARY_MAX {
        let cut: String = out.chars().take(SUMMARY_MAX).collect();
        let at = cut.rfind(' ').unwrap_or(cut.len());
        out = format!("{}…", &cut[..at]);
    }
    out
}

/// The internal contract's section marks (`(SPEC §4)`), which a reader of this document
/// cannot follow: a parenthesised one goes, a bare one becomes "the contract".
fn despec(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("SPEC §") {
        let before = &rest[..start];
        if let Some(open) = before.strip_suffix('(') {
            if let Some(close) = rest[start..].find(')') {
                out.push_str(open.trim_end_matches(' '));
                rest = &rest[start + close + 1..];
                continue;
            }
        }
        out.push_str(before);
        out.push_str("the contract");
        let mark = &rest[start + "SPEC §".len()..];
        let end = mark
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(mark.len());
        let end = if mark[..end].ends_with('.') {
            end - 1
        } else {
            end
        };
        rest = &mark[end..];
    }
    out.push_str(rest);
    out
}

/// Rustdoc's intra-doc links in every string: `` [`X`] `` → `` `X` ``; and [`despec`].
fn unlink(value: &mut serde_json::Value) {
    if let serde_json::Value::String(s) = value {
        if s.contains("SPEC §") {
            *s = despec(s);
        }
    }
    match value {
        serde_json::Value::String(s) if s.contains("[`") => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(start) = rest.find("[`") {
                let after = &rest[start + 1..];
                match after[1..].find("`]") {
                    Some(end) => {
                        out.push_str(&rest[..start]);
                        out.push_str(&after[..end + 2]);
                        rest = &after[end + 3..];
                    }
                    None => break,
                }
            }
            out.push_str(rest);
            *s = out;
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unlink),
        serde_json::Value::Object(map) => map.values_mut().for_each(unlink),
        _ => {}
    }
}

#[cfg(test)]
mod tidy_tests {
    use super::*;

    #[test]
    fn summaries_become_one_line_and_links_plain_code() {
        assert_eq!(
            one_line("`POST /v1/platform/notifications`: to one user (kept until acked) or to every connected socket of a role. More."),
            "To one user (kept until acked) or to every connected socket of a role"
        );
        assert_eq!(
            one_line("`POST /v1/auth/logout` → 204: every token of the caller is refused"),
            "Every token of the caller is refused"
        );
        assert_eq!(one_line("Places an order."), "Places an order");
        assert!(one_line(&"word ".repeat(40)).chars().count() <= SUMMARY_MAX + 1);
        let mut v = serde_json::json!({"d": "up to [`MAX_BATCH`] items, [`Census`] and [x]"});
        unlink(&mut v);
        assert_eq!(v["d"], "up to `MAX_BATCH` items, `Census` and [x]");
        assert_eq!(despec("receipts (SPEC §3). Next"), "receipts. Next");
        assert_eq!(
            despec("as SPEC §4 and the docs"),
            "as the contract and the docs"
        );
        assert_eq!(despec("see SPEC §2.3."), "see the contract.");
    }
}

/// Schemas used only through [`StandardErrors`], so that the derive registers them.
#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(crate::error::Body, Role)))]
pub struct Base;
