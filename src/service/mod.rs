//! Business flows: what happens between a request (or a webhook, a socket message, a
//! timer) and the notifications of SPEC §3. HTTP handlers, the WebSocket session and
//! timers call these; these call the store and `notify`. Each flow has its own error
//! enum; the HTTP mapping of all of them is in [`crate::error`].

pub mod fallback;
pub mod keys;
pub mod notifications;
pub mod orders;
pub mod payments;
pub mod relay;
pub mod riders;
pub mod suspensions;
pub mod sweeper;
