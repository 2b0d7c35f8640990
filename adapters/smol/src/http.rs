//! The listener glue for HTTP on smol: [`Smol`] is an
//! [`HttpRuntime`], so a server is
//! `allstop::http::Server::on(Smol::new())`. The serving and draining logic
//! is [`allstop::http`](allstop_core::http), shared with the tokio adapter.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::io::Read as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use allstop_core::http::{Executor, HttpRuntime, ServeError};
use async_io::Async;
use futures::AsyncWrite;
use smol_hyper::rt::SmolTimer;

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
    type Io = TcpStream;

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
                Some(Async::new(stream).map(TcpStream::from))
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => None,
            Err(error) => Some(Err(error)),
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }
}

/// An accepted TCP connection, as hyper's IO: what a [`TcpListener`]
/// accepts for the server.
///
/// It reads only as many bytes into hyper's buffer as arrived. A generic
/// `futures` IO adapter (smol-hyper's `FuturesIo`) must zero the buffer's
/// whole free part before every read, as `AsyncRead` takes initialised
/// memory: 8 KiB or more written per read, and made resident for every
/// idle connection. This one reads into a scratch buffer of its thread,
/// zeroed once, and copies what arrived.
///
/// ```
/// use allstop::http::Accept;
/// use allstop::smol::http::TcpListener;
///
/// smol::block_on(async {
///     let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
///     let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
///     let accepted = std::future::poll_fn(|cx| listener.poll_accept(cx)).await.unwrap();
///     assert_eq!(accepted.peer_addr().unwrap(), client.local_addr().unwrap());
/// });
/// ```
#[derive(Debug)]
pub struct TcpStream {
    inner: Async<std::net::TcpStream>,
}

/// The most one read takes from the kernel; hyper asks again for more.
const SCRATCH_LEN: usize = 64 * 1024;

thread_local! {
    /// Where reads land before they are copied into hyper's buffer: zeroed
    /// once per thread, rather than hyper's buffer once per read.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_LEN].into_boxed_slice());
}

impl TcpStream {
    /// The address of the connection's client.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().peer_addr()
    }
}

impl From<Async<std::net::TcpStream>> for TcpStream {
    fn from(inner: Async<std::net::TcpStream>) -> Self {
        TcpStream { inner }
    }
}

impl hyper::rt::Read for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        SCRATCH.with_borrow_mut(|scratch| {
            // No more than hyper's buffer takes.
            let scratch = &mut scratch[..buf.remaining().min(SCRATCH_LEN)];
            loop {
                // The socket is non-blocking: this asks the kernel directly.
                match self.inner.get_ref().read(scratch) {
                    Ok(read) => {
                        buf.put_slice(&scratch[..read]);
                        return Poll::Ready(Ok(()));
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        ready!(self.inner.poll_readable(cx))?;
                    }
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Poll::Ready(Err(error)),
                }
            }
        })
    }
}

impl hyper::rt::Write for TcpStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
