//! Group start/stop: N idle members, spawned and started; the last one to
//! start exits at once, which stops all the others; every result collected.
//! The same work for allstop, the hand-written floors and the peer crate.
//!
//! Measured in a process of its own (see `compare.rs`): the time from the
//! first spawn to the trigger ("spawn"), from the trigger until the last
//! result is collected ("stop"), and the peak RSS growth per member.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};

/// The implementations, in the order the tables show them.
pub const IMPLS: [&str; 7] = [
    "allstop in-task",
    "floor: futures, one task",
    "allstop spawned on smol",
    "floor: smol tasks + channel close",
    "allstop spawned on tokio",
    "floor: tokio JoinSet + CancellationToken",
    "tokio-graceful-shutdown",
];

/// The floor each implementation is compared with.
pub fn floor_of(name: &str) -> Option<&'static str> {
    match name {
        "allstop in-task" => Some("floor: futures, one task"),
        "allstop spawned on smol" => Some("floor: smol tasks + channel close"),
        "allstop spawned on tokio" | "tokio-graceful-shutdown" => {
            Some("floor: tokio JoinSet + CancellationToken")
        }
        _ => None,
    }
}

/// What every member shares: how many have started, and when the last
/// one did (the trigger).
struct Shared {
    n: usize,
    started: AtomicUsize,
    trigger: OnceLock<Instant>,
}

impl Shared {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Shared {
            n,
            started: AtomicUsize::new(0),
            trigger: OnceLock::new(),
        })
    }

    /// Counts a member in; true for the last one, which is to exit at once.
    fn start(&self) -> bool {
        let last = self.started.fetch_add(1, Ordering::AcqRel) + 1 == self.n;
        if last {
            let _ = self.trigger.set(Instant::now());
        }
        last
    }
}

/// One measurement.
pub struct Sample {
    pub spawn: Duration,
    pub stop: Duration,
    /// Peak resident memory growth during the run, per member.
    pub bytes_per_member: f64,
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|kb| kb.parse().ok())
        .expect("a size in kB");
    kb * 1024
}

/// Resets the process's peak resident memory (`VmHWM`) to its current one
/// (Linux's `clear_refs`, value 5), so that the peak read after the run is
/// the run's, not that of the runtimes' start-up before it. The kernel's
/// counts stay approximate (per-CPU batches of pages): some 250 KiB either
/// way, which at 1k members is 250 bytes per member.
fn reset_peak_rss() {
    // Best effort: without it, the peak may be the start-up's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// One measurement, in a fresh process (the peak RSS is per process).
///
/// Runtimes are built and warmed up before the clock starts, and so is the
/// implementation: a group of 8 members runs first, so that its code's
/// pages (resident once run, 64 KiB at a time) are not counted as the
/// members' memory. Small groups run several times (up to 20, about 100k
/// members in all) and the medians are kept, so that one slow wake-up does
/// not decide the result; the peak RSS is that of the first run.
pub fn measure(name: &str, n: usize) -> Sample {
    let runtime = tokio_runtime();
    runtime.block_on(async { tokio::spawn(async {}).await.unwrap() });
    smol::block_on(smol::spawn(async {}));
    let run = |shared: &Arc<Shared>| match name {
        "allstop in-task" => allstop_in_task(shared),
        "allstop spawned on tokio" => allstop_tokio(&runtime, shared),
        "allstop spawned on smol" => allstop_smol(shared),
        "floor: futures, one task" => futures_floor(shared),
        "floor: smol tasks + channel close" => smol_floor(shared),
        "floor: tokio JoinSet + CancellationToken" => tokio_floor(&runtime, shared),
        "tokio-graceful-shutdown" => graceful_shutdown(&runtime, shared),
        other => panic!("unknown implementation {other:?}"),
    };
    assert_eq!(run(&Shared::new(8)), 8, "{name}: the warm-up's results");
    let reps = (100_000 / n).clamp(1, 20);
    let mut spawns = Vec::with_capacity(reps);
    let mut stops = Vec::with_capacity(reps);
    let mut bytes_per_member = 0.0;
    for rep in 0..reps {
        let shared = Shared::new(n);
        if rep == 0 {
            reset_peak_rss();
        }
        let rss_before = status_bytes("VmRSS:");
        let began = Instant::now();
        let collected = run(&shared);
        let ended = Instant::now();
        if rep == 0 {
            let peak = status_bytes("VmHWM:");
            bytes_per_member = peak.saturating_sub(rss_before) as f64 / n as f64;
        }
        assert_eq!(collected, n, "{name}: every result collected");
        let trigger = *shared.trigger.get().expect("the last member started");
        spawns.push(trigger - began);
        stops.push(ended - trigger);
    }
    spawns.sort();
    stops.sort();
    Sample {
        spawn: spawns[reps / 2],
        stop: stops[reps / 2],
        bytes_per_member,
    }
}

fn allstop_group(mut group: allstop::Group, shared: &Arc<Shared>) -> allstop::Group {
    for _ in 0..shared.n {
        let shared = shared.clone();
        group.add("member", move |stop: allstop::Stop| async move {
            if !shared.start() {
                stop.await;
            }
            Ok::<(), Infallible>(())
        });
    }
    group
}

fn allstop_in_task(shared: &Arc<Shared>) -> usize {
    let group = allstop_group(allstop::Group::new(), shared);
    futures::executor::block_on(group.run()).members().len()
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn allstop_tokio(runtime: &tokio::runtime::Runtime, shared: &Arc<Shared>) -> usize {
    let group = allstop_group(allstop::Group::on(allstop::tokio::Tokio::new()), shared);
    runtime.block_on(group.run()).members().len()
}

fn allstop_smol(shared: &Arc<Shared>) -> usize {
    let group = allstop_group(allstop::Group::on(allstop::smol::Smol::new()), shared);
    smol::block_on(group.run()).members().len()
}

/// FuturesUnordered in one task, an event-listener broadcast.
fn futures_floor(shared: &Arc<Shared>) -> usize {
    let stopped = AtomicBool::new(false);
    let event = event_listener::Event::new();
    let members: FuturesUnordered<_> = (0..shared.n)
        .map(|_| {
            let (stopped, event, shared) = (&stopped, &event, shared.clone());
            async move {
                if shared.start() {
                    stopped.store(true, Ordering::Release);
                    event.notify(usize::MAX);
                    return Ok::<(), Infallible>(());
                }
                while !stopped.load(Ordering::Acquire) {
                    let listener = event.listen();
                    if stopped.load(Ordering::Acquire) {
                        break;
                    }
                    listener.await;
                }
                Ok(())
            }
        })
        .collect();
    let results: Vec<Result<(), Infallible>> = futures::executor::block_on(members.collect());
    results.len()
}

/// smol tasks; closing an async-channel is the broadcast.
fn smol_floor(shared: &Arc<Shared>) -> usize {
    let (_tx, rx) = async_channel::bounded::<()>(1);
    smol::block_on(async {
        let tasks: Vec<_> = (0..shared.n)
            .map(|_| {
                let (rx, shared) = (rx.clone(), shared.clone());
                smol::spawn(async move {
                    if shared.start() {
                        rx.close();
                        return Ok::<(), Infallible>(());
                    }
                    let _ = rx.recv().await;
                    Ok(())
                })
            })
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            results.push(task.await);
        }
        results.len()
    })
}

/// tokio tasks in a JoinSet; a CancellationToken is the broadcast.
fn tokio_floor(runtime: &tokio::runtime::Runtime, shared: &Arc<Shared>) -> usize {
    runtime.block_on(async {
        let token = tokio_util::sync::CancellationToken::new();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..shared.n {
            let (token, shared) = (token.clone(), shared.clone());
            set.spawn(async move {
                if shared.start() {
                    token.cancel();
                    return Ok::<(), Infallible>(());
                }
                token.cancelled().await;
                Ok(())
            });
        }
        let mut results = Vec::with_capacity(shared.n);
        while let Some(result) = set.join_next().await {
            results.push(result.unwrap());
        }
        results.len()
    })
}

/// N subsystems of one toplevel; the last to start requests the shutdown.
fn graceful_shutdown(runtime: &tokio::runtime::Runtime, shared: &Arc<Shared>) -> usize {
    use tokio_graceful_shutdown::{SubsystemBuilder, SubsystemHandle, Toplevel};

    let shared_members = shared.clone();
    runtime
        .block_on(async move {
            Toplevel::new(async move |s: &mut SubsystemHandle| {
                for _ in 0..shared_members.n {
                    let shared = shared_members.clone();
                    s.start(SubsystemBuilder::new(
                        "member",
                        async move |h: &mut SubsystemHandle| {
                            if shared.start() {
                                h.request_shutdown();
                            } else {
                                h.on_shutdown_requested().await;
                            }
                            Ok::<(), Infallible>(())
                        },
                    ));
                }
            })
            .handle_shutdown_requests(Duration::from_secs(600))
            .await
        })
        .expect("a clean shutdown");
    // The toplevel returns only when every subsystem has ended; it hands
    // back errors, not results, so count the members that ran.
    shared.started.load(Ordering::Acquire)
}
