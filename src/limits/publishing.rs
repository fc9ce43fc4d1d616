//! Admission of platform sends (SPEC §11, overload): each send takes a place per
//! notification among this replica's `PUBLISH_MAX_IN_FLIGHT` before anything is
//! written, and is refused at once when there are not enough free, or when the sends
//! of late have taken longer than `PUBLISH_TARGET_LATENCY_MS` while others are still in
//! flight.
//!
//! Why both: the bound on places keeps memory and the work queued in front of Redis
//! and PostgreSQL finite, but on its own it lets latency grow up to the bound (1,000
//! notifications in flight on two cores queue for half a second). The latency target
//! is what keeps what is accepted fast: it watches the time sends hold their places
//! (a moving average over the last few dozen), and while that is above the target it
//! admits only when nothing is in flight, so the replica drains, the average falls
//! with the first fast sends, and admission opens again (within milliseconds of the
//! load falling). A refusal costs a check; the caller retries after `Retry-After`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

/// The moving average's weight of a new sample: 1/8.
const SMOOTHING: u64 = 8;

pub struct Publishing {
    places: Semaphore,
    max: usize,
    /// The latency target in µs; 0: none.
    target_us: u64,
    /// Moving average of the time a send held its places, in µs.
    recent_us: AtomicU64,
}

/// A send's places, held until its answer is decided; the time it held them feeds the
/// moving average.
pub struct Places<'a> {
    _permit: SemaphorePermit<'a>,
    gate: &'a Publishing,
    since: Instant,
}

impl Drop for Places<'_> {
    fn drop(&mut self) {
        self.gate.observe(self.since.elapsed());
    }
}

impl Publishing {
    /// `max` places (at least 1); `target` zero turns the latency target off.
    pub fn new(max: usize, target: Duration) -> Self {
        let max = max.max(1);
        Self {
            places: Semaphore::new(max),
            max,
            target_us: target.as_micros() as u64,
            recent_us: AtomicU64::new(0),
        }
    }

    /// Places for `count` notifications (a batch larger than the whole bound takes all
    /// of it), or `None` without waiting.
    pub fn admit(&self, count: usize) -> Option<Places<'_>> {
        if self.slow() && self.in_flight() > 0 {
            return None;
        }
        let places = u32::try_from(count.clamp(1, self.max)).unwrap_or(u32::MAX);
        let permit = self.places.try_acquire_many(places).ok()?;
        Some(Places {
            _permit: permit,
            gate: self,
            since: Instant::now(),
        })
    }

    /// Whether a send of one notification would be admitted now: the check made before
    /// the caller is authenticated and the body read. [`Publishing::admit`] still
    /// decides.
    pub fn has_room(&self) -> bool {
        self.places.available_permits() > 0 && !(self.slow() && self.in_flight() > 0)
    }

    /// Notifications being published now.
    pub fn in_flight(&self) -> usize {
        self.max - self.places.available_permits()
    }

    /// Sends of late took longer than the target.
    fn slow(&self) -> bool {
        self.target_us > 0 && self.recent_us.load(Ordering::Relaxed) > self.target_us
    }

    fn observe(&self, took: Duration) {
        let sample = took.as_micros() as u64;
        // Concurrent updates may lose one of two samples: an average over dozens does
        // not need every one.
        let old = self.recent_us.load(Ordering::Relaxed);
        let new = old - old / SMOOTHING + sample / SMOOTHING;
        self.recent_us.store(new, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_bound_what_is_in_flight_and_a_large_batch_takes_them_all() {
        let gate = Publishing::new(10, Duration::ZERO);
        let a = gate.admit(4).unwrap();
        let b = gate.admit(6).unwrap();
        assert_eq!(gate.in_flight(), 10);
        assert!(gate.admit(1).is_none());
        assert!(!gate.has_room());
        drop((a, b));
        let all = gate.admit(500).unwrap();
        assert_eq!(gate.in_flight(), 10);
        drop(all);
        assert!(gate.has_room());
    }

    #[test]
    fn over_the_latency_target_only_an_idle_replica_admits() {
        let gate = Publishing::new(100, Duration::from_millis(20));
        // Slow sends of late: the average climbs over 20 ms.
        for _ in 0..40 {
            gate.observe(Duration::from_millis(200));
        }
        let first = gate.admit(1).expect("nothing in flight: admitted");
        assert!(gate.admit(1).is_none(), "slow and one in flight: refused");
        assert!(!gate.has_room());
        drop(first);
        // Fast sends bring the average under the target again.
        for _ in 0..40 {
            gate.observe(Duration::from_millis(1));
        }
        let a = gate.admit(1).unwrap();
        let b = gate.admit(1).unwrap();
        assert_eq!(gate.in_flight(), 2);
        drop((a, b));
    }

    #[test]
    fn without_a_target_latency_never_refuses() {
        let gate = Publishing::new(100, Duration::ZERO);
        for _ in 0..40 {
            gate.observe(Duration::from_secs(5));
        }
        let _a = gate.admit(1).unwrap();
        assert!(gate.admit(1).is_some());
    }
}
