//! Running a group: its members, executed in the run's own task or as a
//! task each, and the run itself — a state machine whose [`Phase`] says
//! what it does next and what it waits for.
//!
//! ```text
//! Running ──(request, with a stop delay)──> Delaying ──(delay over)──┐
//!    └──────────(stop: a member ended, a request, the parent)────────> Stopping
//! Stopping ──(all ended)──> Done
//!    └── each stage gets its stop once the earlier ones have ended (`stage.rs`)
//! Stopping ──(deadline, second request, parent cancels, only watchers left)──> Cancelling ──(all gone)──> Done
//! ```

use std::borrow::Cow;
use std::future::{poll_fn, Future};
use std::mem;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::stream::StreamExt;
use futures::task::AtomicWaker;

use crate::cause::Cause;
use crate::member::{self, Added, Ended, Member};
use crate::observer::{Event, Observer};
use crate::report::{CancelReason, MemberReport, Outcome, Report, Restarts, StageReport};
use crate::restart::{Notice, Notices};
use crate::runtime::DynTimer;
use crate::stage::{Change, Latches, Stage, Stages};
use crate::state::StopState;
use crate::stop::Stop;
use crate::tasks::TaskTracker;
use crate::unwind;
use crate::waiter::Waiter;

type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a phase waits for in a group's state (its own, or its parent's).
type Condition = fn(&StopState) -> bool;

/// How a group runs, set while it is built: its deadline, its stop delay and
/// its observers.
#[derive(Default)]
pub(crate) struct Settings {
    pub(crate) grace: Option<(Duration, Arc<dyn DynTimer>)>,
    pub(crate) stop_delay: Option<(Duration, Arc<dyn DynTimer>)>,
    pub(crate) observers: Vec<Arc<dyn Observer>>,
}

impl Settings {
    fn emit(&self, event: Event<'_>) {
        for observer in &self.observers {
            observer.on_event(&event);
        }
    }
}

/// One member's line, before and after it ends.
pub(crate) struct Entry {
    pub(crate) name: Cow<'static, str>,
    pub(crate) watcher: bool,
    pub(crate) stage: Stage,
    /// A restartable member's restarts, once it has had one.
    restarts: Option<Box<Restarts>>,
    /// How it ended, and after how many nanoseconds of the run: an entry
    /// of 72 bytes, not 80.
    ended: Option<(Outcome, u64)>,
}

impl Entry {
    pub(crate) fn new(name: Cow<'static, str>, watcher: bool, stage: Stage) -> Self {
        Entry {
            name,
            watcher,
            stage,
            restarts: None,
            ended: None,
        }
    }
}

/// How the members of one run are executed: all in the run's own task, or a
/// task each on a runtime.
pub(crate) trait Members {
    /// Whether a member's task begins the group's stop as the member ends
    /// (spawned), rather than the run as it records the exit (in-task):
    /// see [`member::begin_stop`].
    const BEGIN_THE_STOP: bool;

    /// The next member to end; `None` once every member is gone.
    fn poll_exit(&mut self, cx: &mut Context<'_>) -> Poll<Option<Ended>>;

    /// Cancels the members still running, once the group's cancel latch is
    /// set: each one the latch woke gets a last poll, then is dropped.
    fn cancel(&mut self, cx: &mut Context<'_>);
}

/// The members spawned as tasks; each reports its exit on a channel.
pub(crate) struct Spawned<T> {
    rx: async_channel::Receiver<Exit>,
    /// The run's task, woken by each exit sent and by the channel's close.
    run: Arc<AtomicWaker>,
    /// What the tasks share, for the cancellation to wake them all. Weak:
    /// the channel's one sender is in it, and must go with the last task.
    collector: Weak<Collector>,
    /// Dropping them cancels the tasks (the runtime contract), when the
    /// run itself is dropped.
    _tasks: Vec<T>,
}

impl<T> Spawned<T> {
    pub(crate) fn new(
        members: Vec<Member>,
        state: &Arc<StopState>,
        spawn: impl Fn(Reporting) -> T,
    ) -> Self {
        // Guarantee 4: sized to the members, so a finishing member never
        // waits on the collector (`try_send` cannot find it full).
        let (tx, rx) = async_channel::bounded(members.len().max(1));
        let run = Arc::new(AtomicWaker::new());
        let collector = Arc::new(Collector {
            run: run.clone(),
            state: state.clone(),
            wakers: members.iter().map(|_| AtomicWaker::new()).collect(),
            tx,
        });
        // Member `i` is the `i`th added: its waker slot is the `i`th too.
        let tasks = members
            .into_iter()
            .enumerate()
            .map(|(position, member)| {
                debug_assert_eq!(member.index(), Some(position));
                spawn(Reporting {
                    member,
                    collector: collector.clone(),
                })
            })
            .collect();
        Spawned {
            rx,
            run,
            collector: Arc::downgrade(&collector),
            _tasks: tasks,
        }
    }
}

impl<T> Members for Spawned<T> {
    const BEGIN_THE_STOP: bool = true;

    fn poll_exit(&mut self, cx: &mut Context<'_>) -> Poll<Option<Ended>> {
        // The channel closes when the last task's sender is gone, and each
        // task drops its member before its sender: `None` means every
        // member future is gone. One wake-up for the group, not a join per
        // task.
        let mut registered = false;
        loop {
            match self.rx.try_recv() {
                Ok(exit) => return Poll::Ready(Some(exit.into())),
                Err(async_channel::TryRecvError::Closed) => return Poll::Ready(None),
                Err(async_channel::TryRecvError::Empty) if registered => return Poll::Pending,
                // Registered before the second look: an exit sent after
                // the first wakes this task.
                Err(async_channel::TryRecvError::Empty) => {
                    self.run.register(cx.waker());
                    registered = true;
                }
            }
        }
    }

    fn cancel(&mut self, _cx: &mut Context<'_>) {
        // The cancel latch is set: each task still pending polls its member
        // a last time, on its own task, and drops it.
        // Gone: every task has ended, none to wake.
        if let Some(collector) = self.collector.upgrade() {
            for waker in collector.wakers.iter() {
                waker.wake();
            }
        }
    }
}

/// What every spawned member's task shares, in one allocation: one
/// reference count to take and drop per task, not one per field.
struct Collector {
    /// The run's task: woken after each exit sent, and once the channel
    /// closes. A waker slot rather than the channel's own listener, which
    /// the run would allocate, and the senders lock, at each wait.
    run: Arc<AtomicWaker>,
    state: Arc<StopState>,
    /// Each task's waker, for the cancellation to wake them all: one slot
    /// per member, rather than a listener each on the group's event (an
    /// allocation, and that event's lock, per member).
    wakers: Box<[AtomicWaker]>,
    /// The only sender: the channel closes when the last task is gone.
    tx: async_channel::Sender<Exit>,
}

impl Drop for Collector {
    /// The last task is gone: the channel closes, and the run hears of it.
    fn drop(&mut self) {
        self.tx.close();
        self.run.wake();
    }
}

/// A spawned member's exit on its way to the run: 16 bytes (its channel
/// slot 24) for a member that returned `Ok`, the common end; any other is
/// boxed, one allocation beside those of its error or panic message.
enum Exit {
    Ok(u32),
    Other(Box<Ended>),
}

impl From<Ended> for Exit {
    fn from(ended: Ended) -> Self {
        match (&ended.outcome, u32::try_from(ended.index)) {
            (Outcome::Ok, Ok(index)) => Exit::Ok(index),
            _ => Exit::Other(Box::new(ended)),
        }
    }
}

impl From<Exit> for Ended {
    fn from(exit: Exit) -> Self {
        match exit {
            Exit::Ok(index) => Ended {
                index: index as usize,
                outcome: Outcome::Ok,
            },
            Exit::Other(ended) => *ended,
        }
    }
}

/// A spawned member: sends its exit to the collector; once the group
/// cancels, polls its member a last time and drops it. Its fields drop in
/// order, the member before the collector. 24 bytes, its member's box and
/// the collector: the member's index and name are in its box (see
/// `member::Named`).
pub(crate) struct Reporting {
    member: Member,
    /// Its waker slot is the member's index.
    collector: Arc<Collector>,
}

impl Future for Reporting {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        // Gone only once this task has ended: never polled then.
        let Some(index) = this.member.index() else {
            return Poll::Ready(());
        };
        let exit = match Pin::new(&mut this.member).poll(cx) {
            Poll::Ready(exit) => {
                let name = Cow::Borrowed(this.member.name());
                member::begin_stop(&this.collector.state, index, name, &exit.outcome);
                Some(exit)
            }
            Poll::Pending => {
                // Registered before the check: the cancellation sets the
                // latch, then wakes every slot, so a cancel is either seen
                // here or wakes this task.
                let collector = &this.collector;
                collector.wakers[index].register(cx.waker());
                if !collector.state.cancel.is_set() {
                    return Poll::Pending;
                }
                // The last poll is one that sees the cancellation (the poll
                // above may have run just before it), then the drop.
                match Pin::new(&mut this.member).poll(cx) {
                    Poll::Ready(exit) => Some(exit),
                    Poll::Pending => this.member.cancel(),
                }
            }
        };
        // This task's waker would keep the task's memory until the last
        // task ends; it has nothing more to be woken for.
        drop(this.collector.wakers[index].take());
        // Never full: the channel has a slot per member (guarantee 4). But
        // closed if the run is gone: the exit is then dropped here, under a
        // guard (an error's `Drop` is the member's code).
        if let Some(exit) = exit {
            match this.collector.tx.try_send(exit.into()) {
                Ok(()) => this.collector.run.wake(),
                Err(unsent) => {
                    let _ = unwind::drop_caught(unsent);
                }
            }
        }
        Poll::Ready(())
    }
}

/// Where the run is. Each phase holds what only it needs.
enum Phase {
    /// Members run; nothing has asked the group to stop.
    Running,
    /// A stop request waits out the stop delay.
    Delaying(Sleep),
    /// The stop has begun; members drain until they end or the deadline.
    Stopping(Option<Sleep>),
    /// The members still running are being cancelled.
    Cancelling,
    /// Every member has ended or is gone.
    Done,
}

/// What a step did: moved to a new phase, or stayed and must wait.
enum Step {
    Go(Phase),
    Stay(Phase),
}

/// The run of one group.
pub(crate) struct RunLoop<M> {
    members: M,
    entries: Vec<Entry>,
    settings: Settings,
    state: Arc<StopState>,
    parent: Option<Stop>,
    /// Members spawned on other runtimes (`Group::add_on`), gone only once
    /// this is empty.
    remote: TaskTracker,
    stages: Stages,
    notices: Option<Pin<Box<async_channel::Receiver<Notice>>>>,
    phase: Phase,
    started: Instant,
    /// Members not ended, and those of them that are not watchers.
    running: usize,
    working: usize,
    began: Option<Instant>,
    /// Whether observers have been told `StopBegan`.
    announced: bool,
    cancelled: Option<(Instant, CancelReason)>,
    own: Waiter,
    from_parent: Waiter,
    remote_waiter: Waiter,
}

/// A group as it is built, before it runs: `Group` holds one and hands it
/// to the run whole.
pub(crate) struct Setup {
    pub(crate) members: Added,
    pub(crate) entries: Vec<Entry>,
    pub(crate) settings: Settings,
    pub(crate) state: Arc<StopState>,
    pub(crate) remote: TaskTracker,
    pub(crate) latches: Latches,
    /// Restartable members' notices, once one is added.
    pub(crate) notices: Option<(Notices, async_channel::Receiver<Notice>)>,
}

/// Runs a group: `start` executes its members (in-task or spawned).
pub(crate) async fn run<M: Members>(
    parts: Setup,
    parent: Option<Stop>,
    start: impl FnOnce(Added) -> M,
) -> Report {
    let mut run = RunLoop::start(parts, parent, start);
    poll_fn(|cx| run.poll(cx)).await;
    run.finish()
}

impl<M: Members> RunLoop<M> {
    /// Tells the observers every member is starting, then starts them (so
    /// no member acts before the observers know of it) — unless a second
    /// request or the parent cancelled the group already: then none starts,
    /// in every mode, and each is reported cancelled.
    fn start(parts: Setup, parent: Option<Stop>, start: impl FnOnce(Added) -> M) -> Self {
        let Setup {
            mut members,
            entries,
            settings,
            state,
            remote,
            latches,
            notices,
        } = parts;
        follow_parent(&state, parent.as_ref());
        let started = Instant::now();
        let early = cancel_reason(&state, parent.as_ref());
        match early {
            None => {
                for (index, entry) in entries.iter().enumerate() {
                    settings.emit(Event::MemberStarted {
                        index,
                        name: &entry.name,
                        stage: entry.stage,
                    });
                }
            }
            Some(_) => members.discard(),
        }
        let working = entries.iter().filter(|e| !e.watcher).map(|e| e.stage);
        let stages = Stages::new(latches, working);
        RunLoop {
            members: start(members),
            stages,
            // The senders are the members'; the channel closes with them.
            notices: notices.map(|(_, rx)| Box::pin(rx)),
            running: entries.len(),
            working: entries.iter().filter(|entry| !entry.watcher).count(),
            entries,
            settings,
            state,
            parent,
            remote,
            phase: if early.is_some() {
                Phase::Done
            } else {
                Phase::Running
            },
            started,
            began: early.map(|_| started),
            announced: false,
            cancelled: early.map(|reason| (started, reason)),
            own: Waiter::new(),
            from_parent: Waiter::new(),
            remote_waiter: Waiter::new(),
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let gone = self.collect(cx);
            follow_parent(&self.state, self.parent.as_ref());
            let step = match mem::replace(&mut self.phase, Phase::Done) {
                Phase::Done => return self.remote.poll_empty(cx, &mut self.remote_waiter),
                Phase::Cancelling if !gone => Step::Stay(Phase::Cancelling),
                // Every member gone: ended, or dropped by its runtime.
                _ if gone => Step::Go(Phase::Done),
                Phase::Running => self.running(),
                Phase::Delaying(sleep) => self.delaying(sleep, cx),
                Phase::Stopping(deadline) => self.stopping(deadline, cx),
                Phase::Cancelling => unreachable!("handled above"),
            };
            match step {
                Step::Go(next) => self.phase = next,
                Step::Stay(phase) => {
                    self.phase = phase;
                    if self.wait(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    fn running(&mut self) -> Step {
        if self.state.is_stopped() {
            return Step::Go(self.begin_stop());
        }
        let state = self.state.clone();
        match (state.requests.pending(), &self.settings.stop_delay) {
            (Some(reason), Some((delay, timer))) => {
                self.settings.emit(Event::StopRequested {
                    reason,
                    delay: *delay,
                });
                Step::Go(Phase::Delaying(timer.sleep_boxed(*delay)))
            }
            _ => Step::Stay(Phase::Running),
        }
    }

    fn delaying(&mut self, mut sleep: Sleep, cx: &mut Context<'_>) -> Step {
        if !self.state.is_stopped() && sleep.as_mut().poll(cx).is_pending() {
            return Step::Stay(Phase::Delaying(sleep));
        }
        let reason = self.state.requests.pending().unwrap_or_default().to_owned();
        self.state.broadcast.stop(None, || Cause::Requested(reason));
        Step::Go(self.begin_stop())
    }

    fn stopping(&mut self, mut deadline: Option<Sleep>, cx: &mut Context<'_>) -> Step {
        self.release_stages();
        if self.running == 0 {
            return Step::Go(Phase::Done);
        }
        let expired = deadline
            .as_mut()
            .is_some_and(|d| d.as_mut().poll(cx).is_ready());
        let reason = match cancel_reason(&self.state, self.parent.as_ref()) {
            Some(reason) => reason,
            None if expired => CancelReason::Deadline,
            // Only watchers are left: they are dismissed, reported `Ok`
            // (a nested group among them hears its parent cancelling).
            None if self.working == 0 => CancelReason::Parent,
            None => return Step::Stay(Phase::Stopping(deadline)),
        };
        self.cancelled = Some((Instant::now(), reason));
        self.state.cancel.set();
        self.members.cancel(cx);
        Step::Go(Phase::Cancelling)
    }

    /// Sleeps until what the phase waits for may have happened. Members
    /// and sleeps registered as they were polled; this adds the state.
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Before the stop, the parent is watched for this group's own stop
        // (its stage's, in a staged parent), which notifies the parent's
        // state; during it, for its cancellation.
        let (own, stopping): (Condition, bool) = match self.phase {
            Phase::Running => (|s| s.is_stopped() || s.requests.pending().is_some(), false),
            Phase::Delaying(_) => (StopState::is_stopped, false),
            Phase::Stopping(_) => (|s| s.requests.is_forced(), true),
            Phase::Cancelling | Phase::Done => return Poll::Pending,
        };
        let own = self.state.poll_until(cx, &mut self.own, own).is_ready();
        let parent = match &self.parent {
            Some(stop) => stop
                .state()
                .poll_until(cx, &mut self.from_parent, |s| {
                    s.cancel.is_set() || (!stopping && stop.is_stopped())
                })
                .is_ready(),
            None => false,
        };
        if own || parent {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Enters the members that ended into the report; returns whether every
    /// member is gone.
    fn collect(&mut self, cx: &mut Context<'_>) -> bool {
        // One clock reading for the batch: their run time is measured here.
        let now = Instant::now();
        self.take_notices(Some(cx));
        loop {
            match self.members.poll_exit(cx) {
                Poll::Ready(Some(exit)) => self.record(exit, now),
                Poll::Ready(None) => return true,
                Poll::Pending => return false,
            }
        }
    }

    /// Takes restartable members' notices: polled with `cx`, which
    /// registers for the next, or without, for those sent before an exit.
    fn take_notices(&mut self, mut cx: Option<&mut Context<'_>>) {
        loop {
            let Some(rx) = self.notices.as_mut() else {
                return;
            };
            let notice = match cx.as_deref_mut() {
                Some(cx) => match rx.poll_next_unpin(cx) {
                    Poll::Ready(Some(notice)) => notice,
                    _ => return,
                },
                None => match rx.try_recv() {
                    Ok(notice) => notice,
                    Err(_) => return,
                },
            };
            self.notice(notice);
        }
    }

    /// Enters one restart notice and tells the observers.
    fn notice(&mut self, notice: Notice) {
        let index = match notice {
            Notice::Restarting { index, .. }
            | Notice::Restarted { index, .. }
            | Notice::LimitReached { index } => index,
        };
        let Some(entry) = self.entries.get_mut(index) else {
            return;
        };
        let name = &entry.name;
        let restarts = entry.restarts.get_or_insert_with(Default::default);
        let event = match notice {
            Notice::Restarting {
                error,
                restart,
                delay,
                ..
            } => {
                restarts.failed(error);
                Event::MemberRestarting {
                    index,
                    name,
                    error: restarts.last_failure(),
                    restart,
                    delay,
                }
            }
            Notice::Restarted { restart, .. } => {
                restarts.count = restart;
                Event::MemberRestarted {
                    index,
                    name,
                    restart,
                }
            }
            Notice::LimitReached { .. } => {
                restarts.limit_reached = true;
                Event::RestartLimitReached {
                    index,
                    name,
                    restarts: restarts.count,
                }
            }
        };
        self.settings.emit(event);
    }

    /// Enters one exit. Only the exit of the member that began the stop may
    /// reach the observers before the stop does.
    fn record(&mut self, exit: Ended, now: Instant) {
        // The member's end begins the stop before anything is told of it:
        // an observer that stops the group on one of its notices must not
        // take the cause from it.
        if let (false, Some(entry)) = (M::BEGIN_THE_STOP, self.entries.get(exit.index)) {
            member::begin_stop(
                &self.state,
                exit.index,
                Cow::Borrowed(&entry.name),
                &exit.outcome,
            );
        }
        // A restartable member's notices come before its exit.
        self.take_notices(None);
        let trigger = self.state.broadcast.trigger();
        if self.state.is_stopped() && trigger != Some(exit.index) {
            self.announce();
        }
        let Some(entry) = self.entries.get_mut(exit.index) else {
            return;
        };
        if entry.ended.is_some() {
            return;
        }
        self.settings.emit(Event::MemberExited {
            index: exit.index,
            name: &entry.name,
            outcome: &exit.outcome,
        });
        entry.ended = Some((exit.outcome, nanos(now - self.started)));
        self.running -= 1;
        if !entry.watcher {
            self.working -= 1;
            self.stages.ended(entry.stage);
        }
    }

    /// Notes that the stop began: tells the observers, arms the deadline.
    fn begin_stop(&mut self) -> Phase {
        self.began = Some(Instant::now());
        self.announce();
        self.release_stages();
        let grace = self.settings.grace.as_ref();
        Phase::Stopping(grace.map(|(grace, timer)| timer.sleep_boxed(*grace)))
    }

    /// Stops each stage whose turn has come; observers hear of stages only
    /// in a group of several.
    fn release_stages(&mut self) {
        let settings = &self.settings;
        let several = self.stages.runs.len() > 1;
        self.stages.release(Instant::now(), |change| {
            if several {
                settings.emit(match change {
                    Change::Began(stage) => Event::StageStopping { stage },
                    Change::Ended(stage) => Event::StageStopped { stage },
                });
            }
        });
    }

    /// Tells the observers the stop began, once.
    fn announce(&mut self) {
        let state = self.state.clone();
        if let (false, Some(cause)) = (self.announced, state.cause()) {
            self.announced = true;
            self.settings.emit(Event::StopBegan { cause });
        }
    }

    /// The report: members that did not end were cancelled, or dismissed if
    /// watchers; every `Stop` of the group resolves.
    fn finish(mut self) -> Report {
        self.announce();
        if self.began.is_some() {
            // The last exits may have ended stages the loop has not seen.
            self.release_stages();
        }
        let finished = Instant::now();
        let (cancelled_at, reason) = self.cancelled.unwrap_or((finished, CancelReason::Runtime));
        let ran_for = nanos(cancelled_at.saturating_duration_since(self.started));
        // Collected in place: the report's lines reuse the entries' memory.
        let members = mem::take(&mut self.entries)
            .into_iter()
            .enumerate()
            .map(|(index, entry)| {
                let (outcome, ran_for) = match entry.ended {
                    Some(ended) => ended,
                    None => (self.dismiss_or_cancel(index, &entry, reason), ran_for),
                };
                MemberReport {
                    name: entry.name,
                    stage: entry.stage,
                    restarts: entry.restarts,
                    outcome,
                    ran_for_nanos: ran_for,
                }
            })
            .collect();
        self.state.broadcast.end();
        self.stages.end();
        let report = Report {
            members,
            cause: self.state.cause().cloned(),
            // Fewer than 2^32 members: the index fits.
            trigger: self.state.broadcast.trigger().map(|index| index as u32),
            drain: self.began.map_or(Duration::ZERO, |began| finished - began),
            stages: self.stage_reports(),
        };
        self.settings.emit(Event::GroupDone { report: &report });
        report
    }

    /// Each stage's stop, timed from the beginning of the group's.
    fn stage_reports(&self) -> Box<[StageReport]> {
        let since = |at: Option<Instant>| Some(at?.saturating_duration_since(self.began?));
        let runs = &self.stages.runs;
        runs.iter()
            .map(|run| StageReport {
                stage: run.stage,
                began: since(run.began),
                ended: since(run.ended),
            })
            .collect()
    }

    fn dismiss_or_cancel(&self, index: usize, entry: &Entry, reason: CancelReason) -> Outcome {
        let name = &entry.name;
        if entry.watcher {
            let outcome = Outcome::Ok;
            self.settings.emit(Event::MemberExited {
                index,
                name,
                outcome: &outcome,
            });
            outcome
        } else {
            self.settings.emit(Event::MemberCancelled {
                index,
                name,
                reason,
            });
            Outcome::Cancelled(reason)
        }
    }
}

/// The parent's stop is the nested group's, with the parent's cause: once
/// the nested group's own stop fires, which in a staged parent comes with
/// its stage — or once the parent cancels it, before its stage came.
fn follow_parent(state: &StopState, parent: Option<&Stop>) {
    let following = |p: &&Stop| p.is_stopped() || p.state().cancel.is_set();
    if let Some(cause) = parent.filter(following).and_then(Stop::cause) {
        state
            .broadcast
            .stop(None, || Cause::Parent(Box::new(cause.clone())));
    }
}

/// Why the group must cancel its members now, if it must: a second stop
/// request, or its parent cancelling it.
fn cancel_reason(state: &StopState, parent: Option<&Stop>) -> Option<CancelReason> {
    if state.requests.is_forced() {
        Some(CancelReason::SecondRequest)
    } else if parent.is_some_and(|p| p.state().cancel.is_set()) {
        Some(CancelReason::Parent)
    } else {
        None
    }
}

/// `duration` in nanoseconds, saturating (at 584 years).
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};
    use std::task::Context;

    use super::{Entry, Reporting};
    use crate::report::MemberReport;
    use crate::{Group, Runtime, Timer};

    /// A runtime that runs each task on a thread of its own, and counts the
    /// tasks that unwound (a panic that reached the runtime). It does not
    /// cancel: a task keeps running after the run is gone, as one that is
    /// inside its `poll` when the run is dropped does on any runtime.
    struct Threads {
        unwound: Arc<AtomicUsize>,
        ended: mpsc::Sender<()>,
    }

    impl Timer for Threads {
        type Sleep = std::future::Pending<()>;

        fn sleep(&self, _: std::time::Duration) -> Self::Sleep {
            std::future::pending()
        }
    }

    impl Runtime for Threads {
        type Task = std::future::Ready<()>;

        fn spawn<F: Future<Output = ()> + Send + 'static>(&self, future: F) -> Self::Task {
            let (unwound, ended) = (self.unwound.clone(), self.ended.clone());
            std::thread::spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| futures::executor::block_on(future));
                if std::panic::catch_unwind(run).is_err() {
                    unwound.fetch_add(1, Ordering::Relaxed);
                }
                let _ = ended.send(());
            });
            std::future::ready(())
        }
    }

    #[derive(Debug)]
    struct PanicsInDrop;

    impl Drop for PanicsInDrop {
        fn drop(&mut self) {
            panic!("error dropped");
        }
    }

    #[derive(Debug)]
    struct Failed(#[allow(dead_code)] PanicsInDrop);

    impl std::fmt::Display for Failed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("failed")
        }
    }

    impl std::error::Error for Failed {}

    // A spawned member that ends after the run is gone (dropped while the
    // member was inside its last poll) finds no one to take its exit; the
    // exit, an error whose `Drop` panics, is dropped under a guard, and
    // nothing reaches the runtime.
    #[test]
    fn an_exit_nobody_takes_is_dropped_under_a_guard() {
        let unwound = Arc::new(AtomicUsize::new(0));
        let (ended, member_ended) = mpsc::channel();
        let mut group = Group::on(Threads {
            unwound: unwound.clone(),
            ended,
        });
        let (entered, member_entered) = mpsc::channel();
        let (proceed, may_proceed) = mpsc::channel::<()>();
        group.add("late", move |_stop| async move {
            entered.send(()).unwrap();
            may_proceed.recv().unwrap();
            Err::<(), _>(Failed(PanicsInDrop))
        });
        let mut run = Box::pin(group.run());
        let waker = futures::task::noop_waker();
        assert!(run
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        member_entered.recv().unwrap();
        drop(run);
        proceed.send(()).unwrap();
        member_ended.recv().unwrap();
        assert_eq!(
            unwound.load(Ordering::Relaxed),
            0,
            "a panic reached the runtime"
        );
    }

    /// A member's bookkeeping costs what it did before stages and restarts
    /// (72 bytes each), which a group that uses neither must not pay for;
    /// and the report's lines reuse the entries' memory (same size).
    #[test]
    fn an_entry_and_a_report_line_take_72_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 72);
        assert_eq!(std::mem::size_of::<MemberReport>(), 72);
    }

    /// The channel's slot for an exit: 24 bytes with its stamp.
    #[test]
    fn an_exit_on_its_way_takes_16_bytes() {
        assert_eq!(std::mem::size_of::<super::Exit>(), 16);
    }

    /// A spawned member's task holds its member's box and the collector, 24
    /// bytes: tokio's tasks are 128 bytes for a future
    /// of up to 24 bytes, and 256 past it.
    #[test]
    fn a_spawned_member_s_task_holds_24_bytes() {
        assert_eq!(std::mem::size_of::<Reporting>(), 24);
    }
}
