//! Graceful HTTP serving over hyper, written once for every runtime.
//!
//! [`Server::serve`] serves a hyper service or a tower service (an axum
//! `Router`, tonic `Routes`; see [`IntoHttpService`]) over HTTP/1 and
//! HTTP/2, upgrades (WebSockets) included, and accepts connections until the
//! stop. Then it:
//!
//! 1. takes every connection the kernel has already completed (the listen
//!    backlog, read from the kernel itself, not from cached readiness, as
//!    far as file descriptors allow) and serves it too, then drops the
//!    listener, so the port is free at once and new connections are
//!    refused;
//! 2. lets every request in flight finish, marking each response after the
//!    stop `Connection: close` (HTTP/1) or sending GOAWAY (HTTP/2), so no
//!    request a client has sent is dropped;
//! 3. closes each HTTP/1 connection once it has been idle for the *idle
//!    grace* (default 250 ms; one already idle that long closes at once),
//!    and drops one still open after twice that (a half-sent request head);
//!    drops each HTTP/2 connection one idle grace after its GOAWAY once its
//!    streams are done, without waiting for the client to answer a PING. A
//!    request in flight is waited for however long it takes (a half-sent
//!    body, a client that does not read a large response): the drain
//!    deadline, or the group's grace, bounds those;
//! 4. waits for upgraded connections (WebSockets) to end: their handlers
//!    see the stop and should close them;
//! 5. returns `Ok(())` once every connection is closed — or, if a drain
//!    deadline is set and passes first, drops the rest, makes every read and
//!    write of an upgraded connection fail from then on, and returns
//!    [`ServeError::DrainTimeout`].
//!
//! A client cannot hold a connection it never uses: every connection has
//! the header-read timeout (default 10 s) from accept to its first complete
//! request head, whatever it sends or does not send (nothing, part of the
//! HTTP/2 preface, the whole preface), and hyper applies it to every later
//! HTTP/1 request head. (An idle keep-alive connection that has made
//! requests stays open until the stop, as in Go without an `IdleTimeout`.)
//!
//! Handlers can see the server's [`Stop`]: it fires when the group stops
//! or when the server stops on its own (its listener failed), so a long
//! response can end early — a stream with
//! `futures::StreamExt::take_until(stream, stop)`, a long poll with
//! [`Stop::until`]. Serve a function of the stop that builds the service
//! (`|stop: Stop| app.with_state(stop)`, see [`IntoHttpService`]): it is
//! called once, and allocates nothing per request (a `Stop` in an axum
//! state is cloned with it, as any `Arc` there is). Or turn on
//! [`Server::stop_in_requests`], and handlers find the stop in each
//! request's extensions (axum's `Extension<Stop>`), at three allocations
//! per request. A handler tested outside a server (a unit test) has its
//! app built from [`Stop::never`] instead.
//!
//! Running out of file descriptors does not stop the server: it pauses
//! accepting (5 ms, doubling to a second while the shortage lasts), and,
//! with the `tracing` feature, says so in a warning. A flood of new
//! connections does not starve the open ones: while it serves, the server
//! accepts at most 64 in a row before the runtime runs its other tasks, on
//! every runtime. (At the stop it takes the backlog at once, up to the
//! listen backlog's size.)
//!
//! The runtime supplies only an [`Accept`] listener, an [`Executor`] and a
//! hyper timer; the `allstop-tokio` and `allstop-smol` adapters supply all
//! three and a one-line member, so the behaviour is the same on both by
//! construction.

mod accept;
mod connection;
mod service;

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper::rt::Timer;
use hyper_util::server::conn::auto;

use self::accept::{AcceptError, Backoff, Turn};
use self::connection::{serve_connection, Clock, ConnState, ConnectionService, TrackedIo};
use self::service::HyperExecutor;
use crate::flag::Flag;
use crate::stop::{Stop, StopTrigger};
use crate::tasks::TaskTracker;

pub use self::accept::{Accept, DEFAULT_BACKLOG};
pub use self::service::{Executor, FromStop, HttpService, Hyper, IntoHttpService, Tower};

/// Binds a listener of type `L` to `addr` with the default backlog
/// ([`DEFAULT_BACKLOG`]); the error names the address and the OS error.
pub async fn bind<L: Accept>(addr: SocketAddr) -> Result<L, ServeError> {
    bind_with_backlog(addr, DEFAULT_BACKLOG).await
}

/// As [`bind`], with a listen backlog of `backlog` connections.
pub async fn bind_with_backlog<L: Accept>(addr: SocketAddr, backlog: u32) -> Result<L, ServeError> {
    L::bind(addr, backlog)
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

/// What the [`Server`] needs from an async runtime: an executor for its
/// connections, a timer for its timeouts, and the TCP listener it binds.
///
/// The adapters' runtimes implement it (`allstop::tokio::Tokio`,
/// `allstop::smol::Smol`), so a server is `Server::on(Tokio::new())`, as
/// a group is `Group::on(Tokio::new())`.
pub trait HttpRuntime: Send + Sync + 'static {
    /// Runs the connections and hyper's HTTP/2 streams.
    type Executor: Executor;
    /// hyper's timer, for the header-read timeout and HTTP/2 keep-alive.
    type Timer: Timer + Clone + Send + Sync + 'static;
    /// The listener [`Server::serve_on`] binds.
    type Listener: Accept;

    /// The executor connections run on.
    fn executor(&self) -> Self::Executor;
    /// The timer for the server's timeouts.
    fn timer(&self) -> Self::Timer;
}

/// A graceful HTTP/1 and HTTP/2 server over hyper, on the runtime `R`.
///
/// ```
/// use allstop::http::Server;
/// use allstop::tokio::Tokio;
/// use std::time::Duration;
///
/// let server = Server::on(Tokio::new())
///     .header_read_timeout(Duration::from_secs(5))
///     .idle_grace(Duration::from_millis(100))
///     .drain_timeout(Duration::from_secs(20))
///     .backlog(4096);
/// ```
pub struct Server<R: HttpRuntime> {
    executor: R::Executor,
    timer: R::Timer,
    header_read_timeout: Option<Duration>,
    idle_grace: Duration,
    drain_timeout: Option<Duration>,
    backlog: u32,
    stop_in_requests: bool,
}

impl<R: HttpRuntime> Clone for Server<R> {
    fn clone(&self) -> Self {
        Server {
            executor: self.executor.clone(),
            timer: self.timer.clone(),
            ..*self
        }
    }
}

impl<R: HttpRuntime> fmt::Debug for Server<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("header_read_timeout", &self.header_read_timeout)
            .field("idle_grace", &self.idle_grace)
            .field("drain_timeout", &self.drain_timeout)
            .field("backlog", &self.backlog)
            .field("stop_in_requests", &self.stop_in_requests)
            .finish_non_exhaustive()
    }
}

impl<R: HttpRuntime> Server<R> {
    /// A server with the default settings, its connections and timeouts on
    /// `runtime`.
    ///
    /// ```
    /// let server = allstop::http::Server::on(allstop::smol::Smol::new());
    /// ```
    pub fn on(runtime: R) -> Self {
        Server {
            executor: runtime.executor(),
            timer: runtime.timer(),
            header_read_timeout: Some(Duration::from_secs(10)),
            idle_grace: Duration::from_millis(250),
            drain_timeout: None,
            backlog: DEFAULT_BACKLOG,
            stop_in_requests: false,
        }
    }

    /// How long a client may take from connecting to sending its first
    /// complete request head and, on HTTP/1, from the end of each response
    /// to the next complete head, before the connection is closed: so an
    /// HTTP/1 keep-alive connection idle that long is closed, as hyper's
    /// own header-read timeout does. Default 10 s (Go's `ReadHeaderTimeout`
    /// and `IdleTimeout` together). It costs one timer per connection, set
    /// again only when it rings, not one per request.
    ///
    /// A response still being written counts as activity, however slowly
    /// its client reads. A limit: a handler that answers before it has
    /// read the request's body, and reads it afterwards, has the timeout
    /// from its answer for the rest of the upload.
    ///
    /// `None` turns it off, which lets a client that sends nothing hold a
    /// connection (and a file descriptor) until the stop.
    pub fn header_read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.header_read_timeout = timeout.into();
        self
    }

    /// After the stop, how long a connection with no request in flight
    /// stays open for a request its client may already have sent. Default
    /// 250 ms. A connection idle that long already closes at once.
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

    /// The listen backlog [`serve_on`](Server::serve_on) binds with.
    /// Default [`DEFAULT_BACKLOG`] (1024).
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Whether handlers find the server's [`Stop`] in their requests'
    /// extensions (default `false`), as axum's `Extension<Stop>` extractor
    /// reads it. It costs three allocations per request (the request's
    /// extension map, its table, the value), which is how `http` stores
    /// any extension: building the service from the stop (see
    /// [`IntoHttpService`]) gives handlers the same stop without them.
    ///
    /// It was on by default before the server could build the service
    /// from its stop. Upgrading: a handler that reads `Extension<Stop>`
    /// from a server left at the default answers 500 ("Missing request
    /// extension"), and one that takes `Option<Extension<Stop>>` finds none
    /// and never ends early; turn this on, or build the app from the stop.
    ///
    /// ```
    /// use allstop::http::Server;
    /// use allstop::tokio::Tokio;
    /// use allstop::Stop;
    /// use axum::extract::Extension;
    ///
    /// let app = axum::Router::new().route(
    ///     "/wait",
    ///     axum::routing::get(|Extension(stop): Extension<Stop>| async move {
    ///         stop.await;
    ///         "stopping"
    ///     }),
    /// );
    /// let server = Server::on(Tokio::new()).stop_in_requests(true);
    /// let mut group = allstop::Group::on(Tokio::new());
    /// group.add("app", server.serve_on("127.0.0.1:0".parse().unwrap(), app));
    /// ```
    pub fn stop_in_requests(mut self, on: bool) -> Self {
        self.stop_in_requests = on;
        self
    }

    fn builder(&self) -> auto::Builder<HyperExecutor<R::Executor>> {
        let mut builder = auto::Builder::new(HyperExecutor(self.executor.clone()));
        builder
            .http1()
            .timer(self.timer.clone())
            // The connection keeps the head deadline itself, with one timer
            // (see `connection`): hyper's arms one per request head.
            .header_read_timeout(None);
        builder.http2().timer(self.timer.clone());
        builder
    }

    /// A member that binds the runtime's listener to `addr` and serves
    /// `service` on it. A bind failure is the member's error, naming the
    /// address.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use allstop::http::Server;
    /// use allstop::tokio::Tokio;
    ///
    /// let hello = hyper::service::service_fn(|_req| async {
    ///     Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from("hi"))))
    /// });
    /// let mut group = allstop::Group::on(Tokio::new());
    /// group.add("app", Server::on(Tokio::new()).serve_on("127.0.0.1:0".parse().unwrap(), hello));
    /// group.stop_handle().stop("done");
    /// assert!(group.run().await.is_success());
    /// # });
    /// ```
    pub fn serve_on<M>(
        self,
        addr: SocketAddr,
        service: impl IntoHttpService<M>,
    ) -> impl FnOnce(Stop) -> Serving + Send + 'static {
        move |stop: Stop| -> Serving {
            Box::pin(async move {
                let listener = bind_with_backlog::<R::Listener>(addr, self.backlog).await?;
                self.serve(listener, service, stop).await
            })
        }
    }

    /// Serves `service` on `listener` until `stop`, then drains (see the
    /// [module docs](self)).
    ///
    /// Errors on one connection (a reset, a malformed request, a timeout)
    /// end that connection only; so does a handler that panics (over
    /// HTTP/2, its stream only), as a panic in any task does: the server
    /// and its drain go on.
    ///
    /// # Cancellation safety
    ///
    /// Dropping the future stops accepting and drops every open connection
    /// soon after, on its executor; upgraded ones fail their next read or
    /// write.
    pub async fn serve<M>(
        &self,
        mut listener: impl Accept,
        service: impl IntoHttpService<M>,
        stop: Stop,
    ) -> Result<(), ServeError> {
        let addr = listener.local_addr().ok();
        // Handlers see the group's stop, and the server's own when it ends
        // by itself (a fatal accept error).
        let (handler_stop, server_stop) = stop.child();
        let mut service = service.into_http_service(&handler_stop);
        let timer = self.timer.clone();
        let drain = Drain {
            closing: Flag::new(),
            forced: Flag::new(),
            server_stop,
            clock: Arc::new(move || timer.now()),
        };
        let connections = TaskTracker::new();
        let builder = Arc::new(self.builder());
        // The accept loop holds the service by `&mut` and is itself held by
        // `&mut`, so that the server's future is `Send` for any `Send`
        // service: a `&S` held across an `await` would ask `S: Sync`, which
        // hyper and tower do not (tower's `BoxCloneService` is not). The
        // service itself lives until the drain is over.
        let failed = {
            let (service, handlers, drain, connections, builder) =
                (&mut service, &handler_stop, &drain, &connections, &builder);
            let mut spawn =
                move |io| self.spawn_connection(io, service, handlers, drain, connections, builder);
            let failed = self
                .accept_until(&stop, &mut listener, addr, &mut spawn)
                .await;
            self.stop_accepting(listener, drain, &mut spawn);
            failed
        };

        if !self.wait_drained(&connections).await {
            let open = connections.len();
            self.force(&drain, &connections).await;
            return Err(ServeError::DrainTimeout { addr, open });
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Serves one accepted connection on the executor, tracked in
    /// `connections`, its handlers given `handler_stop`.
    fn spawn_connection<I, S>(
        &self,
        io: I,
        service: &S,
        handler_stop: &Stop,
        drain: &Drain,
        connections: &TaskTracker,
        builder: &Arc<auto::Builder<HyperExecutor<R::Executor>>>,
    ) where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        S: HttpService,
    {
        let state = ConnState::new(drain.closing.clone(), drain.clock.clone());
        let io = TrackedIo::new(io, connections.token(), state.clone(), &drain.forced);
        let service = ConnectionService {
            inner: service.clone(),
            conn: state,
            stop: self.stop_in_requests.then(|| handler_stop.counted_apart()),
        };
        let connection = serve_connection(
            io,
            service,
            builder.clone(),
            self.timer.clone(),
            self.header_read_timeout,
            self.idle_grace,
            drain.forced.clone(),
        );
        self.executor.execute(connection);
    }

    /// Once accepting has ended: tells the handlers, serves the backlog,
    /// frees the port, and only then starts closing connections.
    fn stop_accepting<L: Accept>(
        &self,
        mut listener: L,
        drain: &Drain,
        spawn: &mut impl FnMut(L::Io),
    ) {
        drain.server_stop.stop();
        self.take_backlog(&mut listener, spawn);
        // Free the port: new connections are refused from now on.
        drop(listener);
        // Only now do responses close their connections: a client told to
        // close reconnects to a closed port (refused: nothing sent, nothing
        // lost), never into a backlog about to be reset.
        drain.closing.set();
    }

    /// Connections the kernel has already completed may carry a request
    /// their client has sent: takes them to be answered, rather than let
    /// closing the listener reset them. At most a backlog's worth: clients
    /// that keep connecting must not keep the listener open.
    fn take_backlog<L: Accept>(&self, listener: &mut L, spawn: &mut impl FnMut(L::Io)) {
        for _ in 0..self.backlog {
            match listener.try_accept() {
                None => break,
                Some(Ok(io)) => spawn(io),
                Some(Err(error)) if AcceptError::of(&error) == AcceptError::Connection => {}
                // Out of file descriptors (or worse): what is left is reset.
                Some(Err(_)) => break,
            }
        }
    }

    /// Cuts the drain short. Connections go at once; an upgraded one fails
    /// its next read or write, which its handler may never make: waits a
    /// grace for them, no longer.
    async fn force(&self, drain: &Drain, connections: &TaskTracker) {
        drain.forced.set();
        let gone = connections.wait();
        let grace = self.timer.sleep(self.idle_grace);
        futures::future::select(std::pin::pin!(gone), std::pin::pin!(grace)).await;
    }

    /// Accepts and spawns connections until `stop`, or until the listener
    /// fails for good (that error is returned).
    async fn accept_until<L: Accept>(
        &self,
        stop: &Stop,
        listener: &mut L,
        addr: Option<SocketAddr>,
        spawn: &mut impl FnMut(L::Io),
    ) -> Option<ServeError> {
        let (mut backoff, mut turn) = (Backoff::default(), Turn::default());
        let mut waiting_for_stop = stop.clone();
        loop {
            let next = poll_fn(|cx| {
                if Pin::new(&mut waiting_for_stop).poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                turn.poll_accept(listener, cx).map(Some)
            })
            .await;
            let error = match next {
                None => return None,
                Some(Ok(io)) => {
                    backoff.reset();
                    spawn(io);
                    continue;
                }
                Some(Err(error)) => error,
            };
            match AcceptError::of(&error) {
                AcceptError::Connection => {}
                AcceptError::Resources => {
                    let pause = backoff.next();
                    #[cfg(feature = "tracing")]
                    tracing::warn!(
                        target: "allstop",
                        "accept on {}: {error}; retrying in {pause:?}",
                        Addr(&addr)
                    );
                    // The stop ends the pause: the drain must not wait for it.
                    stop.until(self.timer.sleep(pause)).await;
                }
                AcceptError::Fatal => {
                    return Some(ServeError::Accept {
                        addr,
                        source: error,
                    })
                }
            }
        }
    }

    /// Waits for every connection to close, or for the drain deadline:
    /// whether they all closed.
    async fn wait_drained(&self, connections: &TaskTracker) -> bool {
        let Some(timeout) = self.drain_timeout else {
            connections.wait().await;
            return true;
        };
        let drained = connections.wait();
        let deadline = self.timer.sleep(timeout);
        let mut drained = std::pin::pin!(drained);
        let mut deadline = std::pin::pin!(deadline);
        poll_fn(|cx| {
            if drained.as_mut().poll(cx).is_ready() {
                Poll::Ready(true)
            } else {
                deadline.as_mut().poll(cx).map(|()| false)
            }
        })
        .await
    }
}

/// The server's side of the drain. Dropping it (the server's future was
/// dropped) stops the handlers and drops every connection.
struct Drain {
    /// Set once the server stops accepting: responses close their
    /// connections from then on, idle connections close.
    closing: Arc<Flag>,
    /// Set when the drain is cut short: every connection is dropped.
    forced: Arc<Flag>,
    /// The handlers' stop, as far as the server is concerned.
    server_stop: StopTrigger,
    /// The timer's clock, for the connections' idle times.
    clock: Clock,
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.server_stop.stop();
        self.closing.set();
        self.forced.set();
    }
}
