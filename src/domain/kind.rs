//! The events of SPEC §3: [`Kind`].

use std::time::Duration;

/// The events of SPEC §3, with whether they need an ack and how long they live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    OrderRecommend,
    OrderDispatched,
    OrderTaken,
    RiderCommand,
    OrderPaid,
    OrderUrged,
    InventoryLow,
    PaymentTimeout,
    SystemError,
    /// A platform message to one user (`POST /v1/platform/notifications` with `user_id`).
    PlatformNotice,
    Announcement,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::OrderRecommend,
        Kind::OrderDispatched,
        Kind::OrderTaken,
        Kind::RiderCommand,
        Kind::OrderPaid,
        Kind::OrderUrged,
        Kind::InventoryLow,
        Kind::PaymentTimeout,
        Kind::SystemError,
        Kind::PlatformNotice,
        Kind::Announcement,
    ];

    /// The kind whose [`Kind::event`] is `event`.
    pub fn from_event(event: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.event() == event)
    }

    pub fn event(self) -> &'static str {
        match self {
            Kind::OrderRecommend => "order.recommend",
            Kind::OrderDispatched => "order.dispatched",
            Kind::OrderTaken => "order.taken",
            Kind::RiderCommand => "rider.command",
            Kind::OrderPaid => "order.paid",
            Kind::OrderUrged => "order.urged",
            Kind::InventoryLow => "inventory.low",
            Kind::PaymentTimeout => "alert.payment_timeout",
            Kind::SystemError => "alert.system_error",
            Kind::PlatformNotice => "platform.notice",
            Kind::Announcement => "announcement",
        }
    }

    pub fn requires_ack(self) -> bool {
        !matches!(self, Kind::OrderTaken | Kind::Announcement)
    }

    /// How long an undelivered notification stays deliverable.
    pub fn ttl(self) -> Duration {
        const MIN: u64 = 60;
        match self {
            Kind::OrderRecommend | Kind::OrderTaken => Duration::from_secs(2 * MIN),
            Kind::OrderDispatched | Kind::RiderCommand => Duration::from_secs(60 * MIN),
            Kind::Announcement => Duration::ZERO,
            _ => Duration::from_secs(24 * 60 * MIN),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_table_matches_the_spec() {
        assert!(!Kind::OrderTaken.requires_ack());
        assert!(!Kind::Announcement.requires_ack());
        assert!(Kind::OrderRecommend.requires_ack());
        assert_eq!(Kind::OrderRecommend.ttl(), Duration::from_secs(120));
        assert_eq!(Kind::OrderDispatched.ttl(), Duration::from_secs(3600));
        assert_eq!(Kind::InventoryLow.ttl(), Duration::from_secs(86400));
    }
}
