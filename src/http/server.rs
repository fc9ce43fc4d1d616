//! The HTTP/1.1 server under the router: an accept loop that caps connections, and a
//! watch on each connection that closes it when it is slow to send its request or sits
//! idle (SPEC §4 "Abuse limits").
//!
//! - At most `MAX_CONNECTIONS` connections are held, WebSockets included (the permit
//!   lives in the connection's I/O, which the upgraded socket keeps). Above the cap a
//!   connection is answered `503` at once, without reading it, and closed: never queued.
//! - A connection must send its request headers within `HTTP_HEADER_READ_TIMEOUT` of
//!   being accepted, and within the same time of the first byte of each later request.
//! - A kept-alive connection with no request running and no bytes moving in either
//!   direction for `HTTP_IDLE_TIMEOUT` is closed (longer than a load balancer's own
//!   keep-alive, so the balancer, not we, closes first). A request still being handled
//!   is bounded by the request timeout instead.
//! - Once a connection is upgraded to a WebSocket, its session's heartbeat takes over.
//!
//! On shutdown the listener stops, idle connections close, and requests in flight
//! finish (`run` returns when every connection has ended).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

pub use crate::config::ConnLimits;

/// What a connection over the cap is told before it is closed.
const OVER_CAPACITY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
retry-after: 1\r\nconnection: close\r\ncontent-length: 69\r\n\r\n\
{\"code\":\"overloaded\",\"message\":\"too many connections; retry shortly\"}";

/// What a connection over its address's cap is told before it is closed.
const OVER_ADDRESS_CAP: &[u8] =
    b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
retry-after: 1\r\nconnection: close\r\ncontent-length: 82\r\n\r\n\
{\"code\":\"too_many_connections\",\"message\":\"too many connections from this address\"}";

/// After an accept error (the process out of file descriptors, say), wait this long
/// before accepting again rather than spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `router` on `listener` until `stop` fires, then lets open requests finish and
/// returns once every connection has ended.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = limits.max_per_address.map(PerAddress::new);
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    metrics::counter!("locallife_http_accept_errors_total").increment(1);
                    tracing::warn!(error = %err, "accept failed; backing off");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refuse(stream, OVER_CAPACITY, "total");
            continue;
        };
        let address_permit = match &per_address {
            Some(per_address) => match per_address.take(peer.ip()) {
                Some(p) => Some(p),
                None => {
                    refuse(stream, OVER_ADDRESS_CAP, "address");
                    continue;
                }
            },
            None => None,
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(
            stream,
            peer,
            (permit, address_permit),
            router.clone(),
            limits,
            stop.clone(),
        ));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// File descriptors kept for everything but client connections (PostgreSQL and Redis
/// connections, the metrics listener, files).
const RESERVED_FILES: u64 = 256;

/// Raises the soft open-file limit to the hard one, and warns when `MAX_CONNECTIONS`
/// cannot fit under it: accepts would then fail with "too many open files" before the
/// cap answers 503.
pub fn fit_file_limit(max_connections: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    let available = limit.rlim_cur.saturating_sub(RESERVED_FILES);
    if max_connections as u64 > available {
        tracing::warn!(
            max_connections,
            open_file_limit = limit.rlim_cur,
            "MAX_CONNECTIONS is above what the open-file limit leaves for clients; lower it or raise the limit (ulimit -n)"
        );
    }
}

/// Answers without waiting on the client: one non-blocking write, then close.
/// `cap`: which cap refused it (`total` or `address`).
fn refuse(stream: TcpStream, answer: &[u8], cap: &'static str) {
    metrics::counter!("locallife_http_connections_refused_total", "cap" => cap).increment(1);
    let _ = stream.try_write(answer);
}

type Held = Arc<std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>>;

/// The connections held per client address (`MAX_CONNECTIONS_PER_ADDRESS`; an IPv6
/// client by its /64), so one address cannot take every place of the replica.
struct PerAddress {
    max: usize,
    held: Held,
}

/// One connection's place in its address's count, given back when dropped.
struct AddressPermit {
    address: IpAddr,
    held: Held,
}

impl PerAddress {
    fn new(max: usize) -> Self {
        Self {
            max,
            held: Default::default(),
        }
    }

    /// A place for a connection from `ip`, unless its address holds `max` already.
    fn take(&self, ip: IpAddr) -> Option<AddressPermit> {
        let address = crate::limits::address_key(ip);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(address).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressPermit {
            address,
            held: self.held.clone(),
        })
    }
}

impl Drop for AddressPermit {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.address);
            }
        }
    }
}

/// What a connection holds for its whole life, WebSocket included.
type Permits = (OwnedSemaphorePermit, Option<AddressPermit>);

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    permit: Permits,
    router: Router,
    limits: ConnLimits,
    stop: CancellationToken,
) {
    let watch = Arc::new(Watch::new(permit));
    let io = TokioIo::new(Watched {
        inner: stream,
        watch: watch.clone(),
    });
    let in_service = watch.clone();
    let service = tower::service_fn(move |mut request: axum::http::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let guard = in_service.request_started();
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await;
            drop(guard);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Our own watch does the header and idle timeouts (hyper's one timer cannot tell an
    // idle keep-alive from a slow request head).
    builder.keep_alive(true);
    let connection = builder
        .serve_connection(io, TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            expired = watch.expired(limits) => {
                metrics::counter!("locallife_http_connections_timed_out_total", "reason" => expired.label())
                    .increment(1);
                return;
            }
        }
    }
}

/// Why a connection was closed by its watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    /// Request headers not complete in time.
    Headers,
    /// Nothing moved for the idle timeout, with no request running.
    Idle,
}

impl Expired {
    fn label(self) -> &'static str {
        match self {
            Expired::Headers => "headers",
            Expired::Idle => "idle",
        }
    }
}

/// No request head in progress.
const NONE: u64 = u64::MAX;

/// What the I/O, the service and the watch share about one connection. Times are
/// milliseconds since `accepted`.
struct Watch {
    accepted: Instant,
    /// The last time a byte moved in either direction.
    activity_ms: AtomicU64,
    /// When the request head now awaited began: the accept, or the first byte after the
    /// previous request; `NONE` while no head is awaited with bytes pending.
    head_started_ms: AtomicU64,
    /// Requests being handled.
    running: AtomicU32,
    /// Held for the connection's whole life, WebSocket included.
    _permit: Permits,
}

impl Watch {
    fn new(permit: Permits) -> Self {
        Watch {
            accepted: Instant::now(),
            activity_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(0),
            running: AtomicU32::new(0),
            _permit: permit,
        }
    }

    fn now_ms(&self) -> u64 {
        self.accepted.elapsed().as_millis() as u64
    }

    fn moved(&self, read: bool) {
        let now = self.now_ms();
        self.activity_ms.store(now, Ordering::Relaxed);
        // The first byte of a request head starts its clock.
        if read
            && self.running.load(Ordering::Relaxed) == 0
            && self.head_started_ms.load(Ordering::Relaxed) == NONE
        {
            self.head_started_ms.store(now, Ordering::Relaxed);
        }
    }

    fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.running.fetch_add(1, Ordering::Relaxed);
        self.head_started_ms.store(NONE, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    /// Completes when the connection has overstayed a limit.
    async fn expired(&self, limits: ConnLimits) -> Expired {
        loop {
            let (deadline_ms, why) = self.next_deadline(limits);
            let now = self.now_ms();
            if now >= deadline_ms {
                return why;
            }
            tokio::time::sleep(Duration::from_millis(deadline_ms - now)).await;
        }
    }

    /// The earliest time a limit could expire, as things stand.
    fn next_deadline(&self, limits: ConnLimits) -> (u64, Expired) {
        let header = limits.header_read_timeout.as_millis() as u64;
        let idle = limits.idle_timeout.as_millis() as u64;
        let now = self.now_ms();
        if self.running.load(Ordering::Relaxed) > 0 {
            // Bounded by the request timeout; look again later.
            return (now.saturating_add(idle.max(1)), Expired::Idle);
        }
        let head = self.head_started_ms.load(Ordering::Relaxed);
        let idle_deadline = self
            .activity_ms
            .load(Ordering::Relaxed)
            .saturating_add(idle);
        if head != NONE {
            let head_deadline = head.saturating_add(header);
            if head_deadline <= idle_deadline {
                return (head_deadline, Expired::Headers);
            }
        }
        (idle_deadline, Expired::Idle)
    }
}

/// Marks a request as running until its answer is ready.
struct RequestGuard(Arc<Watch>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
        self.0.activity_ms.store(self.0.now_ms(), Ordering::Relaxed);
    }
}

/// A TCP stream that tells its watch whenever bytes move.
struct Watched {
    inner: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.moved(true);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.moved(false);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.moved(false);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnLimits {
        ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10,
            max_per_address: None,
        }
    }

    async fn watch() -> Arc<Watch> {
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        Arc::new(Watch::new((permit, None)))
    }

    #[test]
    fn an_address_holds_at_most_its_cap_and_gets_places_back() {
        let cap = PerAddress::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = cap.take(a).unwrap();
        let _second = cap.take(a).unwrap();
        assert!(cap.take(a).is_none(), "a third from one address is refused");
        assert!(cap.take(b).is_some(), "another address is not affected");
        drop(first);
        assert!(
            cap.take(a).is_some(),
            "a closed connection gives its place back"
        );
        // One IPv6 /64 is one client.
        let _p = cap.take("2001:db8::1".parse().unwrap()).unwrap();
        let _q = cap.take("2001:db8::2".parse().unwrap()).unwrap();
        assert!(cap.take("2001:db8::3".parse().unwrap()).is_none());
        assert!(cap.held.lock().unwrap().len() <= 3);
    }

    #[test]
    fn the_refusals_are_well_formed_http() {
        for answer in [OVER_CAPACITY, OVER_ADDRESS_CAP] {
            let text = std::str::from_utf8(answer).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(length, body.len());
            assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_new_connection_has_the_header_timeout() {
        let watch = watch().await;
        assert_eq!(watch.next_deadline(limits()), (10_000, Expired::Headers));
        assert_eq!(watch.expired(limits()).await, Expired::Headers);
        assert_eq!(watch.now_ms(), 10_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_connection_gets_the_idle_timeout_until_its_next_request_begins() {
        let watch = watch().await;
        let guard = watch.request_started();
        tokio::time::advance(Duration::from_secs(100)).await;
        // A running request is not timed here.
        assert!(watch.next_deadline(limits()).0 > 100_000);
        drop(guard);
        assert_eq!(watch.next_deadline(limits()), (160_000, Expired::Idle));
        tokio::time::advance(Duration::from_secs(30)).await;
        // The first byte of the next head starts the header clock.
        watch.moved(true);
        assert_eq!(watch.next_deadline(limits()), (140_000, Expired::Headers));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_head_expires_despite_its_activity() {
        let watch = watch().await;
        for _ in 0..11 {
            tokio::time::advance(Duration::from_secs(1)).await;
            watch.moved(true);
        }
        assert_eq!(watch.expired(limits()).await, Expired::Headers);
        assert_eq!(watch.now_ms(), 11_000);
    }
}
