//! The in-process engine: one replica, no Redis. Same semantics as the Redis engine
//! within that replica: a publish reaches the sink only for subscribed channels, socket
//! places are leased and counted the same way.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    Engine, EngineError, Place, ReplicaCensus, Sink, Target, CONNECT_LIMIT, CONNECT_WINDOW_MS,
};
use crate::domain::UserId;

#[derive(Default)]
pub struct MemoryEngine {
    sink: OnceLock<Weak<dyn Sink>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    subscribed: HashSet<Target>,
    /// user → (connection → lease expiry, unix ms)
    sockets: HashMap<UserId, HashMap<Arc<str>, u64>>,
    /// user → (window end, unix ms; attempts in it)
    connects: HashMap<UserId, (u64, u32)>,
    censuses: HashMap<String, ReplicaCensus>,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }

    /// The state; a panic while it was held cannot leave it half-updated in a way that
    /// matters here (each critical section is a single map operation), so poisoning is
    /// ignored rather than turned into an outage.
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn now_ms() -> u64 {
    crate::time::unix_ms()
}

#[async_trait]
impl Engine for MemoryEngine {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn set_sink(&self, sink: Weak<dyn Sink>) {
        let _ = self.sink.set(sink);
    }

    async fn publish(&self, target: Target, payload: Bytes) -> Result<(), EngineError> {
        let subscribed = self.lock().subscribed.contains(&target);
        if subscribed {
            if let Some(sink) = self.sink.get().and_then(Weak::upgrade) {
                sink.deliver(target, payload);
            }
        }
        Ok(())
    }

    async fn subscribe(&self, targets: &[Target]) -> Result<(), EngineError> {
        let mut s = self.lock();
        s.subscribed.extend(targets.iter().copied());
        Ok(())
    }

    async fn unsubscribe(&self, targets: &[Target]) -> Result<(), EngineError> {
        let mut s = self.lock();
        for t in targets {
            s.subscribed.remove(t);
        }
        Ok(())
    }

    async fn ping(&self) -> bool {
        true
    }

    async fn acquire_socket(
        &self,
        user: UserId,
        conn: &str,
        max: usize,
        lease_until_ms: u64,
    ) -> Result<Place, EngineError> {
        let now = now_ms();
        let mut s = self.lock();
        // Windows that ended are forgotten, so the map holds recent users only.
        s.connects.retain(|_, (end, _)| *end > now);
        let (_, attempts) = s
            .connects
            .entry(user)
            .or_insert((now + CONNECT_WINDOW_MS, 0));
        *attempts += 1;
        if *attempts > CONNECT_LIMIT {
            return Ok(Place::RateLimited);
        }
        let places = s.sockets.entry(user).or_default();
        places.retain(|_, until| *until > now);
        if places.len() >= max {
            return Ok(Place::Full);
        }
        places.insert(Arc::from(conn), lease_until_ms);
        Ok(Place::Taken)
    }

    async fn release_socket(&self, user: UserId, conn: &str) -> Result<(), EngineError> {
        let mut s = self.lock();
        if let Some(places) = s.sockets.get_mut(&user) {
            places.remove(conn);
            if places.is_empty() {
                s.sockets.remove(&user);
            }
        }
        Ok(())
    }

    async fn renew_sockets(
        &self,
        sockets: &[(UserId, Arc<str>)],
        lease_until_ms: u64,
    ) -> Result<(), EngineError> {
        let mut s = self.lock();
        for (user, conn) in sockets {
            if let Some(until) = s.sockets.get_mut(user).and_then(|p| p.get_mut(conn)) {
                *until = lease_until_ms;
            }
        }
        Ok(())
    }

    async fn report_census(
        &self,
        replica: &str,
        census: Option<&ReplicaCensus>,
    ) -> Result<(), EngineError> {
        let mut s = self.lock();
        match census {
            Some(c) => s.censuses.insert(replica.to_owned(), c.clone()),
            None => s.censuses.remove(replica),
        };
        Ok(())
    }

    async fn censuses(&self, fresh_after_ms: u64) -> Result<Vec<ReplicaCensus>, EngineError> {
        let s = self.lock();
        Ok(s.censuses
            .values()
            .filter(|c| c.reported_at_ms >= fresh_after_ms)
            .cloned()
            .collect())
    }

    async fn shutdown(&self) {}
}
