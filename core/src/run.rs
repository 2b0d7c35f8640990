//! Running a group: the members, executed in the run's own task or as a
//! task each; the loop that collects their ends, begins the stop, enforces
//! the deadline and builds the report.

use std::borrow::Cow;
use std::future::{poll_fn, Future};
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};

use crate::member::{Done, MemberFuture};
use crate::observer::{Event, Observer};
use crate::report::{MemberReport, Outcome, Report};
use crate::runtime::{DynTimer, Runtime};
use crate::stop::{Cause, Shared, Stop};
use crate::waiter::Waiter;

/// A spawned member: sends its result to the collector. Its fields drop in
/// order, the member before the sender, so that the channel closing (the
/// last sender gone) means every member future is gone — whether it ended or
/// was cancelled.
pub(crate) struct Reporting {
    pub(crate) member: MemberFuture,
    pub(crate) tx: async_channel::Sender<Done>,
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

/// How the members of one run are executed: all in the run's own task, or a
/// task each on a runtime.
pub(crate) trait Driver {
    /// The next member to end on its own; `None` once none is left.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Done>>;

    /// Cancels every member still running.
    fn cancel_all(&mut self);

    /// Waits until every member future has been dropped, and returns the
    /// members that ended on their own while being cancelled.
    fn poll_gone(&mut self, cx: &mut Context<'_>, late: &mut Vec<Done>) -> Poll<()>;
}

pub(crate) struct InTask {
    pub(crate) set: Option<FuturesUnordered<MemberFuture>>,
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

pub(crate) struct Spawned<R: Runtime> {
    pub(crate) runtime: R,
    // Boxed because the receiver keeps its listener inline and is !Unpin.
    pub(crate) rx: Pin<Box<async_channel::Receiver<Done>>>,
    /// For cancelling; dropping them cancels too (the runtime contract).
    pub(crate) tasks: Vec<R::Task>,
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
pub(crate) struct Plan {
    pub(crate) names: Arc<Vec<Cow<'static, str>>>,
    pub(crate) watchers: Vec<bool>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) grace: Option<(Duration, Arc<dyn DynTimer>)>,
    pub(crate) stop_delay: Option<(Duration, Arc<dyn DynTimer>)>,
    pub(crate) observers: Vec<Arc<dyn Observer>>,
    pub(crate) parent: Option<Stop>,
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
    pub(crate) async fn drive<D: Driver>(self, start: impl FnOnce() -> D) -> Report {
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
        if !self.observers.is_empty() {
            for (index, name) in self.names.iter().enumerate() {
                self.emit(Event::MemberStarted { index, name });
            }
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
            let own_moved = self
                .shared
                .poll_until(cx, &mut own, |shared| {
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
                Some(parent) if !began => parent
                    .shared()
                    .poll_until(cx, &mut from_parent, Shared::is_stopped)
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
