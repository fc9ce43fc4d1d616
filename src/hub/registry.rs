//! The registry and fan-out: this replica's sockets by user (with where each user's
//! channel subscription stands) and by role, and the [`Sink`] that hands what the
//! engine delivers to the matching sockets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::acks::LocalAcks;
use super::socket::{Close, Socket};

use crate::domain::{Role, UserId};
use crate::engine::{Census, Engine, EngineError, Event, MsgId, Sink, Target};
use crate::tasks::Tasks;
use tokio_util::sync::CancellationToken;

/// Roles that may hold sockets (consumers never do).
pub const SOCKET_ROLES: [Role; 3] = [Role::Rider, Role::Merchant, Role::Platform];

/// How long a socket place is held without renewal; a replica that dies frees its
/// users' places within this.
pub const LEASE: Duration = Duration::from_secs(60);
/// How often a replica renews the leases of its sockets.
pub const LEASE_RENEW: Duration = Duration::from_secs(20);
/// A lease not renewed for this long (a renewal overdue by 5 s) belongs to a socket
/// whose replica died, or could not reach Redis when the socket closed: when its user
/// has no place left, such leases give way to the new socket, so a user is never locked
/// out for the rest of a dead replica's leases.
pub const LEASE_OVERDUE: Duration = Duration::from_secs(25);
/// A replica whose census is older than this is gone.
pub const CENSUS_STALE: Duration = Duration::from_secs(30);

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

/// Places waiting to be given back again after a failed release, at most.
const UNRELEASED_MAX: usize = 65_536;

/// Subscription commands waiting for the manager; when full, attaching waits.
const SUBSCRIPTION_QUEUE: usize = 4096;

/// Per user: their sockets here, and where their channel subscription stands.
pub(super) struct UserEntry {
    pub(super) sockets: Vec<Arc<Socket>>,
    pub(super) sub: SubState,
}

pub(super) enum SubState {
    /// A SUBSCRIBE is queued or in flight; these sockets wait for it.
    Pending(Vec<oneshot::Sender<Result<(), HubError>>>),
    Live,
    /// The last socket left; an UNSUBSCRIBE is queued or in flight.
    Leaving,
}

pub struct Hub {
    pub(super) config: HubConfig,
    pub(super) engine: Arc<dyn Engine>,
    epoch: Instant,
    next_seq: AtomicU64,
    users: Mutex<HashMap<UserId, UserEntry>>,
    /// Sockets by role, for announcements. Index: position in [`SOCKET_ROLES`].
    roles: [RwLock<HashMap<u64, Arc<Socket>>>; 3],
    /// Users waiting for the subscription manager.
    pub(super) commands: mpsc::Sender<UserId>,
    /// Users whose channel is being subscribed again after a reconnect: once it is,
    /// their inbox is replayed to their sockets, since live messages published while
    /// the subscription was down were missed (copies are suppressed by id).
    pub(super) resync: Mutex<std::collections::HashSet<UserId>>,
    /// How many times the broker connection was made again: a SUBSCRIBE that was in
    /// flight across a reconnect may have gone to the connection that is gone.
    pub(super) links: AtomicU64,
    /// Places of closed sockets that could not be given back (Redis did not answer):
    /// the sweeper tries again, so a Redis outage does not leave them taken until
    /// their leases run out.
    pub(super) unreleased: Mutex<Vec<(UserId, Arc<str>)>>,
    /// The replica's tasks: the hub's own, and the one-off ones it starts.
    pub(super) tasks: Tasks,
    local_acks: Mutex<LocalAcks>,
}

fn role_index(role: Role) -> Option<usize> {
    SOCKET_ROLES.iter().position(|r| *r == role)
}

impl Hub {
    /// A hub with no tasks yet ([`Hub::start`] starts them), and the receiving end of
    /// its subscription queue.
    pub(super) fn new(
        config: HubConfig,
        engine: Arc<dyn Engine>,
        tasks: &Tasks,
    ) -> (Arc<Hub>, mpsc::Receiver<UserId>) {
        let (commands, queue) = mpsc::channel(SUBSCRIPTION_QUEUE);
        let hub = Arc::new(Hub {
            config,
            engine,
            epoch: Instant::now(),
            next_seq: AtomicU64::new(1),
            users: Mutex::new(HashMap::new()),
            roles: Default::default(),
            commands,
            resync: Mutex::new(Default::default()),
            links: AtomicU64::new(0),
            unreleased: Mutex::new(Vec::new()),
            tasks: tasks.clone(),
            local_acks: Mutex::default(),
        });
        (hub, queue)
    }

    pub(super) fn lock_users(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, UserEntry>> {
        // Critical sections are map edits with no await inside; poisoning cannot tear them.
        self.users.lock().unwrap_or_else(|e| e.into_inner())
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

    pub(super) async fn subscribe_roles(&self) -> Result<(), EngineError> {
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

    /// `user` is no longer admitted through `role`: their sockets here drop it (no more
    /// of that role's announcements), and one left with no role closes with 4003.
    pub fn revoke_local(&self, user: UserId, role: Role) {
        for socket in self.user_sockets(user) {
            self.revoke_socket(&socket, role);
        }
    }

    /// Takes `role` from one socket (see [`Hub::revoke_local`]).
    pub fn revoke_socket(&self, socket: &Socket, role: Role) {
        if !socket.revoke(role) {
            return;
        }
        self.unindex(socket, role);
        metrics::counter!("locallife_ws_roles_revoked_total", "role" => role.as_str()).increment(1);
        if socket.current_roles().is_empty() {
            socket.close(Close {
                code: 4003,
                reason: close_reason(4003),
            });
        }
    }

    /// Takes the socket out of `role`'s index (no more of its announcements), once.
    fn unindex(&self, socket: &Socket, role: Role) {
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

    /// Removes a socket; after a user's last one, their channel is unsubscribed.
    pub fn detach(&self, socket: &Socket) {
        for role in socket.roles.iter() {
            self.unindex(socket, role);
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
        if queue {
            self.requeue(socket.user);
        }
    }

    /// Queues `user` for the subscription manager without ever waiting on the queue
    /// (the manager itself calls this, and it is the queue's only reader): a full queue
    /// hands the send to a task.
    pub(super) fn requeue(&self, user: UserId) {
        if self.commands.try_send(user).is_err() {
            let commands = self.commands.clone();
            self.tasks.spawn_quiet(async move {
                let _ = commands.send(user).await;
            });
        }
    }

    /// Gives a socket place back (in the background: the socket is gone either way; if
    /// Redis does not answer, the sweeper tries again every second).
    pub fn release_place(self: &Arc<Self>, user: UserId, conn_id: Arc<str>) {
        let engine = self.engine.clone();
        let hub = Arc::downgrade(self);
        // One per closing socket: tracked, but with no panic watcher (a second task)
        // for a single await that cannot panic.
        self.tasks.spawn_quiet(async move {
            if engine.release_socket(user, &conn_id).await.is_err() {
                metrics::counter!("locallife_socket_release_failures_total").increment(1);
                if let Some(hub) = hub.upgrade() {
                    hub.retry_release(vec![(user, conn_id)]);
                }
            }
        });
    }

    /// Queues places for the sweeper to give back again (at most [`UNRELEASED_MAX`]:
    /// beyond that, leases run out on their own).
    pub(super) fn retry_release(&self, places: Vec<(UserId, Arc<str>)>) {
        let mut unreleased = self.unreleased.lock().unwrap_or_else(|e| e.into_inner());
        let room = UNRELEASED_MAX.saturating_sub(unreleased.len());
        unreleased.extend(places.into_iter().take(room));
    }

    /// This replica's sockets of `user`.
    /// Users with a socket on this replica.
    pub fn local_users(&self) -> Vec<UserId> {
        self.lock_users().keys().copied().collect()
    }

    pub fn user_sockets(&self, user: UserId) -> Vec<Arc<Socket>> {
        self.lock_users()
            .get(&user)
            .map(|e| e.sockets.clone())
            .unwrap_or_default()
    }

    /// `by`, a socket here, confirmed `ids` (an ack, or a Pong under protocol 1), and
    /// the engine is about to be told: every other socket of that user here stops
    /// tracking them now, and the `Acked` events the engine publishes for them (for
    /// the other replicas) are not applied here again. Call before the engine ack: the
    /// in-process engine delivers its event during the call.
    pub fn acked_here(&self, by: &Socket, ids: &[MsgId]) {
        {
            let users = self.lock_users();
            if let Some(entry) = users.get(&by.user) {
                for socket in entry.sockets.iter().filter(|s| s.seq != by.seq) {
                    for id in ids {
                        socket.acked(*id);
                    }
                }
            }
        }
        let mut local = self.local_acks.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            local.remember(by.user, *id);
        }
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
                let now = crate::time::unix_ms();
                let lag_ms = now.saturating_sub(id.ms);
                metrics::histogram!("locallife_pubsub_lag_seconds").record(lag_ms as f64 / 1000.0);
                crate::telemetry::stage_at(crate::telemetry::Stage::Received, id.ms, now);
                for socket in self.user_sockets(user) {
                    socket.push_tracked(frame.clone(), id, expires_ms);
                }
            }
            (Target::User(user), Event::Acked(id)) => {
                let here = self
                    .local_acks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take(user, id);
                // An ack made here was applied here already ([`Hub::acked_here`]).
                if !here {
                    for socket in self.user_sockets(user) {
                        socket.acked(id);
                    }
                }
            }
            (Target::User(user), Event::Revoke(role)) => self.revoke_local(user, role),
            (Target::User(user), Event::Close { code, reason }) => {
                let reason = close_reason_for(code, &reason);
                for socket in self.user_sockets(user) {
                    socket.close(Close { code, reason });
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

    /// Withdraws this replica's census (its tasks stop with the replica's [`Tasks`]).
    pub async fn shutdown(&self) {
        let _ = self
            .engine
            .report_census(&self.config.replica_id, None)
            .await;
    }
}

/// The reasons a close published by another replica may give (a logout's 4001 is not
/// an expiry): kept when known, else the code's own reason.
const PUBLISHED_REASONS: &[&str] = &["logged out"];

fn close_reason_for(code: u16, reason: &str) -> &'static str {
    PUBLISHED_REASONS
        .iter()
        .find(|known| **known == reason)
        .copied()
        .unwrap_or_else(|| close_reason(code))
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
        // What it cannot read is counted (a newer release's) or logged once (a
        // stranger's) by `decode`, not logged once per payload.
        if let Some(event) = Event::decode(payload) {
            self.deliver_event(target, event);
        }
    }

    fn missed(&self) {
        // Every user here gets their inbox again (copies are suppressed by id), so a
        // notification whose live copy was dropped still reaches the open sockets.
        let users: Vec<(UserId, Vec<Arc<Socket>>)> = self
            .lock_users()
            .iter()
            .filter(|(_, e)| !e.sockets.is_empty())
            .map(|(u, e)| (*u, e.sockets.clone()))
            .collect();
        let engine = self.engine.clone();
        self.tasks.spawn("hub_replay_missed", async move {
            for (user, sockets) in users {
                match engine.inbox(user).await {
                    Ok(entries) => {
                        for socket in &sockets {
                            for e in &entries {
                                socket.push_replayed(e.frame.clone(), e.id, e.expires_ms);
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot replay an inbox after a loss"),
                }
            }
        });
    }

    fn reconnected(&self) {
        // Every user with a socket here is subscribed again, then has their inbox
        // replayed; their sockets keep working meanwhile. That includes users whose
        // SUBSCRIBE is still pending: it may have gone to the connection that is gone
        // (the manager sees `links` move and does it again).
        self.links.fetch_add(1, Ordering::AcqRel);
        let users: Vec<UserId> = {
            let mut users = self.lock_users();
            users
                .iter_mut()
                .filter(|(_, e)| !e.sockets.is_empty())
                .map(|(u, e)| {
                    if !matches!(e.sub, SubState::Pending(_)) {
                        e.sub = SubState::Pending(Vec::new());
                    }
                    *u
                })
                .collect()
        };
        self.resync
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(users.iter().copied());
        self.tasks.spawn(
            "hub_resubscribe",
            resubscribe(
                self.engine.clone(),
                self.commands.clone(),
                users,
                self.tasks.cancel().clone(),
            ),
        );
    }
}

/// After the broker connection came back: role channels again (retried until they
/// take), then every user with a socket here, through the manager.
async fn resubscribe(
    engine: Arc<dyn Engine>,
    commands: mpsc::Sender<UserId>,
    users: Vec<UserId>,
    cancel: CancellationToken,
) {
    resubscribe_roles(&*engine, &cancel).await;
    for user in users {
        if commands.send(user).await.is_err() {
            return;
        }
    }
}

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

#[cfg(test)]
mod tests {
    #[test]
    fn a_logout_close_keeps_its_reason_and_others_get_their_codes() {
        assert_eq!(super::close_reason_for(4001, "logged out"), "logged out");
        assert_eq!(super::close_reason_for(4001, "anything"), "token expired");
        assert_eq!(super::close_reason_for(4003, ""), "no longer admitted");
    }
}
