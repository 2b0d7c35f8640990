//! The group: members added by name, run together, stopped together.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::mem;
use std::panic;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::error::BoxError;
use crate::in_task::InTask;
use crate::member::{self, Added};
use crate::observer::Observer;
use crate::report::Outcome;
use crate::report::{GroupFailed, Report};
use crate::restart::{self, Restart};
use crate::run::{self, Entry, Setup, Spawned};
use crate::runtime::{DynTimer, Runtime, SharedRuntime, Timer};
use crate::stage::{Latches, Stage};
use crate::state::StopState;
use crate::stop::{Stop, StopHandle};
use crate::tasks::{TaskToken, TaskTracker};
use crate::unwind::{Caught, Guarded};

/// A set of named, long-lived async members that run as one unit.
///
/// - The first member to finish — `Ok`, `Err` or a panic — stops the group:
///   every member's [`Stop`] resolves.
/// - [`run`](Group::run) returns only when every member has finished, or
///   been cancelled at the optional [grace deadline](Group::grace); by then
///   every member future has been dropped.
/// - Members run in the task that awaits the run ([`Group::new`]), or each
///   as a task of a runtime ([`Group::on`]), whose timer the group then
///   uses for its deadlines.
/// - It returns a [`Report`] with every member's [`Outcome`] in the order
///   they were added, and the [`Cause`](crate::Cause) of the stop.
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
///     Some(&Cause::Finished { member: "migration".into(), exit: allstop::Exit::Failed("schema mismatch".into()) })
/// );
/// assert!(report.member("server").unwrap().outcome().is_ok());
/// assert!(!report.is_success());
/// ```
pub struct Group {
    // Built as the run uses it, and handed to it whole.
    setup: Setup,
    /// The stage of the members added next.
    stage: Stage,
    /// What the deadlines, the stop delay and restart backoffs sleep on.
    timer: Option<Arc<dyn DynTimer>>,
    /// Starts the run on the group's runtime; `None` runs it in-task.
    launch: Option<Launch>,
}

/// Starts a group's run (its setup, and the parent's stop of a nested
/// group) with each member a task of the group's runtime.
type Launch = Box<dyn FnOnce(Setup, Option<Stop>) -> Run + Send>;

impl Default for Group {
    fn default() -> Self {
        Group::new()
    }
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let setup = &self.setup;
        let names: Vec<&str> = setup.entries.iter().map(|e| &*e.name).collect();
        f.debug_struct("Group")
            .field("members", &names)
            .field(
                "grace",
                &setup.settings.grace.as_ref().map(|(grace, _)| grace),
            )
            .field("spawned", &self.launch.is_some())
            .field("observers", &setup.settings.observers.len())
            .field("cause", &setup.state.cause())
            .finish()
    }
}

impl Group {
    /// An empty group whose members run in the task that awaits its
    /// [`run`](Group::run): concurrently, not in parallel, on any executor
    /// (even `futures::executor::block_on`). It has no timer until
    /// [`timer`](Group::timer) gives it one.
    ///
    /// Its members start in the order they were added, except that members
    /// of one type (those one `add` call site adds, say) are kept together
    /// and start with the first of them: each costs one allocation, its
    /// future stored in place. So when two members both end at their first
    /// poll, the one that starts first is the cause.
    ///
    /// ```
    /// let group = allstop::Group::new();
    /// assert!(group.is_empty());
    /// ```
    pub fn new() -> Self {
        Group {
            setup: Setup {
                members: Added::InTask(InTask::default()),
                entries: Vec::new(),
                settings: run::Settings::default(),
                state: StopState::new(),
                remote: TaskTracker::new(),
                latches: Latches::default(),
                notices: None,
            },
            stage: Stage::FIRST,
            timer: None,
            launch: None,
        }
    }

    /// An empty group whose members each run as a task of `runtime` (see
    /// [`Runtime`]), in parallel on a multi-threaded runtime, and whose
    /// deadlines sleep on the runtime's timer. The [`run`](Group::run)
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
    /// # impl allstop::Timer for Pool { type Sleep = std::future::Ready<()>;
    /// #   fn sleep(&self, d: std::time::Duration) -> Self::Sleep { std::thread::sleep(d); std::future::ready(()) } }
    /// # impl allstop::Runtime for Pool { type Task = PoolTask;
    /// #   fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, f: F) -> PoolTask {
    /// #     let (abort, reg) = futures::future::AbortHandle::new_pair();
    /// #     let (tx, rx) = futures::channel::oneshot::channel();
    /// #     self.0.spawn_ok(async move { let _ = futures::future::Abortable::new(f, reg).await; let _ = tx.send(()); });
    /// #     PoolTask(rx, abort) } }
    /// # let runtime = Pool(ThreadPool::new().unwrap());
    /// // `runtime` is an adapter's runtime, e.g. `allstop::tokio::Tokio::new()`.
    /// let mut group = allstop::Group::on(runtime);
    /// group.grace(std::time::Duration::from_secs(10));
    /// group.add("job", |_stop| async { Ok::<(), std::io::Error>(()) });
    /// let report = futures::executor::block_on(group.run());
    /// assert!(report.is_success());
    /// ```
    pub fn on<R: Runtime>(runtime: R) -> Self {
        let runtime = Arc::new(runtime);
        let mut group = Group::new();
        group.setup.members = Added::Spawned(Vec::new());
        group.timer = Some(Arc::new(SharedRuntime(runtime.clone())));
        group.launch = Some(Box::new(move |setup, parent| {
            let state = setup.state.clone();
            // `run` starts the members on the first poll, not here: a run
            // that is never awaited spawns nothing.
            Run::new(run::run(setup, parent, move |members| {
                let Added::Spawned(members) = members else {
                    unreachable!("a group on a runtime adds its members boxed")
                };
                Spawned::new(members, &state, |reporting| runtime.spawn(reporting))
            }))
        }));
        group
    }

    /// Sets the timer that the [grace deadline](Group::grace), the [stop
    /// delay](Group::stop_delay) and [restart](Group::add_restartable)
    /// backoffs sleep on, in place of the runtime's (or of none, for a group
    /// made with [`Group::new`]). They take the timer when they are set:
    /// call this first. The adapters' runtimes are timers, and any
    /// `Fn(Duration) -> impl Future` is one (see [`Timer`]).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let mut group = allstop::Group::new();
    /// // Your runtime's sleep, e.g. `allstop::tokio::Tokio::new()`.
    /// group.timer(|d| async move { std::thread::sleep(d) });
    /// group.grace(Duration::from_secs(10));
    /// ```
    pub fn timer(&mut self, timer: impl Timer) -> &mut Self {
        self.timer = Some(Arc::new(timer));
        self
    }

    /// The group's timer, for `what`.
    #[track_caller]
    fn timer_for(&self, what: &str) -> Arc<dyn DynTimer> {
        match &self.timer {
            Some(timer) => timer.clone(),
            None => panic!(
                "allstop: `Group::{what}` needs a timer, and this group has none: make the \
                 group with `Group::on(runtime)`, or call `Group::timer` first"
            ),
        }
    }

    /// Adds a member called `name`.
    ///
    /// `member` is called once, when the group starts, with the group's
    /// [`Stop`] signal; the future it returns runs until it finishes or the
    /// group cancels it. It should return soon after the stop resolves. Its
    /// error can be any type that converts into [`BoxError`]
    /// (`std::io::Error`, `String`, your own error…); it comes back in the
    /// report as that conversion made it: an error type comes back as
    /// itself (`downcast_ref::<YourError>()` finds it), while a `String` or
    /// `&str` becomes a boxed error with that message, as `?` makes it: a
    /// `String` is no error type, so there is no `String` to downcast to.
    ///
    /// ```
    /// let mut group = allstop::Group::new();
    /// group.add("worker", |stop| async move {
    ///     stop.await;
    ///     Ok::<(), String>(())
    /// });
    /// group.add("fails", |_stop| async { Err::<(), String>("no disk".into()) });
    /// let report = futures::executor::block_on(group.run());
    /// let allstop::Outcome::Err(error) = report.members()[1].outcome() else { panic!() };
    /// assert_eq!(error.to_string(), "no disk");
    /// ```
    ///
    /// # Panics
    ///
    /// If the group has 2^32 members already: a member keeps its index in
    /// 32 bits, which keeps it small (that many members would take some
    /// 300 GiB).
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
    ///
    /// # Panics
    ///
    /// As [`add`](Group::add): past 2^32 members.
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
    /// task — and the group's `run` returns only once that task's future is
    /// gone. (A limit: a nested group cancelled by its parent does not wait
    /// for its own `add_on` members.)
    ///
    /// ```
    /// # use futures::executor::ThreadPool;
    /// # struct Pool(ThreadPool);
    /// # struct PoolTask(futures::channel::oneshot::Receiver<()>, futures::future::AbortHandle);
    /// # impl std::future::Future for PoolTask { type Output = ();
    /// #   fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
    /// #     std::pin::Pin::new(&mut self.0).poll(cx).map(|_| ()) } }
    /// # impl Drop for PoolTask { fn drop(&mut self) { self.1.abort() } }
    /// # impl allstop::Timer for Pool { type Sleep = std::future::Ready<()>;
    /// #   fn sleep(&self, d: std::time::Duration) -> Self::Sleep { std::thread::sleep(d); std::future::ready(()) } }
    /// # impl allstop::Runtime for Pool { type Task = PoolTask;
    /// #   fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, f: F) -> PoolTask {
    /// #     let (abort, reg) = futures::future::AbortHandle::new_pair();
    /// #     let (tx, rx) = futures::channel::oneshot::channel();
    /// #     self.0.spawn_ok(async move { let _ = futures::future::Abortable::new(f, reg).await; let _ = tx.send(()); });
    /// #     PoolTask(rx, abort) } }
    /// # let other_runtime = Pool(ThreadPool::new().unwrap());
    /// let mut group = allstop::Group::new();
    /// // `other_runtime` is an adapter's runtime, e.g. `allstop::smol::Smol::new()`.
    /// group.add_on("elsewhere", other_runtime, |_stop| async { Ok::<(), std::io::Error>(()) });
    /// let report = futures::executor::block_on(group.run());
    /// assert!(report.is_success());
    /// ```
    ///
    /// # Panics
    ///
    /// As [`add`](Group::add): past 2^32 members.
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
        // Counts the member's future on `runtime` until it is dropped: the
        // run returns only once the count is zero, cancelled or not.
        let remote = self.setup.remote.clone();
        self.push(name.into(), false, move |stop: Stop| async move {
            let (tx, rx) = futures::channel::oneshot::channel();
            let body = async move {
                let result =
                    Caught::new(async move { member(stop).await.map_err(Into::into) }).await;
                let _ = tx.send(result);
            };
            // Dropping `task` (when the group cancels this member) cancels
            // the member on its runtime.
            let task = runtime.spawn(Remote {
                body: Guarded::new(Box::pin(body)),
                _token: remote.token(),
            });
            let result = rx.await;
            task.await;
            match result {
                Ok(Ok(result)) => result,
                // Re-raised here, caught and reported by the group.
                Ok(Err(message)) => panic::resume_unwind(Box::new(message)),
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
        let stop = self.stop_for_next();
        let setup = &mut self.setup;
        setup.members.add(setup.entries.len(), &name, member, stop);
        setup.entries.push(Entry::new(name, watcher, self.stage));
        self
    }

    /// Adds the member whose future is `body`, in the stage members go to.
    fn push_body(
        &mut self,
        name: Cow<'static, str>,
        watcher: bool,
        body: impl Future<Output = Outcome> + Send + 'static,
    ) -> &mut Self {
        let setup = &mut self.setup;
        setup.members.push(setup.entries.len(), &name, body);
        setup.entries.push(Entry::new(name, watcher, self.stage));
        self
    }

    /// Adds a member called `name` that is restarted as `restart` says,
    /// instead of stopping the group, when it fails (or, with
    /// [`Restart::always`], whenever it ends): Erlang/OTP's supervision.
    ///
    /// `member` is called for every attempt, with the member's [`Stop`].
    /// Between attempts the member waits out a backoff; past the
    /// [intensity limit](Restart::limit) its failure stops the group, as a
    /// member added with [`add`](Group::add) would. No attempt starts once
    /// the group's stop has begun: a member in its backoff then ends with
    /// its last attempt's outcome. Each restart is an
    /// [`Event::MemberRestarting`](crate::Event::MemberRestarting), shows in
    /// [`Status`](crate::Status) and `/debug/group`, and is counted in the
    /// report with the last few failures
    /// ([`MemberReport::restarts`](crate::MemberReport::restarts)).
    ///
    /// The backoffs sleep on the group's [timer](Group::timer).
    ///
    /// # Panics
    ///
    /// If the group has no timer yet.
    ///
    /// ```
    /// use allstop::{Group, Restart};
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// let attempts = Arc::new(AtomicU32::new(0));
    /// let counted = attempts.clone();
    /// let mut group = Group::new();
    /// // Your runtime's timer, e.g. `allstop::tokio::Tokio::new()`.
    /// group.timer(|d| async move { std::thread::sleep(d) });
    /// group.add_restartable(
    ///     "flaky",
    ///     Restart::on_failure()
    ///         .backoff(Duration::from_millis(1), Duration::from_millis(10))
    ///         .limit(2, Duration::from_secs(60)),
    ///     move |_stop| {
    ///         let attempt = counted.fetch_add(1, Ordering::SeqCst);
    ///         async move { Err::<(), _>(format!("attempt {attempt} failed")) }
    ///     },
    /// );
    /// let report = futures::executor::block_on(group.run());
    /// let flaky = report.member("flaky").unwrap();
    /// assert_eq!(attempts.load(Ordering::SeqCst), 3);
    /// assert_eq!(flaky.restarts(), 2);
    /// assert!(flaky.restart_limit_reached());
    /// assert_eq!(flaky.failures(), ["failed: attempt 0 failed", "failed: attempt 1 failed"]);
    /// assert_eq!(flaky.outcome().to_string(), "failed: attempt 2 failed");
    /// ```
    #[track_caller]
    pub fn add_restartable<F, Fut, E>(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        restart: Restart,
        member: F,
    ) -> &mut Self
    where
        F: FnMut(Stop) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let timer = self.timer_for("add_restartable");
        // One channel for the group, made by its first restartable member.
        let notices = self
            .setup
            .notices
            .get_or_insert_with(async_channel::unbounded)
            .0
            .clone();
        let (stop, index, name) = (self.stop_for_next(), self.setup.entries.len(), name.into());
        let run = restart::supervise(member, stop, restart, timer, index, name.clone(), notices);
        self.push_body(name, false, member::supervised_body(run))
    }

    /// The stop signal of the member added next: its stage's.
    fn stop_for_next(&mut self) -> Stop {
        let setup = &mut self.setup;
        setup.latches.stop_of(self.stage, &setup.state)
    }

    /// Puts the members added from now on in `stage`: they receive their
    /// stop only once every member of the earlier stages has ended (watchers
    /// aside), and members of one stage stop together. Until this is called,
    /// members are in [`Stage::FIRST`]; a group of one stage stops all its
    /// members at once.
    ///
    /// The stop itself is the group's, as always: the first member to
    /// finish, in any stage, begins it; one [grace deadline](Group::grace)
    /// covers all the stages, and cancels the members still running at it
    /// whatever their stage; a second stop request cuts every stage short.
    /// A member's [`Stop`] fires with its stage, while [`Stop::cause`] is
    /// the group's from the beginning of the stop. A [nested
    /// group](Group::into_member) is one member of its parent's stage.
    ///
    /// A service stops front to back: the ingress first, then the workers
    /// its requests fed, then what everyone used ([`Stage::LAST`]):
    ///
    /// ```
    /// use allstop::{Group, Stage};
    /// use std::sync::{Arc, Mutex};
    ///
    /// let order = Arc::new(Mutex::new(Vec::new()));
    /// let mut group = Group::new();
    /// for (stage, name) in [(Stage::FIRST, "app"), (Stage::new(1), "workers"), (Stage::LAST, "telemetry")] {
    ///     let order = order.clone();
    ///     group.stage(stage).add(name, move |stop| async move {
    ///         stop.await;
    ///         order.lock().unwrap().push(name);
    ///         Ok::<(), std::io::Error>(())
    ///     });
    /// }
    /// group.stop_handle().stop("deploy");
    /// let report = futures::executor::block_on(group.run());
    /// assert!(report.is_success());
    /// assert_eq!(*order.lock().unwrap(), ["app", "workers", "telemetry"]);
    /// ```
    pub fn stage(&mut self, stage: Stage) -> &mut Self {
        self.stage = stage;
        self
    }

    /// Calls `add` with the members it adds in `stage`, then returns to the
    /// stage the group was in: for a helper that adds its own members, such
    /// as a debug server in [`Stage::LAST`].
    ///
    /// ```
    /// use allstop::{Group, Stage};
    ///
    /// let mut group = Group::new();
    /// group.in_stage(Stage::LAST, |group| {
    ///     group.add("debug", |stop| async move { stop.await; Ok::<(), std::io::Error>(()) });
    /// });
    /// group.add("app", |_stop| async { Ok::<(), std::io::Error>(()) });
    /// let report = futures::executor::block_on(group.run());
    /// assert_eq!(report.member("debug").unwrap().stage(), Stage::LAST);
    /// assert_eq!(report.member("app").unwrap().stage(), Stage::FIRST);
    /// ```
    pub fn in_stage<T>(&mut self, stage: Stage, add: impl FnOnce(&mut Group) -> T) -> T {
        let before = mem::replace(&mut self.stage, stage);
        let result = add(self);
        self.stage = before;
        result
    }

    /// Sets the grace deadline: members still running `grace` after the stop
    /// began are cancelled (dropped) and reported
    /// [`Outcome::Cancelled`]. The deadline
    /// sleeps on the group's [timer](Group::timer).
    ///
    /// Without a grace deadline the group waits for every member however
    /// long it takes (a second [`StopHandle::stop`] still cuts that short).
    ///
    /// # Panics
    ///
    /// If the group has no timer yet.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let mut group = allstop::Group::new();
    /// // Your runtime's sleep, e.g. `allstop::tokio::Tokio::new()`.
    /// group.timer(|d| async move { std::thread::sleep(d) });
    /// group.grace(Duration::from_secs(10));
    /// ```
    #[track_caller]
    pub fn grace(&mut self, grace: Duration) -> &mut Self {
        self.setup.settings.grace = Some((grace, self.timer_for("grace")));
        self
    }

    /// Delays the first stop *request* by `delay`, for load balancers: the
    /// request is announced at once ([`Event::StopRequested`](crate::Event::StopRequested), which turns
    /// [`Status::is_ready`](crate::Status::is_ready) false and a readiness
    /// endpoint to 503) while every member keeps serving; the stop begins
    /// when the delay has passed. A second request skips the delay (and cuts
    /// the grace short). A member that finishes stops the group at once, as
    /// always. The delay sleeps on the group's [timer](Group::timer).
    ///
    /// # Panics
    ///
    /// If the group has no timer yet.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let mut group = allstop::Group::new();
    /// // Your runtime's sleep, e.g. `allstop::tokio::Tokio::new()`.
    /// group.timer(|d| async move { std::thread::sleep(d) });
    /// group.stop_delay(Duration::from_millis(10));
    /// group.add("app", |stop| async move { stop.await; Ok::<(), std::io::Error>(()) });
    /// group.stop_handle().stop("deploy");
    /// let report = futures::executor::block_on(group.run());
    /// assert!(report.is_success());
    /// ```
    #[track_caller]
    pub fn stop_delay(&mut self, delay: Duration) -> &mut Self {
        let timer = self.timer_for("stop_delay");
        self.setup.state.requests.delay_first();
        self.setup.settings.stop_delay = Some((delay, timer));
        self
    }

    /// Adds an observer that sees the group's lifecycle [`Event`](crate::Event)s.
    ///
    /// ```
    /// let status = allstop::Status::new();
    /// let mut group = allstop::Group::new();
    /// group.observe(status.clone());
    /// ```
    pub fn observe(&mut self, observer: impl Observer) -> &mut Self {
        self.setup.settings.observers.push(Arc::new(observer));
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
        StopHandle::new(self.setup.state.clone())
    }

    /// How many members (watchers included) have been added.
    ///
    /// ```
    /// let mut group = allstop::Group::new();
    /// group.add("a", |_stop| async { Ok::<(), std::io::Error>(()) });
    /// group.add_watcher("w", |_stop| async { Ok::<(), std::io::Error>(()) });
    /// assert_eq!(group.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.setup.entries.len()
    }

    /// Whether no member has been added.
    ///
    /// ```
    /// assert!(allstop::Group::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.setup.entries.is_empty()
    }

    /// Runs the group: its members in the awaiting task
    /// ([`Group::new`]) or each as a task of its runtime ([`Group::on`]).
    /// The returned future resolves to the [`Report`] once every member
    /// future is gone.
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
    /// Dropping the future before it completes drops every in-task member
    /// at once, or cancels every member task (the runtime's contract),
    /// without a report.
    ///
    /// # Panics
    ///
    /// Never because of a member: a member's panic is its
    /// [`Outcome::Panicked`]. An [`Observer`] that panics unwinds through
    /// the run.
    pub fn run(self) -> Run {
        self.start(None)
    }

    /// Turns the group into a member of another group (nesting), its
    /// members run as [`run`](Group::run) would: in the parent member's
    /// task, or each as a task of the group's runtime.
    ///
    /// The nested group stops when the parent stops (its cause is then
    /// [`Cause::Parent`](crate::Cause::Parent)). If the parent cancels it (its grace deadline, a
    /// second stop request), it gets a last poll in which it cancels its own
    /// members, reported [`CancelReason::Parent`](crate::CancelReason::Parent). When the nested group ends, the member
    /// returns `Ok` if every nested member ended `Ok`, and otherwise
    /// [`GroupFailed`] carrying the nested report — which stops the parent.
    ///
    /// A limit, for a nested group made with [`Group::on`]: when the parent
    /// *cancels* it, its member tasks are cancelled and their runtime drops
    /// them right after — a cancelled future cannot wait. The parent's run
    /// may return just before they are gone. A nested group that stops by
    /// itself in time waits for all of its members as usual.
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
            run: self.start(Some(parent)),
        }
    }

    fn start(self, parent: Option<Stop>) -> Run {
        match self.launch {
            Some(launch) => launch(self.setup, parent),
            None => Run::new(run::run(self.setup, parent, |members| {
                let Added::InTask(members) = members else {
                    unreachable!("an in-task group adds its members by type")
                };
                members
            })),
        }
    }
}

/// A member's future on another runtime ([`Group::add_on`]), counted until
/// it is gone: its fields drop in order, the body before the token.
struct Remote {
    body: Guarded<Pin<Box<dyn Future<Output = ()> + Send>>>,
    _token: TaskToken,
}

impl Future for Remote {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(body) = self.body.get_mut() else {
            return Poll::Ready(());
        };
        std::task::ready!(body.as_mut().poll(cx));
        // Gone before the task says it is done.
        let _ = self.body.drop_now();
        Poll::Ready(())
    }
}

/// The future returned by [`Group::run`]; resolves
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
