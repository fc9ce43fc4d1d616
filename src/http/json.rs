//! A JSON body extractor whose every rejection is a JSON error.
//!
//! axum's own `Json` answers rejections as plain text; clients of this API switch on
//! `code`, so each way a body can be wrong gets one: `malformed_json` (400, not JSON),
//! `invalid_body` (422, JSON of the wrong shape, or a text holding a control
//! character), `unsupported_media_type` (400, no JSON content type), `body_too_large`
//! (413). A route whose body is optional takes `Option<ApiJson<T>>`: an empty body is
//! `None`.
//!
//! Control characters: no text a client stores or sends on may hold one (SPEC §4): a NUL
//! cannot be stored in PostgreSQL at all, and the others only hide text from whoever
//! reads it. Tab, line feed and carriage return are let through (multi-line notices).
//! The check runs on every string of the body, object keys included, before the body
//! reaches a handler, so no field can be forgotten.

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, OptionalFromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(unsupported_media_type());
        }
        let bytes = body_bytes(req, state).await?;
        parse(&bytes).map(ApiJson)
    }
}

/// An optional body (`Option<ApiJson<T>>`): no body at all is `None`, whatever the
/// headers say; any body is read exactly as a required one.
impl<S, T> OptionalFromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let json = json_content_type(req.headers());
        let bytes = body_bytes(req, state).await?;
        if bytes.is_empty() {
            return Ok(None);
        }
        if !json {
            return Err(unsupported_media_type());
        }
        parse(&bytes).map(|value| Some(ApiJson(value)))
    }
}

fn unsupported_media_type() -> ApiError {
    ApiError::bad_request(
        "unsupported_media_type",
        "expected Content-Type: application/json",
    )
}

/// The request's body, within the body limit.
async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the body is too large",
            )
        } else {
            ApiError::bad_request("bad_body", e.body_text())
        }
    })
}

/// A JSON body: valid JSON, no control character in any text, then the shape of `T`.
fn parse<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|_| ApiError::bad_request("malformed_json", "the body is not valid JSON"))?;
    if let Some(field) = control_character_at(&value) {
        return Err(ApiError::unprocessable(
            "invalid_body",
            format!("{field}: control characters are not allowed in text"),
        ));
    }
    match axum::Json::<T>::from_bytes(bytes) {
        Ok(axum::Json(value)) => Ok(value),
        Err(rejection) => Err(rejection_to_error(rejection)),
    }
}

/// `application/json`, or any `application/*+json`, parameters aside.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Whether `c` may not appear in client text: a control character other than tab, line
/// feed and carriage return.
pub fn forbidden_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// The path (`address.detail`, `items[2].name`) of the first string in `value` that
/// holds a forbidden control character, if any; a key holding one names its parent.
pub fn control_character_at(value: &Value) -> Option<String> {
    fn walk(value: &Value, path: &mut String) -> Option<String> {
        match value {
            Value::String(s) if s.chars().any(forbidden_control) => Some(shown(path)),
            Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(v, path);
                path.truncate(len);
                found
            }),
            Value::Object(map) => map.iter().find_map(|(k, v)| {
                if k.chars().any(forbidden_control) {
                    return Some(shown(path));
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                let found = walk(v, path);
                path.truncate(len);
                found
            }),
            _ => None,
        }
    }
    /// Keys are the client's: a long path is cut.
    fn shown(path: &str) -> String {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path.chars().take(100).collect()
        }
    }
    walk(value, &mut String::new())
}

fn rejection_to_error(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            // serde's message names the field and what was expected; it holds no
            // internals, only the client's own input shape.
            ApiError::unprocessable("invalid_body", e.body_text())
        }
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::bad_request("malformed_json", "the body is not valid JSON")
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::bad_request(
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the body is too large",
            )
        }
        other => ApiError::bad_request("bad_body", other.body_text()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_control_character_is_found_by_its_field() {
        assert_eq!(
            control_character_at(&json!({"name": "ok\ttoo\nfine"})),
            None
        );
        assert_eq!(
            control_character_at(&json!({"name": "bad\u{0}"})).as_deref(),
            Some("name")
        );
        assert_eq!(
            control_character_at(&json!({"address": {"lat": 1, "detail": "x\u{1b}[31m"}}))
                .as_deref(),
            Some("address.detail")
        );
        assert_eq!(
            control_character_at(&json!({"items": [{"n": "a"}, {"n": "\u{7f}"}]})).as_deref(),
            Some("items[1].n")
        );
        assert_eq!(
            control_character_at(&json!({"data": {"k\u{0}": 1}})).as_deref(),
            Some("data")
        );
        assert_eq!(
            control_character_at(&json!("\u{85}")).as_deref(),
            Some("body")
        );
    }

    #[test]
    fn json_content_types() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, v.parse().unwrap());
            json_content_type(&h)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/plain"));
        assert!(!json_content_type(&HeaderMap::new()));
    }
}
