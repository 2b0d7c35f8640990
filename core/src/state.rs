//! The state one group shares between its members' [`Stop`](crate::Stop)s,
//! its [`StopHandle`](crate::StopHandle)s and its run: three small types
//! with one job each, and [`StopState`], which holds them.
//!
//! Every flag below is a [`Latch`], and all the latches of one group notify
//! one event: a member's `Stop`, a spawned member's wrapper and the run loop
//! each watch the state with one waiter and a condition.
//!
//! # Deadlock safety
//!
//! No lock is ever held: the state is atomics, `OnceLock`s and latches, and
//! a latch notifies after it is set, never while anything is held.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use crate::cause::Cause;
use crate::latch::Latch;
use crate::waiter::{Event, Waiter};

/// The stop: begun once, with one cause, seen by every member.
///
/// # Invariants
///
/// 1. `stopped` goes from unset to set once (a [`Latch`]).
/// 2. The cause is set at most once, by the first [`stop`](Broadcast::stop),
///    and before that call sets `stopped`: whoever sees `stopped` set by a
///    stop sees its cause (the latch's release/acquire orders them).
/// 3. `trigger` is set with the cause, and only when a member's exit began
///    the stop: it is that member's index.
/// 4. [`end`](Broadcast::end) sets `stopped` without a cause; the run calls
///    it when it is over, so that a group that never stopped (an empty one)
///    still resolves every `Stop`.
#[derive(Debug)]
pub(crate) struct Broadcast {
    cause: OnceLock<(Cause, Option<usize>)>,
    stopped: Arc<Latch>,
}

impl Broadcast {
    fn new(event: &Event) -> Self {
        Broadcast {
            cause: OnceLock::new(),
            stopped: Latch::on(event),
        }
    }

    /// Begins the stop with `cause` unless it has begun; `trigger` is the
    /// member whose exit begins it, if one does. Returns whether this call
    /// began it.
    pub(crate) fn stop(&self, trigger: Option<usize>, cause: impl FnOnce() -> Cause) -> bool {
        if self.stopped.is_set() {
            return false;
        }
        let mut began = false;
        self.cause.get_or_init(|| {
            began = true;
            (cause(), trigger)
        });
        self.stopped.set();
        began
    }

    /// Sets `stopped`, with no cause if none was set (invariant 4).
    pub(crate) fn end(&self) {
        self.stopped.set();
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.is_set()
    }

    pub(crate) fn cause(&self) -> Option<&Cause> {
        self.cause.get().map(|(cause, _)| cause)
    }

    /// The member whose exit began the stop (invariant 3).
    pub(crate) fn trigger(&self) -> Option<usize> {
        self.cause.get().and_then(|(_, trigger)| *trigger)
    }

    /// The latch a member's `Stop` waits on (children chain off it).
    pub(crate) fn latch(&self) -> &Arc<Latch> {
        &self.stopped
    }
}

/// What one external stop request means (see [`Requests::count`]).
pub(crate) enum Request {
    /// The first request, with no stop delay: begin the stop.
    Begin(String),
    /// The first request, held back by the stop delay (now pending).
    Delayed,
    /// A later request: begin the stop (with the first one's reason, if it
    /// was held back) and cut the drain short.
    Force(String),
}

/// External stop requests, counted because the second one means "now", and
/// the first one held back while a stop delay runs.
///
/// # Invariants
///
/// 1. `count` only grows; the request that finds it at zero is the first.
/// 2. With a stop delay, the first request's reason is stored in `pending`
///    before `announced` is set; nothing else sets either.
/// 3. `forced` is set by every later request, never by the first.
#[derive(Debug)]
pub(crate) struct Requests {
    count: AtomicUsize,
    /// Set while the group is built, before anything can request a stop.
    delayed: OnceLock<()>,
    pending: OnceLock<String>,
    announced: Arc<Latch>,
    forced: Arc<Latch>,
}

impl Requests {
    fn new(event: &Event) -> Self {
        Requests {
            count: AtomicUsize::new(0),
            delayed: OnceLock::new(),
            pending: OnceLock::new(),
            announced: Latch::on(event),
            forced: Latch::on(event),
        }
    }

    /// Counts one request and says what it means.
    pub(crate) fn count(&self, reason: String) -> Request {
        // Relaxed: the count only decides first against later; what the
        // request publishes goes through `pending` and the latches.
        let earlier = self.count.fetch_add(1, Ordering::Relaxed);
        if earlier > 0 {
            self.forced.set();
            return Request::Force(self.pending.get().cloned().unwrap_or(reason));
        }
        if self.delayed.get().is_none() {
            return Request::Begin(reason);
        }
        let _ = self.pending.set(reason);
        self.announced.set();
        Request::Delayed
    }

    pub(crate) fn delay_first(&self) {
        let _ = self.delayed.set(());
    }

    /// The first request's reason, once a stop delay holds it back.
    pub(crate) fn pending(&self) -> Option<&str> {
        self.announced
            .is_set()
            .then(|| self.pending.get().map(String::as_str))
            .flatten()
    }

    pub(crate) fn is_forced(&self) -> bool {
        self.forced.is_set()
    }
}

/// The run's cancellation of the members still running.
///
/// # Invariants
///
/// 1. Set once, by the run, after the stop began.
/// 2. A spawned member's wrapper waits on it and, woken, polls its member a
///    last time and drops it; a nested group waits on its parent's and
///    cancels its own members with `CancelReason::Parent`.
#[derive(Debug)]
pub(crate) struct Cancel {
    latch: Arc<Latch>,
}

impl Cancel {
    fn new(event: &Event) -> Self {
        Cancel {
            latch: Latch::on(event),
        }
    }

    pub(crate) fn set(&self) {
        self.latch.set();
    }

    pub(crate) fn is_set(&self) -> bool {
        self.latch.is_set()
    }
}

/// One group's shared state: its stop, its stop requests and its
/// cancellation, waking one event.
#[derive(Debug)]
pub(crate) struct StopState {
    event: Event,
    pub(crate) broadcast: Broadcast,
    pub(crate) requests: Requests,
    pub(crate) cancel: Cancel,
}

impl StopState {
    pub(crate) fn new() -> Arc<Self> {
        let event = Event::new();
        Arc::new(StopState {
            broadcast: Broadcast::new(&event),
            requests: Requests::new(&event),
            cancel: Cancel::new(&event),
            event,
        })
    }

    /// An external stop request ([`StopHandle::stop`](crate::StopHandle::stop)).
    pub(crate) fn request(&self, reason: String) {
        match self.requests.count(reason) {
            Request::Begin(reason) | Request::Force(reason) => {
                self.broadcast.stop(None, || Cause::Requested(reason));
            }
            Request::Delayed => {}
        }
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.broadcast.is_stopped()
    }

    /// A latch for a later stage's stop, on this state's event: a waiter on
    /// the state sees it set.
    pub(crate) fn stage_latch(&self) -> Arc<Latch> {
        Latch::on(&self.event)
    }

    pub(crate) fn cause(&self) -> Option<&Cause> {
        self.broadcast.cause()
    }

    /// Ready once `condition` holds; re-checked whenever anything in this
    /// state changes.
    pub(crate) fn poll_until(
        &self,
        cx: &mut Context<'_>,
        waiter: &mut Waiter,
        condition: impl Fn(&StopState) -> bool,
    ) -> Poll<()> {
        waiter.poll(cx, &self.event, || condition(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cause::Exit;

    #[test]
    fn first_stop_wins() {
        let state = StopState::new();
        assert!(state
            .broadcast
            .stop(None, || Cause::Requested("one".into())));
        assert!(!state.broadcast.stop(Some(0), || unreachable!(
            "the cause is only built by the first stop"
        )));
        assert_eq!(state.cause(), Some(&Cause::Requested("one".into())));
        assert_eq!(state.broadcast.trigger(), None);
        assert!(!state.requests.is_forced());
    }

    #[test]
    fn the_second_request_forces() {
        let state = StopState::new();
        state.request("one".into());
        assert!(!state.requests.is_forced());
        state.request("two".into());
        assert!(state.requests.is_forced());
        assert_eq!(state.cause(), Some(&Cause::Requested("one".into())));
    }

    #[test]
    fn a_delayed_request_is_pending_until_the_second() {
        let state = StopState::new();
        state.requests.delay_first();
        state.request("deploy".into());
        assert_eq!(state.requests.pending(), Some("deploy"));
        assert!(!state.is_stopped());
        state.request("now".into());
        assert!(state.requests.is_forced());
        assert_eq!(state.cause(), Some(&Cause::Requested("deploy".into())));
    }

    #[test]
    fn a_member_stop_is_not_a_request() {
        let state = StopState::new();
        state.broadcast.stop(Some(3), || Cause::Finished {
            member: "m".into(),
            exit: Exit::Ok,
        });
        assert_eq!(state.broadcast.trigger(), Some(3));
        state.request("first request".into());
        assert!(
            !state.requests.is_forced(),
            "one request after a member exit forced"
        );
        state.request("second request".into());
        assert!(state.requests.is_forced());
        assert!(matches!(state.cause(), Some(Cause::Finished { .. })));
    }

    #[test]
    fn end_stops_without_a_cause() {
        let state = StopState::new();
        state.broadcast.end();
        assert!(state.is_stopped());
        assert_eq!(state.cause(), None);
    }
}
