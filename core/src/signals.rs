//! The future of a member that stops its group on process signals: one
//! type and one loop for both adapters, which bring the signals.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};

use crate::stop::Stop;

/// The future of a signal-watching member (the adapters' `signals()`):
/// stops the group at every signal it hears, the first request beginning
/// the stop and the second cutting the grace short; listens until it is
/// dropped, and fails only if the handlers cannot be installed.
///
/// ```
/// use allstop::{Group, Signals};
///
/// let mut group = Group::new();
/// // A signal source of your own: here, one signal at once.
/// group.add_watcher("signals", |stop| {
///     Signals::new(stop, async { Ok(futures::stream::iter([Ok("SIGTERM")])) })
/// });
/// group.add("app", |stop| async move { stop.await; Ok::<(), std::io::Error>(()) });
/// let report = futures::executor::block_on(group.run());
/// assert_eq!(report.cause().unwrap().to_string(), "stop requested: SIGTERM received");
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Signals {
    listening: Pin<Box<dyn Future<Output = io::Result<()>> + Send>>,
}

impl Signals {
    /// Watches the signals `install` gives once polled (so handlers are
    /// installed when the member starts, and an installation error is the
    /// member's): a stream of their names, each a stop request for the
    /// group of `stop`, "`NAME` received".
    pub fn new<S>(stop: Stop, install: impl Future<Output = io::Result<S>> + Send + 'static) -> Self
    where
        S: Stream<Item = io::Result<&'static str>> + Send + 'static,
    {
        Signals {
            listening: Box::pin(async move {
                let handle = stop.handle();
                let mut received = std::pin::pin!(install.await?);
                while let Some(name) = received.next().await {
                    handle.stop(format!("{} received", name?));
                }
                Ok(())
            }),
        }
    }
}

impl fmt::Debug for Signals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signals").finish_non_exhaustive()
    }
}

impl Future for Signals {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.listening.as_mut().poll(cx)
    }
}
