//! The CPU sampler: a `SIGPROF` timer and a signal handler that writes the
//! interrupted thread's stack, as raw instruction addresses, into a small
//! fixed table. Everything else (counting stacks, naming functions,
//! encoding) happens off the signal path, in the profiling thread.
//!
//! This is the one module of the core with `unsafe` code: installing the
//! handler and the timer, reading the interrupted instruction pointer from
//! the signal's context, and unwinding the stack from inside the handler.
//!
//! # Invariants
//!
//! 1. At most one [`Sampler`] exists at a time ([`ACTIVE`]); it alone
//!    arms the timer, fills the blocklist and drains the table.
//! 2. A slot of [`SLOTS`] is `FREE`, `WRITING` (claimed by one handler,
//!    which alone writes it) or `READY` (written; only the drain reads it,
//!    then frees it). A handler claims a slot with a compare-exchange from
//!    `FREE`, so two handlers never write the same slot, and the drain
//!    never reads a slot being written.
//! 3. After [`Sampler::stop`] returns, no handler is writing a slot and
//!    none will start: [`ENABLED`] is false and [`IN_FLIGHT`] was seen at
//!    zero after that (the handler raises `IN_FLIGHT` before it reads
//!    `ENABLED`, all in sequentially consistent order).
//!
//! # Signal safety
//!
//! The handler allocates nothing and takes no lock: it reads and writes
//! atomics in a static table, calls `gettid` and `prctl(PR_GET_NAME)`
//! (system calls), and unwinds with `backtrace::trace_unsynchronized`
//! (libgcc's `_Unwind_Backtrace`, no allocation), as pprof-rs does. The
//! unwinder may take the dynamic loader's lock to find unwind tables, so the
//! handler takes no sample when the thread was interrupted inside the C
//! library, the loader, libgcc or the vDSO (the blocklist), where that lock
//! or the unwinder's state may be held. It saves and restores `errno`.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

/// The deepest stack a sample keeps, innermost frames first.
pub(crate) const DEPTH: usize = 128;

/// Slots in the table: some 1 MiB. The profiling thread drains it every
/// [`DRAIN_EVERY`]; at 99 Hz that is room for about a hundred busy threads.
const SLOT_COUNT: usize = 1024;

/// How often the profiling thread should drain the table.
pub(crate) const DRAIN_EVERY: Duration = Duration::from_millis(50);

/// Executable ranges of the blocklisted libraries, at most this many.
const BLOCKLIST_LEN: usize = 32;

const FREE: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

struct Slot {
    state: AtomicU8,
    depth: AtomicUsize,
    /// The interrupted instruction, to cut the handler's own frames off.
    pc: AtomicU64,
    thread_id: AtomicU64,
    /// The thread's name, 16 bytes as `prctl(PR_GET_NAME)` gives it.
    name: [AtomicU64; 2],
    frames: [AtomicU64; DEPTH],
}

// Plain atomics in a static: the handler reaches them without a pointer,
// and only the pages written become resident. The frames are Relaxed:
// the slot's state, Release after writing and Acquire before reading,
// orders them.
static SLOTS: [Slot; SLOT_COUNT] = [const {
    Slot {
        state: AtomicU8::new(FREE),
        depth: AtomicUsize::new(0),
        pc: AtomicU64::new(0),
        thread_id: AtomicU64::new(0),
        name: [const { AtomicU64::new(0) }; 2],
        frames: [const { AtomicU64::new(0) }; DEPTH],
    }
}; SLOT_COUNT];

/// Where the next handler starts looking for a free slot. Relaxed: any
/// start is correct, this only spreads the handlers out.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Samples lost because every slot was taken. Relaxed: a counter read once
/// the handlers are done (invariant 3).
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Whether a sampler exists (invariant 1).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Whether the handler takes samples; see invariant 3 for its ordering.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Handlers running now; see invariant 3 for its ordering.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Blocklisted `[start, end)` ranges, written before `ENABLED` is set
/// (SeqCst) and read by the handler after it reads `ENABLED`, so Relaxed.
static BLOCKLIST: [[AtomicU64; 2]; BLOCKLIST_LEN] =
    [const { [AtomicU64::new(0), AtomicU64::new(0)] }; BLOCKLIST_LEN];

/// One sample, as the drain hands it out.
pub(crate) struct Sample<'a> {
    pub(crate) thread_id: u64,
    pub(crate) name: [u8; 16],
    /// The interrupted instruction.
    pub(crate) pc: u64,
    /// Return addresses, innermost first; they begin with the handler's own
    /// frames, up to the one at `pc`.
    pub(crate) stack: &'a [u64],
}

/// The running sampler: samples the process's CPU time at a frequency
/// until stopped or dropped.
pub(crate) struct Sampler {
    stopped: bool,
    /// The `SIGPROF` action before ours, put back at the stop.
    previous: Option<libc::sigaction>,
}

impl Sampler {
    /// Installs the handler and arms the timer, `frequency` times a second
    /// of CPU time; no samples in the `blocklist` ranges. `None` if a
    /// sampler already runs.
    pub(crate) fn start(frequency: u32, blocklist: &[(u64, u64)]) -> io::Result<Option<Sampler>> {
        // Acquire pairs with the Release in `stop`: the last sampler is done.
        if ACTIVE
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Ok(None);
        }
        // From here on, dropping `sampler` stops what was started.
        let mut sampler = Sampler {
            stopped: false,
            previous: None,
        };
        reset_table(blocklist);
        ENABLED.store(true, Ordering::SeqCst);
        match install_handler() {
            Ok(previous) => sampler.previous = Some(previous),
            Err(error) => {
                sampler.stop();
                return Err(error);
            }
        }
        let period = period(frequency);
        let timer = libc::itimerval {
            it_interval: period,
            it_value: period,
        };
        if let Err(error) = set_timer(&timer) {
            sampler.stop();
            return Err(error);
        }
        Ok(Some(sampler))
    }

    /// Disarms the timer and waits until no handler runs (invariant 3).
    /// What was sampled stays in the table, for a last [`drain`](Self::drain).
    pub(crate) fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let off = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            it_value: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
        };
        // Disarming a valid timer does not fail; if it did, `ENABLED`
        // still turns the handler into a no-op.
        let _ = set_timer(&off);
        ENABLED.store(false, Ordering::SeqCst);
        while IN_FLIGHT.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        // The action before ours goes back, unless it was the default: a
        // SIGPROF still pending when the handler goes would then end the
        // process, so it is ignored instead, as pprof-rs does.
        let Some(previous) = self.previous.take() else {
            return;
        };
        // SAFETY: `previous` is the action the kernel gave back in `start`,
        // valid as it was; SIG_IGN is a valid disposition for SIGPROF, the
        // struct zeroed and its mask emptied.
        unsafe {
            if previous.sa_sigaction == libc::SIG_DFL {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = libc::SIG_IGN;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(libc::SIGPROF, &action, std::ptr::null_mut());
            } else {
                libc::sigaction(libc::SIGPROF, &previous, std::ptr::null_mut());
            }
        }
    }

    /// Hands every sample written so far to `each`, and frees its slot.
    pub(crate) fn drain(&self, mut each: impl FnMut(Sample<'_>)) {
        let mut stack = [0u64; DEPTH];
        for slot in &SLOTS {
            // Acquire pairs with the handler's Release: the slot is written.
            if slot.state.load(Ordering::Acquire) != READY {
                continue;
            }
            let depth = slot.depth.load(Ordering::Relaxed).min(DEPTH);
            for (to, from) in stack.iter_mut().zip(&slot.frames[..depth]) {
                *to = from.load(Ordering::Relaxed);
            }
            let mut name = [0u8; 16];
            name[..8].copy_from_slice(&slot.name[0].load(Ordering::Relaxed).to_ne_bytes());
            name[8..].copy_from_slice(&slot.name[1].load(Ordering::Relaxed).to_ne_bytes());
            let sample = Sample {
                thread_id: slot.thread_id.load(Ordering::Relaxed),
                name,
                pc: slot.pc.load(Ordering::Relaxed),
                stack: &stack[..depth],
            };
            each(sample);
            // Release: the reads above are done before a handler rewrites it.
            slot.state.store(FREE, Ordering::Release);
        }
    }

    /// Samples lost because the table was full.
    pub(crate) fn dropped(&self) -> u64 {
        DROPPED.load(Ordering::Relaxed)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop();
        // Release pairs with the Acquire in `start`.
        ACTIVE.store(false, Ordering::Release);
    }
}

/// Fills the blocklist and empties the table, before a profile.
fn reset_table(blocklist: &[(u64, u64)]) {
    for (i, pair) in BLOCKLIST.iter().enumerate() {
        let (start, end) = blocklist.get(i).copied().unwrap_or((0, 0));
        pair[0].store(start, Ordering::Relaxed);
        pair[1].store(end, Ordering::Relaxed);
    }
    // Leftovers from an earlier profile cut short cannot exist (invariant
    // 3), but a full table must not outlive its profile.
    for slot in &SLOTS {
        // Written only where needed: a page of the table never written
        // stays out of memory.
        if slot.state.load(Ordering::Relaxed) != FREE {
            slot.state.store(FREE, Ordering::Relaxed);
        }
    }
    DROPPED.store(0, Ordering::Relaxed);
}

/// Makes `on_sigprof` the handler of `SIGPROF`; the action it replaces.
fn install_handler() -> io::Result<libc::sigaction> {
    // SAFETY: `sigaction` is plain data, valid all zeroes; the kernel
    // writes the action it replaces into it before it is read.
    let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: `on_sigprof` has the signature `SA_SIGINFO` asks for and is
    // async-signal-safe (module docs); the `sigaction` struct is zeroed,
    // then its mask emptied by `sigemptyset`, so every field is valid.
    let installed = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigprof as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGPROF, &action, &mut previous)
    };
    if installed == 0 {
        Ok(previous)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The timer's period for `frequency` samples a second: whole seconds and
/// the microseconds under one (`setitimer` rejects a million or more).
fn period(frequency: u32) -> libc::timeval {
    let interval = 1_000_000 / i64::from(frequency.clamp(1, 1_000_000));
    libc::timeval {
        tv_sec: (interval / 1_000_000) as libc::time_t,
        tv_usec: (interval % 1_000_000) as libc::suseconds_t,
    }
}

fn set_timer(timer: &libc::itimerval) -> io::Result<()> {
    // SAFETY: `timer` is a valid `itimerval`; the old value is not asked for.
    let set = unsafe { libc::setitimer(libc::ITIMER_PROF, timer, std::ptr::null_mut()) };
    if set == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

extern "C" fn on_sigprof(
    _signal: libc::c_int,
    _info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: `__errno_location` returns this thread's errno, valid for the
    // thread's life; the handler restores it before returning, so the
    // interrupted code never sees the system calls made here.
    let errno = unsafe { *libc::__errno_location() };
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    if ENABLED.load(Ordering::SeqCst) {
        sample(context);
    }
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// The handler's work, with `ENABLED` seen true.
fn sample(context: *mut libc::c_void) {
    let pc = interrupted_pc(context);
    if pc == 0 || blocklisted(pc) {
        return;
    }
    let start = NEXT.fetch_add(1, Ordering::Relaxed);
    let Some(slot) = (0..SLOT_COUNT)
        .map(|i| &SLOTS[start.wrapping_add(i) % SLOT_COUNT])
        // Acquire pairs with the drain's Release: its reads are done.
        .find(|slot| {
            slot.state
                .compare_exchange(FREE, WRITING, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        })
    else {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut depth = 0;
    // SAFETY: `trace_unsynchronized` is unsafe only because it does not
    // take backtrace's lock, which a signal handler must not take; the
    // closure only stores into atomics and stops at `DEPTH`. See the
    // module docs for the unwinder's own safety in a handler.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            slot.frames[depth].store(frame.ip() as u64, Ordering::Relaxed);
            depth += 1;
            depth < DEPTH
        });
    }
    let mut name = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes, the size of `name`.
    unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
    // SAFETY: gettid takes no argument and cannot fail.
    let thread_id = unsafe { libc::syscall(libc::SYS_gettid) };
    slot.depth.store(depth, Ordering::Relaxed);
    slot.pc.store(pc, Ordering::Relaxed);
    slot.thread_id.store(thread_id as u64, Ordering::Relaxed);
    let (low, high) = name.split_at(8);
    slot.name[0].store(
        u64::from_ne_bytes(low.try_into().unwrap_or_default()),
        Ordering::Relaxed,
    );
    slot.name[1].store(
        u64::from_ne_bytes(high.try_into().unwrap_or_default()),
        Ordering::Relaxed,
    );
    // Release pairs with the drain's Acquire: the writes above come first.
    slot.state.store(READY, Ordering::Release);
}

fn blocklisted(pc: u64) -> bool {
    BLOCKLIST.iter().any(|pair| {
        let start = pair[0].load(Ordering::Relaxed);
        start != 0 && (start..pair[1].load(Ordering::Relaxed)).contains(&pc)
    })
}

/// The instruction the signal interrupted, from the handler's context.
fn interrupted_pc(context: *mut libc::c_void) -> u64 {
    if context.is_null() {
        return 0;
    }
    let context = context.cast::<libc::ucontext_t>();
    // SAFETY: with SA_SIGINFO the kernel passes a valid `ucontext_t` as
    // the third argument, alive while the handler runs.
    #[cfg(target_arch = "x86_64")]
    let pc = unsafe { (*context).uc_mcontext.gregs[libc::REG_RIP as usize] as u64 };
    // SAFETY: as above.
    #[cfg(target_arch = "aarch64")]
    let pc = unsafe { (*context).uc_mcontext.pc };
    pc
}

/// Asks the C allocator to return the free memory of all its arenas to
/// the system: the profile's map and symbol tables were allocated on the
/// profiling thread, in an arena glibc would otherwise keep. A no-op with
/// other allocators (Rust's global allocator may not be malloc at all).
pub(crate) fn give_back_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists, under
    // its locks; it is called here outside any signal handler.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The process has one sampler: the unit tests that start one take turns.
#[cfg(test)]
pub(crate) static TEST_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::period;

    #[test]
    fn a_sampler_at_one_hertz_starts() {
        let _turn = super::TEST_TURN.lock();
        let started = super::Sampler::start(1, &[]);
        assert!(matches!(started, Ok(Some(_))), "{:?}", started.err());
    }

    #[test]
    fn a_period_of_a_second_or_more_is_in_seconds() {
        let one_hz = period(1);
        assert_eq!((one_hz.tv_sec, one_hz.tv_usec), (1, 0));
        let hz_99 = period(99);
        assert_eq!((hz_99.tv_sec, hz_99.tv_usec), (0, 10_101));
    }
}
