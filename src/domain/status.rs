//! The states of orders and of applications (riders, merchants), as the database's
//! CHECK constraints spell them. Read from rows by the store (which implements
//! `FromSql` for them), compared as enums everywhere above it.

use std::fmt;
use std::str::FromStr;

/// An unknown state name read at the boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct StatusParseError {
    pub kind: &'static str,
    pub value: String,
}

macro_rules! status_enum {
    ($(#[$doc:meta])* $name:ident, $kind:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = StatusParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(StatusParseError { kind: $kind, value: s.to_owned() }),
                }
            }
        }
    };
}

status_enum!(
    /// `orders.status`: pending_payment → paid → dispatched → picked_up → delivered, or
    /// pending_payment → closed (unpaid past the deadline, or prepay failed).
    OrderStatus, "order status", {
        PendingPayment => "pending_payment",
        Paid => "paid",
        Dispatched => "dispatched",
        PickedUp => "picked_up",
        Delivered => "delivered",
        Closed => "closed",
    }
);

status_enum!(
    /// `riders.status` and `merchants.status`: an application as the platform decided it
    /// (`pending` → `approved` or `rejected`), and an approved account platform staff
    /// have stopped (`suspended`, until reinstated: `approved` again).
    Approval, "approval state", {
        Pending => "pending",
        Approved => "approved",
        Rejected => "rejected",
        Suspended => "suspended",
    }
);

impl OrderStatus {
    /// Not (or no longer) an order a rider can take: unpaid, or closed.
    pub fn is_unavailable(self) -> bool {
        matches!(self, OrderStatus::PendingPayment | OrderStatus::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_as_the_database_spells_them() {
        for s in OrderStatus::ALL {
            assert_eq!(s.as_str().parse::<OrderStatus>(), Ok(*s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::from(s.as_str())
            );
        }
        for a in Approval::ALL {
            assert_eq!(a.as_str().parse::<Approval>(), Ok(*a));
        }
        assert!("Paid".parse::<OrderStatus>().is_err());
        assert!("".parse::<Approval>().is_err());
    }
}
