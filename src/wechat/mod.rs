//! WeChat's servers: mini-program login (`code2Session`) and WeChat Pay.

pub mod login;
pub mod pay;
pub mod rsa_keys;
pub mod subscribe;

/// The largest answer read from WeChat's servers: theirs are a few hundred bytes.
pub const ANSWER_MAX: usize = 64 * 1024;

/// Why an answer was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// Larger than [`ANSWER_MAX`]: refused without reading (or keeping) the rest.
    TooLarge,
    /// The connection ended or failed mid-answer.
    Cut,
}

/// A client for WeChat's servers: every call, connecting included, ends by `timeout`.
pub fn http_client(timeout: std::time::Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        // Building a client only fails when the TLS backend cannot initialise, a
        // broken build rather than a runtime condition.
        .expect("the HTTP client for WeChat must build")
}

/// `path` under `base` (which may itself have a path).
pub fn endpoint(base: &url::Url, path: &str) -> url::Url {
    let mut url = base.clone();
    url.set_path(&format!("{}{path}", url.path().trim_end_matches('/')));
    url
}

/// Sends `request` and reads a successful answer's body ([`ANSWER_MAX`] at most). The
/// error says why in a few words, never with the URL (its query holds the app secret
/// or the access token).
pub async fn answer(request: reqwest::RequestBuilder) -> Result<Vec<u8>, String> {
    let response = request.send().await.map_err(|e| {
        if e.is_timeout() {
            "timed out".to_owned()
        } else {
            "request failed".to_owned()
        }
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    read_capped(response).await.map_err(|e| {
        match e {
            ReadError::TooLarge => "answer too large",
            ReadError::Cut => "answer cut short",
        }
        .to_owned()
    })
}

/// Reads an answer's body, [`ANSWER_MAX`] at most: a larger one (announced, or found
/// while streaming) is refused at once, so a hostile or broken server cannot make a
/// replica buffer megabytes.
pub async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|n| n > ANSWER_MAX as u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|_| ReadError::Cut)? {
        if body.len() + chunk.len() > ANSWER_MAX {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
