//! The socket glue for HTTP on smol: [`Smol`] is an [`HttpRuntime`], so a
//! server is `allstop::http::Server::on(Smol::new())`, on a [`TcpListener`]
//! whose connections are [`TcpStream`]s. The serving and draining logic
//! is [`allstop::http`](allstop_core::http), shared with the tokio adapter.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::io::Read as _;
use std::mem;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use allstop_core::http::{Executor, HttpRuntime, ServeError};
use async_io::Async;
use futures::AsyncWrite;

use crate::Smol;

pub use crate::timer::{ThreadSleep, ThreadTimer};

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

/// Connections run as tasks of this runtime's executor, timeouts on a
/// [`ThreadTimer`] (not async-io's, which costs every connection's deadline
/// at each of the reactor's ticks), and the server binds a [`TcpListener`].
impl HttpRuntime for Smol {
    type Executor = SmolExecutor;
    type Timer = ThreadTimer;
    type Listener = TcpListener;

    fn executor(&self) -> SmolExecutor {
        SmolExecutor::new(self.clone())
    }

    fn timer(&self) -> ThreadTimer {
        ThreadTimer::new()
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
    socket: Socket,
    /// The task whose read, and whose write, last waited on async-io's
    /// reactor, until that task's read (write) completes: the waker the
    /// reactor may hold for each (see
    /// [`poll_shutdown`](hyper::rt::Write::poll_shutdown)). With two tasks
    /// on one stream, it may outlive the reactor's; a shutdown then keeps
    /// the socket in the reactor, as before.
    reader: Option<Waker>,
    writer: Option<Waker>,
}

#[derive(Debug)]
enum Socket {
    /// In async-io's reactor.
    Registered(Async<std::net::TcpStream>),
    /// Taken out of the reactor to be half-closed; put back by the next
    /// read or write.
    Unregistered(std::net::TcpStream),
    /// Closed, when the reactor failed to take it out or put it back.
    Closed,
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
        match &self.socket {
            Socket::Registered(socket) => socket.get_ref().peer_addr(),
            Socket::Unregistered(socket) => socket.peer_addr(),
            Socket::Closed => Err(closed()),
        }
    }

    /// The socket, in the reactor (put back if it was taken out).
    fn registered(&mut self) -> io::Result<&mut Async<std::net::TcpStream>> {
        if let Socket::Unregistered(_) = self.socket {
            let Socket::Unregistered(socket) = mem::replace(&mut self.socket, Socket::Closed)
            else {
                unreachable!("matched above")
            };
            self.socket = Socket::Registered(Async::new(socket)?);
        }
        match &mut self.socket {
            Socket::Registered(socket) => Ok(socket),
            Socket::Unregistered(_) | Socket::Closed => Err(closed()),
        }
    }

    /// Whether every wait the reactor may hold for this socket is the
    /// task of `cx`'s: then taking the socket out of the reactor drops no
    /// other task's wake-up.
    fn waited_on_by_this_task_only(&self, cx: &Context<'_>) -> bool {
        [&self.reader, &self.writer]
            .into_iter()
            .flatten()
            .all(|waiter| waiter.will_wake(cx.waker()))
    }
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the socket was closed: the reactor failed to take it out or put it back",
    )
}

/// Notes the task whose read or write now waits on the reactor, until
/// that task's read or write next completes.
fn note_waiter(waiter: &mut Option<Waker>, cx: &Context<'_>) {
    if !waiter.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *waiter = Some(cx.waker().clone());
    }
}

/// The wait of `cx`'s task is over; another task's may not be (two tasks
/// reading one stream), and stays noted.
fn forget_waiter(waiter: &mut Option<Waker>, cx: &Context<'_>) {
    if waiter.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *waiter = None;
    }
}

/// Notes whether a write waits on the reactor (see [`note_waiter`]).
fn note_write(writer: &mut Option<Waker>, written: &Poll<io::Result<usize>>, cx: &Context<'_>) {
    match written {
        Poll::Pending => note_waiter(writer, cx),
        Poll::Ready(_) => forget_waiter(writer, cx),
    }
}

impl From<Async<std::net::TcpStream>> for TcpStream {
    fn from(socket: Async<std::net::TcpStream>) -> Self {
        TcpStream {
            socket: Socket::Registered(socket),
            reader: None,
            writer: None,
        }
    }
}

impl hyper::rt::Read for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let socket = this.registered()?;
            match read_arrived(socket.get_ref(), &mut buf) {
                // `poll_readable` may wake the task's previous waker, which
                // may read another connection: no buffer is borrowed here.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if socket.poll_readable(cx)?.is_pending() {
                        note_waiter(&mut this.reader, cx);
                        return Poll::Pending;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                read => {
                    forget_waiter(&mut this.reader, cx);
                    return Poll::Ready(read);
                }
            }
        }
    }
}

/// Reads what has arrived on `stream` (non-blocking: this asks the kernel
/// directly) into `buf`, no more than it has room for, through the
/// thread's scratch buffer, borrowed for the read and the copy only; or,
/// in a thread that has already dropped it (a read from a thread-local's
/// destructor), through a small one on the stack.
fn read_arrived(
    mut stream: &std::net::TcpStream,
    buf: &mut hyper::rt::ReadBufCursor<'_>,
) -> io::Result<()> {
    let mut read_through = |scratch: &mut [u8]| {
        let room = buf.remaining().min(scratch.len());
        let scratch = &mut scratch[..room];
        let read = stream.read(scratch)?;
        buf.put_slice(&scratch[..read]);
        Ok(())
    };
    match SCRATCH.try_with(|scratch| read_through(&mut scratch.borrow_mut())) {
        Ok(read) => read,
        Err(_dropped) => read_through(&mut [0; 1024]),
    }
}

impl hyper::rt::Write for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(this.registered()?).poll_write(cx, buf);
        note_write(&mut this.writer, &written, cx);
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(this.registered()?).poll_write_vectored(cx, bufs);
        note_write(&mut this.writer, &written, cx);
        written
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Writes go straight to the kernel: nothing is buffered here.
        match self.socket {
            Socket::Registered(_) | Socket::Unregistered(_) => Poll::Ready(Ok(())),
            Socket::Closed => Poll::Ready(Err(closed())),
        }
    }

    /// Ends the writing half: the client reads the end of the stream while
    /// the connection stays open for reading, as on tokio. (async-io's
    /// `poll_close` only flushes.)
    ///
    /// The half-close wakes whatever waits on the socket, async-io's
    /// poller thread among them whenever a read is registered with it (an
    /// idle keep-alive connection's): with thousands of connections closed
    /// at a stop, a wake-up of that thread for each. So when no other task
    /// waits on the socket, it is taken out of the reactor first, as its
    /// drop would take it right after (a connection that ends), and put
    /// back by the next read or write (a tunnel that goes on reading);
    /// this task is woken to poll again what it had waiting.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let alone = this.waited_on_by_this_task_only(cx);
        let socket = match mem::replace(&mut this.socket, Socket::Closed) {
            Socket::Registered(socket) if alone => {
                // On an error the socket is closed, and stays `Closed`.
                let socket = socket.into_inner()?;
                let read_waited = this.reader.take().is_some();
                let write_waited = this.writer.take().is_some();
                if read_waited || write_waited {
                    cx.waker().wake_by_ref();
                }
                socket
            }
            Socket::Registered(socket) => {
                let shut = socket.get_ref().shutdown(std::net::Shutdown::Write);
                this.socket = Socket::Registered(socket);
                return Poll::Ready(shut);
            }
            Socket::Unregistered(socket) => socket,
            Socket::Closed => return Poll::Ready(Err(closed())),
        };
        let shut = socket.shutdown(std::net::Shutdown::Write);
        this.socket = Socket::Unregistered(socket);
        Poll::Ready(shut)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::mem::MaybeUninit;
    use std::sync::{mpsc, Arc, Mutex};
    use std::task::{Wake, Waker};

    use super::*;

    /// A connected pair: the client's end, and the server's as a
    /// [`TcpStream`].
    fn connected() -> (std::net::TcpStream, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, TcpStream::from(Async::new(server).unwrap()))
    }

    /// One `poll_read` into a fresh 64-byte buffer: what it read.
    fn poll_read_once(stream: &mut TcpStream, waker: &Waker) -> Poll<io::Result<Vec<u8>>> {
        let mut memory = [MaybeUninit::uninit(); 64];
        let mut buf = hyper::rt::ReadBuf::uninit(&mut memory);
        let mut cx = Context::from_waker(waker);
        let polled = hyper::rt::Read::poll_read(Pin::new(stream), &mut cx, buf.unfilled());
        polled.map_ok(|()| buf.filled().to_vec())
    }

    /// Polls until the data sent has arrived.
    fn read_blocking(stream: &mut TcpStream) -> Vec<u8> {
        let waker = futures::task::noop_waker();
        loop {
            if let Poll::Ready(read) = poll_read_once(stream, &waker) {
                return read.unwrap();
            }
            std::thread::yield_now();
        }
    }

    /// A waker that reads another connection when it is woken.
    struct ReadsAnother {
        other: Mutex<TcpStream>,
        read: mpsc::Sender<io::Result<Vec<u8>>>,
    }

    impl Wake for ReadsAnother {
        fn wake(self: Arc<Self>) {
            let mut other = self.other.lock().unwrap();
            let waker = futures::task::noop_waker();
            if let Poll::Ready(read) = poll_read_once(&mut other, &waker) {
                let _ = self.read.send(read);
            }
        }
    }

    /// A task's waker: each wake is a message.
    struct Signal(Mutex<mpsc::Sender<()>>);

    impl Wake for Signal {
        fn wake(self: Arc<Self>) {
            let _ = self.0.lock().unwrap().send(());
        }
    }

    /// A waker, and the wakes it gets.
    fn signal() -> (Waker, mpsc::Receiver<()>) {
        let (woken, wakes) = mpsc::channel();
        (Waker::from(Arc::new(Signal(Mutex::new(woken)))), wakes)
    }

    /// Waits for a wake: a bound, not a guess at how long one takes.
    fn wait_woken(wakes: &mpsc::Receiver<()>, what: &str) {
        wakes
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{what} was never woken"));
    }

    /// Polls the read as a runtime would: again only after each wake.
    fn read_when_woken(
        stream: &mut TcpStream,
        waker: &Waker,
        wakes: &mpsc::Receiver<()>,
    ) -> Vec<u8> {
        loop {
            wait_woken(wakes, "the reading task");
            if let Poll::Ready(read) = poll_read_once(stream, waker) {
                return read.unwrap();
            }
        }
    }

    fn shutdown(stream: &mut TcpStream, waker: &Waker) {
        let mut cx = Context::from_waker(waker);
        let shut = hyper::rt::Write::poll_shutdown(Pin::new(stream), &mut cx);
        assert!(matches!(shut, Poll::Ready(Ok(()))), "{shut:?}");
    }

    // The task that shuts the stream down while its own read waits (a
    // tunnel's copy in both directions, in one task): its wait is not
    // lost, and the stream reads on.
    #[test]
    fn a_read_waiting_in_the_task_that_shuts_down_is_not_lost() {
        let (mut client, mut stream) = connected();
        let (waker, wakes) = signal();
        assert!(poll_read_once(&mut stream, &waker).is_pending());
        shutdown(&mut stream, &waker);
        client.write_all(b"late").unwrap();
        assert_eq!(read_when_woken(&mut stream, &waker, &wakes), b"late");
    }

    // A read waiting in another task (the stream split between two) is
    // woken when its data arrives, after the shutdown as before it.
    #[test]
    fn a_read_waiting_in_another_task_is_woken_after_a_shutdown() {
        let (mut client, mut stream) = connected();
        let (reader, reads) = signal();
        assert!(poll_read_once(&mut stream, &reader).is_pending());
        let (shutter, _) = signal();
        shutdown(&mut stream, &shutter);
        client.write_all(b"late").unwrap();
        assert_eq!(read_when_woken(&mut stream, &reader, &reads), b"late");
    }

    // Two tasks read one stream: one waits, the other reads what arrived
    // without waiting. The first still waits on the reactor, so a shutdown
    // by the second leaves the socket there, and the first is woken when
    // its data comes.
    #[test]
    fn a_read_another_task_completes_leaves_the_waiting_one_noted() {
        let (mut client, mut stream) = connected();
        let (waiting, wakes) = signal();
        assert!(poll_read_once(&mut stream, &waiting).is_pending());
        client.write_all(b"one").unwrap();
        // Arrived before the other task reads: its read must not wait (a
        // wait would replace the first task's in the reactor).
        let Socket::Registered(socket) = &stream.socket else {
            panic!("registered")
        };
        loop {
            match socket.get_ref().peek(&mut [0]) {
                Ok(1..) => break,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                other => panic!("peeking at what arrived: {other:?}"),
            }
        }
        let (other, _) = signal();
        let read = poll_read_once(&mut stream, &other);
        assert!(
            matches!(&read, Poll::Ready(Ok(data)) if data == b"one"),
            "{read:?}"
        );
        assert!(
            !stream.waited_on_by_this_task_only(&Context::from_waker(&other)),
            "the waiting task was forgotten"
        );
        shutdown(&mut stream, &other);
        client.write_all(b"two").unwrap();
        assert_eq!(read_when_woken(&mut stream, &waiting, &wakes), b"two");
    }

    // A write waiting in another task (the client reads nothing) is woken
    // by the shutdown, and fails rather than waits for ever.
    #[test]
    fn a_write_waiting_in_another_task_is_woken_by_a_shutdown() {
        let (_client, mut stream) = connected();
        let (writer, writes) = signal();
        let chunk = vec![7; 64 * 1024];
        let mut cx = Context::from_waker(&writer);
        // Until the kernel's buffers are full.
        while let Poll::Ready(written) =
            hyper::rt::Write::poll_write(Pin::new(&mut stream), &mut cx, &chunk)
        {
            written.unwrap();
        }
        let (shutter, _) = signal();
        shutdown(&mut stream, &shutter);
        wait_woken(&writes, "the writing task");
        let written = hyper::rt::Write::poll_write(Pin::new(&mut stream), &mut cx, &chunk);
        assert!(
            matches!(&written, Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::BrokenPipe),
            "{written:?}"
        );
    }

    // Shutting the stream down ends what the client reads, while the
    // server can still read what the client sends, as tokio's does.
    #[test]
    fn a_shutdown_ends_the_clients_stream_and_keeps_reading() {
        use std::io::Read;

        let (mut client, mut stream) = connected();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let shutdown = hyper::rt::Write::poll_shutdown(Pin::new(&mut stream), &mut cx);
        assert!(matches!(shutdown, Poll::Ready(Ok(()))), "{shutdown:?}");
        // Bounded: without the half-close the read would wait for ever.
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        assert_eq!(
            client.read(&mut [0; 8]).unwrap(),
            0,
            "the end of the stream"
        );
        client.write_all(b"late").unwrap();
        assert_eq!(read_blocking(&mut stream), b"late");
    }

    // A task polled with a new waker has its previous one woken by
    // async-io inside the read; if that waker reads another connection on
    // the same thread (a runtime that polls on wake), both reads work.
    #[test]
    fn a_waker_woken_inside_a_read_can_read_another_connection() {
        let (_idle_client, mut idle) = connected();
        let (mut client, other) = connected();
        client.write_all(b"hi").unwrap();
        let (read, reads) = mpsc::channel();
        let waker = Waker::from(Arc::new(ReadsAnother {
            other: Mutex::new(other),
            read,
        }));
        assert!(poll_read_once(&mut idle, &waker).is_pending());
        // Polled again with another waker: async-io wakes the first.
        let noop = futures::task::noop_waker();
        assert!(poll_read_once(&mut idle, &noop).is_pending());
        let read = reads
            .try_recv()
            .expect("the first waker was woken and read");
        assert_eq!(read.unwrap(), b"hi");
    }

    /// Reads its connection when its thread drops it.
    struct ReadsOnDrop {
        stream: TcpStream,
        read: mpsc::Sender<(bool, Vec<u8>)>,
    }

    impl Drop for ReadsOnDrop {
        fn drop(&mut self) {
            let scratch_gone = SCRATCH.try_with(|_| ()).is_err();
            let _ = self
                .read
                .send((scratch_gone, read_blocking(&mut self.stream)));
        }
    }

    thread_local! {
        static READS_ON_DROP: RefCell<Option<ReadsOnDrop>> = const { RefCell::new(None) };
    }

    // A read from a thread-local's destructor, after the thread has
    // dropped its scratch buffer, still reads (and does not abort the
    // process with a panic in a destructor).
    #[test]
    fn a_read_after_the_thread_dropped_its_scratch_buffer_still_reads() {
        let (mut client, stream) = connected();
        client.write_all(b"hi").unwrap();
        let (mut first_client, mut first) = connected();
        let (read, reads) = mpsc::channel();
        std::thread::spawn(move || {
            // Registered first, so dropped after the scratch buffer, which
            // the read below registers.
            READS_ON_DROP.set(Some(ReadsOnDrop { stream, read }));
            first_client.write_all(b"first").unwrap();
            assert_eq!(read_blocking(&mut first), b"first");
        })
        .join()
        .unwrap();
        let (scratch_gone, read) = reads.recv().unwrap();
        assert!(scratch_gone, "the scratch buffer was dropped first");
        assert_eq!(read, b"hi");
    }
}
