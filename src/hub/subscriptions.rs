//! The subscription manager: the one task that subscribes and unsubscribes user
//! channels, in order, batching whatever is pending into one command (a reconnect storm
//! of thousands of sockets costs a few round trips).
//!
//! The hub decides *whether* a user's channel is wanted (first socket attached, last
//! one detached) and queues the user; this task reconciles each queued user with the
//! hub's registry and acts. After the broker connection came back, it also replays the
//! inboxes of the users it subscribed again ([`replay_inboxes`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;

use super::registry::{Hub, HubError, SubState};
use crate::domain::UserId;
use crate::engine::Target;

/// Channels per SUBSCRIBE command.
const BATCH: usize = 1000;

/// How long a failed SUBSCRIBE waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The manager's queue. Behind a lock so that a restarted manager (after a panic) takes
/// the same receiver: nothing queued is lost with the task that panicked.
pub(super) type Queue = Arc<Mutex<mpsc::Receiver<UserId>>>;

/// The manager's loop, until cancelled or the hub is gone.
pub(super) async fn manage(hub: Weak<Hub>, queue: Queue, cancel: CancellationToken) {
    let mut queue = queue.lock().await;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        batch.clear();
        tokio::select! {
            n = queue.recv_many(&mut batch, BATCH) => if n == 0 { return },
            _ = cancel.cancelled() => return,
        }
        let Some(hub) = hub.upgrade() else { return };
        let (subscribe, unsubscribe) = decide(&hub, &mut batch);
        if !unsubscribe.is_empty() {
            unsubscribe_users(&hub, &unsubscribe).await;
        }
        if !subscribe.is_empty() {
            subscribe_users(&hub, &subscribe).await;
        }
    }
}

/// Which queued users need a SUBSCRIBE and which an UNSUBSCRIBE, decided under the lock
/// (acted on outside it).
fn decide(hub: &Hub, batch: &mut Vec<UserId>) -> (Vec<UserId>, Vec<UserId>) {
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
}

async fn unsubscribe_users(hub: &Hub, users: &[UserId]) {
    let targets: Vec<Target> = users.iter().map(|u| Target::User(*u)).collect();
    if let Err(e) = hub.engine.unsubscribe(&targets).await {
        // Harmless: a stray subscription only delivers to no socket.
        tracing::debug!(error = %e, "unsubscribe failed");
    }
    let mut entries = hub.lock_users();
    for user in users {
        if entries.get(user).is_some_and(|e| e.sockets.is_empty()) {
            entries.remove(user);
        }
    }
}

async fn subscribe_users(hub: &Arc<Hub>, users: &[UserId]) {
    let targets: Vec<Target> = users.iter().map(|u| Target::User(*u)).collect();
    let links = hub.links.load(Ordering::Acquire);
    let result = hub.engine.subscribe(&targets).await;
    // The connection was made again meanwhile: this SUBSCRIBE may have been answered
    // by the one that is gone. The users stay pending and go round again.
    let stale = hub.links.load(Ordering::Acquire) != links;
    let mut abandoned = Vec::new();
    let mut again = Vec::new();
    {
        let mut entries = hub.lock_users();
        for user in users {
            let Some(entry) = entries.get_mut(user) else {
                continue;
            };
            let SubState::Pending(waiters) = &mut entry.sub else {
                continue;
            };
            if entry.sockets.is_empty() {
                // Every socket left while the subscription was in flight.
                entry.sub = SubState::Leaving;
                abandoned.push(*user);
                continue;
            }
            match &result {
                Ok(()) if stale => again.push(*user),
                Ok(()) => {
                    for w in std::mem::take(waiters) {
                        let _ = w.send(Ok(()));
                    }
                    entry.sub = SubState::Live;
                }
                Err(e) => {
                    // The sockets waiting for it close (1011) and their clients retry.
                    // Sockets that were live already (a resubscription after a
                    // reconnect) stay, and the subscription is tried again.
                    for w in std::mem::take(waiters) {
                        let _ = w.send(Err(HubError::Subscribe(e.to_string())));
                    }
                    again.push(*user);
                }
            }
        }
    }
    if result.is_ok() && !stale {
        let resync: Vec<UserId> = {
            let mut pending = hub.resync.lock().unwrap_or_else(|e| e.into_inner());
            users
                .iter()
                .filter(|u| pending.remove(u))
                .copied()
                .collect()
        };
        if !resync.is_empty() {
            hub.tasks
                .spawn("hub_replay", replay_inboxes(hub.clone(), resync));
        }
    }
    for user in abandoned {
        hub.requeue(user);
    }
    if !again.is_empty() {
        // After a failure, not at once: the broker is likely down, and its reconnect
        // queues everyone anyway.
        let pause = if result.is_ok() {
            Duration::ZERO
        } else {
            RETRY_AFTER
        };
        let (weak, cancel) = (Arc::downgrade(hub), hub.tasks.cancel().clone());
        hub.tasks.spawn_quiet(async move {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = cancel.cancelled() => return,
            }
            if let Some(hub) = weak.upgrade() {
                for user in again {
                    hub.requeue(user);
                }
            }
        });
    }
}

/// Queues each user's inbox to their sockets again (after a resubscription): live
/// messages published while the subscription was down were missed; copies are
/// suppressed by id.
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
