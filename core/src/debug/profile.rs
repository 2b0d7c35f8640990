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
    encode(&report, format)
}

/// What an empty profile says, to `go tool pprof -comments` and in the SVG.
pub(crate) const NO_SAMPLES: &str = "no samples were taken: the process was idle, or the \
profile was cut short; profile while the process is busy, for longer";

/// Encodes `report` as `format`.
pub(crate) fn encode(report: &pprof::Report, format: Format) -> Result<Vec<u8>, String> {
    match format {
        Format::Pprof => {
            let mut profile = report
                .pprof()
                .map_err(|error| format!("cannot encode the profile: {error}"))?;
            if report.data.is_empty() {
                // A valid profile with no samples, and a comment saying why.
                profile.string_table.push(NO_SAMPLES.to_owned());
                profile.comment.push(profile.string_table.len() as i64 - 1);
            }
            let mut gzip =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gzip.write_all(&profile.encode_to_vec())
                .and_then(|()| gzip.finish())
                .map_err(|error| format!("cannot compress the profile: {error}"))
        }
        // inferno draws nothing at all from no samples: a blank page.
        Format::Flamegraph if report.data.is_empty() => Ok(empty_flamegraph().into_bytes()),
        Format::Flamegraph => {
            let mut svg = Vec::new();
            report
                .flamegraph(&mut svg)
                .map_err(|error| format!("cannot draw the flamegraph: {error}"))?;
            Ok(svg)
        }
    }
}

fn empty_flamegraph() -> String {
    format!(
        r#"<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="1200" height="90" viewBox="0 0 1200 90" xmlns="http://www.w3.org/2000/svg">
<title>Flame Graph: no samples</title>
<rect x="0" y="0" width="100%" height="100%" fill="rgb(238,238,238)"/>
<text x="600" y="30" font-size="17" font-family="Verdana" text-anchor="middle">Flame Graph: no samples</text>
<text x="600" y="60" font-size="12" font-family="Verdana" text-anchor="middle">{NO_SAMPLES}.</text>
</svg>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn empty_report() -> pprof::Report {
        pprof::Report {
            data: Default::default(),
            timing: Default::default(),
        }
    }

    #[test]
    fn an_empty_flamegraph_is_an_svg_that_says_so() {
        let svg = String::from_utf8(encode(&empty_report(), Format::Flamegraph).unwrap()).unwrap();
        assert!(svg.starts_with("<?xml"), "{svg}");
        assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("no samples were taken"), "{svg}");
    }

    #[test]
    fn an_empty_pprof_is_a_valid_profile_with_a_comment() {
        let gzip = encode(&empty_report(), Format::Pprof).unwrap();
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(&gzip[..])
            .read_to_end(&mut bytes)
            .unwrap();
        let profile = pprof::protos::Profile::decode(&bytes[..]).unwrap();
        assert!(profile.sample.is_empty());
        let comments: Vec<&str> = profile
            .comment
            .iter()
            .map(|&i| profile.string_table[i as usize].as_str())
            .collect();
        assert_eq!(comments, [NO_SAMPLES]);
    }
}
