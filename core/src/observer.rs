//! Watching a group's lifecycle from outside: the observer hook, and a
//! ready-made observer that keeps every member's current state.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::cause::{Cause, Exit};
use crate::report::{CancelReason, Outcome, Report};
use crate::stage::Stage;

/// One step in a group's life, as seen by an [`Observer`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The group started the member at `index`.
    MemberStarted {
        /// The member's position, in the order members were added.
        index: usize,
        /// The member's name.
        name: &'a str,
        /// The stage it stops in.
        stage: Stage,
    },
    /// A stop was requested and the group's
    /// [stop delay](crate::Group::stop_delay) runs: members keep running
    /// (readiness checks should now fail) and the stop begins after `delay`.
    StopRequested {
        /// The request's reason.
        reason: &'a str,
        /// How long until the stop begins.
        delay: Duration,
    },
    /// The stop began.
    StopBegan {
        /// Why.
        cause: &'a Cause,
    },
    /// The members of `stage` got their stop: every member of the earlier
    /// stages has ended. Only in a group of several stages.
    StageStopping {
        /// The stage.
        stage: Stage,
    },
    /// Every member of `stage` (watchers aside) has ended. Only in a group
    /// of several stages.
    StageStopped {
        /// The stage.
        stage: Stage,
    },
    /// A [restartable member](crate::Group::add_restartable) ended and will
    /// be started again after `delay`.
    MemberRestarting {
        /// The member's position.
        index: usize,
        /// The member's name.
        name: &'a str,
        /// How its last attempt ended, as text (`"failed: …"`,
        /// `"panicked: …"`, or `"ok"` when it restarts on any exit).
        error: &'a str,
        /// Which restart comes next, from 1.
        restart: u32,
        /// The backoff before it.
        delay: Duration,
    },
    /// A restartable member was started again, its backoff over.
    MemberRestarted {
        /// The member's position.
        index: usize,
        /// The member's name.
        name: &'a str,
        /// Which restart this is, from 1.
        restart: u32,
    },
    /// A restartable member failed once more than its intensity limit
    /// allows: it is not restarted, and its exit (next) stops the group.
    RestartLimitReached {
        /// The member's position.
        index: usize,
        /// The member's name.
        name: &'a str,
        /// How many times it was restarted.
        restarts: u32,
    },
    /// The member at `index` ended on its own, with this outcome.
    MemberExited {
        /// The member's position.
        index: usize,
        /// The member's name.
        name: &'a str,
        /// How it ended.
        outcome: &'a Outcome,
    },
    /// The member at `index` was still running when the group cancelled
    /// it (or was never started, the group being cancelled before it ran).
    MemberCancelled {
        /// The member's position.
        index: usize,
        /// The member's name.
        name: &'a str,
        /// Why the group cancelled it.
        reason: CancelReason,
    },
    /// Every member has ended; `run` is about to return this report.
    GroupDone {
        /// The report `run` returns.
        report: &'a Report,
    },
}

/// Receives a group's lifecycle [`Event`]s, for logging, metrics or a status
/// page, without touching the core.
///
/// Events are delivered one at a time, from the task that runs the group,
/// in this order: every `MemberStarted` first (none for a group cancelled
/// before it ran), `GroupDone` last, and `StopBegan` before every member's
/// exit except the exit of the member that began the stop, which comes just
/// before it. An observer must be quick and must not block: it runs inside
/// the group's run loop. Any `Fn(&Event)` is an observer.
///
/// ```
/// use allstop::{Event, Group};
/// use std::sync::{Arc, Mutex};
///
/// let log = Arc::new(Mutex::new(Vec::new()));
/// let sink = log.clone();
/// let mut group = Group::new();
/// group.observe(move |event: &Event<'_>| {
///     if let Event::MemberExited { name, outcome, .. } = event {
///         sink.lock().unwrap().push(format!("{name}: {outcome}"));
///     }
/// });
/// group.add("job", |_stop| async { Ok::<(), std::io::Error>(()) });
/// futures::executor::block_on(group.run());
/// assert_eq!(*log.lock().unwrap(), ["job: ok"]);
/// ```
pub trait Observer: Send + Sync + 'static {
    /// Called for every event.
    fn on_event(&self, event: &Event<'_>);
}

impl<F> Observer for F
where
    F: Fn(&Event<'_>) + Send + Sync + 'static,
{
    fn on_event(&self, event: &Event<'_>) {
        self(event)
    }
}

/// Where one member is in its life, as a [`Status`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemberState {
    /// Running, and the group is not stopping.
    Running,
    /// Still running, and the group is stopping.
    Stopping,
    /// Ended on its own, so.
    Exited(Exit),
    /// Cancelled by the group (see [`CancelReason`]).
    Cancelled,
    /// A [restartable member](crate::Group::add_restartable) waiting out
    /// its backoff before it starts again.
    Restarting,
}

impl MemberState {
    /// A short lowercase word for the state: `running`, `stopping`,
    /// `exited`, `cancelled` or `restarting`.
    ///
    /// ```
    /// assert_eq!(allstop::MemberState::Stopping.as_str(), "stopping");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            MemberState::Running => "running",
            MemberState::Stopping => "stopping",
            MemberState::Exited(_) => "exited",
            MemberState::Cancelled => "cancelled",
            MemberState::Restarting => "restarting",
        }
    }
}

impl fmt::Display for MemberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemberState::Exited(exit) => write!(f, "exited: {exit}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// A snapshot of one member, from [`Status::members`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberStatus {
    /// The member's name.
    pub name: String,
    /// Its state.
    pub state: MemberState,
    /// How long it has run: so far, or in all once it ended.
    pub uptime: Duration,
    /// The stage it stops in.
    pub stage: Stage,
    /// How many times it has been restarted.
    pub restarts: u32,
    /// How its last restarted attempt ended, as text.
    pub last_error: Option<String>,
    /// How long until its next attempt, while it waits out a backoff.
    pub next_attempt: Option<Duration>,
}

/// A snapshot of one stage's stop, from [`Status::stages`]: both times run
/// from the beginning of the group's stop.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StageStatus {
    /// The stage.
    pub stage: Stage,
    /// When its members got their stop; `None` while they have not.
    pub began: Option<Duration>,
    /// When its last member ended (watchers aside); `None` while one runs.
    pub ended: Option<Duration>,
}

#[derive(Debug, Default)]
struct Board {
    members: Vec<Slot>,
    cause: Option<Cause>,
    requested: Option<String>,
    /// When the stop began, and each stage's stop began and ended.
    stopped: Option<Instant>,
    stages: Vec<(Stage, Option<Instant>, Option<Instant>)>,
}

impl Board {
    /// The member's slot, made if the board has not seen it yet (a member
    /// cancelled before it started has no `MemberStarted`).
    fn slot(&mut self, index: usize, name: &str) -> &mut Slot {
        if self.members.len() <= index {
            self.members.resize_with(index + 1, || Slot {
                name: String::new(),
                state: MemberState::Running,
                stage: Stage::FIRST,
                restarts: 0,
                last_error: None,
                next_attempt: None,
                started: None,
                ended: None,
            });
        }
        let slot = &mut self.members[index];
        if slot.name.is_empty() {
            slot.name = name.to_owned();
        }
        slot
    }

    /// The stage's times, made if the board has not seen it yet.
    fn stage(&mut self, stage: Stage) -> &mut (Stage, Option<Instant>, Option<Instant>) {
        let i = match self.stages.binary_search_by_key(&stage, |s| s.0) {
            Ok(i) => i,
            Err(i) => {
                self.stages.insert(i, (stage, None, None));
                i
            }
        };
        &mut self.stages[i]
    }

    /// The member at `index` started, in `stage`: stopping at once if the
    /// stop has begun.
    fn started(&mut self, index: usize, name: &str, stage: Stage, now: Instant) {
        let stopping = self.cause.is_some();
        self.stage(stage);
        let slot = self.slot(index, name);
        slot.stage = stage;
        slot.started = Some(now);
        slot.state = if stopping {
            MemberState::Stopping
        } else {
            MemberState::Running
        };
    }

    /// The stop began: the first stage's running members are stopping.
    fn stop_began(&mut self, cause: &Cause, now: Instant) {
        self.cause = Some(cause.clone());
        self.stopped = Some(now);
        self.stopping(None);
    }

    /// The member at `index` ended with `error` and waits for its restart
    /// number `restart`, due at `next_attempt`.
    fn restarting(
        &mut self,
        index: usize,
        name: &str,
        error: &str,
        restart: u32,
        next_attempt: Instant,
    ) {
        let slot = self.slot(index, name);
        slot.state = MemberState::Restarting;
        slot.restarts = restart;
        slot.last_error = Some(error.to_owned());
        slot.next_attempt = Some(next_attempt);
    }

    /// The member at `index` was started again.
    fn restarted(&mut self, index: usize, name: &str) {
        let slot = self.slot(index, name);
        slot.state = MemberState::Running;
        slot.next_attempt = None;
    }

    /// The member at `index` ended (exited or cancelled) in `state`.
    fn ended(&mut self, index: usize, name: &str, state: MemberState, now: Instant) {
        let slot = self.slot(index, name);
        slot.state = state;
        slot.ended = Some(now);
    }

    /// Every stage's times, from the group's report.
    fn stage_times(&mut self, report: &Report) {
        // The report has every stage's times, a group of one stage
        // included (which has no stage events).
        let Some(stopped) = self.stopped else {
            return;
        };
        for stage in report.stages() {
            let times = self.stage(stage.stage());
            times.1 = stage.began().map(|d| stopped + d);
            times.2 = stage.ended().map(|d| stopped + d);
        }
    }

    /// Marks the running members of `stage` (all of the first stage
    /// present, if `None`) stopping.
    fn stopping(&mut self, stage: Option<Stage>) {
        let Some(stage) = stage.or_else(|| self.stages.first().map(|s| s.0)) else {
            return;
        };
        for slot in &mut self.members {
            if slot.stage == stage && slot.state == MemberState::Running {
                slot.state = MemberState::Stopping;
            }
        }
    }
}

#[derive(Debug)]
struct Slot {
    name: String,
    state: MemberState,
    stage: Stage,
    restarts: u32,
    last_error: Option<String>,
    next_attempt: Option<Instant>,
    started: Option<Instant>,
    ended: Option<Instant>,
}

/// An [`Observer`] that keeps every member's current state, for a status
/// page or a test. Cheap to clone; all clones show the same group.
///
/// ```
/// use allstop::{Group, MemberState, Status};
///
/// let status = Status::new();
/// let mut group = Group::new();
/// group.observe(status.clone());
/// group.add("job", |_stop| async { Ok::<(), std::io::Error>(()) });
/// futures::executor::block_on(group.run());
/// let members = status.members();
/// assert_eq!(members[0].name, "job");
/// assert_eq!(members[0].state, MemberState::Exited(allstop::Exit::Ok));
/// assert!(status.cause().is_some());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Status {
    board: Arc<Mutex<Board>>,
}

impl Status {
    /// An empty status, to pass to [`Group::observe`](crate::Group::observe).
    pub fn new() -> Self {
        Status::default()
    }

    /// Every member seen so far, in the order they were added.
    ///
    /// ```
    /// let status = allstop::Status::new();
    /// assert!(status.members().is_empty()); // not attached to a running group yet
    /// ```
    pub fn members(&self) -> Vec<MemberStatus> {
        let board = self.lock();
        let now = Instant::now();
        board
            .members
            .iter()
            .map(|slot| MemberStatus {
                name: slot.name.clone(),
                state: slot.state.clone(),
                uptime: match slot.started {
                    Some(started) => slot.ended.unwrap_or(now).saturating_duration_since(started),
                    None => Duration::ZERO,
                },
                stage: slot.stage,
                restarts: slot.restarts,
                last_error: slot.last_error.clone(),
                next_attempt: slot
                    .next_attempt
                    .filter(|_| slot.state == MemberState::Restarting)
                    .map(|at| at.saturating_duration_since(now)),
            })
            .collect()
    }

    /// Every stage seen so far, in the order they stop, with when each
    /// stopped.
    ///
    /// ```
    /// use allstop::{Group, Stage, Status};
    ///
    /// let status = Status::new();
    /// let mut group = Group::new();
    /// group.observe(status.clone());
    /// group.add("app", |_stop| async { Ok::<(), std::io::Error>(()) });
    /// group.stage(Stage::LAST);
    /// group.add("debug", |stop| async move { stop.await; Ok::<(), std::io::Error>(()) });
    /// futures::executor::block_on(group.run());
    /// let stages = status.stages();
    /// assert_eq!(stages.len(), 2);
    /// assert!(stages.iter().all(|stage| stage.ended.is_some()));
    /// ```
    pub fn stages(&self) -> Vec<StageStatus> {
        let board = self.lock();
        let since = |at: Option<Instant>| Some(at?.saturating_duration_since(board.stopped?));
        board
            .stages
            .iter()
            .map(|&(stage, began, ended)| StageStatus {
                stage,
                began: since(began),
                ended: since(ended),
            })
            .collect()
    }

    /// The stop's cause, once the stop has begun.
    ///
    /// ```
    /// let status = allstop::Status::new();
    /// let mut group = allstop::Group::new();
    /// group.observe(status.clone());
    /// group.add("job", |_stop| async { Ok::<(), std::io::Error>(()) });
    /// futures::executor::block_on(group.run());
    /// assert_eq!(status.cause().unwrap().to_string(), "member \"job\" finished");
    /// ```
    pub fn cause(&self) -> Option<Cause> {
        self.lock().cause.clone()
    }

    /// Whether the stop has begun.
    ///
    /// ```
    /// assert!(!allstop::Status::new().is_stopping());
    /// ```
    pub fn is_stopping(&self) -> bool {
        self.lock().cause.is_some()
    }

    /// Whether the group is running and not about to stop: false from the
    /// moment a stop is requested (during a
    /// [stop delay](crate::Group::stop_delay)) or begins. A readiness check.
    ///
    /// ```
    /// let status = allstop::Status::new();
    /// assert!(status.is_ready());
    /// ```
    pub fn is_ready(&self) -> bool {
        let board = self.lock();
        board.cause.is_none() && board.requested.is_none()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        // The board is only ever left consistent; a panic elsewhere while
        // holding the lock does not make it unreadable.
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Observer for Status {
    fn on_event(&self, event: &Event<'_>) {
        let mut board = self.lock();
        let now = Instant::now();
        match *event {
            Event::MemberStarted { index, name, stage } => board.started(index, name, stage, now),
            Event::StopRequested { reason, .. } => {
                board.requested = Some(reason.to_owned());
            }
            Event::StopBegan { cause } => board.stop_began(cause, now),
            Event::StageStopping { stage } => {
                board.stage(stage).1 = Some(now);
                board.stopping(Some(stage));
            }
            Event::StageStopped { stage } => board.stage(stage).2 = Some(now),
            Event::MemberRestarting {
                index,
                name,
                error,
                restart,
                delay,
            } => board.restarting(index, name, error, restart, now + delay),
            Event::MemberRestarted { index, name, .. } => board.restarted(index, name),
            Event::RestartLimitReached { .. } => {}
            Event::MemberExited {
                index,
                name,
                outcome,
            } => board.ended(index, name, MemberState::Exited(Exit::of(outcome)), now),
            Event::MemberCancelled { index, name, .. } => {
                board.ended(index, name, MemberState::Cancelled, now)
            }
            Event::GroupDone { report } => board.stage_times(report),
        }
    }
}
