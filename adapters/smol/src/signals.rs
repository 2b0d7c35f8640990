//! Stopping a group on SIGINT or SIGTERM.

use allstop_core::{Signals, Stop};
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
    |stop: Stop| {
        Signals::new(stop, async {
            let signals = async_signal::Signals::new([Signal::Int, Signal::Term])?;
            Ok(signals.filter_map(|signal| async move {
                match signal {
                    Ok(Signal::Int) => Some(Ok("SIGINT")),
                    Ok(Signal::Term) => Some(Ok("SIGTERM")),
                    Ok(_) => None,
                    Err(error) => Some(Err(error)),
                }
            }))
        })
    }
}
