//! Graceful hyper servers on tokio sockets: the listener glue and a
//! ready-made member. The serving and draining logic is
//! [`allstop::http`](allstop_core::http), shared with the smol adapter.

use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use allstop_core::http::{IntoHttpService, ServeError};
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
    /// Binds `addr` (with `SO_REUSEADDR` on Unix and a backlog of
    /// [`DEFAULT_BACKLOG`](allstop_core::http::DEFAULT_BACKLOG)). The error
    /// names the address and the OS error.
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

    async fn bind(addr: SocketAddr, backlog: u32) -> io::Result<Self> {
        use socket2::{Domain, Protocol, Socket, Type};

        // As tokio's own `bind` does, with our backlog rather than mio's.
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        #[cfg(unix)]
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(backlog.min(i32::MAX as u32) as i32)?;
        let inner = tokio::net::TcpListener::from_std(socket.into())?;
        Ok(TcpListener { inner })
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
        self.inner
            .poll_accept(cx)
            .map_ok(|(stream, _peer)| io(stream))
    }

    fn try_accept(&mut self) -> Option<io::Result<Self::Io>> {
        // tokio's `poll_accept` trusts the readiness its driver last saw
        // (and the task's budget), which lags behind the kernel when the
        // runtime has been busy: ask the kernel.
        let accepted = socket2::SockRef::from(&self.inner).accept();
        match accepted {
            Ok((socket, _peer)) => Some(
                socket
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::TcpStream::from_std(socket.into()))
                    .map(io),
            ),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => None,
            Err(error) => Some(Err(error)),
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

fn io(stream: tokio::net::TcpStream) -> TokioIo<tokio::net::TcpStream> {
    // Small responses go out at once rather than after Nagle's delay.
    let _ = stream.set_nodelay(true);
    TokioIo::new(stream)
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
pub async fn serve<M>(
    listener: TcpListener,
    service: impl IntoHttpService<M>,
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
/// let mut group = allstop::Group::on(allstop::tokio::Tokio::new());
/// group.add("app", allstop::tokio::http::serve_on("127.0.0.1:0".parse().unwrap(), service));
/// group.stop_handle().stop("done");
/// assert!(group.run().await.is_success());
/// # });
/// ```
pub fn serve_on<M>(
    addr: SocketAddr,
    service: impl IntoHttpService<M>,
) -> impl FnOnce(Stop) -> Serving + Send + 'static {
    serve_on_with(server(), addr, service)
}

/// As [`serve_on`], with a configured `server`.
pub fn serve_on_with<M>(
    server: Server,
    addr: SocketAddr,
    service: impl IntoHttpService<M>,
) -> impl FnOnce(Stop) -> Serving + Send + 'static {
    server.serve_on::<TcpListener, _>(addr, service)
}
