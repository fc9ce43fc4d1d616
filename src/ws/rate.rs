//! A socket's message rate limits: token buckets small enough to live in every socket's
//! future, one for client messages and the client's Pings, one of its own for
//! confirmations (acks, and Pongs, which answer the server's own Pings).

use tokio::time::Instant;

/// Client messages: a burst of this many, refilled at this rate per second.
const RATE_BURST: f32 = 30.0;
const RATE_PER_S: f32 = 10.0;
/// Confirmations have a bucket of their own: a client acks what the server sends, and
/// answers each Ping the server sends with a Pong (one per burst of notifications, to
/// prove them delivered), and a busy merchant or rider may be sent far more than ten
/// notifications a second. Pongs in the message bucket closed every busy socket 1008.
const ACK_BURST: f32 = 1000.0;
const ACK_PER_S: f32 = 500.0;

/// A token bucket: small enough to live in every socket's future.
pub(super) struct RateLimit {
    tokens: f32,
    at: Instant,
    burst: f32,
    per_s: f32,
}

impl RateLimit {
    /// The bucket of client messages other than acks, and of the client's Pings.
    pub(super) fn messages() -> Self {
        Self::with(RATE_BURST, RATE_PER_S)
    }

    /// The bucket of acks and Pongs.
    pub(super) fn acks() -> Self {
        Self::with(ACK_BURST, ACK_PER_S)
    }

    fn with(burst: f32, per_s: f32) -> Self {
        Self {
            tokens: burst,
            at: Instant::now(),
            burst,
            per_s,
        }
    }

    pub(super) fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f32() * self.per_s;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_allows_a_burst_then_refuses_until_refilled() {
        let mut r = RateLimit::messages();
        let allowed = (0..100).filter(|_| r.allow()).count();
        assert_eq!(allowed, RATE_BURST as usize);
        tokio::time::advance(Duration::from_secs(1)).await;
        let refilled = (0..100).filter(|_| r.allow()).count();
        assert_eq!(refilled, RATE_PER_S as usize, "one second refills the rate");
        tokio::time::advance(Duration::from_secs(60)).await;
        let capped = (0..100).filter(|_| r.allow()).count();
        assert_eq!(capped, RATE_BURST as usize, "never more than the burst");
    }
}
