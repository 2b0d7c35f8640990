//! Graceful hyper servers on tokio sockets: the listener glue and a
//! ready-made member. The serving and draining logic is
//! [`allstop::http`](allstop_core::http), shared with the smol adapter.

use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use allstop_core::http::{HttpService, ServeError};
use allstop_core::Stop;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

/// The server, on tokio's executor and timer. Configure it, then serve with
/// [`serve_on_with`] or [`Server::serve`](allstop_core::http::Server::serve).
pub type Server = allstop_core::http::Server<TokioExecutor, TokioTimer>;

/// The future of a [`serve_on`] member.
pub type Serving = allstop_core::http::Serving;

/// A server with the default settings (see [`allstop::http`](allstop_core::http)).
///
/// ```
/// use std::time::Duration;
///
/// let server = allstop::tokio::http::server().idle_grace(Duration::from_millis(100));
/// ```
pub fn server() -> Server {
    Server::new(TokioExecutor::new(), TokioTimer::new())
}

/// A bound TCP listener, for [`Server::serve`](allstop_core::http::Server::serve).
#[derive(Debug)]
pub struct TcpListener {
    inner: tokio::net::TcpListener,
}

impl TcpListener {
    /// Binds `addr`. The error names the address and the OS error.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let listener = allstop::tokio::http::TcpListener::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    /// let taken = listener.local_addr().unwrap();
    /// let error = allstop::tokio::http::TcpListener::bind(taken).await.unwrap_err();
    /// assert!(error.to_string().starts_with(&format!("bind {taken}: ")));
    /// # });
    /// ```
    pub async fn bind(addr: SocketAddr) -> Result<Self, ServeError> {
        allstop_core::http::bind(addr).await
    }

    /// The bound address (with the port the OS picked for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl From<tokio::net::TcpListener> for TcpListener {
    fn from(inner: tokio::net::TcpListener) -> Self {
        TcpListener { inner }
    }
}

impl allstop_core::http::Accept for TcpListener {
    type Io = TokioIo<tokio::net::TcpStream>;

    async fn bind(addr: SocketAddr) -> io::Result<Self> {
        // tokio sets SO_REUSEADDR on Unix itself.
        let inner = tokio::net::TcpListener::bind(addr).await?;
        Ok(TcpListener { inner })
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
        self.inner.poll_accept(cx).map_ok(|(stream, _peer)| {
            // Small responses go out at once rather than after Nagle's delay.
            let _ = stream.set_nodelay(true);
            TokioIo::new(stream)
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Serves `service` on `listener` with the default [`server`] until `stop`,
/// then drains.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use allstop::tokio::http::{serve, TcpListener};
/// # let service = hyper::service::service_fn(|_req| async {
/// #     Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from("hi"))))
/// # });
/// let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
/// let mut group = allstop::Group::new();
/// group.add("app", move |stop| serve(listener, service, stop));
/// group.stop_handle().stop("done");
/// assert!(group.run().await.is_success());
/// # });
/// ```
pub async fn serve(
    listener: TcpListener,
    service: impl HttpService,
    stop: Stop,
) -> Result<(), ServeError> {
    server().serve(listener, service, stop).await
}

/// A member that binds `addr` and serves `service` on it with the default
/// [`server`]. A bind failure is the member's error, naming the address.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// # let service = hyper::service::service_fn(|_req| async {
/// #     Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from("hi"))))
/// # });
/// let mut group = allstop::Group::new();
/// group.add("app", allstop::tokio::http::serve_on("127.0.0.1:0".parse().unwrap(), service));
/// group.stop_handle().stop("done");
/// assert!(group.run_spawned(allstop::tokio::Tokio::new()).await.is_success());
/// # });
/// ```
pub fn serve_on(
    addr: SocketAddr,
    service: impl HttpService,
) -> impl FnOnce(Stop) -> Serving + Send + 'static {
    serve_on_with(server(), addr, service)
}

/// As [`serve_on`], with a configured `server`.
pub fn serve_on_with(
    server: Server,
    addr: SocketAddr,
    service: impl HttpService,
) -> impl FnOnce(Stop) -> Serving + Send + 'static {
    server.serve_on::<TcpListener>(addr, service)
}
