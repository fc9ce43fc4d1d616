//! The hub: this replica's sockets, by user and by role, and everything that touches
//! them all.
//!
//! - **Fan-out.** Payloads arrive from the engine already serialised; the hub hands the
//!   same bytes (reference-counted) to every matching socket's queue, so a message to
//!   many sockets is serialised once, not once per socket.
//! - **Subscriptions.** This replica subscribes to a user's channel when it gets that
//!   user's first socket and unsubscribes after the last. One manager task issues the
//!   SUBSCRIBE/UNSUBSCRIBE commands, in order, batching whatever is pending into one
//!   command (a reconnect storm of thousands of sockets costs a few round trips). A
//!   socket is told it is live only once its channel is: `welcome` comes after that.
//! - **Keep-alive without a timer per socket.** One sweeper task looks at every socket a
//!   few times per ping interval and asks the ones that are due for a Ping, idle past
//!   the timeout (4000), or past their token's expiry (4001) to act. Sockets sleep
//!   until there is work.
//! - **Places and census.** The sweeper renews this replica's socket leases (the
//!   per-user limit across replicas) and reports the socket counts other replicas read
//!   for `/v1/platform/connections`.

pub mod socket;
mod trim;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use socket::{Close, Outgoing, RoleSet, Socket, Work};

use crate::domain::{Role, UserId};
use crate::engine::{Census, Engine, EngineError, MsgId, ReplicaCensus, Sink, Target};

/// Roles that may hold sockets (consumers never do).
pub const SOCKET_ROLES: [Role; 3] = [Role::Rider, Role::Merchant, Role::Platform];

/// How long a socket place is held without renewal; a replica that dies frees its
/// users' places within this.
pub const LEASE: Duration = Duration::from_secs(60);
/// How often live counts are reported at most, and at least (a heartbeat).
const CENSUS_MIN: Duration = Duration::from_millis(500);
const CENSUS_MAX: Duration = Duration::from_secs(10);
/// At most how often freed memory is given back after sockets were opened.
const TRIM_EVERY: Duration = Duration::from_secs(10);
/// A replica whose census is older than this is gone.
pub const CENSUS_STALE: Duration = Duration::from_secs(30);
/// Subscription commands waiting for the manager; when full, attaching waits.
const SUBSCRIPTION_QUEUE: usize = 4096;
/// Channels per SUBSCRIBE command.
const SUBSCRIBE_BATCH: usize = 1000;

/// What travels on a channel.
///
/// - `M` + frame: a live-only message (announcements, events that need no ack);
/// - `N` + id + ` ` + expiry (unix ms) + `\n` + frame: an inbox notification, tracked
///   until acked (written by the engine's push script);
/// - `A` + id: that notification was acked, stop redelivering it;
/// - `C` + close code (2 bytes) + reason: close the user's sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Message(Utf8Bytes),
    Notify {
        id: MsgId,
        expires_ms: u64,
        frame: Utf8Bytes,
    },
    Acked(MsgId),
    Close {
        code: u16,
        reason: String,
    },
}

impl Event {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            Event::Message(text) => {
                b.put_u8(b'M');
                b.put_slice(text.as_bytes());
            }
            Event::Notify {
                id,
                expires_ms,
                frame,
            } => {
                b.put_slice(format!("N{id} {expires_ms}\n").as_bytes());
                b.put_slice(frame.as_bytes());
            }
            Event::Acked(id) => b.put_slice(format!("A{id}").as_bytes()),
            Event::Close { code, reason } => {
                b.put_u8(b'C');
                b.put_u16(*code);
                b.put_slice(reason.as_bytes());
            }
        }
        b.freeze()
    }

    /// `None` for anything this version did not write.
    pub fn decode(payload: Bytes) -> Option<Event> {
        match payload.first()? {
            b'M' => Utf8Bytes::try_from(payload.slice(1..))
                .ok()
                .map(Event::Message),
            b'N' => {
                let newline = payload.iter().position(|b| *b == b'\n')?;
                let header = std::str::from_utf8(&payload[1..newline]).ok()?;
                let (id, expires) = header.split_once(' ')?;
                Some(Event::Notify {
                    id: id.parse().ok()?,
                    expires_ms: expires.parse().ok()?,
                    frame: Utf8Bytes::try_from(payload.slice(newline + 1..)).ok()?,
                })
            }
            b'A' => std::str::from_utf8(&payload[1..])
                .ok()?
                .parse()
                .ok()
                .map(Event::Acked),
            b'C' if payload.len() >= 3 => Some(Event::Close {
                code: u16::from_be_bytes([payload[1], payload[2]]),
                reason: String::from_utf8_lossy(&payload[3..]).into_owned(),
            }),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HubConfig {
    pub replica_id: Arc<str>,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    /// Redeliver an unacked notification after this long...
    pub ack_timeout: Duration,
    /// ...this many times, then leave it for the next connect.
    pub max_redeliveries: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("subscription failed: {0}")]
    Subscribe(String),
    #[error("the hub is shutting down")]
    Closed,
}

/// Per user: their sockets here, and where their channel subscription stands.
struct UserEntry {
    sockets: Vec<Arc<Socket>>,
    sub: SubState,
}

enum SubState {
    /// A SUBSCRIBE is queued or in flight; these sockets wait for it.
    Pending(Vec<oneshot::Sender<Result<(), HubError>>>),
    Live,
    /// The last socket left; an UNSUBSCRIBE is queued or in flight.
    Leaving,
}

pub struct Hub {
    config: HubConfig,
    engine: Arc<dyn Engine>,
    epoch: Instant,
    next_seq: AtomicU64,
    users: Mutex<HashMap<UserId, UserEntry>>,
    /// Sockets by role, for announcements. Index: position in [`SOCKET_ROLES`].
    roles: [RwLock<HashMap<u64, Arc<Socket>>>; 3],
    commands: mpsc::Sender<UserId>,
    /// Users whose channel is being subscribed again after a reconnect: once it is,
    /// their inbox is replayed to their sockets, since live messages published while
    /// the subscription was down were missed (copies are suppressed by id).
    resync: Mutex<std::collections::HashSet<UserId>>,
    cancel: CancellationToken,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

fn role_index(role: Role) -> Option<usize> {
    SOCKET_ROLES.iter().position(|r| *r == role)
}

impl Hub {
    /// Builds the hub, connects it to the engine as its sink, and starts its tasks.
    pub async fn start(config: HubConfig, engine: Arc<dyn Engine>) -> Arc<Hub> {
        let (commands, queue) = mpsc::channel(SUBSCRIPTION_QUEUE);
        let hub = Arc::new(Hub {
            config,
            engine: engine.clone(),
            epoch: Instant::now(),
            next_seq: AtomicU64::new(1),
            users: Mutex::new(HashMap::new()),
            roles: Default::default(),
            commands,
            resync: Mutex::new(Default::default()),
            cancel: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&hub);
        engine.set_sink(weak.clone() as std::sync::Weak<dyn Sink>);
        // Role channels are always subscribed; a failure here is retried on reconnect.
        if let Err(e) = hub.subscribe_roles().await {
            tracing::warn!(error = %e, "cannot subscribe to role channels yet");
        }
        let manager = tokio::spawn(manage_subscriptions(
            weak.clone(),
            queue,
            hub.cancel.clone(),
        ));
        let sweeper = tokio::spawn(sweep(weak, hub.cancel.clone()));
        hub.lock_tasks().extend([manager, sweeper]);
        hub
    }

    fn lock_users(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, UserEntry>> {
        // Critical sections are map edits with no await inside; poisoning cannot tear them.
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<tokio::task::JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn replica_id(&self) -> &Arc<str> {
        &self.config.replica_id
    }

    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// Milliseconds since this hub started: the clock of `last_seen` and pings.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A fresh id for a socket: (`seq`, `conn_id`).
    /// How many sockets this replica has numbered (opened or tried to) so far.
    pub fn opened(&self) -> u64 {
        self.next_seq.load(Ordering::Relaxed)
    }

    pub fn next_id(&self) -> (u64, Arc<str>) {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        (seq, Arc::from(format!("{}-{seq}", self.config.replica_id)))
    }

    async fn subscribe_roles(&self) -> Result<(), EngineError> {
        let targets: Vec<Target> = SOCKET_ROLES.iter().map(|r| Target::Role(*r)).collect();
        self.engine.subscribe(&targets).await
    }

    /// Adds a socket and waits until its user's channel is subscribed: from then on,
    /// nothing published to the user can miss it.
    pub async fn attach(&self, socket: Arc<Socket>) -> Result<(), HubError> {
        let (tx, rx) = oneshot::channel();
        let queue = {
            let mut users = self.lock_users();
            let entry = users.entry(socket.user).or_insert_with(|| UserEntry {
                sockets: Vec::new(),
                sub: SubState::Leaving,
            });
            entry.sockets.push(socket.clone());
            match &mut entry.sub {
                SubState::Live => {
                    let _ = tx.send(Ok(()));
                    false
                }
                SubState::Pending(waiters) => {
                    waiters.push(tx);
                    false
                }
                SubState::Leaving => {
                    entry.sub = SubState::Pending(vec![tx]);
                    true
                }
            }
        };
        for role in socket.roles.iter() {
            if let Some(i) = role_index(role) {
                self.roles[i]
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(socket.seq, socket.clone());
                metrics::gauge!("locallife_ws_sockets", "role" => role.as_str()).increment(1.0);
            }
        }
        if queue && self.commands.send(socket.user).await.is_err() {
            return Err(HubError::Closed);
        }
        rx.await.unwrap_or(Err(HubError::Closed))
    }

    /// Removes a socket; after a user's last one, their channel is unsubscribed.
    pub fn detach(&self, socket: &Socket) {
        for role in socket.roles.iter() {
            if let Some(i) = role_index(role) {
                let removed = self.roles[i]
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&socket.seq);
                if removed.is_some() {
                    metrics::gauge!("locallife_ws_sockets", "role" => role.as_str()).decrement(1.0);
                }
            }
        }
        let queue = {
            let mut users = self.lock_users();
            let Some(entry) = users.get_mut(&socket.user) else {
                return;
            };
            entry.sockets.retain(|s| s.seq != socket.seq);
            if !entry.sockets.is_empty() {
                return;
            }
            match entry.sub {
                // The manager finishes a pending subscription, sees no socket left,
                // and unsubscribes then.
                SubState::Pending(_) => false,
                SubState::Live | SubState::Leaving => {
                    entry.sub = SubState::Leaving;
                    true
                }
            }
        };
        // A full queue means the manager is far behind; it reconciles every user it
        // sees, and the entry stays Leaving until then, so nothing is lost by waiting.
        if queue && self.commands.try_send(socket.user).is_err() {
            let commands = self.commands.clone();
            let user = socket.user;
            tokio::spawn(async move {
                let _ = commands.send(user).await;
            });
        }
    }

    /// This replica's sockets of `user`.
    pub fn user_sockets(&self, user: UserId) -> Vec<Arc<Socket>> {
        self.lock_users()
            .get(&user)
            .map(|e| e.sockets.clone())
            .unwrap_or_default()
    }

    /// Calls `f` on every socket of this replica, under the users lock: no copy of the
    /// socket list (the sweeper visits every socket each second). `f` must be quick and
    /// must not touch the hub's maps.
    pub fn for_each_socket(&self, mut f: impl FnMut(&Arc<Socket>)) {
        for entry in self.lock_users().values() {
            entry.sockets.iter().for_each(&mut f);
        }
    }

    /// Every socket on this replica.
    pub fn all_sockets(&self) -> Vec<Arc<Socket>> {
        self.lock_users()
            .values()
            .flat_map(|e| e.sockets.iter().cloned())
            .collect()
    }

    /// This replica's socket counts, now.
    pub fn census(&self) -> Census {
        let mut census = Census {
            sockets: self
                .lock_users()
                .values()
                .map(|e| e.sockets.len() as u64)
                .sum(),
            ..Census::default()
        };
        for (i, role) in SOCKET_ROLES.iter().enumerate() {
            let n = self.roles[i]
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .len() as u64;
            census.by_role.insert(role.as_str().to_owned(), n);
        }
        census
    }

    fn deliver_event(&self, target: Target, event: Event) {
        match (target, event) {
            (Target::User(user), Event::Message(text)) => {
                for socket in self.user_sockets(user) {
                    socket.push(text.clone());
                }
            }
            (
                Target::User(user),
                Event::Notify {
                    id,
                    expires_ms,
                    frame,
                },
            ) => {
                // The id is the inbox's clock at publish time.
                let lag_ms = crate::time::unix_ms().saturating_sub(id.ms);
                metrics::histogram!("locallife_pubsub_lag_seconds").record(lag_ms as f64 / 1000.0);
                for socket in self.user_sockets(user) {
                    socket.push_tracked(frame.clone(), id, expires_ms);
                }
            }
            (Target::User(user), Event::Acked(id)) => {
                for socket in self.user_sockets(user) {
                    socket.acked(id);
                }
            }
            (Target::User(user), Event::Close { code, .. }) => {
                for socket in self.user_sockets(user) {
                    socket.close(Close {
                        code,
                        reason: close_reason(code),
                    });
                }
            }
            (Target::Role(role), Event::Message(text)) => {
                if let Some(i) = role_index(role) {
                    let sockets = self.roles[i].read().unwrap_or_else(|e| e.into_inner());
                    for socket in sockets.values() {
                        socket.push(text.clone());
                    }
                }
            }
            // Nothing else is ever published to a role.
            (Target::Role(_), _) => {}
        }
    }

    /// Stops the hub's tasks and withdraws this replica's census.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let tasks = std::mem::take(&mut *self.lock_tasks());
        for task in tasks {
            let _ = task.await;
        }
        let _ = self
            .engine
            .report_census(&self.config.replica_id, None)
            .await;
    }
}

/// Close reasons are static: a socket stores a `&'static str`, not a String.
fn close_reason(code: u16) -> &'static str {
    match code {
        4003 => "no longer admitted",
        4001 => "token expired",
        1001 => "replica shutting down",
        _ => "closed by the server",
    }
}

impl Sink for Hub {
    fn deliver(&self, target: Target, payload: Bytes) {
        match Event::decode(payload) {
            Some(event) => self.deliver_event(target, event),
            None => tracing::warn!("ignored an undecodable payload"),
        }
    }

    fn reconnected(&self) {
        // Mark every live user pending again and queue them; their sockets keep
        // working meanwhile (they are not waiting on anything).
        let users: Vec<UserId> = {
            let mut users = self.lock_users();
            users
                .iter_mut()
                .filter(|(_, e)| matches!(e.sub, SubState::Live))
                .map(|(u, e)| {
                    e.sub = SubState::Pending(Vec::new());
                    *u
                })
                .collect()
        };
        self.resync
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(users.iter().copied());
        let commands = self.commands.clone();
        let engine = self.engine.clone();
        let cancel = self.cancel.clone();
        tokio::spawn(async move {
            resubscribe_roles(&*engine, &cancel).await;
            for user in users {
                if commands.send(user).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Role channels again after a reconnect, retried until they take.
async fn resubscribe_roles(engine: &dyn Engine, cancel: &CancellationToken) {
    let targets: Vec<Target> = SOCKET_ROLES.iter().map(|r| Target::Role(*r)).collect();
    let mut backoff = Duration::from_millis(100);
    while !cancel.is_cancelled() {
        match engine.subscribe(&targets).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to role channels; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cancel.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// The one task that subscribes and unsubscribes user channels, in order.
async fn manage_subscriptions(
    hub: std::sync::Weak<Hub>,
    mut queue: mpsc::Receiver<UserId>,
    cancel: CancellationToken,
) {
    let mut batch = Vec::with_capacity(SUBSCRIBE_BATCH);
    loop {
        batch.clear();
        tokio::select! {
            n = queue.recv_many(&mut batch, SUBSCRIBE_BATCH) => if n == 0 { return },
            _ = cancel.cancelled() => return,
        }
        let Some(hub) = hub.upgrade() else { return };
        // Decide under the lock, act outside it.
        let (subscribe, unsubscribe) = {
            let users = hub.lock_users();
            let mut subscribe = Vec::new();
            let mut unsubscribe = Vec::new();
            for user in batch.drain(..) {
                match users.get(&user) {
                    Some(e) if matches!(e.sub, SubState::Pending(_)) => subscribe.push(user),
                    Some(e) if matches!(e.sub, SubState::Leaving) && e.sockets.is_empty() => {
                        unsubscribe.push(user)
                    }
                    _ => {}
                }
            }
            subscribe.sort_unstable();
            subscribe.dedup();
            unsubscribe.sort_unstable();
            unsubscribe.dedup();
            (subscribe, unsubscribe)
        };
        if !unsubscribe.is_empty() {
            let targets: Vec<Target> = unsubscribe.iter().map(|u| Target::User(*u)).collect();
            if let Err(e) = hub.engine.unsubscribe(&targets).await {
                // Harmless: a stray subscription only delivers to no socket.
                tracing::debug!(error = %e, "unsubscribe failed");
            }
            let mut users = hub.lock_users();
            for user in &unsubscribe {
                if users.get(user).is_some_and(|e| e.sockets.is_empty()) {
                    users.remove(user);
                }
            }
        }
        if !subscribe.is_empty() {
            let targets: Vec<Target> = subscribe.iter().map(|u| Target::User(*u)).collect();
            let result = hub.engine.subscribe(&targets).await;
            let mut abandoned = Vec::new();
            {
                let mut users = hub.lock_users();
                for user in &subscribe {
                    let Some(entry) = users.get_mut(user) else {
                        continue;
                    };
                    let SubState::Pending(waiters) = &mut entry.sub else {
                        continue;
                    };
                    let waiters = std::mem::take(waiters);
                    match &result {
                        Ok(()) => {
                            entry.sub = SubState::Live;
                            for w in waiters {
                                let _ = w.send(Ok(()));
                            }
                        }
                        Err(e) => {
                            // The waiting sockets close (1011) and their clients retry;
                            // the next attach queues the user again.
                            entry.sub = SubState::Leaving;
                            for w in waiters {
                                let _ = w.send(Err(HubError::Subscribe(e.to_string())));
                            }
                        }
                    }
                    if entry.sockets.is_empty() {
                        // Every socket left while the subscription was in flight.
                        entry.sub = SubState::Leaving;
                        abandoned.push(*user);
                    }
                }
            }
            if result.is_ok() {
                let resync: Vec<UserId> = {
                    let mut pending = hub.resync.lock().unwrap_or_else(|e| e.into_inner());
                    subscribe
                        .iter()
                        .filter(|u| pending.remove(u))
                        .copied()
                        .collect()
                };
                if !resync.is_empty() {
                    tokio::spawn(replay_inboxes(hub.clone(), resync));
                }
            }
            for user in abandoned {
                // This task is the queue's only reader: never wait on it from here.
                if hub.commands.try_send(user).is_err() {
                    let commands = hub.commands.clone();
                    tokio::spawn(async move {
                        let _ = commands.send(user).await;
                    });
                }
            }
        }
    }
}

/// Queues each user's inbox to their sockets again (after a resubscription).
async fn replay_inboxes(hub: Arc<Hub>, users: Vec<UserId>) {
    for user in users {
        match hub.engine.inbox(user).await {
            Ok(entries) => {
                for socket in hub.user_sockets(user) {
                    for e in &entries {
                        socket.push_replayed(e.frame.clone(), e.id, e.expires_ms);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot replay an inbox after reconnecting"),
        }
    }
}

/// The sweeper: pings, idle and token-expiry closes, lease renewal, census.
async fn sweep(hub: std::sync::Weak<Hub>, cancel: CancellationToken) {
    let Some(config) = hub.upgrade().map(|h| h.config.clone()) else {
        return;
    };
    let shortest = config
        .ping_interval
        .min(config.idle_timeout)
        .min(config.ack_timeout);
    let tick = (shortest / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let ping_ms = config.ping_interval.as_millis() as u64;
    let idle_ms = config.idle_timeout.as_millis() as u64;
    let ack_ms = config.ack_timeout.as_millis() as u64;
    let mut last_housekeeping = Instant::now();
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_renewal = Instant::now();
    let mut last_trim = (Instant::now(), 0);
    let mut opened_before = 0;
    let mut last_census: Option<(Census, Instant)> = None;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = cancel.cancelled() => return,
        }
        let Some(hub) = hub.upgrade() else { return };
        let now = hub.now_ms();
        let unix_ms = crate::time::unix_ms();
        let unix_now = unix_ms / 1000;
        let (mut redelivered, mut expired) = (0, 0);
        hub.for_each_socket(|socket| {
            if now.saturating_sub(socket.last_seen()) >= idle_ms {
                socket.close(Close {
                    code: 4000,
                    reason: "idle timeout",
                });
            } else if unix_now >= socket.token_exp {
                socket.close(Close {
                    code: 4001,
                    reason: "token expired",
                });
            } else if now.saturating_sub(socket.last_ping()) >= ping_ms {
                socket.request_ping(now);
            }
            let sweep = socket.sweep_pending(now, unix_ms, ack_ms, config.max_redeliveries);
            redelivered += sweep.redelivered;
            expired += sweep.expired;
        });
        if redelivered > 0 {
            metrics::counter!("locallife_redeliveries_total").increment(redelivered);
        }
        if expired > 0 {
            metrics::counter!("locallife_inbox_expired_total").increment(expired);
        }
        if last_housekeeping.elapsed() >= Duration::from_secs(60) {
            last_housekeeping = Instant::now();
            hub.engine.housekeeping().await;
        }
        // After sockets were opened, once a tick has passed with none opened (the wave
        // is over): their handshakes' freed buffers are given back (see `trim`).
        let opened = hub.opened();
        if opened == opened_before && opened != last_trim.1 && last_trim.0.elapsed() >= TRIM_EVERY {
            last_trim = (Instant::now(), opened);
            tokio::task::spawn_blocking(trim::release_free_memory);
        }
        opened_before = opened;
        if last_renewal.elapsed() >= LEASE / 3 {
            last_renewal = Instant::now();
            let mut places: Vec<(UserId, Arc<str>)> = Vec::new();
            hub.for_each_socket(|s| places.push((s.user, s.conn_id.clone())));
            let until = crate::time::unix_ms() + LEASE.as_millis() as u64;
            if let Err(e) = hub.engine.renew_sockets(&places, until).await {
                tracing::warn!(error = %e, "cannot renew socket leases");
            }
        }
        let census = hub.census();
        let due = match &last_census {
            None => true,
            Some((last, at)) => {
                (at.elapsed() >= CENSUS_MIN && *last != census) || at.elapsed() >= CENSUS_MAX
            }
        };
        if due {
            let report = ReplicaCensus {
                replica_id: hub.config.replica_id.to_string(),
                census: census.clone(),
                reported_at_ms: crate::time::unix_ms(),
            };
            if hub
                .engine
                .report_census(&hub.config.replica_id, Some(&report))
                .await
                .is_ok()
            {
                last_census = Some((census, Instant::now()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        for event in [
            Event::Message(Utf8Bytes::from("{\"type\":\"notification\"}")),
            Event::Message(Utf8Bytes::from("")),
            Event::Close {
                code: 4003,
                reason: "rider offline".into(),
            },
            Event::Notify {
                id: MsgId {
                    ms: 1732451234567,
                    seq: 3,
                },
                expires_ms: 1732451294567,
                frame: Utf8Bytes::from("{\"type\":\"notification\"}"),
            },
            Event::Acked(MsgId { ms: 7, seq: 0 }),
        ] {
            assert_eq!(Event::decode(event.encode()), Some(event));
        }
        assert_eq!(Event::decode(Bytes::from_static(b"")), None);
        assert_eq!(Event::decode(Bytes::from_static(b"X123")), None);
        assert_eq!(Event::decode(Bytes::from_static(b"C\x0f")), None);
        assert_eq!(Event::decode(Bytes::from_static(b"M\xff\xfe")), None);
        assert_eq!(Event::decode(Bytes::from_static(b"N1-0 5")), None);
        assert_eq!(Event::decode(Bytes::from_static(b"Nx-0 5\n{}")), None);
        assert_eq!(Event::decode(Bytes::from_static(b"A1")), None);
    }
}
