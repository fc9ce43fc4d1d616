//! Publishing notifications (SPEC §3): what handlers and business flows call; and
//! [`alerts`], the `alert.system_error` notifications a replica raises itself.
//!
//! A notification is serialised here, once, into the exact text frame the sockets will
//! send (in the format of [`crate::engine::wire`]), wrapped in an [`Event`], and published to the user's (or role's) channel;
//! every replica holding a socket of that user hands the same bytes to each of them.

pub mod alerts;
pub mod receipts;

use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use serde_json::{Map, Value};

use crate::domain::{Role, UserId};
use crate::engine::wire::{self, Event};
use crate::engine::{Engine, EngineError, MsgId, Pushed, Target};
use crate::store::outbox::{Audience, NewRow};
use crate::store::receipts::Update;

/// The event a notification is of. Defined in [`crate::domain`], so that the layers
/// below this one (the subscription-message templates of [`crate::config::templates`])
/// can name it.
pub use crate::domain::Kind;

/// Fields every notification carries; event fields may not override them.
const RESERVED: [&str; 5] = ["message_id", "event", "title", "content", "requires_ack"];

#[derive(Debug, Clone)]
pub struct Notification {
    pub kind: Kind,
    pub title: String,
    pub content: String,
    /// The event's own fields (`order_id`, ...).
    pub fields: Map<String, Value>,
    /// How long it stays deliverable; the event's ttl unless overridden.
    pub ttl: Duration,
}

impl Notification {
    pub fn new(kind: Kind, title: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            kind,
            title: title.into(),
            content: content.into(),
            fields: Map::new(),
            ttl: kind.ttl(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_owned(), value.into());
        self
    }

    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The outbox row that sends this notification to `audience` once the caller's
    /// transaction commits, under a message id decided now.
    pub fn outbox(&self, audience: Audience, order_id: Option<i64>) -> NewRow {
        NewRow {
            message_id: MsgId::generate().to_string(),
            event: self.kind.event(),
            audience,
            payload: serde_json::json!({
                "title": self.title,
                "content": self.content,
                "fields": self.fields,
            }),
            ttl: self.ttl,
            order_id,
        }
    }

    /// The notification an outbox row holds; `None` for a row this version cannot read.
    pub fn from_outbox(event: &str, payload: &Value, ttl: Duration) -> Option<Self> {
        let kind = Kind::from_event(event)?;
        let title = payload.get("title")?.as_str()?;
        let content = payload.get("content")?.as_str()?;
        let mut n = Notification::new(kind, title, content).with_ttl(ttl);
        if let Some(fields) = payload.get("fields").and_then(Value::as_object) {
            n.fields = fields.clone();
        }
        Some(n)
    }

    /// When notification `id` stops being deliverable (unix ms): its ttl counted from
    /// the decision (`id`'s time).
    pub fn expires_ms(&self, id: MsgId) -> u64 {
        id.ms.saturating_add(self.ttl.as_millis() as u64)
    }

    /// The `pending` receipt of notification `id` sent to `user` (SPEC §3), or `None`
    /// for an event that has no receipts (live only, needs no ack).
    pub fn pending_receipt(&self, id: MsgId, user: UserId) -> Option<Update> {
        self.kind.requires_ack().then(|| {
            Update::pending(
                id.to_string(),
                user,
                self.kind.event(),
                self.fields.get("order_id").and_then(Value::as_i64),
                id.ms as i64,
                self.expires_ms(id) as i64,
            )
        })
    }

    /// The `data` object of the `notification` message, but for `message_id`.
    pub fn data(&self) -> Map<String, Value> {
        let mut data = Map::new();
        for (k, v) in &self.fields {
            if !RESERVED.contains(&k.as_str()) {
                data.insert(k.clone(), v.clone());
            }
        }
        data.insert("event".into(), self.kind.event().into());
        data.insert("title".into(), self.title.clone().into());
        data.insert("content".into(), self.content.clone().into());
        data.insert("requires_ack".into(), self.kind.requires_ack().into());
        data
    }

    /// The frame after the message id ([`wire::tail`]), with the time of now: the
    /// notification is serialised once, before its inbox has given it an id.
    pub fn tail(&self) -> String {
        wire::tail(&self.data(), &crate::time::rfc3339_now())
    }

    /// The whole text frame with `message_id` = `id`.
    pub fn frame(&self, id: MsgId) -> Utf8Bytes {
        wire::frame(id, &self.tail())
    }
}

/// Sends to one user's sockets on every replica under a fresh id; returns the id.
pub async fn to_user(
    engine: &dyn Engine,
    user: UserId,
    notification: &Notification,
) -> Result<String, EngineError> {
    let id = MsgId::generate();
    to_user_as(engine, user, id, notification).await?;
    Ok(id.to_string())
}

/// Sends notification `id` (decided earlier: one id for every recipient and every
/// retry) to one user's sockets on every replica.
///
/// A notification that needs an ack goes into the user's inbox first (the engine
/// publishes it live in the same step) and stays until acked or expired, its ttl
/// counted from the decision (`id`'s time); writing it again is a no-op. One that does
/// not need an ack is published live only.
pub async fn to_user_as(
    engine: &dyn Engine,
    user: UserId,
    id: MsgId,
    notification: &Notification,
) -> Result<Pushed, EngineError> {
    let pushed = if notification.kind.requires_ack() {
        let pushed = engine
            .push_inbox(user, id, &notification.tail(), notification.expires_ms(id))
            .await?;
        crate::telemetry::stage(crate::telemetry::Stage::Stored, id.ms);
        pushed
    } else {
        let event = Event::Message(notification.frame(id));
        engine.publish(Target::User(user), event.encode()).await?;
        Pushed::New
    };
    if pushed == Pushed::New {
        metrics::counter!("locallife_notifications_published_total", "event" => notification.kind.event())
            .increment(1);
    }
    Ok(pushed)
}

/// Publishes to every connected socket of `role`, live only; returns the message id.
pub async fn to_role(
    engine: &dyn Engine,
    role: Role,
    notification: &Notification,
) -> Result<String, EngineError> {
    let id = MsgId::generate();
    to_role_as(engine, role, id, notification).await?;
    Ok(id.to_string())
}

/// [`to_role`] under an id decided earlier (live messages are numbered like inbox
/// notifications: one id scheme, [`MsgId`]).
pub async fn to_role_as(
    engine: &dyn Engine,
    role: Role,
    id: MsgId,
    notification: &Notification,
) -> Result<(), EngineError> {
    let event = Event::Message(notification.frame(id));
    engine.publish(Target::Role(role), event.encode()).await?;
    metrics::counter!("locallife_notifications_published_total", "event" => notification.kind.event())
        .increment(1);
    Ok(())
}

/// Closes every socket of `user`, on every replica, with `code` (4003 when a rider goes
/// offline or a role is revoked).
pub async fn close_user(
    engine: &dyn Engine,
    user: UserId,
    code: u16,
    reason: &str,
) -> Result<(), EngineError> {
    let event = Event::Close {
        code,
        reason: reason.to_owned(),
    };
    engine.publish(Target::User(user), event.encode()).await
}

/// `user` is no longer admitted through `role`: on every replica, their sockets drop it,
/// and one left with no role closes with 4003 (a rider who is also a merchant admin
/// keeps the merchant socket).
pub async fn revoke_role(
    engine: &dyn Engine,
    user: UserId,
    role: crate::domain::Role,
) -> Result<(), EngineError> {
    engine
        .publish(Target::User(user), Event::Revoke(role).encode())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_fields_cannot_override_the_fixed_ones() {
        let n = Notification::new(Kind::OrderPaid, "新订单通知", "您有新的已支付订单")
            .with("order_id", 42)
            .with("message_id", "forged")
            .with("requires_ack", false);
        let id = MsgId::generate();
        let frame: Value = serde_json::from_str(&n.frame(id)).unwrap();
        assert_eq!(frame["type"], "notification");
        let data = &frame["data"];
        assert_eq!(data["message_id"], id.to_string());
        assert_eq!(data["order_id"], 42);
        assert_eq!(data["requires_ack"], true);
        assert_eq!(data["event"], "order.paid");
        assert_eq!(data["title"], "新订单通知");
        assert!(chrono::DateTime::parse_from_rfc3339(frame["timestamp"].as_str().unwrap()).is_ok());
    }

    #[test]
    fn a_notification_survives_its_outbox_row() {
        let n = Notification::new(Kind::OrderPaid, "新订单通知", "x")
            .with("order_id", 7)
            .with_ttl(Duration::from_secs(5));
        let row = n.outbox(Audience::MerchantAdmins(3), Some(7));
        assert!(row.message_id.parse::<MsgId>().is_ok());
        let back = Notification::from_outbox(row.event, &row.payload, row.ttl).unwrap();
        assert_eq!(back.data(), n.data());
        assert_eq!(back.ttl, n.ttl);
        for kind in Kind::ALL {
            assert_eq!(Kind::from_event(kind.event()), Some(kind));
        }
        assert!(Notification::from_outbox("no.such", &row.payload, row.ttl).is_none());
    }
}
