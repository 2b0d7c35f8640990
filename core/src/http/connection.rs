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
//! HTTP/2 connections get GOAWAY at once, which loses nothing, and are
//! dropped once idle for the idle grace: a client that does not answer the
//! PING hyper sends with the GOAWAY cannot hold them open.
//!
//! Every connection has a deadline for its next request head: from accept
//! to its first request, so that a client that connects and sends nothing
//! (or only the HTTP/2 preface) cannot hold a file descriptor for ever, and
//! on HTTP/1 from the end of each response to the next head. It is one
//! timer per connection, looked at when it rings (a request in flight, or
//! a connection idle for less than the timeout, re-arms it), rather than
//! hyper's timer armed and cancelled for every request head. An upgraded connection
//! (WebSocket) outlives its HTTP connection: its IO keeps it counted until
//! the handler drops it, and is cut when the drain is forced.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::task::AtomicWaker;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH};
use hyper::rt::{Read, ReadBufCursor, Sleep, Timer, Write};
use hyper::service::Service;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::server::conn::auto;

use super::service::HyperExecutor;
use super::{Executor, HttpService};
use crate::error::BoxError;
use crate::flag::{Flag, FlagWaiter};
use crate::stop::Stop;
use crate::tasks::TaskToken;

/// The server's clock: its timer's `now`, so that a connection's times
/// agree with its sleeps (tokio's clock, for one, can be paused).
pub(crate) type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// What the connection task and the requests on its connection share.
pub(crate) struct ConnState {
    /// Requests whose response body has not been dropped by hyper yet.
    in_flight: AtomicUsize,
    /// When the connection last had a request in flight or wrote to its
    /// client, in nanoseconds since `born`: hyper drops a response's body
    /// once its last frame is queued, and the writes that follow are the
    /// response's too.
    idle_since: AtomicU64,
    /// Set when a request arrives over HTTP/2.
    h2: AtomicBool,
    /// Set when the first request arrives.
    used: AtomicBool,
    /// Set when a response switches protocols: the IO now belongs to the
    /// handler, and only the drain's force can cut it.
    upgraded: AtomicBool,
    /// The connection task, while its drain waits for `in_flight` to fall
    /// to zero; woken when it does. A waker slot rather than an event: a
    /// request's end wakes nobody, most of the time, at the cost of two
    /// atomic operations, where an event takes its lock.
    idle: AtomicWaker,
    clock: Clock,
    born: Instant,
    /// The server's drain has begun. The server's, not the group's stop:
    /// the drain begins once the listener is closed, so a client told to
    /// close reconnects to a closed port (refused: nothing sent, nothing
    /// lost) rather than into a backlog about to be reset.
    closing: Arc<Flag>,
}

impl ConnState {
    pub(crate) fn new(closing: Arc<Flag>, clock: Clock) -> Arc<Self> {
        Arc::new(ConnState {
            closing,
            born: clock(),
            clock,
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            used: AtomicBool::new(false),
            upgraded: AtomicBool::new(false),
            idle: AtomicWaker::new(),
        })
    }

    fn now(&self) -> Instant {
        (self.clock)()
    }

    /// Notes that the connection is busy now (see `idle_since`).
    fn touch(&self) {
        let now = self.now().saturating_duration_since(self.born).as_nanos() as u64;
        // Release: see `InFlight::drop`.
        self.idle_since.store(now, Ordering::Release);
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        // Relaxed: a hint for the connection task, re-read on each wake.
        self.used.store(true, Ordering::Relaxed);
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
        // Store the time before the count falls, both with Release, so that
        // a reader that sees the count at zero (Acquire) sees this time.
        state.touch();
        if state.in_flight.fetch_sub(1, Ordering::Release) == 1 {
            state.idle.wake();
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight until
    /// hyper drops it, once its last frame is queued (the writes that
    /// follow keep the connection busy: see `TrackedIo`). Holds the
    /// service's body in place, or none for a HEAD answer over HTTP/2.
    pub(crate) struct Tracked<B> {
        #[pin]
        body: Option<B>,
        in_flight: InFlight,
    }
}

impl<B> Body for Tracked<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().body.as_pin_mut() {
            Some(body) => body.poll_frame(cx).map_err(Into::into),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().map_or(true, Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// The user's service, wrapped: counts requests in flight, marks responses
/// `Connection: close` during the drain, and, when the server is told to,
/// hands handlers the stop signal as a request extension.
pub(crate) struct ConnectionService<S> {
    pub(crate) inner: S,
    pub(crate) conn: Arc<ConnState>,
    pub(crate) stop: Option<Stop>,
}

impl<S: HttpService> Service<Request<Incoming>> for ConnectionService<S> {
    type Response = Response<Tracked<S::Body>>;
    type Error = BoxError;
    type Future = Answer<S::Future>;

    fn call(&self, mut request: Request<Incoming>) -> Answer<S::Future> {
        let http1 = request.version() < Version::HTTP_2;
        if !http1 {
            // Relaxed: a hint for the connection task, re-read on each wake.
            self.conn.h2.store(true, Ordering::Relaxed);
        }
        // hyper leaves out a HEAD answer's body on HTTP/1 only.
        let head_on_h2 = !http1 && request.method() == Method::HEAD;
        if let Some(stop) = &self.stop {
            request.extensions_mut().insert(stop.clone());
        }
        // Holds the connection's state for the response, too: no other
        // reference is taken per request.
        let in_flight = Some(self.conn.begin());
        Answer {
            response: self.inner.call_http(request),
            in_flight,
            http1,
            head_on_h2,
        }
    }
}

pin_project_lite::pin_project! {
    /// The service's response future, wrapped: once the response is ready,
    /// marks it as the drain needs and hands its request's count to its
    /// body.
    pub(crate) struct Answer<F> {
        #[pin]
        response: F,
        // Taken when the response is ready.
        in_flight: Option<InFlight>,
        http1: bool,
        head_on_h2: bool,
    }
}

impl<F, B, E> Future for Answer<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    E: Into<BoxError>,
{
    type Output = Result<Response<Tracked<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.response.poll(cx));
        let in_flight = this
            .in_flight
            .take()
            .expect("a response future polled after it completed");
        let mut response = response.map_err(Into::into)?;
        let conn = &in_flight.0;
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // Relaxed: read by the IO on its next poll; nothing else
            // depends on it.
            conn.upgraded.store(true, Ordering::Relaxed);
        } else if *this.http1 && conn.closing.is_set() {
            // The client will not send another request on this
            // connection, and hyper closes it after this response.
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        if *this.head_on_h2 {
            return Poll::Ready(Ok(without_body(response, in_flight)));
        }
        Poll::Ready(Ok(response.map(|body| Tracked {
            body: Some(body),
            in_flight,
        })))
    }
}

/// A HEAD answer: the GET's status and headers, its length when the body
/// knows it, and no body on the wire.
fn without_body<B: Body>(response: Response<B>, in_flight: InFlight) -> Response<Tracked<B>> {
    let (mut parts, body) = response.into_parts();
    if let Some(length) = body.size_hint().exact() {
        parts
            .headers
            .entry(CONTENT_LENGTH)
            .or_insert_with(|| HeaderValue::from(length));
    }
    Response::from_parts(
        parts,
        Tracked {
            body: None,
            in_flight,
        },
    )
}

/// A connection's IO, counted by the server until it is dropped: by hyper
/// when the connection ends, or by the handler that took it over in an
/// upgrade. Once upgraded, it fails every read and write after the drain is
/// forced (and wakes a task waiting on it), so a WebSocket that outlives
/// the drain deadline ends too.
pub(crate) struct TrackedIo<I> {
    io: I,
    state: Arc<ConnState>,
    forced: Arc<Flag>,
    /// One for reads, one for writes: a handler may read and write from
    /// two tasks, and each must be woken by the force.
    read_waiter: FlagWaiter,
    write_waiter: FlagWaiter,
    _token: TaskToken,
}

impl<I> TrackedIo<I> {
    pub(crate) fn new(io: I, token: TaskToken, state: Arc<ConnState>, forced: &Arc<Flag>) -> Self {
        TrackedIo {
            io,
            state,
            forced: forced.clone(),
            read_waiter: FlagWaiter::default(),
            write_waiter: FlagWaiter::default(),
            _token: token,
        }
    }

    /// An error once an upgraded connection is to be cut; otherwise
    /// registers `waiter` to be woken when it is.
    fn cut(
        state: &ConnState,
        forced: &Flag,
        waiter: &mut FlagWaiter,
        cx: &mut Context<'_>,
    ) -> Option<io::Error> {
        // Relaxed: set by the response that upgraded, before hyper hands
        // the IO over; until then the connection task drops the IO itself.
        if !state.upgraded.load(Ordering::Relaxed) {
            return None;
        }
        forced
            .poll_set(cx, waiter)
            .is_ready()
            .then(|| io::Error::new(io::ErrorKind::ConnectionAborted, "the server's drain ended"))
    }

    fn cut_read(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        Self::cut(&self.state, &self.forced, &mut self.read_waiter, cx)
    }

    fn cut_write(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        Self::cut(&self.state, &self.forced, &mut self.write_waiter, cx)
    }

    /// A write that went out after the last response's body was dropped is
    /// that response's tail: the connection is not idle yet.
    fn wrote(&self, written: &Poll<io::Result<usize>>) {
        // Relaxed: a request in flight keeps the connection busy anyway.
        if let Poll::Ready(Ok(1..)) = written {
            if self.state.in_flight.load(Ordering::Relaxed) == 0 {
                self.state.touch();
            }
        }
    }
}

impl<I: Read + Unpin> Read for TrackedIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(error) = self.cut_read(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: Write + Unpin> Write for TrackedIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(error) = self.cut_write(cx) {
            return Poll::Ready(Err(error));
        }
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(error) = self.cut_write(cx) {
            return Poll::Ready(Err(error));
        }
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(error) = self.cut_write(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

enum Phase {
    /// Serving normally.
    Serving,
    /// The drain began; waiting for the HTTP/1 connection to be idle long
    /// enough.
    Draining,
    /// Graceful shutdown was asked of hyper (GOAWAY for HTTP/2) at this
    /// moment.
    ShuttingDown(Instant),
}

/// What a connection in the drain does next, given how long it has been
/// idle (`None`: a request is in flight).
#[derive(Debug, PartialEq)]
enum Next {
    /// Wait for the request in flight to end.
    AwaitIdle,
    /// Ask hyper to shut the connection down gracefully.
    Shutdown,
    /// Drop the connection.
    Drop,
    /// Wait this long, then look again.
    Sleep(Duration),
    /// Nothing to do until the connection ends or the drain is forced.
    Wait,
}

impl Phase {
    fn next(&self, idle: Option<Duration>, h2: bool, grace: Duration, now: Instant) -> Next {
        if let (Phase::Draining, true) = (self, h2) {
            // Known to be HTTP/2 only once a request came, after the drain
            // began: GOAWAY now, whatever is in flight.
            return Next::Shutdown;
        }
        let Some(idle) = idle else {
            return Next::AwaitIdle;
        };
        match *self {
            Phase::Serving => Next::Wait,
            Phase::Draining if idle >= grace => Next::Shutdown,
            Phase::Draining => Next::Sleep(grace - idle),
            Phase::ShuttingDown(since) => {
                // HTTP/2: its streams are done, and a stream the client
                // opened before the GOAWAY has had the idle grace to arrive;
                // hyper would wait for a PING answer. HTTP/1: still open
                // well after a graceful shutdown means a half-sent request
                // or a client that does not read.
                let (idle, limit) = match h2 {
                    true => (idle.min(now.saturating_duration_since(since)), grace),
                    false => (idle, grace * 2),
                };
                if idle >= limit {
                    Next::Drop
                } else {
                    Next::Sleep(limit - idle)
                }
            }
        }
    }
}

/// What a connection's task does next, as [`Watch::step`] decides.
enum Step {
    /// Keep serving: a wake-up is registered for whatever may change that.
    Wait,
    /// Look again (something changed).
    Again,
    /// Ask hyper to shut the connection down gracefully, then look again.
    Shutdown,
    /// Drop the connection.
    Drop,
}

/// The deadline for a connection's next request head (see the module
/// docs): `sleep` rings at the earliest moment it can have passed. It
/// rings `bell`, which wakes the connection's task: the task looks at the
/// sleep when it has rung, rather than polling it (the runtime's timer
/// entry, and its waker registration) at every wake-up, once a request.
struct HeadDeadline {
    timeout: Duration,
    sleep: Pin<Box<dyn Sleep>>,
    bell: Arc<Bell>,
    /// The task waker the bell holds, to compare with the task's own.
    task: Option<Waker>,
}

impl HeadDeadline {
    fn new(timeout: Duration, sleep: Pin<Box<dyn Sleep>>) -> Self {
        HeadDeadline {
            timeout,
            sleep,
            // Rung to begin with: the first look polls the sleep, which
            // then holds the bell.
            bell: Arc::new(Bell {
                rang: AtomicBool::new(true),
                task: Mutex::new(None),
            }),
            task: None,
        }
    }

    /// Whether the sleep has rung since the last look; the task of `cx`
    /// is woken when it next rings.
    fn rang(&mut self, cx: &Context<'_>) -> bool {
        if !self.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
            let old = self.bell.task().replace(cx.waker().clone());
            // Dropped outside the lock, as a ring wakes outside it.
            drop(old);
            self.task = Some(cx.waker().clone());
        }
        // Acquire: pairs with the ring's Release. A ring that took the
        // lock before the waker was stored above set the flag first, so
        // the look sees it; one after wakes the waker stored.
        self.bell.rang.load(Ordering::Acquire) && self.bell.rang.swap(false, Ordering::AcqRel)
    }
}

/// What a head deadline's sleep wakes: notes the ring, wakes the task.
/// The task's waker stays after a ring (a waker slot that hands it over
/// to the ring could lose it to a ring racing a look), behind a lock
/// taken only by a ring and when the task's waker changes.
struct Bell {
    rang: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Bell {
    fn task(&self) -> std::sync::MutexGuard<'_, Option<Waker>> {
        // A waker whose clone or drop panicked leaves it as it was.
        self.task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A ring's first half.
    fn note_ring(&self) {
        self.rang.store(true, Ordering::Release);
    }

    /// A ring's second half; the waker stays for the next ring.
    fn wake_task(&self) {
        // Woken outside the lock: a waker may poll the task at once.
        let task = self.task().clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl Wake for Bell {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.note_ring();
        self.wake_task();
    }
}

/// What a connection's task watches besides hyper's connection future:
/// the request-head deadline, the drain and its phase, the force.
struct Watch<T: Timer> {
    state: Arc<ConnState>,
    timer: T,
    idle_grace: Duration,
    forced: Arc<Flag>,
    phase: Phase,
    /// The next request head's deadline; gone once the connection is
    /// HTTP/2 with a request, or upgraded.
    head: Option<HeadDeadline>,
    /// The drain's current sleep (see [`Next::Sleep`]).
    sleep: Option<Pin<Box<dyn Sleep>>>,
    closing_waiter: FlagWaiter,
    forced_waiter: FlagWaiter,
}

impl<T: Timer> Drop for Watch<T> {
    fn drop(&mut self) {
        // The connection's task is ending: its waker must not keep the
        // task's memory for as long as an upgraded IO keeps the state.
        drop(self.state.idle.take());
    }
}

impl<T: Timer> Watch<T> {
    fn step(&mut self, cx: &mut Context<'_>) -> Step {
        if self.forced.is_set() || self.head_expired(cx) {
            return Step::Drop;
        }
        if let Phase::Serving = self.phase {
            let closing = &self.state.closing;
            if closing.poll_set(cx, &mut self.closing_waiter).is_pending() {
                return Step::Wait;
            }
            return self.begin_drain();
        }
        let now = self.timer.now();
        match self
            .phase
            .next(self.state.idle_for(now), self.h2(), self.idle_grace, now)
        {
            Next::AwaitIdle => self.await_idle(cx),
            Next::Shutdown => {
                self.phase = Phase::ShuttingDown(now);
                Step::Shutdown
            }
            Next::Drop => Step::Drop,
            Next::Sleep(left) => self.sleep(cx, left),
            Next::Wait => self.await_force(cx),
        }
    }

    fn h2(&self) -> bool {
        // Relaxed: a hint, re-read on every wake; set before any response.
        self.state.h2.load(Ordering::Relaxed)
    }

    /// Whether the connection has waited the whole timeout for a request
    /// head: a silent client, one that sent only part of a head or the
    /// HTTP/2 preface, or an HTTP/1 client idle since its last response.
    /// When the timer rings early (a request came meanwhile), it is set
    /// again for the earliest moment the deadline can pass.
    fn head_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(head) = &mut self.head else {
            return false;
        };
        if !head.rang(cx) {
            return false;
        }
        let bell = Waker::from(head.bell.clone());
        let mut cx = Context::from_waker(&bell);
        while head.sleep.as_mut().poll(&mut cx).is_ready() {
            let state = &self.state;
            // Relaxed: hints, re-read on every wake. HTTP/2 streams and
            // upgraded connections have no request heads to wait for.
            let h2 = state.h2.load(Ordering::Relaxed) && state.used.load(Ordering::Relaxed);
            if h2 || state.upgraded.load(Ordering::Relaxed) {
                self.head = None;
                return false;
            }
            let now = self.timer.now();
            let left = match state.idle_for(now) {
                // A request in flight: its end starts the wait again.
                None => head.timeout,
                Some(idle) if idle >= head.timeout => return true,
                Some(idle) => head.timeout - idle,
            };
            self.timer.reset(&mut head.sleep, now + left);
        }
        false
    }

    /// The drain began: HTTP/2 gets its GOAWAY at once (streams in flight
    /// finish, no new ones start); HTTP/1 waits to be idle.
    fn begin_drain(&mut self) -> Step {
        if self.h2() {
            self.phase = Phase::ShuttingDown(self.timer.now());
            Step::Shutdown
        } else {
            self.phase = Phase::Draining;
            Step::Again
        }
    }

    /// A request is in flight: wait for it to end, however long (the
    /// server's drain deadline bounds this).
    fn await_idle(&mut self, cx: &mut Context<'_>) -> Step {
        self.sleep = None;
        let state = &self.state;
        // Registered before the check: a request that ends after the check
        // wakes this task.
        state.idle.register(cx.waker());
        if state.idle_for(state.now()).is_some() {
            return Step::Again;
        }
        self.await_force(cx)
    }

    fn sleep(&mut self, cx: &mut Context<'_>, left: Duration) -> Step {
        let timer = &self.timer;
        let sleep = self.sleep.get_or_insert_with(|| timer.sleep(left));
        if sleep.as_mut().poll(cx).is_ready() {
            self.sleep = None;
            return Step::Again;
        }
        self.await_force(cx)
    }

    fn await_force(&mut self, cx: &mut Context<'_>) -> Step {
        match self.forced.poll_set(cx, &mut self.forced_waiter) {
            Poll::Ready(()) => Step::Drop,
            Poll::Pending => Step::Wait,
        }
    }
}

/// Serves one connection until it closes, drains it once the server's
/// drain begins, and drops it when `forced` is set. A connection that has
/// not sent a request head within `head_timeout` of its accept, or (HTTP/1)
/// of its last response, is dropped.
pub(crate) async fn serve_connection<I, S, E, T>(
    io: TrackedIo<I>,
    service: ConnectionService<S>,
    builder: Arc<auto::Builder<HyperExecutor<E>>>,
    timer: T,
    head_timeout: Option<Duration>,
    idle_grace: Duration,
    forced: Arc<Flag>,
) where
    I: Read + Write + Unpin + Send + 'static,
    S: HttpService,
    E: Executor,
    T: Timer,
{
    let mut watch = Watch {
        state: service.conn.clone(),
        head: head_timeout.map(|timeout| HeadDeadline::new(timeout, timer.sleep(timeout))),
        timer,
        idle_grace,
        forced,
        phase: Phase::Serving,
        sleep: None,
        closing_waiter: FlagWaiter::default(),
        forced_waiter: FlagWaiter::default(),
    };
    let conn = builder.serve_connection_with_upgrades(io, service);
    let mut conn = std::pin::pin!(conn);
    poll_fn(|cx| loop {
        if watch.forced.is_set() {
            // The drain deadline passed: drop the connection now.
            return Poll::Ready(());
        }
        // Errors (a client that went away, a malformed request) end this
        // connection only; hyper has already answered what it could.
        if conn.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        match watch.step(cx) {
            Step::Wait => return Poll::Pending,
            Step::Again => {}
            Step::Shutdown => conn.as_mut().graceful_shutdown(),
            Step::Drop => return Poll::Ready(()),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_wakers::{counter, Count};

    const GRACE: Duration = Duration::from_millis(250);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn an_idle_http1_connection_is_shut_down_after_the_grace_then_dropped() {
        let now = Instant::now();
        assert_eq!(
            Phase::Draining.next(None, false, GRACE, now),
            Next::AwaitIdle
        );
        assert_eq!(
            Phase::Draining.next(Some(100 * MS), false, GRACE, now),
            Next::Sleep(150 * MS)
        );
        assert_eq!(
            Phase::Draining.next(Some(GRACE), false, GRACE, now),
            Next::Shutdown
        );
        let shut = Phase::ShuttingDown(now);
        assert_eq!(
            shut.next(Some(GRACE), false, GRACE, now),
            Next::Sleep(GRACE)
        );
        assert_eq!(shut.next(Some(GRACE * 2), false, GRACE, now), Next::Drop);
    }

    #[test]
    fn an_http2_connection_found_out_while_draining_gets_its_goaway_at_once() {
        let now = Instant::now();
        assert_eq!(Phase::Draining.next(None, true, GRACE, now), Next::Shutdown);
        assert_eq!(
            Phase::Draining.next(Some(MS), true, GRACE, now),
            Next::Shutdown
        );
    }

    #[test]
    fn an_idle_http2_connection_is_dropped_one_grace_after_the_goaway() {
        let goaway = Instant::now();
        let shut = Phase::ShuttingDown(goaway);
        // Idle for long before the GOAWAY: the grace counts from the GOAWAY.
        assert_eq!(
            shut.next(Some(GRACE * 10), true, GRACE, goaway + 100 * MS),
            Next::Sleep(150 * MS)
        );
        assert_eq!(
            shut.next(Some(GRACE * 10), true, GRACE, goaway + GRACE),
            Next::Drop
        );
        // A stream in flight holds it; the grace counts from its end.
        assert_eq!(
            shut.next(None, true, GRACE, goaway + GRACE),
            Next::AwaitIdle
        );
        assert_eq!(
            shut.next(Some(50 * MS), true, GRACE, goaway + GRACE),
            Next::Sleep(200 * MS)
        );
    }

    /// A timer whose sleeps never ring.
    struct NeverTimer;

    struct Never;

    impl Future for Never {
        type Output = ();

        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
            Poll::Pending
        }
    }

    impl Sleep for Never {}

    impl Timer for NeverTimer {
        fn sleep(&self, _duration: Duration) -> Pin<Box<dyn Sleep>> {
            Box::pin(Never)
        }

        fn sleep_until(&self, _deadline: Instant) -> Pin<Box<dyn Sleep>> {
            Box::pin(Never)
        }
    }

    /// The drain of a connection with a request in flight waits for it;
    /// the request's end wakes the connection's task even when it comes on
    /// another task (an HTTP/2 stream's), after the connection's task last
    /// looked. Then the connection is idle, and sleeps out its grace.
    #[test]
    fn a_draining_connection_is_woken_when_its_last_request_ends() {
        let state = ConnState::new(Flag::new(), Arc::new(Instant::now));
        let request = state.begin();
        let mut watch = Watch {
            state: state.clone(),
            timer: NeverTimer,
            idle_grace: GRACE,
            forced: Flag::new(),
            phase: Phase::Draining,
            head: None,
            sleep: None,
            closing_waiter: FlagWaiter::default(),
            forced_waiter: FlagWaiter::default(),
        };
        let (wakes, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(watch.step(&mut cx), Step::Wait));
        assert!(
            watch.sleep.is_none(),
            "waiting for the request, not the grace"
        );

        std::thread::spawn(move || drop(request)).join().unwrap();
        assert_eq!(wakes.wakes(), 1);
        assert!(matches!(watch.step(&mut cx), Step::Wait));
        assert!(watch.sleep.is_some(), "idle: sleeping out the grace");
    }

    /// A sleep the test rings by hand: it holds the waker it was last
    /// polled with.
    #[derive(Default)]
    struct HandSleep {
        waker: std::sync::Mutex<Option<Waker>>,
    }

    impl HandSleep {
        fn ring(&self) {
            let waker = self.waker.lock().unwrap().take();
            waker.expect("the sleep was polled").wake();
        }
    }

    struct Polled(Arc<HandSleep>);

    impl Future for Polled {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            *self.0.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    impl Sleep for Polled {}

    /// A head deadline on a [`HandSleep`], and the wakes of its task.
    struct Rig {
        sleep: Arc<HandSleep>,
        head: HeadDeadline,
        wakes: Arc<Count>,
        task: Waker,
    }

    impl Rig {
        fn new() -> Self {
            let sleep = Arc::new(HandSleep::default());
            let head = HeadDeadline::new(Duration::from_secs(10), Box::pin(Polled(sleep.clone())));
            let (wakes, task) = counter();
            Rig {
                sleep,
                head,
                wakes,
                task,
            }
        }

        /// A look by the task: whether the sleep has rung since the last.
        fn rang(&mut self) -> bool {
            self.head.rang(&Context::from_waker(&self.task))
        }

        /// Polls the sleep with the bell, as `head_expired` does after a
        /// ring: it holds the bell until it rings.
        fn arm(&mut self) {
            let bell = Waker::from(self.head.bell.clone());
            let polled = self
                .head
                .sleep
                .as_mut()
                .poll(&mut Context::from_waker(&bell));
            assert!(polled.is_pending());
        }

        fn woken(&self) -> usize {
            self.wakes.wakes()
        }
    }

    // The head deadline looks at its sleep only when it has rung, and every
    // ring wakes the connection's task, the second as the first.
    #[test]
    fn each_ring_of_the_head_deadline_wakes_the_task_once() {
        let mut rig = Rig::new();
        // The first look polls the sleep, which then holds the bell.
        assert!(rig.rang());
        rig.arm();
        assert!(!rig.rang(), "not rung yet");
        for ring in 1..=2 {
            rig.sleep.ring();
            assert_eq!(rig.woken(), ring, "ring {ring} woke the task");
            assert!(rig.rang(), "ring {ring} seen");
            assert!(!rig.rang(), "ring {ring} seen once");
            rig.arm();
        }
    }

    // A ring whose halves a look falls between (the task polled on another
    // thread as the sleep rings) leaves the bell holding the task's waker:
    // the next ring wakes it. A waker slot that a ring empties would have
    // lost it, and with it every later ring.
    #[test]
    fn a_look_between_the_halves_of_a_ring_keeps_the_next_ring() {
        let mut rig = Rig::new();
        assert!(rig.rang());
        rig.arm();
        rig.head.bell.note_ring();
        assert!(rig.rang(), "the ring's first half seen");
        rig.arm();
        rig.head.bell.wake_task();
        assert!(!rig.rang(), "no ring since");
        let before = rig.woken();
        rig.sleep.ring();
        assert_eq!(rig.woken(), before + 1, "the next ring woke the task");
        assert!(rig.rang());
    }
}
