//! Connection slots and the timeouts that keep them from being held for nothing.
//!
//! Every accepted TCP connection takes a slot (one table for all listeners). A connection is
//! closed when:
//! - its TLS handshake takes longer than `handshake` (10 s);
//! - no request arrives within `first_request` (10 s) after the handshake;
//! - no request is in flight for `idle` (20 s); HTTP/2 PINGs are not requests, so a client that
//!   only answers PINGs is idle (HTTP/2 gets a GOAWAY, HTTP/1.1 a close);
//! - a request waits on the client for `stall` (30 s): its body stops arriving, or its response
//!   stops being read;
//! - all slots are taken and it is the oldest connection that has not made an authenticated
//!   request: it is shed to make room, so a client with a valid credential gets through while
//!   a flood of unauthenticated connections lasts. Clients may share one address (a load
//!   balancer, loopback), so nothing here is per address.
//!
//! What is closed is counted (`tracevault_connections_closed_total{reason}`) and logged at most
//! once every 10 s with the count since the last line.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::{Metrics, ReasonLabels};

/// Connection limits and timeouts (`[connections]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnSettings {
    /// Connections open at once, over every listener.
    pub max: usize,
    pub handshake: Duration,
    pub first_request: Duration,
    pub idle: Duration,
    pub stall: Duration,
    /// Bytes of responses one connection may have waiting to be read.
    pub response_bytes_per_connection: usize,
}

impl Default for ConnSettings {
    fn default() -> Self {
        ConnSettings {
            max: 4096,
            handshake: Duration::from_secs(10),
            first_request: Duration::from_secs(10),
            idle: Duration::from_secs(20),
            stall: Duration::from_secs(30),
            response_bytes_per_connection: 32 * 1024 * 1024,
        }
    }
}

/// Why a connection was closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    HandshakeTimeout,
    FirstRequestTimeout,
    Idle,
    Stalled,
    Shed,
}

impl Closed {
    pub fn label(self) -> &'static str {
        match self {
            Closed::HandshakeTimeout => "handshake_timeout",
            Closed::FirstRequestTimeout => "first_request_timeout",
            Closed::Idle => "idle",
            Closed::Stalled => "stalled",
            Closed::Shed => "shed",
        }
    }
}

/// The slots of every listener.
pub struct Conns {
    pub settings: ConnSettings,
    table: Mutex<BTreeMap<u64, Arc<Conn>>>,
    next: AtomicU64,
    metrics: Arc<Metrics>,
    log: Mutex<LogLimiter>,
}

impl std::fmt::Debug for Conns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conns({:?})", self.settings)
    }
}

/// At most one warning per period, with how many events it stands for.
#[derive(Debug, Default)]
struct LogLimiter {
    last: Option<Instant>,
    unlogged: u64,
}

const LOG_EVERY: Duration = Duration::from_secs(10);

/// One connection's state, shared by its task, its requests and the slot table.
#[derive(Debug)]
pub struct Conn {
    id: u64,
    listener: &'static str,
    started: Instant,
    authenticated: AtomicBool,
    /// Requests that reached the service (their headers were complete).
    requests: AtomicU64,
    /// Requests whose response has not been fully handed to the connection.
    in_flight: AtomicUsize,
    /// Requests waiting for more of their body, and responses not fully written.
    waiting_on_client: AtomicUsize,
    /// Milliseconds after `started` of the last request start or end.
    last_activity: AtomicU64,
    /// Milliseconds after `started` a body frame last arrived or a response frame was taken.
    last_progress: AtomicU64,
    /// Bytes of responses this connection holds unwritten.
    pub response_bytes: AtomicUsize,
    shed: Notify,
}

impl Conn {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The connection made a request with a valid credential: it is never shed for a flood.
    pub fn mark_authenticated(&self) {
        self.authenticated.store(true, Ordering::Relaxed);
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Relaxed)
    }

    /// Requests in flight on this connection.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A request reached the service; the guard ends it when its response is written or
    /// dropped.
    pub fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.last_activity.store(self.now_ms(), Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    fn progress(&self) {
        self.last_progress.store(self.now_ms(), Ordering::Relaxed);
    }

    /// When the connection must be looked at next, and what expires then. `handshaken` is
    /// when the TLS handshake ended.
    fn deadline(&self, s: &ConnSettings, handshaken: Instant) -> (Instant, Closed) {
        let at = |ms: u64| self.started + Duration::from_millis(ms);
        if self.waiting_on_client.load(Ordering::Relaxed) > 0 {
            return (
                at(self.last_progress.load(Ordering::Relaxed)) + s.stall,
                Closed::Stalled,
            );
        }
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            // The server is working on a request: nothing the client does expires.
            return (Instant::now() + s.idle, Closed::Idle);
        }
        if self.requests.load(Ordering::Relaxed) == 0 {
            return (handshaken + s.first_request, Closed::FirstRequestTimeout);
        }
        (
            at(self.last_activity.load(Ordering::Relaxed)) + s.idle,
            Closed::Idle,
        )
    }

    /// Resolves when the connection was shed for a newer one.
    pub async fn shed(&self) {
        self.shed.notified().await
    }

    /// Waits until a timeout expires and says which; `handshaken` is when the handshake ended.
    pub async fn expired(&self, s: &ConnSettings, handshaken: Instant) -> Closed {
        loop {
            let (deadline, why) = self.deadline(s, handshaken);
            tokio::time::sleep_until(deadline).await;
            // Activity may have moved the deadline while sleeping.
            let (now_deadline, now_why) = self.deadline(s, handshaken);
            if now_why == why && now_deadline <= Instant::now() {
                return why;
            }
        }
    }
}

/// Ends a request when dropped (moved into its response body).
#[derive(Debug)]
pub struct RequestGuard(Arc<Conn>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let c = &self.0;
        c.last_activity.store(c.now_ms(), Ordering::Relaxed);
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A slot in the table; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    conns: Arc<Conns>,
    pub conn: Arc<Conn>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.conns.table.lock().expect("conn table");
        t.remove(&self.conn.id);
        self.conns.metrics.connections_open.set(t.len() as i64);
    }
}

impl Conns {
    pub fn new(settings: ConnSettings, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Conns {
            settings,
            table: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
            metrics,
            log: Mutex::new(LogLimiter::default()),
        })
    }

    /// A slot for a new connection. When every slot is taken, the oldest connection that has
    /// not made an authenticated request is shed to make room; when every connection has, the
    /// new one is refused (`None`).
    pub fn admit(self: &Arc<Self>, listener: &'static str) -> Option<Slot> {
        let mut t = self.table.lock().expect("conn table");
        if t.len() >= self.settings.max {
            // Ids grow with age: the first unauthenticated entry is the oldest.
            let victim = t
                .iter()
                .find(|(_, c)| !c.is_authenticated())
                .map(|(id, _)| *id);
            match victim.and_then(|id| t.remove(&id)) {
                Some(old) => {
                    old.shed.notify_one();
                    drop(t);
                    self.closed(old.listener, Closed::Shed);
                    t = self.table.lock().expect("conn table");
                }
                None => {
                    drop(t);
                    self.metrics.connections_refused.inc();
                    self.warn(listener, "every connection slot is held by an authenticated client; refusing a new connection", "refused");
                    return None;
                }
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            listener,
            started: Instant::now(),
            authenticated: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            waiting_on_client: AtomicUsize::new(0),
            last_activity: AtomicU64::new(0),
            last_progress: AtomicU64::new(0),
            response_bytes: AtomicUsize::new(0),
            shed: Notify::new(),
        });
        t.insert(id, conn.clone());
        self.metrics.connections_open.set(t.len() as i64);
        Some(Slot {
            conns: self.clone(),
            conn,
        })
    }

    /// Counts (and, rate-limited, logs) a connection the server closed.
    pub fn closed(&self, listener: &'static str, why: Closed) {
        self.metrics
            .connections_closed
            .get_or_create(&ReasonLabels {
                reason: why.label(),
            })
            .inc();
        let what = match why {
            Closed::HandshakeTimeout => "TLS handshake timed out",
            Closed::FirstRequestTimeout => "no request after the handshake",
            Closed::Idle => "idle",
            Closed::Stalled => "client stopped sending its body or reading its response",
            Closed::Shed => {
                "connection slots full: oldest connection without an authenticated request shed"
            }
        };
        if why == Closed::Idle {
            // Ordinary keep-alive housekeeping, not an event.
            return;
        }
        self.warn(listener, what, why.label());
    }

    /// A warning about connections, at most one line every 10 s (with the count since).
    pub fn warn(&self, listener: &'static str, what: &'static str, reason: &'static str) {
        let mut l = self.log.lock().expect("log limiter");
        let now = Instant::now();
        if l.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            l.unlogged += 1;
            return;
        }
        let also = std::mem::take(&mut l.unlogged);
        l.last = Some(now);
        drop(l);
        tracing::warn!(
            listener,
            reason,
            similar_since_last_line = also,
            "closing connection: {what}"
        );
    }
}

/// A request body that tells its connection when it waits on the client and when it moves.
pub struct WatchedBody<B> {
    inner: B,
    conn: Arc<Conn>,
    waiting: bool,
}

impl<B> WatchedBody<B> {
    pub fn new(inner: B, conn: Arc<Conn>) -> Self {
        WatchedBody {
            inner,
            conn,
            waiting: false,
        }
    }

    fn set_waiting(&mut self, w: bool) {
        if w != self.waiting {
            self.waiting = w;
            if w {
                self.conn.waiting_on_client.fetch_add(1, Ordering::Relaxed);
            } else {
                self.conn.waiting_on_client.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl<B> Drop for WatchedBody<B> {
    fn drop(&mut self) {
        self.set_waiting(false);
    }
}

impl<B: Body + Unpin> Body for WatchedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => {
                self.set_waiting(true);
                Poll::Pending
            }
            Poll::Ready(r) => {
                self.set_waiting(false);
                self.conn.progress();
                Poll::Ready(r)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Largest piece of a response handed to the connection at once: a reader that stops reading
/// pins one piece in the HTTP/2 send buffer, not the whole response.
const CHUNK: usize = 64 * 1024;

/// A response body being written: handed over in pieces, counted as waiting on the client
/// until it is fully taken (a stalled reader trips the stall timeout), and holding its request
/// open (and its bytes in the connection's and the server's response budgets) until then.
pub struct ResponseBody<B> {
    inner: B,
    rest: Option<Bytes>,
    conn: Arc<Conn>,
    _request: RequestGuard,
    held: usize,
    _global: Option<crate::budget::Ticket>,
    done: bool,
}

impl<B> ResponseBody<B> {
    /// `held` bytes were counted into the connection's response bytes (and `global` into the
    /// server's response budget); both are given back when the body ends or is dropped.
    pub fn new(
        inner: B,
        request: RequestGuard,
        held: usize,
        global: Option<crate::budget::Ticket>,
    ) -> Self {
        let conn = request.0.clone();
        conn.waiting_on_client.fetch_add(1, Ordering::Relaxed);
        conn.progress();
        ResponseBody {
            inner,
            rest: None,
            conn,
            _request: request,
            held,
            _global: global,
            done: false,
        }
    }

    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            self.conn.waiting_on_client.fetch_sub(1, Ordering::Relaxed);
            self.conn
                .response_bytes
                .fetch_sub(std::mem::take(&mut self.held), Ordering::Relaxed);
            self._global = None;
        }
    }
}

impl<B> Drop for ResponseBody<B> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        // Polled only when the connection can send: each poll is progress.
        self.conn.progress();
        if let Some(rest) = &mut self.rest {
            let piece = rest.split_to(rest.len().min(CHUNK));
            if rest.is_empty() {
                self.rest = None;
            }
            return Poll::Ready(Some(Ok(Frame::data(piece))));
        }
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match frame {
            Some(Ok(f)) => match f.into_data() {
                Ok(mut data) => {
                    if data.len() > CHUNK {
                        let piece = data.split_to(CHUNK);
                        self.rest = Some(data);
                        Poll::Ready(Some(Ok(Frame::data(piece))))
                    } else {
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                }
                Err(f) => Poll::Ready(Some(Ok(f))),
            },
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => {
                self.finish();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.as_ref().map_or(0, |r| r.len() as u64);
        let h = self.inner.size_hint();
        let mut out = SizeHint::new();
        out.set_lower(h.lower() + rest);
        if let Some(u) = h.upper() {
            out.set_upper(u + rest);
        }
        out
    }
}
