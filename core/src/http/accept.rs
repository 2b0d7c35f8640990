//! The listener contract, and what an accept error means: a problem with one
//! connection, a shortage to wait out, or the end of the listener.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, Write};

/// The listen backlog the adapters' listeners ask for: how many connections
/// the kernel completes and queues for a server that is busy for a moment.
/// Go asks for the system's maximum; 1024 takes a burst of a thousand
/// clients without a SYN retry (a one-second stall for each client turned
/// away). The kernel may cap it (`net.core.somaxconn` on Linux).
pub const DEFAULT_BACKLOG: u32 = 1024;

/// A listening socket, as a runtime provides it: the one thing about
/// accepting that differs between runtimes.
///
/// The adapters implement it for their TCP listeners. The returned IO must
/// already be set up (for TCP, `TCP_NODELAY` is usual).
pub trait Accept: Send + Sized + 'static {
    /// An accepted connection, as hyper reads and writes it.
    type Io: Read + Write + Send + Unpin + 'static;

    /// Binds a listener to `addr` with a listen backlog of `backlog`
    /// connections (and `SO_REUSEADDR` on Unix, so a port is free again as
    /// soon as a server lets go of it).
    fn bind(addr: SocketAddr, backlog: u32) -> impl Future<Output = io::Result<Self>> + Send;

    /// Polls for the next connection.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>>;

    /// Takes a connection the kernel has already completed, asking the
    /// kernel itself (`accept(2)` on a non-blocking socket), never a cached
    /// readiness or a task budget: `None` when none is queued. The server
    /// calls it after the stop until it returns `None`, so that nothing in
    /// the backlog is reset when the listener closes.
    fn try_accept(&mut self) -> Option<io::Result<Self::Io>>;

    /// The address the listener is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// What an accept error means for the server.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AcceptError {
    /// A problem with one connection (the client reset before it was
    /// taken, a signal): take the next one.
    Connection,
    /// Out of file descriptors, buffers or memory: wait for some to be
    /// given back, then try again.
    Resources,
    /// The listener is broken: stop serving.
    Fatal,
}

impl AcceptError {
    pub(crate) fn of(error: &io::Error) -> AcceptError {
        if matches!(
            error.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionRefused
                | io::ErrorKind::Interrupted
                | io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
        ) {
            return AcceptError::Connection;
        }
        if error.kind() == io::ErrorKind::OutOfMemory {
            return AcceptError::Resources;
        }
        match error.raw_os_error() {
            Some(code) if errno::RESOURCES.contains(&code) => AcceptError::Resources,
            Some(code) if errno::CONNECTION.contains(&code) => AcceptError::Connection,
            #[cfg(target_os = "linux")]
            Some(libc::ENONET) => AcceptError::Connection,
            _ => AcceptError::Fatal,
        }
    }
}

/// The platform's numbers for the errors above (they differ: `ENOBUFS` is
/// 105 on Linux, 55 on macOS and the BSDs).
#[cfg(unix)]
mod errno {
    pub(super) const RESOURCES: [i32; 4] =
        [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM];
    /// Errors `accept(2)` reports for the connection being taken: Linux
    /// passes on pending network errors, to be treated as `EAGAIN`.
    pub(super) const CONNECTION: [i32; 9] = [
        libc::ECONNABORTED,
        libc::EPROTO,
        libc::EPERM,
        libc::ENETDOWN,
        libc::ENOPROTOOPT,
        libc::EHOSTDOWN,
        libc::EHOSTUNREACH,
        libc::ENETUNREACH,
        libc::EOPNOTSUPP,
    ];
}

#[cfg(windows)]
mod errno {
    // WSAEMFILE, WSAENOBUFS.
    pub(super) const RESOURCES: [i32; 2] = [10024, 10055];
    // WSAECONNABORTED, WSAENETDOWN, WSAEHOSTUNREACH, WSAENETUNREACH.
    pub(super) const CONNECTION: [i32; 4] = [10053, 10050, 10065, 10051];
}

#[cfg(not(any(unix, windows)))]
mod errno {
    pub(super) const RESOURCES: [i32; 0] = [];
    pub(super) const CONNECTION: [i32; 0] = [];
}

/// Connections accepted in a row, so that the server lets the runtime run
/// its other tasks once it has taken a turn's worth: a flood of new
/// connections must not starve the open ones. tokio's listener spends its
/// task's cooperative budget; async-io's has none, and would accept for as
/// long as the kernel has connections queued.
#[derive(Debug, Default)]
pub(crate) struct Turn {
    accepted: u32,
}

impl Turn {
    /// Connections the server takes before it yields: half of tokio's
    /// budget, which its own listener still keeps to.
    const ACCEPTS: u32 = 64;

    /// Polls `listener` for its next connection; after a turn's worth in a
    /// row, wakes the task and returns `Pending` once instead, so that the
    /// runtime runs what else is ready first.
    pub(crate) fn poll_accept<L: Accept>(
        &mut self,
        listener: &mut L,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<L::Io>> {
        if self.accepted == Self::ACCEPTS {
            self.accepted = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let next = listener.poll_accept(cx);
        self.accepted = if next.is_ready() {
            self.accepted + 1
        } else {
            0
        };
        next
    }
}

/// The pause before accepting again after running out of resources: 5 ms,
/// doubling to at most a second while the shortage lasts (as Go's
/// `http.Server` does).
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    delay: Option<Duration>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    pub(crate) fn next(&mut self) -> Duration {
        let delay = self
            .delay
            .map_or(Self::FIRST, |delay| (delay * 2).min(Self::MAX));
        self.delay = Some(delay);
        delay
    }

    /// An accept succeeded: the shortage is over.
    pub(crate) fn reset(&mut self) {
        self.delay = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_meaning_not_by_linux_numbers() {
        let os = io::Error::from_raw_os_error;
        #[cfg(unix)]
        {
            assert_eq!(AcceptError::of(&os(libc::EMFILE)), AcceptError::Resources);
            assert_eq!(AcceptError::of(&os(libc::ENFILE)), AcceptError::Resources);
            assert_eq!(AcceptError::of(&os(libc::ENOBUFS)), AcceptError::Resources);
            assert_eq!(AcceptError::of(&os(libc::ENOMEM)), AcceptError::Resources);
            assert_eq!(
                AcceptError::of(&os(libc::ECONNABORTED)),
                AcceptError::Connection
            );
            assert_eq!(AcceptError::of(&os(libc::EPROTO)), AcceptError::Connection);
            #[cfg(target_os = "linux")]
            assert_eq!(AcceptError::of(&os(libc::ENONET)), AcceptError::Connection);
            assert_eq!(AcceptError::of(&os(libc::EBADF)), AcceptError::Fatal);
            assert_eq!(AcceptError::of(&os(libc::EINVAL)), AcceptError::Fatal);
        }
        assert_eq!(
            AcceptError::of(&io::ErrorKind::WouldBlock.into()),
            AcceptError::Connection
        );
        assert_eq!(
            AcceptError::of(&io::Error::other("broken")),
            AcceptError::Fatal
        );
    }

    #[test]
    fn the_backoff_doubles_to_a_second_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<_> = (0..10).map(|_| backoff.next().as_millis()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.next(), Duration::from_millis(5));
    }
}
