//! A socket's place in the per-user limit, held for the socket's life.

use std::sync::Arc;

use crate::domain::UserId;
use crate::hub::Hub;

/// A socket place taken in the engine; released when dropped (also when the upgrade
/// never happens and the session closure is dropped unrun).
pub struct Lease {
    hub: Arc<Hub>,
    user: UserId,
    conn_id: Arc<str>,
}

impl Lease {
    /// The place `conn_id` of `user`, taken in the engine already.
    pub fn new(hub: Arc<Hub>, user: UserId, conn_id: Arc<str>) -> Self {
        Self { hub, user, conn_id }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_ok() {
            self.hub.release_place(self.user, self.conn_id.clone());
        }
    }
}
