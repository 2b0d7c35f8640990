//! Stopping a group on SIGINT or SIGTERM.

use allstop_core::{Signals, Stop};

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
    |stop: Stop| Signals::new(stop, install())
}

/// SIGINT's and SIGTERM's listeners, as a stream of their names.
#[cfg(unix)]
async fn install() -> std::io::Result<impl futures::Stream<Item = std::io::Result<&'static str>>> {
    use std::task::Poll;
    use tokio::signal::unix::{signal, SignalKind};

    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(futures::stream::poll_fn(move |cx| {
        if interrupt.poll_recv(cx).is_ready() {
            Poll::Ready(Some(Ok("SIGINT")))
        } else if terminate.poll_recv(cx).is_ready() {
            Poll::Ready(Some(Ok("SIGTERM")))
        } else {
            Poll::Pending
        }
    }))
}

/// Ctrl-C, as a stream of its name.
#[cfg(not(unix))]
async fn install() -> std::io::Result<impl futures::Stream<Item = std::io::Result<&'static str>>> {
    Ok(futures::stream::unfold((), |()| async {
        Some((tokio::signal::ctrl_c().await.map(|()| "Ctrl-C"), ()))
    }))
}
