//! The stop signal every member receives, and the handle that stops a
//! group from outside.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::cause::Cause;
use crate::latch::Latch;
use crate::state::StopState;
use crate::waiter::LeanWaiter;

/// The stop signal a member receives: a future that resolves once the group
/// begins to stop.
///
/// `Stop` is cheap to clone (one reference count) and owned, so it can be
/// moved into any task. A clone made or polled after the stop is ready at
/// once; polling it never misses a stop that happens concurrently.
///
/// ```
/// use allstop::Group;
///
/// let mut group = Group::new();
/// group.add("worker", |stop| async move {
///     // Work until the group stops, then clean up.
///     stop.clone().await;
///     assert!(stop.is_stopped());
///     Ok::<(), std::io::Error>(())
/// });
/// group.add("quits", |_stop| async { Ok::<(), std::io::Error>(()) });
/// let report = futures::executor::block_on(group.run());
/// assert!(report.is_success());
/// ```
///
/// # Cancellation safety
///
/// Awaiting `&mut stop` in a `select!` loop and dropping that await is
/// safe: no stop is lost, and the next await sees it.
pub struct Stop {
    /// What the signal watches, shared by its clones: a clone takes one
    /// reference count, on this signal's own, not the group's.
    source: Arc<Source>,
    /// Its own wait, 8 bytes: a `Stop` is in every member.
    waiter: LeanWaiter,
}

/// What a [`Stop`] and its clones watch.
struct Source {
    state: Arc<StopState>,
    /// The group's stop latch, its stage's (see [`Stop::staged`]), or for a
    /// child (see [`Stop::child`]) a latch chained to one of them: set when
    /// the signal is to fire.
    latch: Arc<Latch>,
}

impl Stop {
    pub(crate) fn new(state: Arc<StopState>) -> Self {
        let latch = state.broadcast.latch().clone();
        Stop::staged(state, latch)
    }

    /// A signal that fires when `latch`, a stage's, is set by the run: the
    /// group makes one per stage, and each member of the stage gets a
    /// clone.
    pub(crate) fn staged(state: Arc<StopState>, latch: Arc<Latch>) -> Self {
        Stop::from_source(Source { state, latch })
    }

    fn from_source(source: Source) -> Self {
        Stop {
            source: Arc::new(source),
            waiter: LeanWaiter::new(),
        }
    }

    /// The same signal, its clones counted apart from this one's: for a
    /// task that hands out a clone per job (an HTTP connection, one per
    /// request), so that those clones do not contend with other tasks'
    /// over one reference count.
    #[cfg(any(feature = "http", test))]
    pub(crate) fn counted_apart(&self) -> Self {
        Stop::staged(self.source.state.clone(), self.source.latch.clone())
    }

    /// A stop signal that never fires on its own: for calling a handler or a
    /// member outside a group, in a unit test say. (Its [`handle`](Stop::handle)
    /// stops it.)
    ///
    /// ```
    /// let stop = allstop::Stop::never();
    /// assert!(!stop.is_stopped());
    /// stop.handle().stop("test over");
    /// assert!(stop.is_stopped());
    /// ```
    pub fn never() -> Self {
        Stop::new(StopState::new())
    }

    /// A child signal: it fires when this one does, or when its
    /// [`StopTrigger`] is pulled — without stopping this one. Like
    /// tokio-util's `child_token`. A server gives its handlers a child, so
    /// that they end when the server stops itself (its listener failed, say)
    /// as well as when the group stops.
    ///
    /// The child's [`cause`](Stop::cause) is the group's: a child stopped by
    /// its trigger alone has none, since the group is not stopping.
    ///
    /// ```
    /// let parent = allstop::Stop::never();
    /// let (child, trigger) = parent.child();
    /// trigger.stop();
    /// assert!(child.is_stopped());
    /// assert!(!parent.is_stopped());
    /// assert_eq!(child.cause(), None);
    ///
    /// let (other, _trigger) = parent.child();
    /// parent.handle().stop("deploy");
    /// assert!(other.is_stopped());
    /// ```
    pub fn child(&self) -> (Stop, StopTrigger) {
        let latch = self.source.latch.child();
        let child = Stop::staged(self.source.state.clone(), latch.clone());
        (child, StopTrigger { latch })
    }

    /// Runs `future` until it completes or this signal fires, whichever
    /// comes first: `Some(output)`, or `None` if the stop came first (then
    /// `future` is dropped unfinished). A stop that has already happened
    /// wins over a future that is also ready.
    ///
    /// ```
    /// let stop = allstop::Stop::never();
    /// futures::executor::block_on(async {
    ///     assert_eq!(stop.until(async { 7 }).await, Some(7));
    ///     stop.handle().stop("done");
    ///     assert_eq!(stop.until(futures::future::pending::<()>()).await, None);
    /// });
    /// ```
    ///
    /// # Cancellation safety
    ///
    /// As cancellation safe as `future`: dropping the returned future drops
    /// `future` too.
    pub async fn until<F: Future>(&self, future: F) -> Option<F::Output> {
        let mut stop = self.clone();
        let mut future = std::pin::pin!(future);
        std::future::poll_fn(|cx| {
            if Pin::new(&mut stop).poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            future.as_mut().poll(cx).map(Some)
        })
        .await
    }

    /// Whether the stop has begun.
    ///
    /// ```
    /// let group = allstop::Group::new();
    /// let stop = group.stop_handle().stop_signal();
    /// assert!(!stop.is_stopped());
    /// group.stop_handle().stop("test");
    /// assert!(stop.is_stopped());
    /// ```
    pub fn is_stopped(&self) -> bool {
        self.source.latch.is_set()
    }

    /// Why the group is stopping, once it is.
    ///
    /// ```
    /// use allstop::Cause;
    ///
    /// let group = allstop::Group::new();
    /// let stop = group.stop_handle().stop_signal();
    /// assert_eq!(stop.cause(), None);
    /// group.stop_handle().stop("deploy");
    /// assert_eq!(stop.cause(), Some(&Cause::Requested("deploy".into())));
    /// ```
    pub fn cause(&self) -> Option<&Cause> {
        self.source.state.cause()
    }

    /// A handle that stops this group, for a member that decides the group
    /// should stop while it keeps running itself (a signal watcher, say).
    ///
    /// ```
    /// let group = allstop::Group::new();
    /// let stop = group.stop_handle().stop_signal();
    /// stop.handle().stop("member asked");
    /// assert!(stop.is_stopped());
    /// ```
    pub fn handle(&self) -> StopHandle {
        StopHandle {
            state: self.source.state.clone(),
        }
    }

    pub(crate) fn state(&self) -> &Arc<StopState> {
        &self.source.state
    }
}

impl Clone for Stop {
    fn clone(&self) -> Self {
        // A clone waits on its own: it does not share the slot.
        Stop {
            source: self.source.clone(),
            waiter: LeanWaiter::new(),
        }
    }
}

/// Fires a child [`Stop`] made by [`Stop::child`], and its own children,
/// but not its parent. Cheap to clone.
///
/// ```
/// let (child, trigger) = allstop::Stop::never().child();
/// assert!(!trigger.is_stopped());
/// trigger.stop();
/// assert!(trigger.is_stopped() && child.is_stopped());
/// ```
#[derive(Clone, Debug)]
pub struct StopTrigger {
    latch: Arc<Latch>,
}

impl StopTrigger {
    /// Fires the child signal (again: nothing more happens).
    pub fn stop(&self) {
        self.latch.set();
    }

    /// Whether the child signal has fired, by this trigger or its parent.
    pub fn is_stopped(&self) -> bool {
        self.latch.is_set()
    }
}

impl fmt::Debug for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stop")
            .field("cause", &self.cause())
            .field("stopped", &self.is_stopped())
            .finish_non_exhaustive()
    }
}

impl Drop for Stop {
    fn drop(&mut self) {
        self.source.latch.release(&mut self.waiter);
    }
}

impl Future for Stop {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.source.latch.poll_set(cx, &mut this.waiter)
    }
}

/// Stops a group from outside: from a signal handler, a test, a parent, an
/// admin endpoint. Cheap to clone and `Send + Sync`.
///
/// ```
/// use allstop::{Cause, Group};
///
/// let mut group = Group::new();
/// group.add("worker", |stop| async move {
///     stop.await;
///     Ok::<(), std::io::Error>(())
/// });
/// let handle = group.stop_handle();
/// handle.stop("shutting down for a deploy");
/// let report = futures::executor::block_on(group.run());
/// assert_eq!(report.cause(), Some(&Cause::Requested("shutting down for a deploy".into())));
/// ```
#[derive(Clone)]
pub struct StopHandle {
    state: Arc<StopState>,
}

impl StopHandle {
    pub(crate) fn new(state: Arc<StopState>) -> Self {
        StopHandle { state }
    }

    /// Asks the group to stop, giving the reason that becomes the stop's
    /// [`Cause::Requested`] if the group is not stopping yet.
    ///
    /// The first request begins a graceful stop. A **second** request, made
    /// while members are still draining, cuts the grace period short: the
    /// members still running are cancelled at once and reported
    /// [`Outcome::Cancelled`](crate::Outcome::Cancelled), as operators expect
    /// from a second Ctrl-C. Stops caused by a member finishing do not count
    /// as requests.
    ///
    /// ```
    /// let group = allstop::Group::new();
    /// let handle = group.stop_handle();
    /// handle.stop("first Ctrl-C");
    /// assert!(handle.is_stopped());
    /// ```
    pub fn stop(&self, reason: impl Into<String>) {
        self.state.request(reason.into());
    }

    /// Whether the group has begun to stop, for any cause.
    ///
    /// ```
    /// let group = allstop::Group::new();
    /// assert!(!group.stop_handle().is_stopped());
    /// ```
    pub fn is_stopped(&self) -> bool {
        self.state.is_stopped()
    }

    /// A [`Stop`] future for this group, for code outside the group that
    /// wants to wait for its stop.
    ///
    /// ```
    /// let group = allstop::Group::new();
    /// let handle = group.stop_handle();
    /// handle.stop("done");
    /// futures::executor::block_on(handle.stop_signal()); // ready at once
    /// ```
    pub fn stop_signal(&self) -> Stop {
        Stop::new(self.state.clone())
    }
}

impl fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopHandle")
            .field("cause", &self.state.cause())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A connection's clones for its requests count on their own reference
    // count, not on the group's, and fire with the group all the same.
    #[test]
    fn a_signal_counted_apart_shares_no_count_but_fires_alike() {
        let group = Stop::never();
        let connection = group.counted_apart();
        let requests: Vec<Stop> = (0..3).map(|_| connection.clone()).collect();
        assert_eq!(Arc::strong_count(&group.source), 1);
        assert_eq!(Arc::strong_count(&connection.source), 4);
        group.handle().stop("deploy");
        assert!(requests.iter().all(Stop::is_stopped));
        assert_eq!(
            requests[0].cause(),
            Some(&Cause::Requested("deploy".into()))
        );
    }

    #[test]
    fn a_waiter_registered_before_the_stop_is_woken() {
        let state = StopState::new();
        let (woken, waker) = crate::test_wakers::counter();
        let mut cx = Context::from_waker(&waker);
        let mut stop = Stop::new(state.clone());
        assert!(Pin::new(&mut stop).poll(&mut cx).is_pending());
        state.broadcast.stop(None, || Cause::Requested("x".into()));
        assert_eq!(woken.wakes(), 1);
        assert!(Pin::new(&mut stop).poll(&mut cx).is_ready());
    }

    // A member that drops its stop while waiting on it (a `select!` that
    // took another branch, say) gives its slot back, and with it its task's
    // waker, which holds the task's memory.
    #[test]
    fn a_stop_dropped_while_waiting_gives_back_its_slot_and_waker() {
        struct Idle;
        impl std::task::Wake for Idle {
            fn wake(self: Arc<Self>) {}
        }
        let idle = Arc::new(Idle);
        let waker = std::task::Waker::from(idle.clone());
        let group = Stop::never();
        for _ in 0..3 {
            let mut stop = group.clone();
            let polled = Pin::new(&mut stop).poll(&mut Context::from_waker(&waker));
            assert!(polled.is_pending());
            assert_eq!(Arc::strong_count(&idle), 3);
            drop(stop);
            assert_eq!(Arc::strong_count(&idle), 2, "the waker was kept");
        }
    }

    /// A `Stop` is in every member: 16 bytes, its source and its slot.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn a_stop_takes_16_bytes() {
        assert_eq!(std::mem::size_of::<Stop>(), 16);
    }
}
