//! The in-process engine: one replica, no Redis. Same semantics as the Redis engine
//! within that replica: a publish reaches the sink only for subscribed channels, socket
//! places are leased and counted the same way, and an inbox follows the rules of the
//! Redis stream (write order, the bound, acked ids remembered, expiry).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use async_trait::async_trait;
use bytes::Bytes;

use super::inbox::{keep_inbox_ms, InboxEntry, MsgId, Pushed, DONE_KEEP_MS, DONE_MAX, INBOX_MAX};
use super::wire::{self, Event};
use super::{
    Broker, EngineError, IdempotencyKey, Place, Places, ReplicaCensus, RiderIndex, Shared, Sink,
    Target, CONNECT_LIMIT, CONNECT_WINDOW_MS,
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
    inboxes: HashMap<UserId, Inbox>,
    positions: HashMap<UserId, (f64, f64)>,
    geo_ready: bool,
    /// Idempotency keys: value and expiry (unix ms).
    once: HashMap<IdempotencyKey, (String, u64)>,
    /// Shared values: value and expiry (unix ms).
    shared: HashMap<String, (String, u64)>,
}

/// One user's inbox, as the Redis stream holds it: the unacked notifications in the
/// order they were written (Redis: the stream's entries), and the ids acked or
/// withdrawn lately (Redis: the `:ids` sorted set).
#[derive(Default)]
struct Inbox {
    entries: VecDeque<(MsgId, u64, Arc<str>)>,
    /// Acked ids and when: each for [`DONE_KEEP_MS`] at least, the newest [`DONE_MAX`].
    done: HashMap<MsgId, u64>,
    /// Until when the inbox is kept untouched (Redis: the keys' expiry).
    keep_until_ms: u64,
}

impl Inbox {
    fn forget_done(&mut self, now: u64) {
        self.done
            .retain(|_, at| at.saturating_add(DONE_KEEP_MS) > now);
        if self.done.len() > DONE_MAX {
            let mut by_age: Vec<(u64, MsgId)> = self.done.iter().map(|(i, t)| (*t, *i)).collect();
            by_age.sort_unstable();
            for (_, id) in &by_age[..self.done.len() - DONE_MAX] {
                self.done.remove(id);
            }
        }
    }
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes `id` from `user`'s inbox, remembering it as done when it was there (or
    /// `always`), and tells the sink if it was there. Whether it was.
    fn remove(&self, user: UserId, id: MsgId, always: bool) -> bool {
        let (removed, deliver) = {
            let mut s = self.lock();
            let inbox = s.inboxes.entry(user).or_default();
            let before = inbox.entries.len();
            inbox.entries.retain(|(i, _, _)| *i != id);
            let now = now_ms();
            // The acked ids it remembers keep it (Redis: the acked set's own expiry).
            inbox.keep_until_ms = inbox.keep_until_ms.max(now + DONE_KEEP_MS);
            let removed = inbox.entries.len() < before;
            if removed || always {
                inbox.done.insert(id, now);
                inbox.forget_done(now);
            }
            (
                removed,
                removed && s.subscribed.contains(&Target::User(user)),
            )
        };
        if deliver {
            if let Some(sink) = self.sink.get().and_then(Weak::upgrade) {
                sink.deliver(Target::User(user), Event::Acked(id).encode());
            }
        }
        removed
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
impl Broker for MemoryEngine {
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

    async fn housekeeping(&self) {
        // What Redis does with PEXPIRE: inboxes untouched for a day (or past their
        // longest ttl) go.
        let now = now_ms();
        self.lock()
            .inboxes
            .retain(|_, inbox| inbox.keep_until_ms > now);
    }

    async fn ping(&self) -> bool {
        true
    }

    async fn shutdown(&self) {}
}

// By its path: `Inbox` in this file is one user's inbox.
#[async_trait]
impl super::Inbox for MemoryEngine {
    async fn push_inbox(
        &self,
        user: UserId,
        id: MsgId,
        tail: &str,
        expires_ms: u64,
    ) -> Result<Pushed, EngineError> {
        let now = now_ms();
        let deliver = {
            let mut s = self.lock();
            let inbox = s.inboxes.entry(user).or_default();
            if inbox.done.contains_key(&id) || inbox.entries.iter().any(|(i, _, _)| *i == id) {
                return Ok(Pushed::Duplicate);
            }
            // In the order of writing, as the Redis stream holds them (and as sockets
            // saw them live).
            inbox.entries.push_back((id, expires_ms, Arc::from(tail)));
            inbox.keep_until_ms = inbox
                .keep_until_ms
                .max(now + keep_inbox_ms(now, expires_ms));
            let mut dropped = 0;
            while inbox.entries.len() > INBOX_MAX {
                inbox.entries.pop_front();
                dropped += 1;
            }
            if dropped > 0 {
                metrics::counter!("locallife_inbox_dropped_total").increment(dropped);
            }
            s.subscribed.contains(&Target::User(user))
        };
        if deliver {
            if let Some(sink) = self.sink.get().and_then(Weak::upgrade) {
                let event = Event::Notify {
                    id,
                    expires_ms,
                    frame: wire::frame(id, tail),
                };
                sink.deliver(Target::User(user), event.encode());
            }
        }
        Ok(Pushed::New)
    }

    async fn ack(&self, user: UserId, id: MsgId) -> Result<bool, EngineError> {
        Ok(self.remove(user, id, false))
    }

    async fn withdraw(&self, user: UserId, id: MsgId) -> Result<(), EngineError> {
        self.remove(user, id, true);
        Ok(())
    }

    async fn inbox(&self, user: UserId) -> Result<Vec<InboxEntry>, EngineError> {
        let now = now_ms();
        let mut s = self.lock();
        let Some(inbox) = s.inboxes.get_mut(&user) else {
            return Ok(Vec::new());
        };
        let before = inbox.entries.len();
        inbox.entries.retain(|(_, exp, _)| *exp > now);
        let expired = before - inbox.entries.len();
        if expired > 0 {
            metrics::counter!("locallife_inbox_expired_total").increment(expired as u64);
        }
        Ok(inbox
            .entries
            .iter()
            .map(|(id, exp, tail)| InboxEntry {
                id: *id,
                expires_ms: *exp,
                frame: wire::frame(*id, tail),
            })
            .collect())
    }
}

#[async_trait]
impl Shared for MemoryEngine {
    async fn claim_once(
        &self,
        key: &IdempotencyKey,
        value: &str,
        ttl_ms: u64,
    ) -> Result<Option<String>, EngineError> {
        let now = now_ms();
        let mut s = self.lock();
        s.once.retain(|_, (_, until)| *until > now);
        if let Some((existing, _)) = s.once.get(key) {
            return Ok(Some(existing.clone()));
        }
        s.once
            .insert(key.clone(), (value.to_owned(), now.saturating_add(ttl_ms)));
        Ok(None)
    }

    async fn release_once(&self, key: &IdempotencyKey) -> Result<(), EngineError> {
        self.lock().once.remove(key);
        Ok(())
    }

    async fn shared_get(&self, key: &str) -> Result<Option<String>, EngineError> {
        let now = now_ms();
        Ok(self
            .lock()
            .shared
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(v, _)| v.clone()))
    }

    async fn shared_set(
        &self,
        key: &str,
        value: &str,
        ttl_ms: u64,
        only_if_absent: bool,
    ) -> Result<bool, EngineError> {
        let now = now_ms();
        let mut s = self.lock();
        s.shared.retain(|_, (_, until)| *until > now);
        if only_if_absent && s.shared.contains_key(key) {
            return Ok(false);
        }
        s.shared.insert(
            key.to_owned(),
            (value.to_owned(), now.saturating_add(ttl_ms)),
        );
        Ok(true)
    }

    async fn shared_remove_if(&self, key: &str, value: &str) -> Result<(), EngineError> {
        let mut s = self.lock();
        if s.shared.get(key).is_some_and(|(v, _)| v == value) {
            s.shared.remove(key);
        }
        Ok(())
    }
}

#[async_trait]
impl RiderIndex for MemoryEngine {
    async fn geo_set(&self, rider: UserId, lat: f64, lng: f64) -> Result<(), EngineError> {
        self.lock().positions.insert(rider, (lat, lng));
        Ok(())
    }

    async fn geo_ready(&self) -> Result<bool, EngineError> {
        Ok(self.lock().geo_ready)
    }

    async fn geo_mark_ready(&self) -> Result<(), EngineError> {
        self.lock().geo_ready = true;
        Ok(())
    }

    async fn geo_remove(&self, rider: UserId) -> Result<(), EngineError> {
        self.lock().positions.remove(&rider);
        Ok(())
    }

    async fn geo_near(
        &self,
        lat: f64,
        lng: f64,
        radius_m: f64,
        count: usize,
    ) -> Result<Vec<(UserId, f64)>, EngineError> {
        let mut near: Vec<(UserId, f64)> = self
            .lock()
            .positions
            .iter()
            .map(|(u, (la, ln))| (*u, super::distance_m(lat, lng, *la, *ln)))
            .filter(|(_, d)| *d <= radius_m)
            .collect();
        near.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        near.truncate(count);
        Ok(near)
    }
}

#[async_trait]
impl Places for MemoryEngine {
    async fn acquire_socket(
        &self,
        user: UserId,
        conn: &str,
        max: usize,
        lease_until_ms: u64,
        overdue_before_ms: u64,
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
            places.retain(|_, until| *until >= overdue_before_ms);
        }
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
}
