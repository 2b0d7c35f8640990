//! The HTTP server's timer on smol: one thread that sleeps until the
//! earliest deadline, rather than async-io's reactor.
//!
//! Every connection keeps its next request head's deadline registered for
//! as long as it is open. While any timer is registered with async-io, its
//! reactor splits its map of timers at every tick, due or not, which
//! allocates a node per level of the map: some two allocations a request
//! under keep-alive, for deadlines that almost never pass. This thread
//! costs nothing per tick: a deadline costs an entry in its map while it
//! waits, and the map's lock at each poll before it is due and when it is
//! moved or dropped (the server polls a head deadline again only when it
//! rings, not once a request).
//!
//! The thread is started by the first [`ThreadTimer`] made (a server on
//! smol makes one as it is built) and lives as long as the process, as
//! async-io's own thread does. Should it fail to start (the process out of
//! threads), sleeps fall back to async-io's timer for the life of the
//! process: costlier, never lost.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};
use smol_hyper::rt::SmolTimer;

/// hyper's [`Timer`] for allstop's servers on smol: its sleeps are rung by a
/// thread of their own, so that a connection's deadline costs async-io's
/// reactor nothing at each of its ticks (see [`Smol`](crate::Smol) as an
/// [`HttpRuntime`](allstop_core::http::HttpRuntime)).
///
/// ```
/// use hyper::rt::Timer;
/// use std::time::{Duration, Instant};
///
/// let timer = allstop::smol::http::ThreadTimer::new();
/// let start = Instant::now();
/// smol::block_on(timer.sleep(Duration::from_millis(20)));
/// assert!(start.elapsed() >= Duration::from_millis(20));
/// ```
#[derive(Clone, Copy)]
pub struct ThreadTimer {
    /// The thread's map, or `None` if the thread could not be started.
    ringer: Option<&'static Ringer>,
}

impl ThreadTimer {
    /// The timer of the process's timer thread, which it starts if need be.
    pub fn new() -> Self {
        static RINGER: OnceLock<Option<&'static Ringer>> = OnceLock::new();
        ThreadTimer {
            ringer: *RINGER.get_or_init(Ringer::start),
        }
    }
}

impl fmt::Debug for ThreadTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadTimer")
            .field("thread", &self.ringer.is_some())
            .finish()
    }
}

impl Default for ThreadTimer {
    fn default() -> Self {
        ThreadTimer::new()
    }
}

impl Timer for ThreadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(far_or(Instant::now().checked_add(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        match self.ringer {
            Some(ringer) => Box::pin(ThreadSleep {
                deadline,
                ringer,
                entry: None,
            }),
            None => SmolTimer::new().sleep_until(deadline),
        }
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<ThreadSleep>() {
            Some(sleep) => sleep.get_mut().reset(new_deadline),
            // async-io's sleep (no thread), moved in place.
            None => SmolTimer::new().reset(sleep, new_deadline),
        }
    }
}

/// A deadline past any a server sets, for a duration too long to add.
fn far_or(deadline: Option<Instant>) -> Instant {
    // About 30 years, as tokio's timer does.
    deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365 * 30))
}

/// A sleep of a [`ThreadTimer`]: ready once its deadline has passed. A
/// reset moves it in place, without a new sleep, and the task it would
/// have woken is woken at the new deadline, as with tokio's and async-io's
/// sleeps.
///
/// ```
/// use hyper::rt::Timer;
/// use std::time::{Duration, Instant};
///
/// let timer = allstop::smol::http::ThreadTimer::new();
/// let mut sleep = timer.sleep(Duration::from_secs(3600));
/// let start = Instant::now();
/// timer.reset(&mut sleep, start + Duration::from_millis(20));
/// smol::block_on(sleep);
/// assert!(start.elapsed() >= Duration::from_millis(20));
/// ```
pub struct ThreadSleep {
    deadline: Instant,
    ringer: &'static Ringer,
    /// Its key in the thread's map, from its first poll before the
    /// deadline; the thread takes the entry out as it rings it, and the
    /// key stays until the sleep is polled, moved or dropped.
    entry: Option<Key>,
}

impl ThreadSleep {
    /// Moves the deadline, and the waiting task's waker with it.
    fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        let Some(old) = self.entry.take() else {
            return;
        };
        let mut sleeps = self.ringer.lock();
        // Gone: it rang, and its task will poll again.
        if let Some(waker) = sleeps.sleeps.remove(&old) {
            self.entry = Some(sleeps.insert(deadline, waker, &self.ringer.earlier));
        }
    }

    /// Takes this sleep's entry out of the map, if it has one there.
    fn leave(&mut self) {
        if let Some(key) = self.entry.take() {
            let waker = self.ringer.lock().sleeps.remove(&key);
            // Dropped with the lock released: it is the task's code.
            drop(waker);
        }
    }
}

impl fmt::Debug for ThreadSleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadSleep")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Future for ThreadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if Instant::now() >= this.deadline {
            this.leave();
            return Poll::Ready(());
        }
        // Cloned and dropped with the lock released: a waker is the
        // task's code, and may panic.
        let waker = cx.waker().clone();
        let mut sleeps = this.ringer.lock();
        let old = match this.entry.and_then(|key| sleeps.sleeps.get_mut(&key)) {
            Some(current) => mem::replace(current, waker),
            None => {
                this.entry = Some(sleeps.insert(this.deadline, waker, &this.ringer.earlier));
                return Poll::Pending;
            }
        };
        drop(sleeps);
        drop(old);
        Poll::Pending
    }
}

impl Sleep for ThreadSleep {}

impl Drop for ThreadSleep {
    fn drop(&mut self) {
        self.leave();
    }
}

/// A sleep's place in the map: its deadline, then the order sleeps came.
type Key = (Instant, u64);

/// The timer thread's map of waiting sleeps, and its bell.
struct Ringer {
    sleeps: Mutex<Sleeps>,
    /// Rung when a sleep earlier than the thread's wake-up arrives.
    earlier: Condvar,
}

#[derive(Default)]
struct Sleeps {
    sleeps: BTreeMap<Key, Waker>,
    next_id: u64,
    /// When the thread wakes next, if it sleeps for a deadline.
    wakes_at: Option<Instant>,
}

impl Sleeps {
    /// Adds a sleep; `earlier` wakes the thread if it is the earliest.
    fn insert(&mut self, deadline: Instant, waker: Waker, earlier: &Condvar) -> Key {
        let key = (deadline, self.next_id);
        self.next_id += 1;
        self.sleeps.insert(key, waker);
        // The thread sleeps until its earliest deadline: one earlier wakes
        // it.
        if !self.wakes_at.is_some_and(|at| at <= deadline) {
            self.wakes_at = Some(deadline);
            earlier.notify_one();
        }
        key
    }
}

impl Ringer {
    /// Starts the process's timer thread; `None` if it cannot be.
    fn start() -> Option<&'static Ringer> {
        let ringer: &'static Ringer = Box::leak(Box::new(Ringer {
            sleeps: Mutex::new(Sleeps::default()),
            earlier: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("allstop-timer".into())
            .spawn(move || ringer.run())
            .ok()
            .map(|_| ringer)
    }

    fn lock(&self) -> MutexGuard<'_, Sleeps> {
        // Nothing panics with the lock held (no waker is touched under
        // it), but a poisoned map is still whole.
        self.sleeps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes each sleep as its deadline passes, for ever.
    fn run(&self) {
        let mut due = Vec::new();
        let mut sleeps = self.lock();
        loop {
            let now = Instant::now();
            while let Some(entry) = sleeps.sleeps.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            sleeps.wakes_at = sleeps.sleeps.keys().next().map(|&(at, _)| at);
            if due.is_empty() {
                sleeps = match sleeps.wakes_at {
                    Some(at) => {
                        let wait = self.earlier.wait_timeout(sleeps, at - now);
                        wait.unwrap_or_else(PoisonError::into_inner).0
                    }
                    None => self
                        .earlier
                        .wait(sleeps)
                        .unwrap_or_else(PoisonError::into_inner),
                };
                continue;
            }
            drop(sleeps);
            for waker in due.drain(..) {
                // A waker that panics as it wakes (or as it drops) stops
                // neither the other wakes nor the thread.
                if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| waker.wake())) {
                    if let Err(again) = panic::catch_unwind(AssertUnwindSafe(|| drop(payload))) {
                        mem::forget(again);
                    }
                }
            }
            // A burst of deadlines leaves no burst's worth of memory.
            if due.capacity() > 1024 {
                due.shrink_to(64);
            }
            sleeps = self.lock();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};
    use std::task::Wake;

    use futures::future::{self, Either};

    use super::*;

    /// A timer on a thread of its own, so that no other test's sleeps wake
    /// its thread.
    fn own_timer() -> (ThreadTimer, &'static Ringer) {
        let ringer = Ringer::start().expect("the timer thread starts");
        let timer = ThreadTimer {
            ringer: Some(ringer),
        };
        (timer, ringer)
    }

    /// Whether `sleep` rings before async-io's timer of `bound` does. The
    /// bound is polled first: a sleep whose deadline passed without a ring
    /// does not count.
    fn rings_within<F: Future + Unpin>(sleep: F, bound: Duration) -> bool {
        smol::block_on(async {
            let bound = async_io::Timer::after(bound);
            matches!(future::select(bound, sleep).await, Either::Right(_))
        })
    }

    /// Polls `sleep` once with `waker`: whether it is pending (then it is
    /// in the map).
    fn pending_with(sleep: &mut Pin<Box<dyn Sleep>>, waker: &Waker) -> bool {
        sleep
            .as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_pending()
    }

    fn pending(sleep: &mut Pin<Box<dyn Sleep>>) -> bool {
        pending_with(sleep, &futures::task::noop_waker())
    }

    fn waiting(ringer: &Ringer) -> usize {
        ringer.lock().sleeps.len()
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(10)
    }

    /// A waker that says when it is woken.
    struct Tells(Mutex<mpsc::Sender<()>>);

    impl Tells {
        fn waker() -> (Waker, mpsc::Receiver<()>) {
            let (tx, rx) = mpsc::channel();
            (Waker::from(Arc::new(Tells(Mutex::new(tx)))), rx)
        }
    }

    impl Wake for Tells {
        fn wake(self: Arc<Self>) {
            let _ = self.0.lock().unwrap().send(());
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);
    const BOUND: Duration = Duration::from_secs(10);

    #[test]
    fn sleeps_ring_at_their_deadlines_never_before() {
        let (timer, ringer) = own_timer();
        let start = Instant::now();
        let lengths = [30, 5, 20, 5, 0, 10].map(Duration::from_millis);
        let sleeps = lengths.map(|length| timer.sleep(length));
        let rung = sleeps
            .into_iter()
            .zip(lengths)
            .map(|(sleep, length)| async move {
                sleep.await;
                assert!(start.elapsed() >= length, "rang before {length:?}");
            });
        assert!(rings_within(Box::pin(future::join_all(rung)), BOUND));
        assert_eq!(waiting(ringer), 0, "rung sleeps leave the map");
    }

    #[test]
    fn an_earlier_sleep_wakes_the_thread_sleeping_for_a_later_one() {
        let (timer, _) = own_timer();
        let mut late = timer.sleep(HOUR);
        assert!(!rings_within(&mut late, Duration::from_millis(20)));
        // The thread now sleeps for an hour, unless told of this one.
        let mut soon = timer.sleep(Duration::from_millis(10));
        assert!(rings_within(&mut soon, BOUND));
    }

    #[test]
    fn a_reset_moves_the_deadline_either_way() {
        let (timer, ringer) = own_timer();
        let mut sleep = timer.sleep(HOUR);
        assert!(pending(&mut sleep));
        timer.reset(&mut sleep, soon() + HOUR);
        assert_eq!(waiting(ringer), 1, "moved, not added");
        assert!(!rings_within(&mut sleep, Duration::from_millis(50)));
        timer.reset(&mut sleep, soon());
        assert_eq!(waiting(ringer), 1);
        assert!(rings_within(&mut sleep, BOUND));
        assert_eq!(waiting(ringer), 0);
    }

    /// hyper may reset a sleep it has polled and not poll it again before
    /// the new deadline: the task must still be woken.
    fn wakes_the_waiting_task_at_the_new_deadline(timer: ThreadTimer) {
        let (waker, woken) = Tells::waker();
        let mut sleep = timer.sleep(HOUR);
        assert!(pending_with(&mut sleep, &waker));
        timer.reset(&mut sleep, soon());
        assert!(
            woken.recv_timeout(BOUND).is_ok(),
            "the reset lost the waker"
        );
    }

    #[test]
    fn a_reset_wakes_the_waiting_task_at_the_new_deadline() {
        wakes_the_waiting_task_at_the_new_deadline(own_timer().0);
    }

    #[test]
    fn a_dropped_sleep_leaves_the_map() {
        let (timer, ringer) = own_timer();
        let mut sleep = timer.sleep(HOUR);
        assert!(pending(&mut sleep));
        assert_eq!(waiting(ringer), 1);
        drop(sleep);
        assert_eq!(waiting(ringer), 0);
    }

    #[test]
    fn a_task_polling_again_replaces_its_waker() {
        let (timer, ringer) = own_timer();
        let mut sleep = timer.sleep(HOUR);
        assert!(pending(&mut sleep));
        assert!(pending(&mut sleep));
        assert_eq!(waiting(ringer), 1, "one entry, however many polls");
        // Polled by another task: the ring must wake that one.
        timer.reset(&mut sleep, Instant::now() + Duration::from_millis(200));
        let rung = std::thread::spawn(move || rings_within(&mut sleep, BOUND));
        assert!(rung.join().unwrap());
        assert_eq!(waiting(ringer), 0);
    }

    struct Panics(AtomicUsize);

    impl Wake for Panics {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
            // Without the panic hook, whose backtrace can take longer than
            // the test's bound on a loaded machine.
            panic::resume_unwind(Box::new("a waker that panics as it wakes"));
        }
    }

    #[test]
    fn a_waker_that_panics_wakes_the_others_and_the_thread_goes_on() {
        let (timer, _) = own_timer();
        let panics = Arc::new(Panics(AtomicUsize::new(0)));
        let mut first = timer.sleep(HOUR);
        assert!(pending_with(&mut first, &Waker::from(panics.clone())));
        let mut second = timer.sleep(HOUR);
        assert!(pending(&mut second));
        let at = soon();
        timer.reset(&mut first, at);
        timer.reset(&mut second, at);
        assert!(rings_within(&mut second, BOUND));
        let mut later = timer.sleep(Duration::from_millis(10));
        assert!(rings_within(&mut later, BOUND));
        assert_eq!(
            panics.0.load(Ordering::SeqCst),
            1,
            "the panicking waker was woken"
        );
    }

    /// Wakes by using the timer, as a task polled at once by its waker
    /// would.
    struct UsesTheTimer(ThreadTimer, Mutex<mpsc::Sender<()>>);

    impl Wake for UsesTheTimer {
        fn wake(self: Arc<Self>) {
            let mut sleep = self.0.sleep(HOUR);
            assert!(pending(&mut sleep));
            drop(sleep);
            let _ = self.1.lock().unwrap().send(());
        }
    }

    #[test]
    fn a_waker_may_use_the_timer() {
        let (timer, ringer) = own_timer();
        let (tx, woken) = mpsc::channel();
        let waker = Waker::from(Arc::new(UsesTheTimer(timer, Mutex::new(tx))));
        let mut sleep = timer.sleep(Duration::from_millis(5));
        assert!(pending_with(&mut sleep, &waker));
        let woken = woken.recv_timeout(BOUND).is_ok();
        if !woken {
            // Its drop would wait for the lock the ring holds.
            mem::forget(sleep);
            panic!("the ring deadlocked");
        }
        drop(sleep);
        assert_eq!(waiting(ringer), 0);
    }

    #[test]
    fn without_its_thread_the_timer_sleeps_on_async_io() {
        let timer = ThreadTimer { ringer: None };
        let start = Instant::now();
        let mut sleep = timer.sleep(Duration::from_millis(10));
        assert!(rings_within(&mut sleep, BOUND));
        assert!(start.elapsed() >= Duration::from_millis(10));
        timer.reset(&mut sleep, Instant::now() + HOUR);
        assert!(!rings_within(&mut sleep, Duration::from_millis(20)));
        wakes_the_waiting_task_at_the_new_deadline(timer);
    }

    #[test]
    fn a_duration_too_long_to_add_sleeps_for_ever() {
        let (timer, _) = own_timer();
        let mut sleep = timer.sleep(Duration::MAX);
        assert!(!rings_within(&mut sleep, Duration::from_millis(20)));
    }
}
