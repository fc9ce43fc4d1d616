//! Reading one setting: [`Vars`], the lookup every section reads through, the parsers
//! of a duration, a size and a URL, and [`ConfigError`], the one line a bad setting
//! stops start-up with.

use std::net::SocketAddr;
use std::time::Duration;

/// A setting that is missing or invalid. `Display` is the one line printed at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

impl ConfigError {
    pub(super) fn new(var: &'static str, reason: impl Into<String>) -> Self {
        Self {
            var,
            reason: reason.into(),
        }
    }
}

/// Reads settings through a lookup function, so tests need not touch the process
/// environment (which is shared between test threads).
pub(super) struct Vars<F>(pub(super) F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    /// The value, or `None` when unset or blank.
    pub(super) fn get(&self, var: &'static str) -> Option<String> {
        (self.0)(var).filter(|v| !v.trim().is_empty())
    }

    pub(super) fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.get(var)
            .ok_or_else(|| ConfigError::new(var, "is required"))
    }

    pub(super) fn or(&self, var: &'static str, default: &str) -> String {
        self.get(var).unwrap_or_else(|| default.to_owned())
    }

    pub(super) fn duration(
        &self,
        var: &'static str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => parse_duration(&v).map_err(|reason| ConfigError::new(var, reason)),
        }
    }

    pub(super) fn number<T: std::str::FromStr>(
        &self,
        var: &'static str,
        default: T,
        valid: impl Fn(&T) -> bool,
        expect: &str,
    ) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<T>()
                .ok()
                .filter(|n| valid(n))
                .ok_or_else(|| ConfigError::new(var, format!("expected {expect}, got {v:?}"))),
        }
    }

    pub(super) fn addr(&self, var: &'static str, default: &str) -> Result<SocketAddr, ConfigError> {
        let v = self.or(var, default);
        v.trim().parse().map_err(|_| {
            ConfigError::new(
                var,
                format!("expected host:port like 0.0.0.0:8080, got {v:?}"),
            )
        })
    }

    pub(super) fn url(&self, var: &'static str, default: &str) -> Result<url::Url, ConfigError> {
        parse_http_url(&self.or(var, default)).map_err(|reason| ConfigError::new(var, reason))
    }
}

/// Parses `54s`, `15m`, `500ms`, `1h 30m`; zero is refused (no setting here means "never").
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|_| format!("expected a duration like 54s, 15m or 500ms, got {s:?}"))?;
    if d.is_zero() {
        return Err(format!("must be longer than zero, got {s:?}"));
    }
    Ok(d)
}

/// Parses a byte size: `4096`, `4KiB`, `4K`, `4KB` (1000), `1MiB`, `1M`, `1MB`.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits.parse().ok()?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1024,
        "KB" => 1000,
        "M" | "MiB" => 1024 * 1024,
        "MB" => 1_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

pub(super) fn parse_http_url(s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s.trim()).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return Err(format!("expected an http(s) URL, got {s:?}"));
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("4KiB"), Some(4096));
        assert_eq!(parse_size("4K"), Some(4096));
        assert_eq!(parse_size("4KB"), Some(4000));
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("4 KiB"), Some(4096));
        assert_eq!(parse_size("KiB"), None);
        assert_eq!(parse_size("-4"), None);
        assert_eq!(parse_size("4GiB"), None);
    }
}
