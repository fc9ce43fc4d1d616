//! Business flows: what happens between a request (or a webhook, a socket message, a
//! timer) and the notifications of SPEC §3. HTTP handlers, the WebSocket session and
//! timers call these; these call the store and `notify`. Each flow has its own error
//! enum; the HTTP mapping of all of them is in [`crate::error`].

pub mod notifications;
pub mod orders;
pub mod payments;
pub mod riders;
pub mod sweeper;

use std::time::Duration;

use crate::domain::UserId;
use crate::notify::{self, Notification};
use crate::state::AppState;

/// Sends `n` to each of `users` without holding up the caller, retrying while the engine
/// is unreachable (for as long as the notification lives, at most an hour, or until the
/// replica stops). Used after a database commit, when the business fact is settled and
/// only its announcement remains. The retry is a task the replica owns; it lives in
/// memory only, so a replica that dies while retrying loses it (SPEC §3's outbox is the
/// cure).
pub fn send_to(state: &AppState, users: Vec<UserId>, n: Notification) {
    if users.is_empty() {
        return;
    }
    let engine = state.engine().clone();
    let cancel = state.tasks().cancel().clone();
    state.tasks().spawn("send_to", async move {
        let give_up = tokio::time::Instant::now() + n.ttl.min(Duration::from_secs(3600));
        for user in users {
            let mut backoff = Duration::from_millis(100);
            loop {
                match notify::to_user(&*engine, user, &n).await {
                    Ok(_) => break,
                    Err(e) if tokio::time::Instant::now() < give_up && !cancel.is_cancelled() => {
                        tracing::warn!(error = %e, event = n.kind.event(), "notification not sent yet; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = cancel.cancelled() => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, event = n.kind.event(), "notification given up");
                        metrics::counter!("locallife_notifications_lost_total").increment(1);
                        break;
                    }
                }
            }
        }
    });
}
