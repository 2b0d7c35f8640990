//! A profile from our own sampler: its table drained into a map of the
//! distinct stacks as the profile goes, the stacks named from the symbol
//! tables at the end, as a pprof-rs report. Nothing is kept afterwards.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::time::{Instant, SystemTime};

use super::sampler::{Sample, Sampler, DRAIN_EVERY};
use super::symbolize;

/// Profiles the process for `seconds` or until `cancel` says otherwise,
/// sampling `frequency` times a second of CPU time.
pub(crate) fn collect(
    seconds: u64,
    frequency: i32,
    cancel: &mpsc::Receiver<()>,
) -> Result<pprof::Report, String> {
    let blocklist = symbolize::blocklist(&symbolize::mappings());
    let start_time = SystemTime::now();
    let started = Instant::now();
    let mut sampler = Sampler::start(frequency.max(1) as u32, &blocklist)
        .map_err(|error| format!("cannot start the profiler: {error}"))?
        .ok_or("cannot start the profiler: another profile runs in this process")?;
    let mut stacks = Stacks::default();
    super::profile::wait(seconds, cancel, DRAIN_EVERY, || {
        sampler.drain(|sample| stacks.add(sample))
    });
    sampler.stop();
    // The profile's length, without the naming of its frames that follows.
    let duration = started.elapsed();
    sampler.drain(|sample| stacks.add(sample));
    stacks.dropped = sampler.dropped();
    drop(sampler);
    let mut report = stacks.report(start_time);
    // pprof-rs's timing type has no public name, only public fields.
    report.timing.frequency = frequency;
    report.timing.start_time = start_time;
    report.timing.duration = duration;
    Ok(report)
}

/// The one frame of the samples the sampler could not keep.
const DROPPED: &str = "[samples lost: the sampler's table was full]";

/// A thread's id and name, and a stack's return addresses, innermost first.
type StackKey = (u64, [u8; 16], Box<[u64]>);

/// The distinct stacks sampled, by thread, with their counts.
#[derive(Default)]
struct Stacks {
    counts: HashMap<StackKey, isize>,
    /// Samples lost to a full table, shown as a stack of their own.
    dropped: u64,
}

impl Stacks {
    fn add(&mut self, sample: Sample<'_>) {
        // The stack from the interrupted frame on, without the handler's.
        // The unwinder did not reach the interrupted frame: the
        // instruction alone, rather than the handler's own frames.
        let stack = match sample.stack.iter().position(|&ip| ip == sample.pc) {
            Some(interrupted) => &sample.stack[interrupted..],
            None => std::slice::from_ref(&sample.pc),
        };
        *self
            .counts
            .entry((sample.thread_id, sample.name, stack.into()))
            .or_insert(0) += 1;
    }

    /// Names the frames, and counts the stacks that name alike together.
    fn report(self, start_time: SystemTime) -> pprof::Report {
        let addresses: HashSet<u64> = self
            .counts
            .keys()
            .flat_map(|(_, _, stack)| lookups(stack))
            .collect();
        let names = symbolize::symbolize(&symbolize::mappings(), addresses);
        let mut data = HashMap::new();
        for ((thread_id, thread_name, stack), count) in self.counts {
            let frames = pprof::Frames {
                frames: lookups(&stack)
                    .map(|address| named(&names, address))
                    .collect(),
                thread_name: thread_name_of(&thread_name),
                thread_id,
                sample_timestamp: start_time,
            };
            *data.entry(frames).or_insert(0) += count;
        }
        if self.dropped > 0 {
            data.insert(dropped(start_time), self.dropped as isize);
        }
        pprof::Report {
            data,
            timing: Default::default(),
        }
    }
}

/// The addresses to look up for a stack's frames, innermost first.
fn lookups(stack: &[u64]) -> impl Iterator<Item = u64> + '_ {
    // A return address points after its call: look up the byte before,
    // inside the calling function, for every frame but the interrupted.
    stack
        .iter()
        .enumerate()
        .map(|(depth, &ip)| if depth == 0 { ip } else { ip.saturating_sub(1) })
}

/// A frame at `address`, with its name from `names`, or the address itself
/// when the symbol tables have none.
fn named(names: &HashMap<u64, String>, address: u64) -> Vec<pprof::Symbol> {
    let name = names
        .get(&address)
        .cloned()
        .unwrap_or_else(|| format!("{address:#x}"));
    vec![pprof::Symbol {
        name: Some(name.into_bytes()),
        addr: Some(address as usize as *mut std::ffi::c_void),
        lineno: None,
        filename: None,
    }]
}

/// A thread's name, from the kernel's NUL-padded 16 bytes.
fn thread_name_of(name: &[u8; 16]) -> String {
    let length = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    String::from_utf8_lossy(&name[..length]).into_owned()
}

/// The samples the sampler could not keep, as a stack of one frame.
fn dropped(start_time: SystemTime) -> pprof::Frames {
    pprof::Frames {
        frames: vec![vec![pprof::Symbol {
            name: Some(DROPPED.as_bytes().to_vec()),
            addr: None,
            lineno: None,
            filename: None,
        }]],
        thread_name: "allstop-profile".into(),
        thread_id: 0,
        sample_timestamp: start_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[inline(never)]
    fn spin_for_the_profiler(done: &AtomicBool) -> u64 {
        let mut x = 0u64;
        while !done.load(Ordering::Relaxed) {
            for i in 0..10_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        x
    }

    #[test]
    fn a_busy_thread_is_sampled_by_name_with_its_functions_named() {
        let _turn = crate::debug::sampler::TEST_TURN.lock();
        let done = Arc::new(AtomicBool::new(false));
        let busy = std::thread::Builder::new()
            .name("busy-thread".into())
            .spawn({
                let done = done.clone();
                move || spin_for_the_profiler(&done)
            })
            .unwrap();
        let (_cancel, cancelled) = mpsc::channel();
        let report = collect(1, 99, &cancelled).unwrap();
        done.store(true, Ordering::Relaxed);
        busy.join().unwrap();
        let busy: Vec<_> = report
            .data
            .keys()
            .filter(|frames| frames.thread_name == "busy-thread")
            .collect();
        assert!(!busy.is_empty(), "no sample of the busy thread");
        let names: Vec<String> = busy
            .iter()
            .flat_map(|frames| frames.frames.iter().flatten())
            .map(|symbol| symbol.name())
            .collect();
        assert!(
            names
                .iter()
                .any(|name| name.contains("spin_for_the_profiler")),
            "{names:?}"
        );
        // The handler's own frames are cut off.
        assert!(
            !names.iter().any(|name| name.contains("on_sigprof")),
            "{names:?}"
        );
        assert!(report.timing.duration >= std::time::Duration::from_millis(900));
        assert_eq!(report.timing.frequency, 99);
    }
}
