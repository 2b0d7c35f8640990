//! One HTTP connection, from accept to close, and how it drains.
//!
//! The drain of an HTTP/1 keep-alive connection is where servers lose
//! requests. Closing a connection that looks idle races with the client,
//! which may have sent its next request a moment ago; the request is lost
//! and the client sees a reset. So after the stop a connection is not
//! closed while a request is in flight, every response gets
//! `Connection: close` (the client then closes, or opens a new connection
//! that the closed listener refuses), and a connection is shut down only
//! once it has been idle for the idle grace; it is dropped if it is still
//! open after twice that (a half-sent request, a client that never reads).
//! HTTP/2 connections get GOAWAY at once, which loses nothing.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::Event;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION};
use hyper::rt::{Read, Sleep, Timer, Write};
use hyper::service::Service;
use hyper::{Request, Response, Version};
use hyper_util::server::conn::auto;

use super::{Executor, HttpService, ResponseBody, ServiceFuture};
use crate::stop::{Shared, Stop};
use crate::waiter::Waiter;
use crate::BoxError;

/// What the connection task and the requests on its connection share.
pub(crate) struct ConnState {
    /// Requests whose response body has not been dropped by hyper yet.
    in_flight: AtomicUsize,
    /// When `in_flight` last fell to zero, in nanoseconds since `born`.
    idle_since: AtomicU64,
    /// Set when a request arrives over HTTP/2.
    h2: AtomicBool,
    /// Woken when `in_flight` falls to zero.
    idle: Event,
    born: Instant,
}

impl ConnState {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ConnState {
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            idle: Event::new(),
            born: Instant::now(),
        })
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        // Relaxed: the count is read together with `idle_since`, which
        // carries the ordering (see `InFlight::drop`).
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// How long the connection has been idle, or `None` while a request is
    /// in flight.
    fn idle_for(&self, now: Instant) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = Duration::from_nanos(self.idle_since.load(Ordering::Acquire));
        Some(now.saturating_duration_since(self.born + since))
    }
}

/// One request in flight; dropped with the response body.
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let state = &self.0;
        let now = state.born.elapsed().as_nanos() as u64;
        // Store the time before the count falls, both with Release, so that
        // a reader that sees the count at zero (Acquire) sees this time.
        state.idle_since.store(now, Ordering::Release);
        if state.in_flight.fetch_sub(1, Ordering::Release) == 1 {
            state.idle.notify(usize::MAX);
        }
    }
}

/// A response body that keeps its request counted as in flight until hyper
/// drops it, which is after its last byte is written.
struct Tracked<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B> Body for Tracked<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The user's service, wrapped: counts requests in flight, marks responses
/// `Connection: close` during the drain, and hands handlers the stop signal
/// as a request extension.
pub(crate) struct Wrapped<S> {
    pub(crate) inner: S,
    pub(crate) conn: Arc<ConnState>,
    pub(crate) drain: Arc<Shared>,
    pub(crate) stop: Stop,
}

impl<S: HttpService> Service<Request<Incoming>> for Wrapped<S> {
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = ServiceFuture;

    fn call(&self, mut request: Request<Incoming>) -> ServiceFuture {
        let http1 = request.version() < Version::HTTP_2;
        if !http1 {
            // Relaxed: a hint for the connection task, re-read on each wake.
            self.conn.h2.store(true, Ordering::Relaxed);
        }
        request.extensions_mut().insert(self.stop.clone());
        let in_flight = self.conn.begin();
        let response = self.inner.call_http(request);
        // The server's drain, not the group's stop: the drain begins just
        // before the listener closes, so a client told to close reconnects
        // to a closed port (refused: nothing sent, nothing lost) rather than
        // into a backlog about to be reset.
        let drain = self.drain.clone();
        Box::pin(async move {
            let mut response = response.await.map_err(Into::into)?;
            if http1 && drain.is_stopped() {
                // The client will not send another request on this
                // connection, and hyper closes it after this response.
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response.map(|body| {
                Tracked {
                    body: Box::pin(body),
                    _in_flight: in_flight,
                }
                .boxed_unsync()
            }))
        })
    }
}

/// Counts open connections so the server can wait for the last one.
#[derive(Default)]
pub(crate) struct Tracker {
    open: AtomicUsize,
    closed: Event,
}

impl Tracker {
    pub(crate) fn enter(self: &Arc<Self>) -> Open {
        // Relaxed: the count only needs to be exact, not ordered; waiters
        // re-check it after registering (see `wait_empty`).
        self.open.fetch_add(1, Ordering::Relaxed);
        Open(self.clone())
    }

    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Resolves once no connection is open.
    pub(crate) async fn wait_empty(&self) {
        let mut waiter = Waiter::new();
        poll_fn(|cx| waiter.poll(cx, &self.closed, || self.open() == 0)).await
    }
}

/// One open connection; dropped with the connection's future.
pub(crate) struct Open(Arc<Tracker>);

impl Drop for Open {
    fn drop(&mut self) {
        // Release pairs with the Acquire in `Tracker::open`: whoever sees
        // zero sees every connection's work done.
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.closed.notify(usize::MAX);
        }
    }
}

enum Phase {
    /// Serving normally.
    Serving,
    /// The stop began; waiting for the connection to be idle long enough.
    Draining,
    /// Graceful shutdown was asked of hyper.
    ShuttingDown,
}

/// Serves one connection until it closes, drains it when `drain` stops,
/// and drops it when `drain` is forced.
pub(crate) async fn serve_connection<I, S, E, T>(
    io: I,
    service: Wrapped<S>,
    builder: Arc<auto::Builder<E>>,
    timer: T,
    idle_grace: Duration,
    _open: Open,
) where
    I: Read + Write + Unpin + Send + 'static,
    S: HttpService,
    E: Executor,
    T: Timer,
{
    let state = service.conn.clone();
    let drain = service.drain.clone();
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut phase = Phase::Serving;
    let mut drain_waiter = Waiter::new();
    let mut idle_waiter = Waiter::new();
    let mut sleep: Option<Pin<Box<dyn Sleep>>> = None;

    poll_fn(|cx| loop {
        if drain.is_forced() {
            // The drain deadline passed: drop the connection now.
            return Poll::Ready(());
        }
        // Errors (a client that went away, a malformed request) end this
        // connection only; hyper has already answered what it could.
        if conn.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        match phase {
            Phase::Serving => {
                if drain
                    .poll_until(cx, &mut drain_waiter, Shared::is_stopped)
                    .is_pending()
                {
                    return Poll::Pending;
                }
                // Relaxed: set before any response of this connection.
                if state.h2.load(Ordering::Relaxed) {
                    // GOAWAY: streams in flight finish, no new ones start.
                    conn.as_mut().graceful_shutdown();
                    phase = Phase::ShuttingDown;
                } else {
                    phase = Phase::Draining;
                }
            }
            Phase::Draining | Phase::ShuttingDown => {
                let draining = matches!(phase, Phase::Draining);
                // Relaxed: a hint, re-read on every wake.
                let h2 = state.h2.load(Ordering::Relaxed);
                let wait = match state.idle_for(Instant::now()) {
                    // A request in flight: wait for it to end, however long
                    // (the server's drain deadline bounds this).
                    None => {
                        sleep = None;
                        let idle = || state.idle_for(Instant::now()).is_some();
                        if idle_waiter.poll(cx, &state.idle, idle).is_ready() {
                            continue;
                        }
                        None
                    }
                    Some(idle) if draining && idle >= idle_grace => {
                        conn.as_mut().graceful_shutdown();
                        phase = Phase::ShuttingDown;
                        continue;
                    }
                    Some(idle) if draining => Some(idle_grace - idle),
                    // An HTTP/2 connection after GOAWAY closes when its
                    // streams are done; only the drain deadline cuts it.
                    Some(_) if h2 => None,
                    // Still open and idle well after a graceful shutdown: a
                    // half-sent request, or a client that does not read.
                    Some(idle) if idle >= idle_grace * 2 => return Poll::Ready(()),
                    Some(idle) => Some(idle_grace * 2 - idle),
                };
                if let Some(left) = wait {
                    let timer_sleep = sleep.get_or_insert_with(|| timer.sleep(left));
                    if timer_sleep.as_mut().poll(cx).is_ready() {
                        sleep = None;
                        continue;
                    }
                }
                if drain
                    .poll_until(cx, &mut drain_waiter, Shared::is_forced)
                    .is_ready()
                {
                    continue;
                }
                return Poll::Pending;
            }
        }
    })
    .await
}
