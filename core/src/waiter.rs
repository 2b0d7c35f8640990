//! Waiting until a condition holds, without a lost wake-up: an [`Event`]
//! keeps the wakers of the tasks that wait on it, and a [`Waiter`] checks
//! its condition, registers its task's waker, and checks again before
//! sleeping. Every wait in the crate (the stop, the force, connections
//! closing, a connection falling idle) is one.
//!
//! An event keeps each waiting task's waker in one slot of a shared list,
//! so that a wait costs no allocation of its own: a thousand members that
//! wait on their stop cost a thousand slots of 16 bytes, not a thousand
//! listeners of 56 bytes each, as `event_listener`'s would.
//!
//! # Invariants
//!
//! 1. A slot belongs to one waiter ([`Waiter`], or [`LeanWaiter`], whose
//!    owner gives it back) from its first registration until the waiter is
//!    done or dropped; no other waiter is given it meanwhile.
//! 2. [`Event::notify_all`] takes the waker out of every slot that holds
//!    one, and wakes it. A slot left empty while it belongs to a waiter
//!    means the event was notified since the waiter last registered.
//! 3. A waiter registers before its second check of the condition, under
//!    the list's lock; whoever makes the condition true does so before
//!    `notify_all` takes that lock. So a registration is either seen by the
//!    notification, or comes after it and sees the condition true.
//! 4. No waker is cloned, woken or dropped while the lock is held, and a
//!    waker that panics as it wakes neither stops the others being woken
//!    nor reaches the notifier: what a member's own executor does cannot
//!    keep the rest of the group asleep.

#[cfg(loom)]
use loom::sync::{Arc, Mutex, MutexGuard};
use std::fmt;
use std::num::NonZeroUsize;
#[cfg(not(loom))]
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::unwind;

/// How many wakers `notify_all` takes out of the list at a time: it wakes
/// them with the lock released (invariant 4), so that a waker that polls
/// its task at once, or registers again, finds the list free.
const BATCH: usize = 32;

/// Something tasks wait on: the wakers of those waiting, woken all at once.
/// Its clones share one list: notifying one wakes the waiters of all.
#[derive(Clone, Default)]
pub(crate) struct Event {
    slots: Arc<Mutex<Slots>>,
}

/// How many slots a list keeps once no waiter holds any: past this, its
/// memory goes back (a burst of waiters, a million connections say, is not
/// kept for the life of the event), while a list that fills and empties
/// in small numbers, as most do, keeps its capacity. Only once *every*
/// waiter has left: a list with one slot held keeps its length, and its
/// notification looks as far as its last waiting task (the drain's flag
/// after a burst of connections, while one long-lived one stays, say).
const KEPT_EMPTY: usize = 1024;

#[derive(Default)]
struct Slots {
    /// One per waiter that holds one (invariant 1): its waker, or none
    /// once notified.
    wakers: Vec<Option<Waker>>,
    /// Slots no waiter holds, to be given out again.
    free: Vec<usize>,
    /// How many slots hold a waker: a notification stops looking once it
    /// has taken them all.
    waiting: usize,
}

impl Event {
    pub(crate) fn new() -> Self {
        Event::default()
    }

    /// Wakes every task waiting on this event (invariant 2).
    pub(crate) fn notify_all(&self) {
        let mut next = 0;
        loop {
            let mut batch: [Option<Waker>; BATCH] = Default::default();
            {
                let mut slots = lock(&self.slots);
                let mut taken = 0;
                while taken < BATCH && slots.waiting > 0 && next < slots.wakers.len() {
                    if let Some(waker) = slots.wakers[next].take() {
                        slots.waiting -= 1;
                        batch[taken] = Some(waker);
                        taken += 1;
                    }
                    next += 1;
                }
                slots.check();
                if taken == 0 {
                    return;
                }
            }
            for waker in batch.into_iter().flatten() {
                let _ = unwind::catch(|| waker.wake());
            }
        }
    }

    /// A slot holding `waker`, for a waiter's first registration.
    fn take_slot(&self, waker: &Waker) -> usize {
        // Cloned before the lock: a clone that panics, or that looks at
        // this list, changes nothing.
        let waker = Some(waker.clone());
        let mut slots = lock(&self.slots);
        slots.waiting += 1;
        let index = match slots.free.pop() {
            Some(index) => {
                slots.wakers[index] = waker;
                index
            }
            None => {
                slots.wakers.push(waker);
                slots.wakers.len() - 1
            }
        };
        slots.check();
        index
    }

    /// Puts `waker` in slot `index`, unless the one there wakes the same
    /// task: after a notification, which left the slot empty, or for a
    /// waiter polled by another task.
    fn renew(&self, index: usize, waker: &Waker) {
        let current = lock(&self.slots).wakers[index]
            .as_ref()
            .is_some_and(|current| current.will_wake(waker));
        if current {
            return;
        }
        // Cloned with the lock released, as in `take_slot`; the slot is
        // this waiter's alone (invariant 1), and a notification meanwhile
        // is seen by the condition's second check (invariant 3).
        let waker = waker.clone();
        let mut slots = lock(&self.slots);
        let replaced = slots.wakers[index].replace(waker);
        if replaced.is_none() {
            slots.waiting += 1;
        }
        slots.check();
        drop(slots);
        // Outside the lock, as in `give_back`.
        drop(replaced);
    }

    /// Takes slot `index` back from its waiter, and its waker with it.
    fn give_back(&self, index: usize) {
        let mut slots = lock(&self.slots);
        let waker = slots.wakers[index].take();
        if waker.is_some() {
            slots.waiting -= 1;
        }
        slots.free.push(index);
        // No slot held: the list starts again from nothing; a large one
        // gives its memory back.
        let mut emptied = None;
        if slots.free.len() == slots.wakers.len() {
            debug_assert_eq!(slots.waiting, 0);
            if slots.wakers.capacity() > KEPT_EMPTY {
                emptied = Some(std::mem::take(&mut *slots));
            } else {
                slots.wakers.clear();
                slots.free.clear();
            }
        }
        slots.check();
        drop(slots);
        // Outside the lock: the last reference to a task may free it.
        drop(waker);
        drop(emptied);
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event").finish_non_exhaustive()
    }
}

impl Slots {
    /// In tests and model checks, after every change: the count of waiting
    /// slots is exact, and each free slot is empty, in range and free once.
    #[cfg(any(test, loom))]
    fn check(&self) {
        let filled = self.wakers.iter().filter(|w| w.is_some()).count();
        assert_eq!(self.waiting, filled, "the waiting count drifted");
        let mut seen = vec![false; self.wakers.len()];
        for &index in &self.free {
            assert!(self.wakers[index].is_none(), "a free slot holds a waker");
            assert!(
                !std::mem::replace(&mut seen[index], true),
                "a slot freed twice"
            );
        }
    }

    #[cfg(not(any(test, loom)))]
    fn check(&self) {}
}

/// The list, even if a panic happened while it was held: no user code runs
/// under the lock but a waker's `will_wake`, which compares two pointers,
/// and each change is complete before the next may panic (an allocation
/// failing aborts).
fn lock(slots: &Mutex<Slots>) -> MutexGuard<'_, Slots> {
    slots
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One task's wait on an [`Event`] for a condition: its slot, once it has
/// registered, and the event, to give the slot back when dropped.
#[derive(Default)]
pub(crate) struct Waiter {
    slot: LeanWaiter,
    event: Option<Event>,
}

impl Waiter {
    pub(crate) fn new() -> Self {
        Waiter::default()
    }

    /// Whether this waiter holds a slot: its task's waker, or the mark that
    /// the event was notified since.
    pub(crate) fn is_registered(&self) -> bool {
        self.slot.slot.is_some()
    }

    /// As [`LeanWaiter::poll`]; the first `event` is kept, to give the slot
    /// back to it.
    pub(crate) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        event: &Event,
        ready: impl Fn() -> bool,
    ) -> Poll<()> {
        let event = self.event.get_or_insert_with(|| event.clone());
        self.slot.poll(cx, event, ready)
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Some(event) = &self.event {
            self.slot.release(event);
        }
    }
}

/// A [`Waiter`] that does not hold its event: 8 bytes, not 16, for a
/// waiter kept by the thousand (in each member's [`Stop`](crate::Stop)).
/// Its owner polls it on one event only, and gives its slot back with
/// [`release`](LeanWaiter::release) before it is dropped; a slot not given
/// back stays taken, with its waker, until the event is dropped.
#[derive(Debug, Default)]
pub(crate) struct LeanWaiter {
    /// Its slot's index, plus one.
    slot: Option<NonZeroUsize>,
}

impl LeanWaiter {
    pub(crate) fn new() -> Self {
        LeanWaiter::default()
    }

    /// Ready once `ready()` holds; otherwise registered to be woken by
    /// `event`, which whoever makes `ready()` true must notify after. Always
    /// polled on the same `event`.
    pub(crate) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        event: &Event,
        ready: impl Fn() -> bool,
    ) -> Poll<()> {
        if ready() {
            self.release(event);
            return Poll::Ready(());
        }
        match self.slot {
            None => self.slot = NonZeroUsize::new(event.take_slot(cx.waker()) + 1),
            Some(slot) => event.renew(slot.get() - 1, cx.waker()),
        }
        // The second check (invariant 3).
        if ready() {
            self.release(event);
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Gives the slot back to `event`, the one it was polled on.
    pub(crate) fn release(&mut self, event: &Event) {
        if let Some(slot) = self.slot.take() {
            event.give_back(slot.get() - 1);
        }
    }
}

impl Drop for LeanWaiter {
    fn drop(&mut self) {
        debug_assert!(
            self.slot.is_none(),
            "a lean waiter dropped with its slot: its owner must release it"
        );
    }
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("registered", &self.is_registered())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;
    use crate::test_wakers::counter;

    /// Polls `waiter` with `waker` until `ready`.
    fn poll(waiter: &mut Waiter, waker: &Waker, event: &Event, ready: &Cell<bool>) -> Poll<()> {
        waiter.poll(&mut Context::from_waker(waker), event, || ready.get())
    }

    #[test]
    fn a_notification_wakes_every_waiter_however_many() {
        let event = Event::new();
        let never = Cell::new(false);
        let waiters: Vec<_> = (0..3 * BATCH + 1)
            .map(|_| {
                let (count, waker) = counter();
                let mut waiter = Waiter::new();
                assert!(poll(&mut waiter, &waker, &event, &never).is_pending());
                (count, waiter)
            })
            .collect();
        event.notify_all();
        for (count, _) in &waiters {
            assert_eq!(count.wakes(), 1);
        }
    }

    // Invariant 2: a waiter the event woke for another condition (the event
    // is shared) registers again, and the next notification wakes it.
    #[test]
    fn a_waiter_woken_before_its_condition_holds_is_woken_again() {
        let event = Event::new();
        let ready = Cell::new(false);
        let (count, waker) = counter();
        let mut waiter = Waiter::new();
        assert!(poll(&mut waiter, &waker, &event, &ready).is_pending());
        event.notify_all();
        assert!(poll(&mut waiter, &waker, &event, &ready).is_pending());
        ready.set(true);
        event.notify_all();
        assert_eq!(count.wakes(), 2, "the second notification found no waker");
        assert!(poll(&mut waiter, &waker, &event, &ready).is_ready());
    }

    #[test]
    fn a_waiter_polled_by_another_task_wakes_that_task() {
        let event = Event::new();
        let never = Cell::new(false);
        let (first, first_waker) = counter();
        let (second, second_waker) = counter();
        let mut waiter = Waiter::new();
        assert!(poll(&mut waiter, &first_waker, &event, &never).is_pending());
        assert!(poll(&mut waiter, &second_waker, &event, &never).is_pending());
        event.notify_all();
        assert_eq!((first.wakes(), second.wakes()), (0, 1));
        assert_eq!(Arc::strong_count(&first), 2, "the replaced waker was kept");
    }

    // Invariant 1: a waiter done or dropped gives its slot back, and with it
    // its waker (which may hold a task's memory); the next waiter takes the
    // slot.
    #[test]
    fn a_waiter_done_or_dropped_gives_back_its_slot_and_its_waker() {
        let event = Event::new();
        let ready = Cell::new(false);
        let never = Cell::new(false);
        // Another waiter holds the first slot, so the list is never empty.
        let (_, other) = counter();
        let mut holder = Waiter::new();
        assert!(poll(&mut holder, &other, &event, &never).is_pending());
        let (count, waker) = counter();
        let mut waiter = Waiter::new();
        assert!(poll(&mut waiter, &waker, &event, &ready).is_pending());
        assert_eq!(Arc::strong_count(&count), 3);
        drop(waiter);
        assert_eq!(Arc::strong_count(&count), 2);
        let mut waiter = Waiter::new();
        assert!(poll(&mut waiter, &waker, &event, &ready).is_pending());
        ready.set(true);
        assert!(poll(&mut waiter, &waker, &event, &ready).is_ready());
        assert!(!waiter.is_registered());
        assert_eq!(Arc::strong_count(&count), 2);
        assert_eq!(lock(&event.slots).wakers.len(), 2, "a slot was not reused");
        event.notify_all();
        assert_eq!(count.wakes(), 0, "a waiter that was done was woken");
    }

    /// A waker that, as it wakes, looks whether the event's list is locked.
    struct Looks {
        slots: Arc<Mutex<Slots>>,
        locked: AtomicUsize,
    }

    impl Wake for Looks {
        fn wake(self: Arc<Self>) {
            if self.slots.try_lock().is_err() {
                self.locked.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    // Invariant 4: a waker that polls its task at once, which registers
    // again, would deadlock on a list still locked.
    #[test]
    fn wakers_are_woken_with_the_list_unlocked() {
        let event = Event::new();
        let looks = Arc::new(Looks {
            slots: event.slots.clone(),
            locked: AtomicUsize::new(0),
        });
        let waker = Waker::from(looks.clone());
        let mut waiter = Waiter::new();
        assert!(poll(&mut waiter, &waker, &event, &Cell::new(false)).is_pending());
        event.notify_all();
        assert_eq!(looks.locked.load(Ordering::SeqCst), 0);
    }

    /// A waker that panics as it wakes.
    struct Panics;

    impl Wake for Panics {
        fn wake(self: Arc<Self>) {
            panic!("a hostile waker");
        }
    }

    // Invariant 4: a member polled by an executor whose waker panics
    // cannot keep the others asleep, nor unwind through the notifier.
    #[test]
    fn a_waker_that_panics_does_not_keep_the_others_asleep() {
        let event = Event::new();
        let never = Cell::new(false);
        let (count, waker) = counter();
        let hostile = Waker::from(Arc::new(Panics));
        let mut waiters = [Waiter::new(), Waiter::new(), Waiter::new()];
        assert!(poll(&mut waiters[0], &hostile, &event, &never).is_pending());
        assert!(poll(&mut waiters[1], &waker, &event, &never).is_pending());
        assert!(poll(&mut waiters[2], &hostile, &event, &never).is_pending());
        event.notify_all();
        assert_eq!(count.wakes(), 1);
        // The list still works.
        assert!(poll(&mut waiters[1], &waker, &event, &never).is_pending());
        event.notify_all();
        assert_eq!(count.wakes(), 2);
    }

    /// A waker that, as it is dropped, looks whether the event's list is
    /// locked.
    struct LooksAsItGoes(Arc<Looks>);

    impl Drop for LooksAsItGoes {
        fn drop(&mut self) {
            if self.0.slots.try_lock().is_err() {
                self.0.locked.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    impl Wake for LooksAsItGoes {
        fn wake(self: Arc<Self>) {}
    }

    // Invariant 4: the last reference to a task, dropped with its waker,
    // may run anything, this list included.
    #[test]
    fn wakers_are_dropped_with_the_list_unlocked() {
        let event = Event::new();
        let looks = Arc::new(Looks {
            slots: event.slots.clone(),
            locked: AtomicUsize::new(0),
        });
        let never = Cell::new(false);
        let mut waiter = Waiter::new();
        // Replaced by another task's waker, then given back.
        let replaced = Waker::from(Arc::new(LooksAsItGoes(looks.clone())));
        assert!(poll(&mut waiter, &replaced, &event, &never).is_pending());
        drop(replaced);
        let (_, other) = counter();
        assert!(poll(&mut waiter, &other, &event, &never).is_pending());
        let given_back = Waker::from(Arc::new(LooksAsItGoes(looks.clone())));
        assert!(poll(&mut waiter, &given_back, &event, &never).is_pending());
        drop(given_back);
        drop(waiter);
        assert_eq!(looks.locked.load(Ordering::SeqCst), 0);
        assert_eq!(Arc::strong_count(&looks), 1, "a waker was kept");
    }

    // A burst of waiters does not keep its memory once they are gone, nor
    // leave a notification a long list to look through; a few waiters
    // keep the list's capacity, so that waiting again allocates nothing.
    #[test]
    fn a_list_emptied_after_a_burst_gives_its_memory_back() {
        let event = Event::new();
        let never = Cell::new(false);
        let (count, waker) = counter();
        let waiters: Vec<Waiter> = (0..=KEPT_EMPTY)
            .map(|_| {
                let mut waiter = Waiter::new();
                assert!(poll(&mut waiter, &waker, &event, &never).is_pending());
                waiter
            })
            .collect();
        drop(waiters);
        {
            let slots = lock(&event.slots);
            assert_eq!(slots.wakers.capacity(), 0);
            assert_eq!(slots.free.capacity(), 0);
        }
        let mut few: Vec<Waiter> = (0..3).map(|_| Waiter::new()).collect();
        for waiter in &mut few {
            assert!(poll(waiter, &waker, &event, &never).is_pending());
        }
        drop(few);
        let slots = lock(&event.slots);
        assert!(slots.wakers.is_empty() && slots.wakers.capacity() >= 3);
        drop(slots);
        event.notify_all();
        assert_eq!(count.wakes(), 0);
    }
}
