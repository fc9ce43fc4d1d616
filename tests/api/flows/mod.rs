//! Business flows of SPEC §3–4 from their real triggers, one file per topic: the seed's
//! two sequence diagrams end to end across two replicas ([`seed`]), WeChat Pay
//! notifications, forged, tampered, stale, wrong merchant, wrong amount, repeated
//! ([`payments`]), orders and stock ([`orders`]), riders, accept races and dispatch
//! ([`dispatch`]), the outbox through outages ([`outbox`]), and the AsyncAPI document
//! against a real session ([`asyncapi`]). Their shop and people are
//! [`crate::support::world::World`].

mod asyncapi;
mod dispatch;
mod orders;
mod outbox;
mod payments;
mod seed;
