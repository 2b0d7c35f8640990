//! The stop signal every member receives, the handle that stops a group from
//! outside, and the cause of a stop.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use event_listener::Event;

use crate::latch::Latch;
use crate::waiter::Waiter;

/// Why a group stopped.
///
/// The cause is decided once, by whatever stops the group first: the first
/// member to finish, an external [`StopHandle::stop`], or the parent group of
/// a nested group. Everything that happens afterwards (other members failing
/// while they drain, more stop requests) is in the [`Report`](crate::Report),
/// never in the cause.
///
/// ```
/// use allstop::{Cause, Group};
///
/// let mut group = Group::new();
/// group.add("quits", |_stop| async { Ok::<(), std::io::Error>(()) });
/// let report = futures::executor::block_on(group.run());
/// assert!(matches!(report.cause(), Some(Cause::Finished { member, .. }) if member == "quits"));
/// assert_eq!(report.cause().unwrap().to_string(), "member \"quits\" finished");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// A member finished first.
    Finished {
        /// The member's name.
        member: String,
        /// How it finished.
        how: Finish,
    },
    /// [`StopHandle::stop`] was called, for the reason given there.
    Requested(String),
    /// The group is a member of another group, and that group stopped.
    Parent(Box<Cause>),
}

/// How the member that caused a stop finished (see [`Cause::Finished`]).
///
/// This is a summary for the cause: the member's own error value is in its
/// [`Outcome`](crate::Outcome) in the report.
///
/// ```
/// use allstop::Finish;
///
/// assert_eq!(Finish::Failed("boom".into()).to_string(), "failed: boom");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finish {
    /// It returned `Ok(())`.
    Ok,
    /// It returned an error; the error's message.
    Failed(String),
    /// It panicked; the panic's message.
    Panicked(String),
}

impl fmt::Display for Finish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finish::Ok => f.write_str("finished"),
            Finish::Failed(error) => write!(f, "failed: {error}"),
            Finish::Panicked(message) => write!(f, "panicked: {message}"),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Finished { member, how } => write!(f, "member {member:?} {how}"),
            Cause::Requested(reason) => write!(f, "stop requested: {reason}"),
            Cause::Parent(cause) => write!(f, "parent group stopped: {cause}"),
        }
    }
}

/// The state one group's members, handles and run loop share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Set once, by the first stop. Being set *is* the broadcast: `OnceLock`
    /// publishes the cause with release/acquire semantics, so whoever sees
    /// the group stopped also sees why.
    cause: OnceLock<Cause>,
    /// How many times [`StopHandle::stop`] was called. Counted, not flagged,
    /// because the second request means "stop now".
    requests: AtomicUsize,
    /// Set when the grace period is to be cut short.
    forced: AtomicBool,
    /// Set when the group delays the first stop request (`Group::stop_delay`).
    delayed: AtomicBool,
    /// The first request's reason, while the group delays it.
    pending: OnceLock<String>,
    /// The members' names, set when the group runs: the member that ends
    /// first names itself in the cause.
    names: OnceLock<Arc<Vec<Cow<'static, str>>>>,
    /// Woken on the stop and on the force.
    event: Event,
}

impl Shared {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Shared {
            cause: OnceLock::new(),
            requests: AtomicUsize::new(0),
            forced: AtomicBool::new(false),
            delayed: AtomicBool::new(false),
            pending: OnceLock::new(),
            names: OnceLock::new(),
            event: Event::new(),
        })
    }

    /// Begins the stop with `cause` unless it has begun. Returns whether
    /// this call began it.
    pub(crate) fn stop(&self, cause: impl FnOnce() -> Cause) -> bool {
        if self.is_stopped() {
            return false;
        }
        let mut began = false;
        self.cause.get_or_init(|| {
            began = true;
            cause()
        });
        if began {
            // `notify` issues a SeqCst fence first, so a listener registered
            // before it is woken and one registered after it sees the cause.
            self.event.notify(usize::MAX);
        }
        began
    }

    pub(crate) fn request(&self, reason: String) {
        // Relaxed is enough: the count only decides first vs. later; the
        // cause and the force are published by `OnceLock` and `force`.
        let earlier = self.requests.fetch_add(1, Ordering::Relaxed);
        if earlier > 0 {
            // A later request means now: begin the stop if a delay still
            // holds it back (with the first request's reason), and cut the
            // grace short.
            self.stop(|| Cause::Requested(self.pending.get().cloned().unwrap_or(reason)));
            self.force();
        } else if self.delayed.load(Ordering::Relaxed) {
            // The run loop sees the pending request (the `OnceLock` publishes
            // it), announces it, and begins the stop after the delay.
            let _ = self.pending.set(reason);
            self.event.notify(usize::MAX);
        } else {
            self.stop(|| Cause::Requested(reason));
        }
    }

    pub(crate) fn set_names(&self, names: Arc<Vec<Cow<'static, str>>>) {
        let _ = self.names.set(names);
    }

    pub(crate) fn member_name(&self, index: usize) -> String {
        self.names
            .get()
            .and_then(|names| names.get(index))
            .map_or_else(|| format!("#{index}"), |name| name.to_string())
    }

    /// Makes the first stop request wait for the run loop's delay.
    pub(crate) fn delay_requests(&self) {
        // Relaxed: set while the group is built, before any run.
        self.delayed.store(true, Ordering::Relaxed);
    }

    /// The first request's reason, while a stop delay holds it back.
    pub(crate) fn pending(&self) -> Option<&String> {
        self.pending.get()
    }

    pub(crate) fn force(&self) {
        // Release pairs with the Acquire in `is_forced`; the notify wakes
        // the run loop, which re-reads the flag.
        if !self.forced.swap(true, Ordering::AcqRel) {
            self.event.notify(usize::MAX);
        }
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.cause.get().is_some()
    }

    pub(crate) fn is_forced(&self) -> bool {
        self.forced.load(Ordering::Acquire)
    }

    pub(crate) fn cause(&self) -> Option<&Cause> {
        self.cause.get()
    }

    /// Waits until `condition` holds on this state; it is re-checked each
    /// time the stop or the force is announced.
    pub(crate) fn poll_until(
        &self,
        cx: &mut Context<'_>,
        waiter: &mut Waiter,
        condition: impl Fn(&Shared) -> bool,
    ) -> Poll<()> {
        waiter.poll(cx, &self.event, || condition(self))
    }
}

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
    shared: Arc<Shared>,
    /// A child's own trigger (see [`Stop::child`]); `None` for the group's
    /// own signal.
    local: Option<Arc<Latch>>,
    waiter: Waiter,
    local_waiter: Waiter,
}

impl Stop {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Stop {
            shared,
            local: None,
            waiter: Waiter::new(),
            local_waiter: Waiter::new(),
        }
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
        Stop::new(Shared::new())
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
        let latch = match &self.local {
            Some(local) => local.child(),
            None => Latch::new(),
        };
        let child = Stop {
            shared: self.shared.clone(),
            local: Some(latch.clone()),
            waiter: Waiter::new(),
            local_waiter: Waiter::new(),
        };
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
        self.shared.is_stopped() || self.local.as_ref().is_some_and(|l| l.is_set())
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
        self.shared.cause()
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
            shared: self.shared.clone(),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Clone for Stop {
    fn clone(&self) -> Self {
        // A clone waits on its own: it does not share the listener.
        Stop {
            shared: self.shared.clone(),
            local: self.local.clone(),
            waiter: Waiter::new(),
            local_waiter: Waiter::new(),
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
            .field("cause", &self.shared.cause())
            .finish_non_exhaustive()
    }
}

impl Future for Stop {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some(local) = &this.local {
            if local.poll_set(cx, &mut this.local_waiter).is_ready() {
                return Poll::Ready(());
            }
        }
        this.shared
            .poll_until(cx, &mut this.waiter, Shared::is_stopped)
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
    shared: Arc<Shared>,
}

impl StopHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        StopHandle { shared }
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
        self.shared.request(reason.into());
    }

    /// Whether the group has begun to stop, for any cause.
    ///
    /// ```
    /// let group = allstop::Group::new();
    /// assert!(!group.stop_handle().is_stopped());
    /// ```
    pub fn is_stopped(&self) -> bool {
        self.shared.is_stopped()
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
        Stop::new(self.shared.clone())
    }
}

impl fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopHandle")
            .field("cause", &self.shared.cause())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_stop_wins_and_notifies_once() {
        let shared = Shared::new();
        assert!(shared.stop(|| Cause::Requested("one".into())));
        assert!(!shared.stop(|| unreachable!("the cause is only built by the first stop")));
        assert_eq!(shared.cause(), Some(&Cause::Requested("one".into())));
        assert!(!shared.is_forced());
    }

    #[test]
    fn the_second_request_forces() {
        let shared = Shared::new();
        shared.request("one".into());
        assert!(!shared.is_forced());
        shared.request("two".into());
        assert!(shared.is_forced());
        assert_eq!(shared.cause(), Some(&Cause::Requested("one".into())));
    }

    #[test]
    fn a_member_stop_is_not_a_request() {
        let shared = Shared::new();
        shared.stop(|| Cause::Finished {
            member: "m".into(),
            how: Finish::Ok,
        });
        shared.request("first request".into());
        assert!(
            !shared.is_forced(),
            "one request after a member exit forced"
        );
        shared.request("second request".into());
        assert!(shared.is_forced());
        assert!(matches!(shared.cause(), Some(Cause::Finished { .. })));
    }

    #[test]
    fn a_waiter_registered_before_the_stop_is_woken() {
        use std::sync::atomic::AtomicUsize;
        use std::task::Wake;

        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let shared = Shared::new();
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let mut stop = Stop::new(shared.clone());
        assert!(Pin::new(&mut stop).poll(&mut cx).is_pending());
        shared.stop(|| Cause::Requested("x".into()));
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert!(Pin::new(&mut stop).poll(&mut cx).is_ready());
    }
}
