//! The group: members added by name, run together, stopped together.

use std::borrow::Cow;
use std::fmt;
use std::future::{poll_fn, Future};
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;

use crate::member::{self, Done, MemberFuture};
use crate::observer::{Event, Observer};
use crate::report::{GroupFailed, MemberReport, Outcome, Report};
use crate::runtime::{DynTimer, Runtime, Timer};
use crate::stop::{Cause, Shared, Stop, StopHandle, Waiter};
use crate::BoxError;

/// A set of named, long-lived async members that run as one unit.
///
/// - The first member to finish — `Ok`, `Err` or a panic — stops the group:
///   every member's [`Stop`] resolves.
/// - [`run`](Group::run) returns only when every member has finished, or
///   been cancelled at the optional [grace deadline](Group::grace); by then
///   every member future has been dropped.
/// - It returns a [`Report`] with every member's [`Outcome`] in the order
///   they were added, and the [`Cause`] of the stop.
///
/// ```
/// use allstop::{Cause, Group};
///
/// let mut group = Group::new();
/// group.add("server", |stop| async move {
///     // Serve until told to stop, then drain.
///     stop.await;
///     Ok::<(), std::io::Error>(())
/// });
/// group.add("migration", |_stop| async {
///     Err::<(), _>(std::io::Error::other("schema mismatch"))
/// });
/// let report = futures::executor::block_on(group.run());
/// assert_eq!(
///     report.cause(),
///     Some(&Cause::Finished { member: "migration".into(), how: allstop::Finish::Failed("schema mismatch".into()) })
/// );
/// assert!(report.member("server").unwrap().outcome().is_ok());
/// assert!(!report.is_success());
/// ```
pub struct Group {
    // One column per field: no copy when the group starts.
    names: Vec<Cow<'static, str>>,
    watchers: Vec<bool>,
    futures: Vec<MemberFuture>,
    shared: Arc<Shared>,
    grace: Option<(Duration, Arc<dyn DynTimer>)>,
    stop_delay: Option<(Duration, Arc<dyn DynTimer>)>,
    observers: Vec<Arc<dyn Observer>>,
}

impl Default for Group {
    fn default() -> Self {
        Group::new()
    }
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("members", &self.names)
            .field("grace", &self.grace.as_ref().map(|(grace, _)| grace))
            .field("observers", &self.observers.len())
            .field("cause", &self.shared.cause())
            .finish()
    }
}

impl Group {
    /// An empty group with no grace deadline.
    pub fn new() -> Self {
        Group {
            names: Vec::new(),
            watchers: Vec::new(),
            futures: Vec::new(),
            shared: Shared::new(),
            grace: None,
            stop_delay: None,
            observers: Vec::new(),
        }
    }

    /// Adds a member called `name`.
    ///
    /// `member` is called once, when the group starts, with the group's
    /// [`Stop`] signal; the future it returns runs until it finishes or the
    /// group cancels it. It should return soon after the stop resolves. Its
    /// error can be any type that converts into [`BoxError`]
    /// (`std::io::Error`, `String`, your own error…); it comes back unchanged
    /// in the report.
    ///
    /// ```
    /// let mut group = allstop::Group::new();
    /// group.add("worker", |stop| async move {
    ///     stop.await;
    ///     Ok::<(), String>(())
    /// });
    /// assert_eq!(group.len(), 1);
    /// ```
    pub fn add<F, Fut, E>(&mut self, name: impl Into<Cow<'static, str>>, member: F) -> &mut Self
    where
        F: FnOnce(Stop) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.push(name.into(), false, member)
    }

    /// Adds a *watcher*: a member that watches over the others rather than
    /// doing work of its own, such as a signal listener.
    ///
    /// A watcher that finishes stops the group like any member. But the group
    /// does not wait for watchers: once every other member has ended, the
    /// watchers still running are dropped and reported `Ok`. That lets a
    /// signal watcher keep listening during the drain (a second Ctrl-C cuts
    /// it short) without holding the group open afterwards.
    ///
    /// ```
    /// use allstop::Group;
    ///
    /// let mut group = Group::new();
    /// group.add_watcher("signals", |stop| async move {
    ///     // Would listen for signals for ever; here it only waits.
    ///     futures::future::pending::<()>().await;
    ///     Ok::<(), std::io::Error>(())
    /// });
    /// group.add("job", |_stop| async { Ok::<(), std::io::Error>(()) });
    /// let report = futures::executor::block_on(group.run());
    /// assert!(report.is_success());
    /// ```
    pub fn add_watcher<F, Fut, E>(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        member: F,
    ) -> &mut Self
    where
        F: FnOnce(Stop) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.push(name.into(), true, member)
    }

    /// Adds a member that runs as a task of `runtime`, whatever runs the
    /// group: one group can span runtimes (an app server on tokio and a
    /// debug server on smol, say).
    ///
    /// The member behaves as if added with [`add`](Group::add): its result
    /// or its panic comes back to the group, and cancelling it cancels its
    /// task.
    ///
    /// ```
    /// # use futures::executor::ThreadPool;
    /// # struct Pool(ThreadPool);
    /// # struct PoolTask(futures::channel::oneshot::Receiver<()>, futures::future::AbortHandle);
    /// # impl std::future::Future for PoolTask { type Output = ();
    /// #   fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
    /// #     std::pin::Pin::new(&mut self.0).poll(cx).map(|_| ()) } }
    /// # impl Drop for PoolTask { fn drop(&mut self) { self.1.abort() } }
    /// # impl allstop::Runtime for Pool { type Task = PoolTask;
    /// #   fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, f: F) -> PoolTask {
    /// #     let (abort, reg) = futures::future::AbortHandle::new_pair();
    /// #     let (tx, rx) = futures::channel::oneshot::channel();
    /// #     self.0.spawn_ok(async move { let _ = futures::future::Abortable::new(f, reg).await; let _ = tx.send(()); });
    /// #     PoolTask(rx, abort) }
    /// #   fn cancel(&self, t: &mut PoolTask) { t.1.abort() } }
    /// # let other_runtime = Pool(ThreadPool::new().unwrap());
    /// let mut group = allstop::Group::new();
    /// // `other_runtime` is an adapter's runtime, e.g. `allstop::smol::Smol::new()`.
    /// group.add_on("elsewhere", other_runtime, |_stop| async { Ok::<(), std::io::Error>(()) });
    /// let report = futures::executor::block_on(group.run());
    /// assert!(report.is_success());
    /// ```
    pub fn add_on<R, F, Fut, E>(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        runtime: R,
        member: F,
    ) -> &mut Self
    where
        R: Runtime,
        F: FnOnce(Stop) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.push(name.into(), false, move |stop: Stop| async move {
            let (tx, rx) = futures::channel::oneshot::channel();
            let task = runtime.spawn(async move {
                let result =
                    AssertUnwindSafe(async move { member(stop).await.map_err(Into::into) })
                        .catch_unwind()
                        .await;
                let _ = tx.send(result);
            });
            // Dropping `task` (when the group cancels this member) cancels
            // the member on its runtime.
            let result = rx.await;
            task.await;
            match result {
                Ok(Ok(result)) => result,
                // Re-raised here, caught and reported by the group.
                Ok(Err(panic)) => panic::resume_unwind(panic),
                Err(_) => Err(BoxError::from(
                    "the member's task ended without a result (its runtime shut down?)",
                )),
            }
        })
    }

    fn push<F, Fut, E>(&mut self, name: Cow<'static, str>, watcher: bool, member: F) -> &mut Self
    where
        F: FnOnce(Stop) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let stop = Stop::new(self.shared.clone());
        self.futures
            .push(member::wrap(self.futures.len(), stop, member));
        self.names.push(name);
        self.watchers.push(watcher);
        self
    }

    /// Sets the grace deadline: members still running `grace` after the stop
    /// began are cancelled (dropped) and reported
    /// [`Outcome::Cancelled`]. `timer` provides the sleep; the runtime
    /// adapters provide timers, and any `Fn(Duration) -> impl Future` is one.
    ///
    /// Without a grace deadline the group waits for every member however
    /// long it takes (a second [`StopHandle::stop`] still cuts that short).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let mut group = allstop::Group::new();
    /// group.grace(Duration::from_secs(10), |d| async move {
    ///     // your runtime's sleep, e.g. tokio::time::sleep(d).await
    ///     # let _ = d;
    /// });
    /// ```
    pub fn grace(&mut self, grace: Duration, timer: impl Timer) -> &mut Self {
        self.grace = Some((grace, Arc::new(timer)));
        self
    }

    /// Delays the first stop *request* by `delay`, for load balancers: the
    /// request is announced at once ([`Event::StopRequested`], which turns
    /// [`Status::is_ready`](crate::Status::is_ready) false and a readiness
    /// endpoint to 503) while every member keeps serving; the stop begins
    /// when the delay has passed. A second request skips the delay (and cuts
    /// the grace short). A member that finishes stops the group at once, as
    /// always.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let mut group = allstop::Group::new();
    /// group.stop_delay(Duration::from_millis(10), |d| async move {
    ///     // your runtime's sleep
    ///     # std::thread::sleep(d);
    /// });
    /// group.add("app", |stop| async move { stop.await; Ok::<(), std::io::Error>(()) });
    /// group.stop_handle().stop("deploy");
    /// let report = futures::executor::block_on(group.run());
    /// assert!(report.is_success());
    /// ```
    pub fn stop_delay(&mut self, delay: Duration, timer: impl Timer) -> &mut Self {
        self.shared.delay_requests();
        self.stop_delay = Some((delay, Arc::new(timer)));
        self
    }

    /// Adds an observer that sees the group's lifecycle [`Event`]s.
    ///
    /// ```
    /// let status = allstop::Status::new();
    /// let mut group = allstop::Group::new();
    /// group.observe(status.clone());
    /// ```
    pub fn observe(&mut self, observer: impl Observer) -> &mut Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// A handle that stops the group from outside.
    ///
    /// ```
    /// let group = allstop::Group::new();
    /// let handle = group.stop_handle();
    /// std::thread::spawn(move || handle.stop("time is up"));
    /// ```
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle::new(self.shared.clone())
    }

    /// How many members (watchers included) have been added.
    pub fn len(&self) -> usize {
        self.futures.len()
    }

    /// Whether no member has been added.
    pub fn is_empty(&self) -> bool {
        self.futures.is_empty()
    }

    /// Runs every member inside the calling task, all polled concurrently by
    /// the returned future; works on any executor, even
    /// `futures::executor::block_on`.
    ///
    /// Members run concurrently but not in parallel: use
    /// [`run_spawned`](Group::run_spawned) for a task per member on a
    /// multi-threaded runtime.
    ///
    /// ```
    /// let mut group = allstop::Group::new();
    /// group.add("job", |_stop| async { Ok::<(), std::io::Error>(()) });
    /// let report = futures::executor::block_on(group.run());
    /// assert!(report.is_success());
    /// ```
    ///
    /// # Cancellation safety
    ///
    /// Dropping the future before it completes drops every member at once,
    /// without a report.
    ///
    /// # Panics
    ///
    /// Never because of a member: a member's panic is its
    /// [`Outcome::Panicked`]. An [`Observer`] that panics unwinds through
    /// the run.
    pub fn run(self) -> Run {
        self.run_in_task(None)
    }

    /// Runs every member as its own task on `runtime` (see [`Runtime`]),
    /// for parallelism on a multi-threaded runtime. The returned future
    /// collects the results and enforces the deadline; it must be polled
    /// (awaited or spawned) for the group to make progress on its stop.
    ///
    /// ```
    /// # use futures::executor::ThreadPool;
    /// # struct Pool(ThreadPool);
    /// # struct PoolTask(futures::channel::oneshot::Receiver<()>, futures::future::AbortHandle);
    /// # impl std::future::Future for PoolTask { type Output = ();
    /// #   fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
    /// #     std::pin::Pin::new(&mut self.0).poll(cx).map(|_| ()) } }
    /// # impl Drop for PoolTask { fn drop(&mut self) { self.1.abort() } }
    /// # impl allstop::Runtime for Pool { type Task = PoolTask;
    /// #   fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, f: F) -> PoolTask {
    /// #     let (abort, reg) = futures::future::AbortHandle::new_pair();
    /// #     let (tx, rx) = futures::channel::oneshot::channel();
    /// #     self.0.spawn_ok(async move { let _ = futures::future::Abortable::new(f, reg).await; let _ = tx.send(()); });
    /// #     PoolTask(rx, abort) }
    /// #   fn cancel(&self, t: &mut PoolTask) { t.1.abort() } }
    /// # let runtime = Pool(ThreadPool::new().unwrap());
    /// // `runtime` is an adapter's runtime, e.g. `allstop::tokio::Tokio`.
    /// let mut group = allstop::Group::new();
    /// group.add("job", |_stop| async { Ok::<(), std::io::Error>(()) });
    /// let report = futures::executor::block_on(group.run_spawned(runtime));
    /// assert!(report.is_success());
    /// ```
    ///
    /// # Cancellation safety
    ///
    /// Dropping the future before it completes cancels every member task
    /// (the runtime's contract), without a report.
    ///
    /// # Panics
    ///
    /// As [`run`](Group::run).
    pub fn run_spawned<R: Runtime>(self, runtime: R) -> Run {
        self.run_on(runtime, None)
    }

    /// Turns the group into a member of another group (nesting), run inside
    /// the parent member's task.
    ///
    /// The nested group stops when the parent stops (its cause is then
    /// [`Cause::Parent`]). If the parent cancels it (its grace deadline, a
    /// second stop request), the nested members are dropped with it. When the nested group ends, the member
    /// returns `Ok` if every nested member ended `Ok`, and otherwise
    /// [`GroupFailed`] carrying the nested report — which stops the parent.
    ///
    /// ```
    /// let mut workers = allstop::Group::new();
    /// workers.add("a", |stop| async move { stop.await; Ok::<(), std::io::Error>(()) });
    /// let mut app = allstop::Group::new();
    /// app.add("workers", workers.into_member());
    /// app.add("oneshot", |_stop| async { Ok::<(), std::io::Error>(()) });
    /// let report = futures::executor::block_on(app.run());
    /// assert!(report.is_success());
    /// ```
    pub fn into_member(self) -> impl FnOnce(Stop) -> Nested + Send + 'static {
        move |parent: Stop| Nested {
            run: self.run_in_task(Some(parent)),
        }
    }

    /// As [`into_member`](Group::into_member), with each nested member spawned
    /// on `runtime` as [`run_spawned`](Group::run_spawned) does.
    ///
    /// A limit: when the parent *cancels* the nested group (its deadline, a
    /// second stop request), the nested member tasks are cancelled and their
    /// runtime drops them right after — a cancelled future cannot wait. The
    /// parent's run may return just before they are gone. A nested group
    /// that stops by itself in time waits for all of its members as usual.
    pub fn into_member_spawned<R: Runtime>(
        self,
        runtime: R,
    ) -> impl FnOnce(Stop) -> Nested + Send + 'static {
        move |parent: Stop| Nested {
            run: self.run_on(runtime, Some(parent)),
        }
    }

    fn run_in_task(self, parent: Option<Stop>) -> Run {
        let (plan, members) = self.into_plan(parent);
        let set: FuturesUnordered<MemberFuture> = members.into_iter().collect();
        Run::new(plan.drive(move || InTask { set: Some(set) }))
    }

    fn run_on<R: Runtime>(self, runtime: R, parent: Option<Stop>) -> Run {
        let (plan, members) = self.into_plan(parent);
        // `drive` spawns on the first poll, not here: a run that is never
        // awaited starts nothing.
        Run::new(plan.drive(move || {
            // S5: sized to the members, so a finishing member never waits on
            // the collector (`try_send` below cannot find it full).
            let (tx, rx) = async_channel::bounded(members.len().max(1));
            let tasks = members
                .into_iter()
                .map(|member| {
                    runtime.spawn(Reporting {
                        member,
                        tx: tx.clone(),
                    })
                })
                .collect();
            Spawned {
                runtime,
                rx: Box::pin(rx),
                tasks,
            }
        }))
    }

    fn into_plan(self, parent: Option<Stop>) -> (Plan, Vec<MemberFuture>) {
        let names = Arc::new(self.names);
        self.shared.set_names(names.clone());
        let plan = Plan {
            names,
            watchers: self.watchers,
            shared: self.shared,
            grace: self.grace,
            stop_delay: self.stop_delay,
            observers: self.observers,
            parent,
        };
        (plan, self.futures)
    }
}

/// A spawned member: sends its result to the collector. Its fields drop in
/// order, the member before the sender, so that the channel closing (the
/// last sender gone) means every member future is gone — whether it ended or
/// was cancelled.
struct Reporting {
    member: MemberFuture,
    tx: async_channel::Sender<Done>,
}

impl Future for Reporting {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let done = std::task::ready!(self.member.as_mut().poll(cx));
        // Never full: the channel has a slot per member (S5).
        let _ = self.tx.try_send(done);
        Poll::Ready(())
    }
}

/// The future returned by [`Group::run`] and [`Group::run_spawned`]; resolves
/// to the group's [`Report`].
#[must_use = "a group does nothing unless its run is awaited"]
pub struct Run {
    inner: Pin<Box<dyn Future<Output = Report> + Send>>,
}

impl Run {
    fn new(future: impl Future<Output = Report> + Send + 'static) -> Self {
        Run {
            inner: Box::pin(future),
        }
    }
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run").finish_non_exhaustive()
    }
}

impl Future for Run {
    type Output = Report;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Report> {
        self.inner.as_mut().poll(cx)
    }
}

/// The future of a nested group running as a member (see
/// [`Group::into_member`]).
#[must_use = "a group does nothing unless its run is awaited"]
pub struct Nested {
    run: Run,
}

impl fmt::Debug for Nested {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nested").finish_non_exhaustive()
    }
}

impl Future for Nested {
    type Output = Result<(), GroupFailed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.run).poll(cx).map(|report| {
            if report.is_success() {
                Ok(())
            } else {
                Err(GroupFailed { report })
            }
        })
    }
}

/// How the members of one run are executed: all in the run's own task, or a
/// task each on a runtime.
trait Driver {
    /// The next member to end on its own; `None` once none is left.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Done>>;

    /// Cancels every member still running.
    fn cancel_all(&mut self);

    /// Waits until every member future has been dropped, and returns the
    /// members that ended on their own while being cancelled.
    fn poll_gone(&mut self, cx: &mut Context<'_>, late: &mut Vec<Done>) -> Poll<()>;
}

struct InTask {
    set: Option<FuturesUnordered<MemberFuture>>,
}

impl Driver for InTask {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Done>> {
        match &mut self.set {
            Some(set) => set.poll_next_unpin(cx),
            None => Poll::Ready(None),
        }
    }

    fn cancel_all(&mut self) {
        // Dropping a member runs its destructors here; one that panics must
        // not unwind through `run`.
        let set = self.set.take();
        let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(set)));
    }

    fn poll_gone(&mut self, _cx: &mut Context<'_>, _late: &mut Vec<Done>) -> Poll<()> {
        // In-task members are dropped synchronously by `cancel_all`, and the
        // ones that ended were dropped by `FuturesUnordered` as they ended.
        Poll::Ready(())
    }
}

struct Spawned<R: Runtime> {
    runtime: R,
    // Boxed because the receiver keeps its listener inline and is !Unpin.
    rx: Pin<Box<async_channel::Receiver<Done>>>,
    /// For cancelling; dropping them cancels too (the runtime contract).
    tasks: Vec<R::Task>,
}

impl<R: Runtime> Driver for Spawned<R> {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Done>> {
        self.rx.poll_next_unpin(cx)
    }

    fn cancel_all(&mut self) {
        for task in &mut self.tasks {
            self.runtime.cancel(task);
        }
    }

    fn poll_gone(&mut self, cx: &mut Context<'_>, late: &mut Vec<Done>) -> Poll<()> {
        // Each task's future holds a sender, dropped after the member
        // future: the channel closes when the last of them is gone. One
        // wake-up for the whole group, rather than a join per task. A member
        // that ended just as it was cancelled is still in the channel: its
        // real outcome wins over `Cancelled`.
        loop {
            match self.rx.poll_next_unpin(cx) {
                Poll::Ready(Some(done)) => late.push(done),
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Everything a run needs besides its members.
struct Plan {
    names: Arc<Vec<Cow<'static, str>>>,
    watchers: Vec<bool>,
    shared: Arc<Shared>,
    grace: Option<(Duration, Arc<dyn DynTimer>)>,
    stop_delay: Option<(Duration, Arc<dyn DynTimer>)>,
    observers: Vec<Arc<dyn Observer>>,
    parent: Option<Stop>,
}

impl Plan {
    fn emit(&self, event: Event<'_>) {
        for observer in &self.observers {
            observer.on_event(&event);
        }
    }

    /// Notes that the stop began: tells the observers, arms the deadline.
    fn begin_stop(
        &self,
        stop_began: &mut Option<Instant>,
        deadline: &mut Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    ) {
        *stop_began = Some(Instant::now());
        if let Some(cause) = self.shared.cause() {
            self.emit(Event::StopBegan { cause });
        }
        if let Some((grace, timer)) = &self.grace {
            *deadline = Some(timer.sleep_boxed(*grace));
        }
    }

    /// Enters a member that ended on its own into the report.
    fn record(
        &self,
        done: Done,
        ran_for: Duration,
        members: &mut [MemberReport],
        ended: &mut [bool],
    ) {
        self.emit(Event::MemberExited {
            index: done.index,
            name: &self.names[done.index],
            outcome: &done.outcome,
        });
        ended[done.index] = true;
        let member = &mut members[done.index];
        member.outcome = done.outcome;
        member.ran_for = ran_for;
    }

    /// Runs the group: tells the observers every member is starting, then
    /// `start`s them (so no member can act before the observers know it),
    /// then collects, stops and reports.
    async fn drive<D: Driver>(self, start: impl FnOnce() -> D) -> Report {
        let started = Instant::now();
        let count = self.names.len();
        // The report, filled in as members end; `ended` says which did.
        let mut members: Vec<MemberReport> = (0..count)
            .map(|index| MemberReport {
                names: self.names.clone(),
                index,
                outcome: Outcome::Cancelled,
                ran_for: Duration::ZERO,
            })
            .collect();
        let mut ended = vec![false; count];
        for (index, name) in self.names.iter().enumerate() {
            self.emit(Event::MemberStarted { index, name });
        }
        let mut driver = start();
        let mut running = count;
        // Members that are not watchers and have not ended.
        let mut working = self.watchers.iter().filter(|w| !**w).count();
        let mut stop_began: Option<Instant> = None;
        let mut deadline: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
        // The stop delay's sleep, once a request is pending.
        let mut delay: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
        let mut own = Waiter::new();
        let mut from_parent = Waiter::new();

        poll_fn(|cx| loop {
            // A stop from outside is told before the exits it causes; a
            // member's exit before the stop it causes (below).
            if stop_began.is_none()
                && self
                    .shared
                    .cause()
                    .is_some_and(|cause| !matches!(cause, Cause::Finished { .. }))
            {
                self.begin_stop(&mut stop_began, &mut deadline);
            }
            // One clock reading for the batch of members that ended since
            // the last wake: their run time is measured to here.
            let mut now = None;
            while running > 0 {
                let done = match driver.poll_next(cx) {
                    Poll::Ready(Some(done)) => done,
                    // Members gone without a result: their runtime shut
                    // down and dropped them. Nothing more will come; they
                    // are reported cancelled.
                    Poll::Ready(None) => return Poll::Ready(()),
                    Poll::Pending => break,
                };
                let now = *now.get_or_insert_with(Instant::now);
                running -= 1;
                if !self.watchers[done.index] {
                    working -= 1;
                }
                self.record(done, now - started, &mut members, &mut ended);
            }
            if let Some(parent) = &self.parent {
                if let Some(cause) = parent.cause() {
                    self.shared.stop(|| Cause::Parent(Box::new(cause.clone())));
                }
            }
            if stop_began.is_none() {
                if let (None, Some(reason), Some((wait, timer))) =
                    (&delay, self.shared.pending(), &self.stop_delay)
                {
                    self.emit(Event::StopRequested {
                        reason,
                        delay: *wait,
                    });
                    delay = Some(timer.sleep_boxed(*wait));
                }
                if let Some(sleep) = &mut delay {
                    if sleep.as_mut().poll(cx).is_ready() {
                        let reason = self.shared.pending().cloned().unwrap_or_default();
                        self.shared.stop(|| Cause::Requested(reason));
                    }
                }
            }
            if stop_began.is_none() && self.shared.is_stopped() {
                self.begin_stop(&mut stop_began, &mut deadline);
            }

            if running == 0 {
                return Poll::Ready(());
            }

            if stop_began.is_some() {
                let expired = deadline
                    .as_mut()
                    .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
                if working == 0 || expired || self.shared.is_forced() {
                    driver.cancel_all();
                    return Poll::Ready(());
                }
            }

            // Sleep until a member ends (registered above), the deadline
            // passes (registered above), or our or the parent's stop state
            // moves on; re-check everything if it already has.
            let began = stop_began.is_some();
            let delaying = delay.is_some();
            let own_moved = own
                .poll_until(cx, &self.shared, |shared| {
                    if began {
                        shared.is_forced()
                    } else {
                        // A pending request matters until its delay runs.
                        shared.is_stopped() || (!delaying && shared.pending().is_some())
                    }
                })
                .is_ready();
            // Once our stop has begun, the parent has nothing more to tell
            // us: if it is forced, it cancels this whole nested group.
            let parent_moved = match &self.parent {
                Some(parent) if !began => from_parent
                    .poll_until(cx, parent.shared(), Shared::is_stopped)
                    .is_ready(),
                _ => false,
            };
            if !own_moved && !parent_moved {
                return Poll::Pending;
            }
        })
        .await;

        let cancelled_at = Instant::now();
        let mut late = Vec::new();
        poll_fn(|cx| driver.poll_gone(cx, &mut late)).await;
        for done in late {
            if !ended[done.index] {
                self.record(done, cancelled_at - started, &mut members, &mut ended);
            }
        }

        let finished = Instant::now();
        for (index, member) in members.iter_mut().enumerate() {
            if ended[index] {
                continue;
            }
            let name = &self.names[index];
            if self.watchers[index] {
                // Dismissed: a watcher is not waited for.
                member.outcome = Outcome::Ok;
                self.emit(Event::MemberExited {
                    index,
                    name,
                    outcome: &Outcome::Ok,
                });
            } else {
                self.emit(Event::MemberCancelled { index, name });
            }
            member.ran_for = cancelled_at.saturating_duration_since(started);
        }
        let report = Report {
            members,
            cause: self.shared.cause().cloned(),
            drain: stop_began.map_or(Duration::ZERO, |began| finished - began),
        };
        self.emit(Event::GroupDone { report: &report });
        report
    }
}
