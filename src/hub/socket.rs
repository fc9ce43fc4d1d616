//! One socket as the hub sees it: who it is, and a small outbound queue its session
//! task drains.
//!
//! Why a hand-rolled queue and not an mpsc channel per socket: a tokio channel
//! allocates its block eagerly (~3 KB per socket measured), while a `VecDeque` costs
//! nothing until a message is queued and gives its memory back once drained. At tens of
//! thousands of idle sockets per replica that difference is most of the budget.
//!
//! Overflow policy: a socket whose queue holds [`OUTBOX_LIMIT`] undelivered messages
//! is too slow to keep up; it is closed (1008) rather than allowed to grow without
//! bound or to slow fan-out to everyone else. Its unacked notifications stay in the
//! inbox and come back on reconnect.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::Notify;

use crate::domain::{Role, UserId};
use crate::engine::MsgId;

/// Undelivered messages one socket may hold before it is closed as too slow.
pub const OUTBOX_LIMIT: usize = 512;

/// The roles a socket was admitted with, as bits (a socket is small; a Vec is not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoleSet(u8);

impl RoleSet {
    fn bit(role: Role) -> u8 {
        1 << (role as u8)
    }

    pub fn insert(&mut self, role: Role) {
        self.0 |= Self::bit(role);
    }

    pub fn contains(self, role: Role) -> bool {
        self.0 & Self::bit(role) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

impl FromIterator<Role> for RoleSet {
    fn from_iter<I: IntoIterator<Item = Role>>(iter: I) -> Self {
        let mut set = RoleSet::default();
        for r in iter {
            set.insert(r);
        }
        set
    }
}

/// Why the server closes a socket: a WebSocket close code and a short reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: &'static str,
}

/// One queued frame. Inbox notifications carry their id: the session tracks them until
/// acked, and sends an id it is already tracking only as a redelivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub frame: Utf8Bytes,
    pub tracked: Option<Tracked>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked {
    pub id: MsgId,
    pub expires_ms: u64,
    pub redelivery: bool,
    /// From the inbox rather than live: not counted in the delivery latency.
    pub replay: bool,
}

/// What the session task must do next, taken from the socket in one go.
#[derive(Debug, Default)]
pub struct Work {
    pub messages: VecDeque<Outgoing>,
    pub ping: bool,
    pub close: Option<Close>,
}

/// How a socket's client confirms delivery (SPEC §2.3), chosen with `?protocol=`.
///
/// On both, the Pong to a Ping the server wrote after a notification proves that the
/// client's WebSocket stack received it: its receipt becomes `delivered` (and the
/// subscription-message fallback leaves it alone). Both therefore get a confirming Ping
/// after notifications are written, one per burst, not only the keep-alive Ping every
/// `WS_PING_INTERVAL`: protocol 1 right after the burst (its Pong is the confirmation);
/// protocol 2 only for what is still unacked [`CONFIRM_AFTER_MS`] after it was written
/// (an ack proves delivery too, and the SDK acks at once: a Ping and its Pong per burst
/// would be a third of the socket's traffic for nothing). What the Pong does beyond the
/// receipt differs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// The seed's clients, which never ack: the Pong (or an ack) confirms the
    /// notification, which leaves the inbox and is never written twice on one socket.
    #[default]
    V1,
    /// The SDK: only an ack takes a notification out of the inbox; until then it is
    /// written again on the live socket after `WS_ACK_TIMEOUT`, Pong or not.
    V2,
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::V1 => 1,
            Protocol::V2 => 2,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Protocol::V1 => "1",
            Protocol::V2 => "2",
        }
    }
}

/// How long a protocol-2 socket's notification may wait for its ack before a Ping is
/// written to prove it delivered (at the sweeper's next tick after this).
pub const CONFIRM_AFTER_MS: u64 = 500;

/// A notification sent on this socket and not confirmed yet.
struct Pending {
    id: MsgId,
    frame: Utf8Bytes,
    expires_ms: u64,
    /// Hub clock: when to send it again (protocol 2).
    due_ms: u64,
    redeliveries: u32,
    /// The payload of the first Ping written after it: a Pong carrying this or a later
    /// one proves it delivered.
    epoch: u32,
    /// Proved delivered by a Pong. Protocol 1: confirmed, kept (so a late copy is still
    /// recognised) until `due_ms`, by when its queued ack has reached the inbox; the
    /// sweeper drops it then. Protocol 2: its receipt is marked, and it stays tracked
    /// (and redelivered) until acked.
    confirmed: bool,
}

/// What one redelivery sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    pub redelivered: u64,
    pub expired: u64,
    pub given_up: u64,
}

#[derive(Default)]
struct Outbox {
    queue: VecDeque<Outgoing>,
    ping: bool,
    close: Option<Close>,
    /// Empty (unallocated) until the first tracked notification is sent.
    pending: Vec<Pending>,
    /// The payload of the next Ping (each Ping proves what was written before it).
    epoch: u32,
    /// A Ping that would prove pending notifications delivered is written and
    /// unanswered: no second one until it is (one Ping per burst).
    confirming: bool,
}

pub struct Socket {
    /// Unique on this replica; the key in the hub's maps.
    pub seq: u64,
    /// Unique across replicas: `<replica>-<seq>`. Sent in `welcome`, used for leases.
    pub conn_id: Arc<str>,
    pub user: UserId,
    /// The roles it was admitted with; see [`Socket::has_role`] for those it still has.
    pub roles: RoleSet,
    /// Roles taken away since (suspended, offline, revoked): a [`RoleSet`]'s bits.
    revoked: std::sync::atomic::AtomicU8,
    pub protocol: Protocol,
    /// When the access token expires (unix seconds): the socket is closed with 4001.
    /// A protocol-2 `auth` with a fresh token moves it.
    token_exp: AtomicU64,
    outbox: Mutex<Outbox>,
    notify: Notify,
    /// Milliseconds since the hub's epoch.
    last_seen: AtomicU64,
    last_ping: AtomicU64,
}

impl Socket {
    pub fn new(
        seq: u64,
        conn_id: Arc<str>,
        user: UserId,
        roles: RoleSet,
        protocol: Protocol,
        token_exp: u64,
        now_ms: u64,
    ) -> Self {
        Self {
            seq,
            conn_id,
            user,
            roles,
            revoked: std::sync::atomic::AtomicU8::new(0),
            protocol,
            token_exp: AtomicU64::new(token_exp),
            outbox: Mutex::new(Outbox::default()),
            notify: Notify::new(),
            last_seen: AtomicU64::new(now_ms),
            last_ping: AtomicU64::new(now_ms),
        }
    }

    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        // Each critical section is a push or a take; a panic cannot leave it torn.
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a live-only message. Returns false when the socket is closing or was just
    /// found too slow (then it is told to close).
    pub fn push(&self, frame: Utf8Bytes) -> bool {
        self.enqueue(Outgoing {
            frame,
            tracked: None,
        })
    }

    /// Queues an inbox notification that arrived live.
    pub fn push_tracked(&self, frame: Utf8Bytes, id: MsgId, expires_ms: u64) -> bool {
        self.enqueue(Outgoing {
            frame,
            tracked: Some(Tracked {
                id,
                expires_ms,
                redelivery: false,
                replay: false,
            }),
        })
    }

    /// Queues an inbox notification read back from the inbox.
    pub fn push_replayed(&self, frame: Utf8Bytes, id: MsgId, expires_ms: u64) -> bool {
        self.enqueue(Outgoing {
            frame,
            tracked: Some(Tracked {
                id,
                expires_ms,
                redelivery: false,
                replay: true,
            }),
        })
    }

    fn enqueue(&self, message: Outgoing) -> bool {
        let mut out = self.outbox();
        if out.close.is_some() {
            return false;
        }
        if out.queue.len() >= OUTBOX_LIMIT {
            out.queue = VecDeque::new();
            out.close = Some(Close {
                code: 1008,
                reason: "too slow to keep up",
            });
            drop(out);
            metrics::counter!("locallife_ws_slow_disconnects_total").increment(1);
            self.notify.notify_one();
            return false;
        }
        out.queue.push_back(message);
        drop(out);
        self.notify.notify_one();
        true
    }

    /// Asks the session to close the socket with `close` (the first request wins).
    /// Whether the socket still has `role` (admitted with it, not revoked since).
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(role) && self.revoked.load(Ordering::Acquire) & RoleSet::bit(role) == 0
    }

    /// The roles it still has.
    pub fn current_roles(&self) -> RoleSet {
        RoleSet(self.roles.0 & !self.revoked.load(Ordering::Acquire))
    }

    /// Takes `role` away; whether the socket had it until now.
    pub fn revoke(&self, role: Role) -> bool {
        let bit = RoleSet::bit(role);
        self.roles.contains(role) && self.revoked.fetch_or(bit, Ordering::AcqRel) & bit == 0
    }

    pub fn close(&self, close: Close) {
        let mut out = self.outbox();
        if out.close.is_none() {
            out.close = Some(close);
        }
        drop(out);
        self.notify.notify_one();
    }

    pub fn request_ping(&self, now_ms: u64) {
        self.last_ping.store(now_ms, Ordering::Relaxed);
        self.outbox().ping = true;
        self.notify.notify_one();
    }

    /// Waits until there is work, then takes all of it.
    pub async fn work(&self) -> Work {
        loop {
            {
                let mut out = self.outbox();
                if !out.queue.is_empty() || out.ping || out.close.is_some() {
                    return Work {
                        // Taking the deque hands its buffer to the writer and leaves an
                        // unallocated one behind.
                        messages: std::mem::take(&mut out.queue),
                        ping: std::mem::take(&mut out.ping),
                        close: out.close,
                    };
                }
            }
            self.notify.notified().await;
        }
    }

    /// Called as a tracked notification is written: starts tracking it. False when it
    /// must not be written: a copy of one already sent and unacked (replay and live
    /// overlapping), or a redelivery of one acked meanwhile.
    pub fn begin_send(&self, tracked: Tracked, frame: &Utf8Bytes, due_ms: u64) -> bool {
        let mut out = self.outbox();
        let known = out.pending.iter().any(|p| p.id == tracked.id);
        if tracked.redelivery {
            return known;
        }
        if known {
            return false;
        }
        let epoch = out.epoch;
        out.pending.push(Pending {
            id: tracked.id,
            frame: frame.clone(),
            expires_ms: tracked.expires_ms,
            due_ms,
            redeliveries: 0,
            epoch,
            confirmed: false,
        });
        true
    }

    /// The payload of a Ping about to be written, if the session should write one after
    /// the notifications it just wrote: protocol 1, when some are not proved delivered
    /// and no confirming Ping is out (protocol 2's are asked for by
    /// [`Socket::sweep_pending`], once they have waited [`CONFIRM_AFTER_MS`] for their
    /// ack). `keepalive`: a Ping is written anyway (a keep-alive, or one the sweeper
    /// asked for); it confirms too.
    pub fn confirmation_ping(&self, keepalive: bool) -> Option<u32> {
        let mut out = self.outbox();
        let unconfirmed = out
            .pending
            .iter()
            .any(|p| !p.confirmed && p.epoch == out.epoch);
        let at_once = self.protocol == Protocol::V1 && unconfirmed && !out.confirming;
        if !(keepalive || at_once) {
            return None;
        }
        let epoch = out.epoch;
        out.epoch = out.epoch.wrapping_add(1);
        if unconfirmed {
            out.confirming = true;
        }
        Some(epoch)
    }

    /// A Pong carrying `payload` arrived: the ids it proves delivered (written before
    /// that Ping), each once, for their receipts; if newer ones wait unproved, another
    /// Ping is requested. Under protocol 1 they are confirmed: to remove from the inbox
    /// (through the queued acks), and known until `settled_ms` (hub clock), so that a
    /// copy replayed from the inbox before the ack lands is not written again. Under
    /// protocol 2 they still wait for their ack (and are redelivered until it comes).
    pub fn pong(&self, payload: &[u8], settled_ms: u64) -> Vec<MsgId> {
        let Ok(bytes) = <[u8; 4]>::try_from(payload) else {
            return Vec::new();
        };
        let epoch = u32::from_be_bytes(bytes);
        let mut out = self.outbox();
        let mut confirmed = Vec::new();
        for p in out.pending.iter_mut() {
            // Epochs wrap: "before" is within half the range.
            if !p.confirmed && epoch.wrapping_sub(p.epoch) < u32::MAX / 2 {
                p.confirmed = true;
                if self.protocol == Protocol::V1 {
                    // Never written again: only the id is needed from now on.
                    p.due_ms = settled_ms;
                    p.frame = Utf8Bytes::from_static("");
                }
                confirmed.push(p.id);
            }
        }
        out.confirming = false;
        // Protocol 2: the sweeper asks again for what is still unacked.
        let more = self.protocol == Protocol::V1 && out.pending.iter().any(|p| !p.confirmed);
        drop(out);
        if more {
            self.outbox().ping = true;
            self.notify.notify_one();
        }
        confirmed
    }

    /// The client (on this socket or another, on any replica) acked `id`. Whether this
    /// socket still waited for it: it wrote it, and no ack, inbox removal or (protocol
    /// 1) confirming Pong came since.
    pub fn acked(&self, id: MsgId) -> bool {
        let mut out = self.outbox();
        // Protocol 1: a Pong confirmed it already (it is kept only until settled).
        let confirmed_by_pong = |p: &Pending| self.protocol == Protocol::V1 && p.confirmed;
        let mut was_waiting = false;
        out.pending.retain(|p| {
            let it = p.id == id;
            was_waiting |= it && !confirmed_by_pong(p);
            !it
        });
        if out.pending.is_empty() {
            // Give the memory back: most sockets are idle most of the time.
            out.pending = Vec::new();
        }
        was_waiting
    }

    /// How many notifications await an ack on this socket.
    pub fn pending(&self) -> usize {
        self.outbox().pending.len()
    }

    /// Queues again every tracked notification whose ack is overdue, up to
    /// `max_redeliveries` times each; drops expired ones and ones given up on (they stay
    /// in the inbox for the next connect). Protocol 2: asks for a confirming Ping when
    /// one written since the last Ping has waited [`CONFIRM_AFTER_MS`] for its ack.
    pub fn sweep_pending(
        &self,
        now_ms: u64,
        unix_now_ms: u64,
        ack_timeout_ms: u64,
        max_redeliveries: u32,
    ) -> Sweep {
        let mut sweep = Sweep::default();
        let mut out = self.outbox();
        if out.pending.is_empty() || out.close.is_some() {
            return sweep;
        }
        let mut again = Vec::new();
        let protocol = self.protocol;
        out.pending.retain_mut(|p| {
            if p.due_ms > now_ms {
                return true;
            }
            if protocol == Protocol::V1 && p.confirmed {
                // Settled: its ack has reached the inbox by now.
                return false;
            }
            if p.expires_ms <= unix_now_ms {
                sweep.expired += 1;
                return false;
            }
            if protocol == Protocol::V1 {
                // Never written twice on a live protocol-1 socket: an unconfirmed one
                // waits for a Pong, or for the next connect.
                return true;
            }
            if p.redeliveries >= max_redeliveries {
                sweep.given_up += 1;
                return false;
            }
            p.redeliveries += 1;
            p.due_ms = now_ms + ack_timeout_ms;
            again.push(Outgoing {
                frame: p.frame.clone(),
                tracked: Some(Tracked {
                    id: p.id,
                    expires_ms: p.expires_ms,
                    redelivery: true,
                    replay: false,
                }),
            });
            true
        });
        if out.pending.is_empty() {
            out.pending = Vec::new();
        }
        let epoch = out.epoch;
        // Written at `due_ms - ack_timeout_ms` (each write sets its due time).
        let unproved = |p: &Pending| {
            !p.confirmed
                && p.epoch == epoch
                && p.due_ms.saturating_sub(ack_timeout_ms) + CONFIRM_AFTER_MS <= now_ms
        };
        let confirm =
            protocol == Protocol::V2 && !out.confirming && out.pending.iter().any(unproved);
        if confirm {
            out.ping = true;
        }
        sweep.redelivered = again.len() as u64;
        out.queue.extend(again);
        if confirm || sweep.redelivered > 0 {
            drop(out);
            self.notify.notify_one();
        }
        sweep
    }

    /// When the socket's token expires (unix seconds).
    pub fn token_exp(&self) -> u64 {
        self.token_exp.load(Ordering::Relaxed)
    }

    /// A fresh token of the same user: the socket lives until `exp` (never shortened).
    pub fn extend_token(&self, exp: u64) -> u64 {
        self.token_exp.fetch_max(exp, Ordering::Relaxed).max(exp)
    }

    pub fn touch(&self, now_ms: u64) {
        self.last_seen.store(now_ms, Ordering::Relaxed);
    }

    pub fn last_seen(&self) -> u64 {
        self.last_seen.load(Ordering::Relaxed)
    }

    pub fn last_ping(&self) -> u64 {
        self.last_ping.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket() -> Socket {
        Socket::new(
            1,
            Arc::from("r-1"),
            UserId(1),
            RoleSet::default(),
            Protocol::V2,
            u64::MAX,
            0,
        )
    }

    #[tokio::test]
    async fn work_takes_everything_queued_in_order() {
        let s = socket();
        assert!(s.push(Utf8Bytes::from("a")));
        assert!(s.push(Utf8Bytes::from("b")));
        s.request_ping(5);
        let w = s.work().await;
        let frames: Vec<_> = w.messages.iter().map(|m| m.frame.clone()).collect();
        assert_eq!(frames, [Utf8Bytes::from("a"), Utf8Bytes::from("b")]);
        assert!(w.ping);
        assert!(w.close.is_none());
        assert_eq!(s.last_ping(), 5);
    }

    #[tokio::test]
    async fn an_overflowing_socket_is_closed_as_too_slow() {
        let s = socket();
        for _ in 0..OUTBOX_LIMIT {
            assert!(s.push(Utf8Bytes::from("x")));
        }
        assert!(!s.push(Utf8Bytes::from("one too many")));
        let w = s.work().await;
        assert!(w.messages.is_empty(), "the backlog is dropped, not sent");
        assert_eq!(w.close.map(|c| c.code), Some(1008));
        assert!(!s.push(Utf8Bytes::from("after close")));
    }

    fn tracked(seq: u64, redelivery: bool) -> Tracked {
        Tracked {
            id: MsgId { ms: 1, seq },
            expires_ms: 10_000,
            redelivery,
            replay: false,
        }
    }

    #[test]
    fn copies_are_suppressed_and_acks_stop_redelivery() {
        let s = socket();
        let f = Utf8Bytes::from("n");
        assert!(s.begin_send(tracked(1, false), &f, 100));
        assert!(
            !s.begin_send(tracked(1, false), &f, 100),
            "a second copy is suppressed"
        );
        assert!(
            s.begin_send(tracked(1, true), &f, 100),
            "a redelivery goes out"
        );
        s.acked(MsgId { ms: 1, seq: 1 });
        assert!(
            !s.begin_send(tracked(1, true), &f, 100),
            "not after the ack"
        );
        assert_eq!(s.pending(), 0);
    }

    #[tokio::test]
    async fn overdue_notifications_are_redelivered_then_given_up() {
        let s = socket();
        let f = Utf8Bytes::from("n");
        assert!(s.begin_send(tracked(1, false), &f, 100));
        assert_eq!(
            s.sweep_pending(50, 0, 100, 2),
            Sweep::default(),
            "not due yet"
        );
        assert_eq!(s.sweep_pending(100, 0, 100, 2).redelivered, 1);
        let w = s.work().await;
        assert_eq!(w.messages.len(), 1);
        assert!(w.messages[0].tracked.unwrap().redelivery);
        assert_eq!(s.sweep_pending(200, 0, 100, 2).redelivered, 1);
        assert_eq!(s.sweep_pending(300, 0, 100, 2).given_up, 1);
        assert_eq!(s.pending(), 0);
    }

    #[tokio::test]
    async fn protocol_2_pings_for_what_waits_for_its_ack_and_a_pong_only_proves_delivery() {
        let s = socket();
        let f = Utf8Bytes::from("n");
        let ack_ms = 10_000;
        let (first, second) = (MsgId { ms: 1, seq: 1 }, MsgId { ms: 1, seq: 2 });
        // Written at 0 (due at the ack timeout).
        assert!(s.begin_send(tracked(1, false), &f, ack_ms));
        assert_eq!(
            s.confirmation_ping(false),
            None,
            "no Ping right after the burst: the ack may prove it first"
        );
        s.sweep_pending(CONFIRM_AFTER_MS - 1, 0, ack_ms, 5);
        assert!(!s.outbox().ping, "not waited long enough yet");
        s.sweep_pending(CONFIRM_AFTER_MS, 0, ack_ms, 5);
        let work = s.work().await;
        assert!(
            work.ping,
            "unacked after CONFIRM_AFTER_MS: a Ping is asked for"
        );
        let ping = s.confirmation_ping(work.ping).unwrap();
        // Written at 1,000, after that Ping.
        assert!(s.begin_send(tracked(2, false), &f, 1_000 + ack_ms));
        assert_eq!(s.pong(&ping.to_be_bytes(), 0), vec![first]);
        assert!(!s.outbox().ping, "the second waits for the sweeper");
        s.sweep_pending(1_000 + CONFIRM_AFTER_MS, 0, ack_ms, 5);
        let work = s.work().await;
        assert!(work.ping);
        let ping = s.confirmation_ping(work.ping).unwrap();
        assert_eq!(s.pong(&ping.to_be_bytes(), 0), vec![second]);
        assert!(
            s.pong(&ping.to_be_bytes(), 0).is_empty(),
            "each proved once"
        );
        // Still tracked, and written again, until acked.
        assert_eq!(s.pending(), 2);
        assert_eq!(s.sweep_pending(11_000, 0, ack_ms, 5).redelivered, 2);
        assert!(s.acked(first) && s.acked(second));
        s.sweep_pending(30_000, 0, ack_ms, 5);
        assert!(!s.outbox().ping, "nothing left to prove");
    }

    #[test]
    fn protocol_2_acked_at_once_needs_no_ping() {
        let s = socket();
        assert!(s.begin_send(tracked(1, false), &Utf8Bytes::from("n"), 10_000));
        assert_eq!(s.confirmation_ping(false), None);
        assert!(s.acked(MsgId { ms: 1, seq: 1 }));
        s.sweep_pending(5_000, 0, 10_000, 5);
        assert!(!s.outbox().ping);
    }

    #[test]
    fn protocol_1_keeps_what_a_pong_confirmed_until_it_is_settled() {
        let s = Socket::new(
            1,
            Arc::from("r-1"),
            UserId(1),
            RoleSet::default(),
            Protocol::V1,
            u64::MAX,
            0,
        );
        let f = Utf8Bytes::from("n");
        assert!(s.begin_send(tracked(1, false), &f, 100));
        let ping = s.confirmation_ping(false).unwrap();
        assert_eq!(
            s.pong(&ping.to_be_bytes(), 500),
            vec![MsgId { ms: 1, seq: 1 }]
        );
        assert!(
            !s.begin_send(tracked(1, false), &f, 100),
            "a copy replayed before the ack lands is not written"
        );
        assert_eq!(s.sweep_pending(499, 0, 100, 5), Sweep::default());
        assert_eq!(s.pending(), 1);
        assert_eq!(
            s.sweep_pending(500, 20_000, 100, 5),
            Sweep::default(),
            "settled, not expired"
        );
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn expired_notifications_are_dropped_not_redelivered() {
        let s = socket();
        assert!(s.begin_send(tracked(1, false), &Utf8Bytes::from("n"), 100));
        assert_eq!(s.sweep_pending(100, 10_000, 100, 5).expired, 1);
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn role_sets_hold_roles() {
        let set: RoleSet = [Role::Rider, Role::Platform].into_iter().collect();
        assert!(set.contains(Role::Rider) && set.contains(Role::Platform));
        assert!(!set.contains(Role::Merchant));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [Role::Rider, Role::Platform]
        );
    }
}
