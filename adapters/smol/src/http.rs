//! The listener glue for HTTP on smol: [`Smol`] is an
//! [`HttpRuntime`], so a server is
//! `allstop::http::Server::on(Smol::new())`. The serving and draining logic
//! is [`allstop::http`](allstop_core::http), shared with the tokio adapter.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::task::{ready, Context, Poll};

use allstop_core::http::{Executor, HttpRuntime, ServeError};
use async_io::Async;
use smol_hyper::rt::{FuturesIo, SmolTimer};

use crate::Smol;

/// Runs hyper's HTTP/2 streams and allstop's connections as smol tasks.
#[derive(Debug, Clone, Default)]
pub struct SmolExecutor {
    runtime: Smol,
}

impl SmolExecutor {
    /// Spawns on the executor of `runtime`.
    pub fn new(runtime: Smol) -> Self {
        SmolExecutor { runtime }
    }
}

impl Executor for SmolExecutor {
    fn execute<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.runtime.spawn_task(task).detach();
    }
}

/// Connections run as tasks of this runtime's executor, timeouts on
/// async-io's timer, and the server binds a [`TcpListener`].
impl HttpRuntime for Smol {
    type Executor = SmolExecutor;
    type Timer = SmolTimer;
    type Listener = TcpListener;

    fn executor(&self) -> SmolExecutor {
        SmolExecutor::new(self.clone())
    }

    fn timer(&self) -> SmolTimer {
        SmolTimer::new()
    }
}

/// A bound TCP listener, for [`Server::serve`](allstop_core::http::Server::serve).
///
/// [`Server::serve_on`](allstop_core::http::Server::serve_on) binds one itself.
#[derive(Debug)]
pub struct TcpListener {
    inner: Async<std::net::TcpListener>,
}

impl TcpListener {
    /// Binds `addr` with `SO_REUSEADDR` (as tokio does), so the port is free
    /// again as soon as a server lets go of it, and a backlog of
    /// [`DEFAULT_BACKLOG`](allstop_core::http::DEFAULT_BACKLOG). The error names the address
    /// and the OS error.
    ///
    /// ```
    /// smol::block_on(async {
    ///     let listener = allstop::smol::http::TcpListener::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    ///     let taken = listener.local_addr().unwrap();
    ///     let error = allstop::smol::http::TcpListener::bind(taken).await.unwrap_err();
    ///     assert!(error.to_string().starts_with(&format!("bind {taken}: ")));
    /// });
    /// ```
    pub async fn bind(addr: SocketAddr) -> Result<Self, ServeError> {
        allstop_core::http::bind(addr).await
    }

    fn bind_now(addr: SocketAddr, backlog: u32) -> io::Result<Self> {
        use socket2::{Domain, Protocol, Socket, Type};

        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        #[cfg(unix)]
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(backlog.min(i32::MAX as u32) as i32)?;
        Ok(TcpListener {
            inner: Async::new(std::net::TcpListener::from(socket))?,
        })
    }

    /// The bound address (with the port the OS picked for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }
}

impl From<Async<std::net::TcpListener>> for TcpListener {
    fn from(inner: Async<std::net::TcpListener>) -> Self {
        TcpListener { inner }
    }
}

impl allstop_core::http::Accept for TcpListener {
    type Io = FuturesIo<Async<std::net::TcpStream>>;

    fn bind(addr: SocketAddr, backlog: u32) -> impl Future<Output = io::Result<Self>> + Send {
        // Binding does not block: nothing to wait for.
        std::future::ready(Self::bind_now(addr, backlog))
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
        loop {
            if let Some(accepted) = self.try_accept() {
                return Poll::Ready(accepted);
            }
            ready!(self.inner.poll_readable(cx))?;
        }
    }

    fn try_accept(&mut self) -> Option<io::Result<Self::Io>> {
        // The listener is non-blocking: this asks the kernel directly.
        match self.inner.get_ref().accept() {
            Ok((stream, _peer)) => {
                // Small responses go out at once rather than after Nagle's
                // delay.
                let _ = stream.set_nodelay(true);
                Some(Async::new(stream).map(FuturesIo::new))
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => None,
            Err(error) => Some(Err(error)),
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }
}
