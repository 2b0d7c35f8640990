//! Stopping a group on SIGINT or SIGTERM.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use allstop_core::Stop;

/// A member that stops the group on SIGINT (Ctrl-C) or SIGTERM, with the
/// signal as the cause (`stop requested: SIGTERM received`); a second signal
/// cuts the grace period short. Add it as a watcher, so that it keeps
/// listening during the drain without holding the group open:
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let mut group = allstop::Group::new();
/// group.add_watcher("signals", allstop::tokio::signals());
/// group.add("job", |_stop| async { Ok::<(), std::io::Error>(()) });
/// let report = group.run().await;
/// assert!(report.is_success());
/// # });
/// ```
///
/// The member must run inside a tokio runtime (spawned with
/// [`Tokio`](crate::Tokio), or in-task in a runtime's task): tokio's signal
/// listeners belong to a runtime. `allstop::smol::signals` has no such need.
///
/// Signal handlers are installed when the member starts, never otherwise;
/// like every tokio signal listener, they stay installed for the rest of
/// the process: after the group has ended, SIGINT no longer kills the
/// process by itself. On platforms other than Unix only Ctrl-C is handled. If
/// the handlers cannot be installed the member fails, which stops the group.
pub fn signals() -> impl FnOnce(Stop) -> Signals + Send + 'static {
    |stop: Stop| Signals {
        listening: Box::pin(listen(stop)),
    }
}

/// The future of the [`signals`] member: listens for signals until it is
/// dropped, and fails only if the handlers cannot be installed. The same
/// type, by the same name, in both adapters.
#[must_use = "futures do nothing unless polled"]
pub struct Signals {
    listening: Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>,
}

impl fmt::Debug for Signals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signals").finish_non_exhaustive()
    }
}

impl Future for Signals {
    type Output = std::io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.listening.as_mut().poll(cx)
    }
}

#[cfg(unix)]
async fn listen(stop: Stop) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};

    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let handle = stop.handle();
    loop {
        let name = std::future::poll_fn(|cx| {
            if interrupt.poll_recv(cx).is_ready() {
                std::task::Poll::Ready("SIGINT")
            } else if terminate.poll_recv(cx).is_ready() {
                std::task::Poll::Ready("SIGTERM")
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        // The first request begins the stop; the second cuts the grace short.
        handle.stop(format!("{name} received"));
    }
}

#[cfg(not(unix))]
async fn listen(stop: Stop) -> std::io::Result<()> {
    let handle = stop.handle();
    loop {
        tokio::signal::ctrl_c().await?;
        handle.stop("Ctrl-C received");
    }
}
