//! A one-way flag with an event of its own, for the HTTP server's drain:
//! every connection watches it on each of its wakes, so its waiters
//! register once rather than on every poll, as a
//! [`Latch`](crate::latch::Latch)'s must (its event may be shared, so a
//! notification does not mean the latch is set).

#[cfg(loom)]
use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::waiter::{Event, Waiter};

/// A flag with an event of its own, for flags that many tasks poll on each
/// of their wakes (the HTTP server's drain, which every connection
/// watches): a [`FlagWaiter`] registers its task once, where a latch's
/// waiter renews its registration, taking the event's lock, on every poll.
///
/// # Invariants
///
/// 1. `set` goes from `false` to `true` once and never back.
/// 2. The event is this flag's alone (never shared, never chained), and
///    notified only by the call that sets the flag: a waker registered on it
///    is taken out only once the flag is set.
/// 3. A waiter registered with a waker that wakes the polling task need not
///    register again: the flag is checked first, and a set after that check
///    wakes that waker (2).
#[derive(Debug)]
pub(crate) struct Flag {
    set: AtomicBool,
    event: Event,
}

impl Flag {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Flag {
            set: AtomicBool::new(false),
            event: Event::new(),
        })
    }

    /// Sets the flag; returns whether this call set it.
    pub(crate) fn set(&self) -> bool {
        // AcqRel: whoever sees the flag (Acquire in `is_set`) sees what the
        // setter did before setting it.
        let first = !self.set.swap(true, Ordering::AcqRel);
        if first {
            self.event.notify_all();
        }
        first
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Ready once the flag is set.
    pub(crate) fn poll_set(&self, cx: &mut Context<'_>, waiter: &mut FlagWaiter) -> Poll<()> {
        if self.is_set() {
            *waiter = FlagWaiter::default();
            return Poll::Ready(());
        }
        // Registered with this task already (invariant 3).
        if waiter.waiter.is_registered()
            && waiter
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        match waiter.waiter.poll(cx, &self.event, || self.is_set()) {
            Poll::Ready(()) => {
                *waiter = FlagWaiter::default();
                Poll::Ready(())
            }
            Poll::Pending => {
                waiter.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// One task's wait on a [`Flag`]: its registration, and the waker it
/// registered.
#[derive(Debug, Default)]
pub(crate) struct FlagWaiter {
    waiter: Waiter,
    waker: Option<Waker>,
}

/// A model check of the invariants above: loom runs every interleaving of
/// the threads, the event's list included (see `latch.rs`).
#[cfg(all(test, loom))]
mod model {
    use std::task::{Wake, Waker};

    use super::*;

    /// Wakes the waiting thread. Its clones share one `Arc`, so they
    /// `will_wake` each other, as a runtime's wakers of one task do (loom's
    /// own `block_on` waker does not, which would leave invariant 3's path
    /// untried).
    struct Wakeup(loom::sync::Notify);

    impl Wake for Wakeup {
        fn wake(self: Arc<Self>) {
            self.0.notify();
        }
    }

    /// Waits for the flag, polling twice on each wake: the second poll
    /// takes the path that does not register again (invariant 3).
    fn wait(flag: &Flag) {
        let wakeup = Arc::new(Wakeup(loom::sync::Notify::new()));
        let waker = Waker::from(wakeup.clone());
        let mut cx = Context::from_waker(&waker);
        let mut waiter = FlagWaiter::default();
        while flag.poll_set(&mut cx, &mut waiter).is_pending()
            && flag.poll_set(&mut cx, &mut waiter).is_pending()
        {
            wakeup.0.wait();
        }
    }

    // However the set and the wait interleave, the waiter is woken (loom
    // reports a thread left asleep as a deadlock).
    #[test]
    fn loom_a_flag_waiter_is_never_left_asleep() {
        loom::model(|| {
            let flag = Flag::new();
            let setter = {
                let flag = flag.clone();
                loom::thread::spawn(move || {
                    flag.set();
                })
            };
            wait(&flag);
            assert!(flag.is_set());
            setter.join().unwrap();
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::test_wakers::counter;

    #[test]
    fn a_waiter_polled_again_by_its_task_is_woken_by_the_set() {
        let flag = Flag::new();
        let mut waiter = FlagWaiter::default();
        let (count, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..3 {
            assert!(flag.poll_set(&mut cx, &mut waiter).is_pending());
        }
        assert!(flag.set());
        assert_eq!(count.wakes(), 1);
        assert!(flag.poll_set(&mut cx, &mut waiter).is_ready());
        assert!(!flag.set(), "set twice");
    }

    // Invariant 3 holds for the waker it was registered with only: polled
    // by another task, the waiter registers that task instead.
    #[test]
    fn a_waiter_polled_by_another_task_wakes_that_task() {
        let flag = Flag::new();
        let mut waiter = FlagWaiter::default();
        let (first, first_waker) = counter();
        let (second, second_waker) = counter();
        assert!(flag
            .poll_set(&mut Context::from_waker(&first_waker), &mut waiter)
            .is_pending());
        assert!(flag
            .poll_set(&mut Context::from_waker(&second_waker), &mut waiter)
            .is_pending());
        flag.set();
        assert_eq!(second.wakes(), 1, "the second task slept on");
        assert_eq!(first.wakes(), 0);
    }

    #[test]
    fn a_flag_set_before_the_poll_is_ready_at_once() {
        let flag = Flag::new();
        flag.set();
        let (_, waker) = counter();
        let mut waiter = FlagWaiter::default();
        assert!(flag
            .poll_set(&mut Context::from_waker(&waker), &mut waiter)
            .is_ready());
    }
}
