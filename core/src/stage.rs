//! Stopping in order: the stage a member stops in, and each stage's stop
//! as the run carries it out.
//!
//! # Invariants
//!
//! 1. The members of the first stage share the group's stop latch; each
//!    later stage has a latch of its own on the group's event, so that one
//!    waiter on the group's state sees every stage's stop.
//! 2. A stage's latch is set only once the stop has begun and every
//!    member (watchers aside) of every earlier stage has ended; stages are
//!    released in their order, never out of it.
//! 3. A stage has ended when its latch is set and none of its members
//!    (watchers aside) is running.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::latch::Latch;
use crate::state::StopState;
use crate::stop::Stop;

/// The stage a member stops in: a member of a later stage receives its
/// stop only once every member of the earlier stages has ended. Members of
/// one stage stop together.
///
/// Every member is in [`Stage::FIRST`] unless the group is told otherwise
/// ([`Group::stage`](crate::Group::stage)), and a group of one stage stops
/// all its members at once. [`Stage::LAST`] is reserved for what everyone
/// else uses until the end (a debug server, a telemetry flusher): it stops
/// after every other stage, whatever is added after it.
///
/// ```
/// use allstop::Stage;
///
/// assert!(Stage::FIRST < Stage::new(1));
/// assert!(Stage::new(1) < Stage::LAST);
/// assert_eq!(Stage::new(2).to_string(), "2");
/// assert_eq!(Stage::LAST.to_string(), "last");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Stage(u16);

impl Stage {
    /// The stage every member is in by default; it stops first.
    pub const FIRST: Stage = Stage(0);

    /// The stage that stops after every other.
    pub const LAST: Stage = Stage(u16::MAX);

    /// Stage `n`: stages stop in the order of their numbers, from
    /// [`Stage::FIRST`] (`0`). `Stage::new(u16::MAX)` is [`Stage::LAST`].
    ///
    /// ```
    /// assert_eq!(allstop::Stage::new(0), allstop::Stage::FIRST);
    /// ```
    pub const fn new(n: u16) -> Stage {
        Stage(n)
    }

    /// The stage's number (`u16::MAX` for [`Stage::LAST`]).
    ///
    /// ```
    /// assert_eq!(allstop::Stage::new(3).number(), 3);
    /// ```
    pub const fn number(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Stage::LAST {
            f.write_str("last")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// The latches of a group's stages, as the group is built: one per stage
/// in use, in stage order (invariant 1), with the stop signal its members
/// get clones of.
#[derive(Default)]
pub(crate) struct Latches {
    stages: Vec<(Stage, Arc<Latch>, Stop)>,
}

impl Latches {
    /// The stop signal of a member of `stage`: a clone of the stage's.
    pub(crate) fn stop_of(&mut self, stage: Stage, state: &Arc<StopState>) -> Stop {
        match self.stages.binary_search_by_key(&stage, |(s, ..)| *s) {
            Ok(i) => self.stages[i].2.clone(),
            Err(i) => {
                let latch = if stage == Stage::FIRST {
                    state.broadcast.latch().clone()
                } else {
                    state.stage_latch()
                };
                let stop = Stop::staged(state.clone(), latch.clone());
                self.stages.insert(i, (stage, latch, stop.clone()));
                stop
            }
        }
    }
}

/// One stage's stop, as the run carries it out.
pub(crate) struct StageRun {
    pub(crate) stage: Stage,
    latch: Arc<Latch>,
    /// Members of the stage still running, watchers aside.
    pub(crate) working: usize,
    pub(crate) began: Option<Instant>,
    pub(crate) ended: Option<Instant>,
}

/// What [`Stages::release`] did to one stage, for the observers.
pub(crate) enum Change {
    Began(Stage),
    Ended(Stage),
}

/// Every stage of one run, in order.
pub(crate) struct Stages {
    pub(crate) runs: Vec<StageRun>,
}

impl Stages {
    /// The run is over: every stage's stop resolves, released or not (a
    /// stage whose earlier ones were cancelled, a run that ended before it
    /// began to stop), so that no `Stop` of the group waits for ever.
    pub(crate) fn end(&self) {
        for run in &self.runs {
            run.latch.set();
        }
    }

    /// The stages of `latches`, with their working members counted from
    /// `stages` (one per member, watchers aside).
    pub(crate) fn new(latches: Latches, working: impl Iterator<Item = Stage>) -> Self {
        let mut runs: Vec<StageRun> = latches
            .stages
            .into_iter()
            .map(|(stage, latch, _)| StageRun {
                stage,
                latch,
                working: 0,
                began: None,
                ended: None,
            })
            .collect();
        for stage in working {
            if let Ok(i) = runs.binary_search_by_key(&stage, |run| run.stage) {
                runs[i].working += 1;
            }
        }
        Stages { runs }
    }

    /// Notes that a working member of `stage` ended.
    pub(crate) fn ended(&mut self, stage: Stage) {
        if let Ok(i) = self.runs.binary_search_by_key(&stage, |run| run.stage) {
            self.runs[i].working -= 1;
        }
    }

    /// Once the stop has begun: begins each stage whose earlier stages have
    /// all ended, and ends those with no member left (invariants 2, 3).
    /// `changes` hears of each stage that began or ended, in order.
    pub(crate) fn release(&mut self, now: Instant, mut changes: impl FnMut(Change)) {
        for run in &mut self.runs {
            if run.began.is_none() {
                run.began = Some(now);
                run.latch.set();
                changes(Change::Began(run.stage));
            }
            if run.working > 0 {
                return;
            }
            if run.ended.is_none() {
                run.ended = Some(now);
                changes(Change::Ended(run.stage));
            }
        }
    }
}
