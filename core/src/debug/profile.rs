//! Taking one CPU profile, off the async threads: with our own sampler on
//! Linux (x86-64 and AArch64), with pprof-rs's elsewhere; encoded with
//! pprof-rs's report types either way.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pprof::protos::Message;

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
use super::stacks::collect;

/// Whether a profile is running anywhere in this process. A profiler is
/// process-wide (one `SIGPROF` timer), so the lock is process-wide too, not
/// per server.
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

/// Profiles the process for `seconds` or until `cancel` says otherwise (a
/// message, or its sender dropped), then encodes the report. Blocking: run
/// it on a thread of its own.
pub(crate) fn run(
    seconds: u64,
    frequency: i32,
    format: Format,
    cancel: mpsc::Receiver<()>,
) -> Result<Vec<u8>, String> {
    let encoded = collect(seconds, frequency, &cancel).and_then(|report| encode(&report, format));
    // The report is gone: give back what it took.
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    super::sampler::give_back_freed_memory();
    encoded
}

/// Waits for `seconds` or `cancel`, calling `tick` at least every `every`.
pub(crate) fn wait(
    seconds: u64,
    cancel: &mpsc::Receiver<()>,
    every: Duration,
    mut tick: impl FnMut(),
) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        match cancel.recv_timeout(left.min(every)) {
            Err(mpsc::RecvTimeoutError::Timeout) => tick(),
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Frames from these libraries are left out of the samples: unwinding
/// through them from a signal handler is unsafe or useless.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
const BLOCKLIST: [&str; 4] = ["libc", "libgcc", "pthread", "vdso"];

/// Samples with pprof-rs, where our sampler does not run.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn collect(
    seconds: u64,
    frequency: i32,
    cancel: &mpsc::Receiver<()>,
) -> Result<pprof::Report, String> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(frequency)
        .blocklist(&BLOCKLIST)
        .build()
        .map_err(|error| format!("cannot start the profiler: {error}"))?;
    // Ends on the deadline, on a stop, or when the request goes away.
    wait(seconds, cancel, Duration::from_secs(seconds), || {});
    let report = guard
        .report()
        .build()
        .map_err(|error| format!("cannot build the profile: {error}"))?;
    drop(guard);
    Ok(report)
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
            place_locations(&mut profile, &executable_mappings());
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

/// A file mapped executable into this process: `[start, end)` holds the
/// file's bytes from `offset` on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Executable {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) offset: u64,
    pub(crate) path: String,
}

/// The process's executable mappings, the program's own first (`go tool
/// pprof` takes the first mapping for the program).
fn executable_mappings() -> Vec<Executable> {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        let program = std::env::current_exe()
            .ok()
            .map(|path| path.to_string_lossy().into_owned());
        let mut mappings: Vec<Executable> = super::symbolize::mappings()
            .into_iter()
            .filter(|m| m.path.starts_with('/'))
            .map(|m| Executable {
                start: m.start,
                end: m.end,
                offset: m.offset,
                path: m.path,
            })
            .collect();
        mappings.sort_by_key(|m| Some(&m.path) != program.as_ref());
        mappings
    }
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    Vec::new()
}

/// Says where each location's frame comes from, for `go tool pprof`:
///
/// - a frame with a name keeps it, in a mapping marked as having its
///   functions, so that `go tool pprof`, given the program's binary, does
///   not look it up again (the location has a name but no address);
/// - a frame the symbol tables could not name (a stripped binary: its name
///   is its address) gets its address and the real mapping it lies in,
///   without functions, so that `go tool pprof` given the unstripped binary
///   names it, with its line.
fn place_locations(profile: &mut pprof::protos::Profile, executables: &[Executable]) {
    use pprof::protos::Mapping;

    let unnamed = unnamed_locations(profile, executables);
    // The real mappings first, the program's own at their head.
    let mut ids = Vec::with_capacity(executables.len());
    if !unnamed.is_empty() {
        for executable in executables {
            profile.string_table.push(executable.path.clone());
            let filename = profile.string_table.len() as i64 - 1;
            let mapping = Mapping {
                memory_start: executable.start,
                memory_limit: executable.end,
                file_offset: executable.offset,
                filename,
                ..Default::default()
            };
            ids.push(add_mapping(profile, mapping));
        }
    }
    let named = Mapping {
        has_functions: true,
        ..Default::default()
    };
    let named = add_mapping(profile, named);
    for location in &mut profile.location {
        location.mapping_id = named;
    }
    for (index, address, mapping) in unnamed {
        let location = &mut profile.location[index];
        location.mapping_id = ids[mapping];
        location.address = address;
        location.line.clear();
    }
}

/// The locations whose name is their address, with that address and the
/// index of the executable mapping it lies in.
fn unnamed_locations(
    profile: &pprof::protos::Profile,
    executables: &[Executable],
) -> Vec<(usize, u64, usize)> {
    let address_of = |location: &pprof::protos::Location| -> Option<u64> {
        let line = location.line.first()?;
        let function = profile.function.iter().find(|f| f.id == line.function_id)?;
        let name = profile.string_table.get(function.name as usize)?;
        u64::from_str_radix(name.strip_prefix("0x")?, 16).ok()
    };
    profile
        .location
        .iter()
        .enumerate()
        .filter_map(|(index, location)| {
            let address = address_of(location)?;
            let mapping = executables
                .iter()
                .position(|m| (m.start..m.end).contains(&address))?;
            Some((index, address, mapping))
        })
        .collect()
}

/// Adds `mapping` to `profile` with the next id; the id.
fn add_mapping(profile: &mut pprof::protos::Profile, mapping: pprof::protos::Mapping) -> u64 {
    let id = profile.mapping.len() as u64 + 1;
    profile
        .mapping
        .push(pprof::protos::Mapping { id, ..mapping });
    id
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
    fn a_named_frame_keeps_its_name_an_unnamed_one_gets_its_address_and_mapping() {
        use pprof::protos::{Function, Line, Location, Profile};

        let function = |id: u64, name: i64| Function {
            id,
            name,
            ..Default::default()
        };
        let location = |id: u64| Location {
            id,
            line: vec![Line {
                function_id: id,
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut profile = Profile {
            string_table: vec!["".into(), "main".into(), "0x1234".into(), "0x9999".into()],
            function: vec![function(1, 1), function(2, 2), function(3, 3)],
            location: vec![location(1), location(2), location(3)],
            ..Default::default()
        };
        let program = Executable {
            start: 0x1000,
            end: 0x2000,
            offset: 0x0,
            path: "/usr/bin/program".into(),
        };
        let library = Executable {
            start: 0x5000,
            end: 0x6000,
            offset: 0x1000,
            path: "/usr/lib/library.so".into(),
        };
        place_locations(&mut profile, &[program, library]);
        // The program's mapping first, the library's, then the named one.
        let files: Vec<&str> = profile
            .mapping
            .iter()
            .map(|m| profile.string_table[m.filename as usize].as_str())
            .collect();
        assert_eq!(files, ["/usr/bin/program", "/usr/lib/library.so", ""]);
        assert_eq!(profile.mapping[0].memory_start, 0x1000);
        assert!(!profile.mapping[0].has_functions && profile.mapping[2].has_functions);
        // `main` keeps its name, in the named mapping, without an address.
        let main = &profile.location[0];
        assert_eq!((main.mapping_id, main.address, main.line.len()), (3, 0, 1));
        // 0x1234 lies in the program: its address and mapping, no name.
        let unnamed = &profile.location[1];
        assert_eq!((unnamed.mapping_id, unnamed.address), (1, 0x1234));
        assert!(unnamed.line.is_empty());
        // 0x9999 lies in no mapping: left as it is, in the named mapping.
        assert_eq!(profile.location[2].mapping_id, 3);
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
