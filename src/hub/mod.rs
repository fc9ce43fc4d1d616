//! The hub: this replica's sockets, by user and by role. A registry and fan-out, as
//! centrifuge's `hub.go`; what it delegates has a file of its own:
//!
//! - **Fan-out** (`registry.rs`). Payloads arrive from the engine already serialised (their
//!   format is [`crate::engine::wire`]); the hub hands the same bytes
//!   (reference-counted) to every matching socket's queue, so a message to many sockets
//!   is serialised once, not once per socket.
//! - **Registry** (`registry.rs`). Sockets by user (with where the user's channel subscription
//!   stands) and by role (for announcements).
//! - **Subscriptions** (`subscriptions.rs`). This replica subscribes to a user's channel
//!   when it gets that user's first socket and unsubscribes after the last, through one
//!   manager task. A socket is told it is live only once its channel is: `welcome`
//!   comes after that.
//! - **Sweeps** (`sweeper.rs`): keep-alive, redelivery, leases, census, trim.
//! - **One socket** ([`socket`]): its queue and what it waits for.
//! - **Acks applied here** (`acks.rs`): so their echo from the engine is skipped.

mod acks;
mod registry;
pub mod socket;
mod subscriptions;
mod sweeper;
mod trim;

use std::sync::Arc;

pub use registry::{
    Hub, HubConfig, HubError, CENSUS_STALE, LEASE, LEASE_OVERDUE, LEASE_RENEW, SOCKET_ROLES,
};
pub use socket::{Close, Outgoing, Protocol, RoleSet, Socket, Work};

use crate::engine::{Engine, Sink};
use crate::tasks::Tasks;

impl Hub {
    /// Builds the hub, connects it to the engine as its sink, and starts its tasks (the
    /// subscription manager and the sweeper, supervised) on `tasks`.
    pub async fn start(config: HubConfig, engine: Arc<dyn Engine>, tasks: &Tasks) -> Arc<Hub> {
        let (hub, queue) = Hub::new(config, engine.clone(), tasks);
        let weak = Arc::downgrade(&hub);
        engine.set_sink(weak.clone() as std::sync::Weak<dyn Sink>);
        // Role channels are always subscribed; a failure here is retried on reconnect.
        if let Err(e) = hub.subscribe_roles().await {
            tracing::warn!(error = %e, "cannot subscribe to role channels yet");
        }
        let queue: subscriptions::Queue = Arc::new(tokio::sync::Mutex::new(queue));
        let cancel = tasks.cancel().clone();
        let (w, c) = (weak.clone(), cancel.clone());
        tasks.supervise("hub_subscriptions", move || {
            subscriptions::manage(w.clone(), queue.clone(), c.clone())
        });
        tasks.supervise("hub_sweeper", move || {
            sweeper::run(weak.clone(), cancel.clone())
        });
        hub
    }
}
