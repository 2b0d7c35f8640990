//! The listener glue for HTTP on tokio: [`Tokio`] is an
//! [`HttpRuntime`], so a server is
//! `allstop::http::Server::on(Tokio::new())`. The serving and draining logic
//! is [`allstop::http`](allstop_core::http), shared with the smol adapter.

use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use allstop_core::http::{HttpRuntime, ServeError};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::Tokio;

/// Connections run as tasks of this runtime (the given one, or the
/// current one), timeouts on tokio's timer, and the server binds a
/// [`TcpListener`].
impl HttpRuntime for Tokio {
    type Executor = Tokio;
    type Timer = TokioTimer;
    type Listener = TcpListener;

    fn executor(&self) -> Tokio {
        self.clone()
    }

    fn timer(&self) -> TokioTimer {
        TokioTimer::new()
    }
}

/// A bound TCP listener, for [`Server::serve`](allstop_core::http::Server::serve).
///
/// [`Server::serve_on`](allstop_core::http::Server::serve_on) binds one itself.
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
