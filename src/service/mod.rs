//! Business flows: what happens between a request (or a webhook, or a timer) and the
//! notifications of SPEC §3. Handlers call these; these call the store and `notify`.

pub mod alerts;
pub mod orders;
pub mod sweeper;

use std::time::Duration;

use crate::app::AppState;
use crate::domain::UserId;
use crate::notify::{self, Notification};

/// Sends `n` to each of `users` without holding up the caller, retrying while the engine
/// is unreachable (for as long as the notification lives). Used after a database commit,
/// when the business fact is settled and only its announcement remains.
pub fn send_to(state: &AppState, users: Vec<UserId>, n: Notification) {
    if users.is_empty() {
        return;
    }
    let engine = state.hub().engine().clone();
    tokio::spawn(async move {
        let give_up = tokio::time::Instant::now() + n.ttl.min(Duration::from_secs(3600));
        for user in users {
            let mut backoff = Duration::from_millis(100);
            loop {
                match notify::to_user(&*engine, user, &n).await {
                    Ok(_) => break,
                    Err(e) if tokio::time::Instant::now() < give_up => {
                        tracing::warn!(error = %e, event = n.kind.event(), "notification not sent yet; retrying");
                        tokio::time::sleep(backoff).await;
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
