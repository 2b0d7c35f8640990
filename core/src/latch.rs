//! A one-way flag that tasks can wait on: set once, never reset.
//!
//! # Invariants
//!
//! 1. `set` goes from `false` to `true` once and never back.
//! 2. Every waiter registered before the flag is set is woken by the call
//!    that sets it; a waiter registered after sees the flag set (the
//!    [`LeanWaiter`] re-checks after registering, and the event's lock
//!    orders its registration and the notification).
//! 3. A chained latch ([`Latch::child`]) reads as set when it or any latch
//!    up its chain is set, and every latch of one chain notifies the same
//!    event, so a waiter on any of them is woken by any of them.

#[cfg(loom)]
use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::waiter::{Event, LeanWaiter};

#[derive(Debug)]
pub(crate) struct Latch {
    set: AtomicBool,
    parent: Option<Arc<Latch>>,
    /// Shared by the whole chain (invariant 3).
    event: Event,
}

impl Latch {
    /// A latch with an event of its own.
    #[cfg(test)]
    pub(crate) fn new() -> Arc<Self> {
        Latch::on(&Event::new())
    }

    /// A latch that notifies `event`, which other latches may share: one
    /// waiter then watches them all.
    pub(crate) fn on(event: &Event) -> Arc<Self> {
        Arc::new(Latch {
            set: AtomicBool::new(false),
            parent: None,
            event: event.clone(),
        })
    }

    /// A latch that reads as set when `self` is, or when it is set itself.
    pub(crate) fn child(self: &Arc<Self>) -> Arc<Self> {
        Arc::new(Latch {
            set: AtomicBool::new(false),
            parent: Some(self.clone()),
            event: self.event.clone(),
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
        self.set.load(Ordering::Acquire) || self.parent.as_ref().is_some_and(|p| p.is_set())
    }

    /// Ready once the latch reads as set.
    pub(crate) fn poll_set(&self, cx: &mut Context<'_>, waiter: &mut LeanWaiter) -> Poll<()> {
        waiter.poll(cx, &self.event, || self.is_set())
    }

    /// Gives back the slot `waiter` took on this latch's event, if it
    /// holds one: its owner calls this as it is dropped.
    pub(crate) fn release(&self, waiter: &mut LeanWaiter) {
        waiter.release(&self.event);
    }
}

/// A model check of the invariants above: loom runs every interleaving of
/// the threads, the event's list and its lock included.
/// `RUSTFLAGS="--cfg loom" cargo test -p allstop-core --lib --release loom`;
/// `.ci/run` runs it.
#[cfg(all(test, loom))]
mod model {
    use std::future::poll_fn;

    use super::*;

    fn wait(latch: &Latch) {
        let mut waiter = LeanWaiter::new();
        loom::future::block_on(poll_fn(|cx| latch.poll_set(cx, &mut waiter)));
    }

    // Invariant 2: however the set and the wait interleave, the waiter is
    // woken (loom reports a thread left asleep as a deadlock).
    #[test]
    fn loom_a_waiter_is_never_left_asleep() {
        loom::model(|| {
            let latch = Latch::new();
            let setter = {
                let latch = latch.clone();
                loom::thread::spawn(move || {
                    latch.set();
                })
            };
            wait(&latch);
            assert!(latch.is_set());
            setter.join().unwrap();
        });
    }

    // Invariant 3: a waiter on a child is woken by its parent's set.
    #[test]
    fn loom_a_child_waiter_is_woken_by_its_parent() {
        loom::model(|| {
            let parent = Latch::new();
            let child = parent.child();
            let setter = {
                let parent = parent.clone();
                loom::thread::spawn(move || {
                    parent.set();
                })
            };
            wait(&child);
            setter.join().unwrap();
        });
    }

    // Invariant 3 on a shared event: the set of the other latch wakes the
    // waiter too early, and it must register again for its own; then it
    // gives its slot back (the list empties) as the set may still be
    // notifying.
    #[test]
    fn loom_a_waiter_woken_by_another_latch_waits_for_its_own() {
        loom::model(|| {
            let event = Event::new();
            let (mine, other) = (Latch::on(&event), Latch::on(&event));
            let waiter = {
                let mine = mine.clone();
                loom::thread::spawn(move || wait(&mine))
            };
            other.set();
            mine.set();
            waiter.join().unwrap();
        });
    }

    // Invariant 1: of two racing sets, exactly one sets the flag.
    #[test]
    fn loom_racing_sets_set_once() {
        loom::model(|| {
            let latch = Latch::new();
            let other = {
                let latch = latch.clone();
                loom::thread::spawn(move || latch.set())
            };
            let mine = latch.set();
            let theirs = other.join().unwrap();
            assert!(mine ^ theirs);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_child_follows_its_parent_but_not_the_other_way() {
        let parent = Latch::new();
        let child = parent.child();
        assert!(child.set());
        assert!(!child.set(), "set twice");
        assert!(child.is_set() && !parent.is_set());
        let other = parent.child();
        assert!(parent.set());
        assert!(other.is_set());
    }

    #[test]
    fn a_waiter_on_a_child_is_woken_by_its_parent() {
        let parent = Latch::new();
        let child = parent.child();
        let mut waiter = LeanWaiter::new();
        let (woken, waker) = crate::test_wakers::counter();
        let mut cx = Context::from_waker(&waker);
        assert!(child.poll_set(&mut cx, &mut waiter).is_pending());
        parent.set();
        assert_eq!(woken.wakes(), 1);
        assert!(child.poll_set(&mut cx, &mut waiter).is_ready());
    }
}
