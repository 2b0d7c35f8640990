//! Taking one CPU profile with pprof-rs, off the async threads.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use pprof::protos::Message;

/// Whether a profile is running anywhere in this process. pprof-rs drives a
/// single process-wide profiler (one `SIGPROF` timer), so the lock is
/// process-wide too, not per server.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Whether a profile is running in this process now.
pub(crate) fn is_running() -> bool {
    RUNNING.load(Ordering::Acquire)
}

/// Held while a profile runs.
pub(crate) struct ProfilerLock(());

impl ProfilerLock {
    pub(crate) fn acquire() -> Option<Self> {
        // Acquire pairs with the Release in `drop`: the next profile starts
        // after the last one's guard is fully dropped.
        RUNNING
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| ProfilerLock(()))
    }
}

impl Drop for ProfilerLock {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::Release);
    }
}

/// What to make of the samples.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Format {
    /// A gzip-compressed pprof protobuf, for `go tool pprof`.
    Pprof,
    /// An SVG flamegraph.
    Flamegraph,
}

/// Frames from these libraries are left out of the samples: unwinding
/// through them from a signal handler is unsafe or useless.
const BLOCKLIST: [&str; 4] = ["libc", "libgcc", "pthread", "vdso"];

/// Profiles the process for `seconds` or until `cancel` says otherwise (a
/// message, or its sender dropped), then encodes the report. Blocking: run
/// it on a thread of its own.
pub(crate) fn run(
    seconds: u64,
    frequency: i32,
    format: Format,
    cancel: mpsc::Receiver<()>,
) -> Result<Vec<u8>, String> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(frequency)
        .blocklist(&BLOCKLIST)
        .build()
        .map_err(|error| format!("cannot start the profiler: {error}"))?;
    // Ends on the deadline, on a stop, or when the request goes away.
    let _ = cancel.recv_timeout(Duration::from_secs(seconds));
    let report = guard
        .report()
        .build()
        .map_err(|error| format!("cannot build the profile: {error}"))?;
    drop(guard);
    match format {
        Format::Pprof => {
            let profile = report
                .pprof()
                .map_err(|error| format!("cannot encode the profile: {error}"))?;
            let mut gzip =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gzip.write_all(&profile.encode_to_vec())
                .and_then(|()| gzip.finish())
                .map_err(|error| format!("cannot compress the profile: {error}"))
        }
        Format::Flamegraph => {
            let mut svg = Vec::new();
            report
                .flamegraph(&mut svg)
                .map_err(|error| format!("cannot draw the flamegraph: {error}"))?;
            Ok(svg)
        }
    }
}
