//! A path extractor whose rejection is a JSON 404 (`/v1/orders/abc` names no order).

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // No resource is named by a control character (a NUL would reach the database).
        if has_encoded_control(parts.uri.path()) {
            return Err(ApiError::not_found());
        }
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|_| ApiError::not_found())
    }
}

/// Whether `path` holds a control character, raw or percent-encoded (`%00`, `%1B`, `%7F`).
fn has_encoded_control(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.iter().enumerate().any(|(i, b)| {
        if b.is_ascii_control() {
            return true;
        }
        *b == b'%'
            && bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .is_some_and(|d| d.is_ascii_control())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_control_characters_are_found() {
        assert!(has_encoded_control("/v1/platform/notifications/%00"));
        assert!(has_encoded_control("/v1/orders/1%1b"));
        assert!(has_encoded_control("/x/%7F"));
        assert!(!has_encoded_control("/v1/platform/notifications/1733-2"));
        assert!(!has_encoded_control("/v1/%E4%BA%BA/%2"));
    }
}
