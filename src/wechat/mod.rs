//! WeChat's servers: mini-program login (`code2Session`) and WeChat Pay.

pub mod login;
pub mod pay;
pub mod rsa_keys;
pub mod subscribe;

pub use login::{LoginError, WechatLogin};

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
