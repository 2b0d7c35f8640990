//! Stopping a group on SIGINT or SIGTERM.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use allstop_core::Stop;
use async_signal::Signal;
use futures::StreamExt;

/// A member that stops the group on SIGINT (Ctrl-C) or SIGTERM, with the
/// signal as the cause (`stop requested: SIGTERM received`); a second signal
/// cuts the grace period short. Add it as a watcher, so that it keeps
/// listening during the drain without holding the group open:
///
/// ```
/// let mut group = allstop::Group::new();
/// group.add_watcher("signals", allstop::smol::signals());
/// group.add("job", |_stop| async { Ok::<(), std::io::Error>(()) });
/// let report = smol::block_on(group.run());
/// assert!(report.is_success());
/// ```
///
/// The handlers (async-signal's) are installed when the member starts,
/// never otherwise. When the member is dropped they stop listening, but the
/// process-level handler stays installed (signal-hook does not restore the
/// default action): after the group has ended, SIGINT no longer kills the
/// process by itself. If the handlers cannot be installed the member fails,
/// which stops the group.
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

async fn listen(stop: Stop) -> std::io::Result<()> {
    let mut signals = async_signal::Signals::new([Signal::Int, Signal::Term])?;
    let handle = stop.handle();
    while let Some(signal) = signals.next().await {
        let name = match signal? {
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
            _ => continue,
        };
        // The first request begins the stop; the second cuts the grace short.
        handle.stop(format!("{name} received"));
    }
    Ok(())
}
