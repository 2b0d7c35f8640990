//! Graceful HTTP serving over hyper, written once for every runtime.
//!
//! [`Server::serve`] accepts connections until the stop, then:
//!
//! 1. stops accepting and drops the listener, so the port is free at once
//!    and new connections are refused;
//! 2. lets every request in flight finish, marking each response after the
//!    stop `Connection: close` (HTTP/1) or sending GOAWAY (HTTP/2), so no
//!    request a client has sent is dropped;
//! 3. closes each keep-alive connection once it has been idle for the *idle
//!    grace* (default 250 ms; a connection already idle that long closes at
//!    once), and drops one still open after twice that (a half-sent
//!    request, a client that does not read);
//! 4. returns `Ok(())` once every connection is closed — or, if a drain
//!    deadline is set and passes first, drops the rest and returns
//!    [`ServeError::DrainTimeout`].
//!
//! A header-read timeout (default 10 s) cuts clients that send their request
//! head too slowly, at any time. Handlers get the group's [`Stop`] as a
//! request extension, so a long response (a stream, a long poll) can end
//! early.
//!
//! The runtime supplies only an [`Accept`] listener, a hyper executor and a
//! hyper timer; the `allstop-tokio` and `allstop-smol` adapters supply all
//! three and a one-line member, so the behaviour is the same on both by
//! construction.

mod connection;

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use hyper::body::Incoming;
use hyper::rt::{Read, Timer, Write};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::server::conn::auto;

use self::connection::{serve_connection, ConnState, Tracker, Wrapped};
use crate::stop::{Cause, Shared, Stop};
use crate::BoxError;

/// The response body type allstop hands to hyper: the service's own body,
/// boxed.
pub type ResponseBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// The response future type allstop hands to hyper: the service's own
/// future, boxed.
pub type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, BoxError>> + Send>>;

/// A hyper service allstop's server can serve: any
/// `hyper::service::Service<Request<Incoming>>` that is
/// `Clone + Send + Sync + 'static`, with a `Send` future, errors that
/// convert into [`BoxError`], and a response body of `Bytes` chunks — what
/// `hyper::service::service_fn` over an `async` handler returning
/// `Response<Full<Bytes>>` gives. Implemented automatically; it only names
/// those bounds once.
pub trait HttpService: Clone + Send + Sync + 'static {
    /// The response body.
    type Body: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static;
    /// The service's error.
    type Error: Into<BoxError>;
    /// The service's future.
    type Future: Future<Output = Result<Response<Self::Body>, Self::Error>> + Send + 'static;

    /// Handles one request (`Service::call`).
    fn call_http(&self, request: Request<Incoming>) -> Self::Future;
}

impl<S, B> HttpService for S
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Body = B;
    type Error = S::Error;
    type Future = S::Future;

    fn call_http(&self, request: Request<Incoming>) -> S::Future {
        self.call(request)
    }
}

/// An executor for hyper's HTTP/2 streams and allstop's connection tasks:
/// anything that implements `hyper::rt::Executor` for every `Send` future,
/// such as hyper-util's `TokioExecutor`. Implemented automatically.
pub trait Executor:
    hyper::rt::Executor<Pin<Box<dyn Future<Output = ()> + Send>>>
    + auto::HttpServerConnExec<ServiceFuture, ResponseBody>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<E> Executor for E where
    E: hyper::rt::Executor<Pin<Box<dyn Future<Output = ()> + Send>>>
        + auto::HttpServerConnExec<ServiceFuture, ResponseBody>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// A listening socket, as a runtime provides it: the one thing about
/// accepting that differs between runtimes.
///
/// The adapters implement it for their TCP listeners. The returned IO must
/// already be set up (for TCP, `TCP_NODELAY` is usual).
pub trait Accept: Send + Sized + 'static {
    /// An accepted connection, as hyper reads and writes it.
    type Io: Read + Write + Send + Unpin + 'static;

    /// Binds a listener to `addr` (with `SO_REUSEADDR` on Unix, so a port
    /// is free again as soon as a server lets go of it).
    fn bind(addr: SocketAddr) -> impl Future<Output = io::Result<Self>> + Send;

    /// Polls for the next connection.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>>;

    /// The address the listener is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// Binds a listener of type `L` to `addr`; the error names the address and
/// the OS error.
pub async fn bind<L: Accept>(addr: SocketAddr) -> Result<L, ServeError> {
    L::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// The future of a [`Server::serve_on`] member.
pub type Serving = Pin<Box<dyn Future<Output = Result<(), ServeError>> + Send>>;

/// Why serving failed.
///
/// ```
/// use allstop::http::ServeError;
///
/// let error = ServeError::Bind {
///     addr: "127.0.0.1:8080".parse().unwrap(),
///     source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
/// };
/// assert!(error.to_string().starts_with("bind 127.0.0.1:8080: "));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The listener failed for good (not a per-connection error such as a
    /// client that reset, or running out of file descriptors, which the
    /// server rides out).
    Accept {
        /// The listener's address.
        addr: Option<SocketAddr>,
        /// The OS error.
        source: io::Error,
    },
    /// The drain deadline passed with connections still open; they were
    /// dropped.
    DrainTimeout {
        /// The listener's address.
        addr: Option<SocketAddr>,
        /// How many connections were still open.
        open: usize,
    },
}

struct Addr<'a>(&'a Option<SocketAddr>);

impl fmt::Display for Addr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("(unknown address)"),
        }
    }
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Bind { addr, source } => write!(f, "bind {addr}: {source}"),
            ServeError::Accept { addr, source } => write!(f, "accept on {}: {source}", Addr(addr)),
            ServeError::DrainTimeout { addr, open } => write!(
                f,
                "serving {}: drain deadline passed with {open} connection(s) open",
                Addr(addr)
            ),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::Bind { source, .. } | ServeError::Accept { source, .. } => Some(source),
            ServeError::DrainTimeout { .. } => None,
        }
    }
}

/// A graceful HTTP/1 and HTTP/2 server over hyper, parameterized by the
/// runtime's executor and timer. The adapters build one for you
/// (`allstop::tokio::http::server()`, `allstop::smol::http::server()`).
///
/// ```
/// use allstop::http::Server;
/// use std::time::Duration;
/// # fn configure<E: allstop::http::Executor, T: hyper::rt::Timer + Clone + Send + Sync + 'static>(server: Server<E, T>) {
/// let server = server
///     .header_read_timeout(Duration::from_secs(5))
///     .idle_grace(Duration::from_millis(100))
///     .drain_timeout(Duration::from_secs(20));
/// # }
/// ```
#[derive(Clone)]
pub struct Server<E, T> {
    executor: E,
    timer: T,
    header_read_timeout: Option<Duration>,
    idle_grace: Duration,
    drain_timeout: Option<Duration>,
}

impl<E, T> fmt::Debug for Server<E, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("header_read_timeout", &self.header_read_timeout)
            .field("idle_grace", &self.idle_grace)
            .field("drain_timeout", &self.drain_timeout)
            .finish_non_exhaustive()
    }
}

impl<E, T> Server<E, T>
where
    E: Executor,
    T: Timer + Clone + Send + Sync + 'static,
{
    /// A server that runs its connections on `executor` and its timeouts on
    /// `timer`, with the default settings.
    pub fn new(executor: E, timer: T) -> Self {
        Server {
            executor,
            timer,
            header_read_timeout: Some(Duration::from_secs(10)),
            idle_grace: Duration::from_millis(250),
            drain_timeout: None,
        }
    }

    /// How long a client may take to send a request head (HTTP/1) before the
    /// connection is closed. Default 10 s.
    ///
    /// `None` turns it off, which saves a timer per request (a few percent
    /// of throughput in `benches/`) but lets a slow client hold a connection
    /// open until the drain deadline.
    pub fn header_read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.header_read_timeout = timeout.into();
        self
    }

    /// After the stop, how long a keep-alive connection with no request in
    /// flight stays open for a request its client may already have sent.
    /// Default 250 ms. A connection idle that long already closes at once.
    pub fn idle_grace(mut self, grace: Duration) -> Self {
        self.idle_grace = grace;
        self
    }

    /// After the stop, how long to wait for connections to close before
    /// dropping them and returning [`ServeError::DrainTimeout`]. Default:
    /// none — the group's grace deadline bounds the drain by cancelling the
    /// server, which drops every connection.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = Some(timeout);
        self
    }

    fn builder(&self) -> auto::Builder<E> {
        let mut builder = auto::Builder::new(self.executor.clone());
        builder
            .http1()
            .timer(self.timer.clone())
            .header_read_timeout(self.header_read_timeout);
        builder.http2().timer(self.timer.clone());
        builder
    }

    /// A member that binds a listener of type `L` to `addr` and serves
    /// `service` on it. A bind failure is the member's error, naming the
    /// address. The adapters' `serve_on` is this, with their listener.
    pub fn serve_on<L: Accept>(
        self,
        addr: SocketAddr,
        service: impl HttpService,
    ) -> impl FnOnce(Stop) -> Serving + Send + 'static {
        move |stop: Stop| -> Serving {
            Box::pin(async move {
                let listener = bind::<L>(addr).await?;
                self.serve(listener, service, stop).await
            })
        }
    }

    /// Serves `service` on `listener` until `stop`, then drains (see the
    /// [module docs](self)).
    ///
    /// Errors on one connection (a reset, a malformed request, a timeout)
    /// end that connection only.
    ///
    /// # Cancellation safety
    ///
    /// Dropping the future stops accepting and drops every open connection
    /// soon after, on its executor.
    pub async fn serve(
        &self,
        mut listener: impl Accept,
        service: impl HttpService,
        stop: Stop,
    ) -> Result<(), ServeError> {
        let addr = listener.local_addr().ok();
        let drain = Shared::new();
        let _kill = KillOnDrop(drain.clone());
        let tracker = Arc::new(Tracker::default());
        let builder = Arc::new(self.builder());
        let mut failed = None;
        let mut waiting_for_stop = stop.clone();
        let spawn = |io| {
            let service = Wrapped {
                inner: service.clone(),
                conn: ConnState::new(),
                drain: drain.clone(),
                stop: stop.clone(),
            };
            let connection = serve_connection(
                io,
                service,
                builder.clone(),
                self.timer.clone(),
                self.idle_grace,
                tracker.enter(),
            );
            hyper::rt::Executor::execute(&self.executor, Box::pin(connection) as Pin<Box<_>>);
        };

        loop {
            let next = poll_fn(|cx| {
                if Pin::new(&mut waiting_for_stop).poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                listener.poll_accept(cx).map(Some)
            })
            .await;
            match next {
                None => break,
                Some(Ok(io)) => spawn(io),
                Some(Err(error)) if is_per_connection(&error) => {}
                Some(Err(error)) if is_out_of_resources(&error) => {
                    // Out of file descriptors: wait for connections to close
                    // instead of spinning on accept.
                    self.timer.sleep(Duration::from_millis(50)).await;
                }
                Some(Err(source)) => {
                    failed = Some(ServeError::Accept { addr, source });
                    break;
                }
            }
        }

        // Responses from now on close their connections.
        drain.stop(|| Cause::Requested("server stopping".into()));
        // Connections the kernel has already completed may carry a request
        // their client has sent: take them and answer them, rather than let
        // closing the listener reset them.
        {
            let waker = futures::task::noop_waker();
            let mut cx = Context::from_waker(&waker);
            while let Poll::Ready(accepted) = listener.poll_accept(&mut cx) {
                match accepted {
                    Ok(io) => spawn(io),
                    Err(error) if is_per_connection(&error) => {}
                    Err(_) => break,
                }
            }
        }
        // Free the port: new connections are refused from now on.
        drop(listener);

        let drained = tracker.wait_empty();
        let timed_out = match self.drain_timeout {
            None => {
                drained.await;
                false
            }
            Some(timeout) => {
                let deadline = self.timer.sleep(timeout);
                let mut drained = std::pin::pin!(drained);
                let mut deadline = std::pin::pin!(deadline);
                poll_fn(|cx| {
                    if drained.as_mut().poll(cx).is_ready() {
                        Poll::Ready(false)
                    } else {
                        deadline.as_mut().poll(cx).map(|()| true)
                    }
                })
                .await
            }
        };
        if timed_out {
            let open = tracker.open();
            drain.force();
            tracker.wait_empty().await;
            return Err(ServeError::DrainTimeout { addr, open });
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// Drops every connection when the server's future is dropped.
struct KillOnDrop(Arc<Shared>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.stop(|| Cause::Requested("server dropped".into()));
        self.0.force();
    }
}

/// Errors that concern one connection, not the listener.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Running out of file descriptors or memory: temporary, worth a pause.
fn is_out_of_resources(error: &io::Error) -> bool {
    // ENOMEM, ENFILE, EMFILE, ENOBUFS (Linux numbering).
    matches!(error.raw_os_error(), Some(12 | 23 | 24 | 105))
        || error.kind() == io::ErrorKind::OutOfMemory
}
