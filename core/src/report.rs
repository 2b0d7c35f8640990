//! What [`Group::run`](crate::Group::run) hands back: every member's outcome,
//! in the order the members were added, and the cause of the stop.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use crate::cause::Cause;
use crate::error::BoxError;
use crate::stage::Stage;

/// How one member ended.
///
/// ```
/// use allstop::{Group, Outcome};
///
/// let mut group = Group::new();
/// group.add("fails", |_stop| async { Err::<(), _>(std::io::Error::other("disk full")) });
/// let report = futures::executor::block_on(group.run());
/// match report.members()[0].outcome() {
///     Outcome::Err(error) => assert_eq!(error.to_string(), "disk full"),
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// It returned `Ok(())`. A [watcher](crate::Group::add_watcher) still
    /// running when every other member has finished is also `Ok`.
    Ok,
    /// It returned this error, unchanged.
    Err(BoxError),
    /// It panicked with this message. The panic did not unwind through the
    /// group.
    Panicked(String),
    /// It was still running when the group cancelled it, so it was
    /// dropped; the reason says why.
    Cancelled(CancelReason),
}

/// Why the group cancelled a member (see [`Outcome::Cancelled`]).
///
/// ```
/// use allstop::{CancelReason, Outcome};
///
/// let outcome = Outcome::Cancelled(CancelReason::Deadline);
/// assert_eq!(outcome.to_string(), "cancelled: did not stop before the deadline");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelReason {
    /// The grace deadline passed.
    Deadline,
    /// A second stop request cut the drain short.
    SecondRequest,
    /// The group is nested, and its parent cancelled it.
    Parent,
    /// Its runtime dropped it (the runtime shut down, say).
    Runtime,
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CancelReason::Deadline => "did not stop before the deadline",
            CancelReason::SecondRequest => "a second stop request cut the drain short",
            CancelReason::Parent => "its parent group cancelled it",
            CancelReason::Runtime => "its runtime dropped it",
        })
    }
}

impl Outcome {
    /// Whether the member ended `Ok`.
    ///
    /// ```
    /// assert!(allstop::Outcome::Ok.is_ok());
    /// assert!(!allstop::Outcome::Cancelled(allstop::CancelReason::Deadline).is_ok());
    /// ```
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::Err(error) => write!(f, "failed: {}", ErrorChain(&**error)),
            Outcome::Panicked(message) => write!(f, "panicked: {message}"),
            Outcome::Cancelled(reason) => write!(f, "cancelled: {reason}"),
        }
    }
}

/// Writes an error and its sources as `outer: inner: root`, skipping a source
/// whose message the outer one already contains. A member's error is
/// foreign code: a `Display` or `source` that panics is written as such,
/// never unwinds.
pub(crate) struct ErrorChain<'a>(pub(crate) &'a (dyn Error + 'static));

impl ErrorChain<'_> {
    /// How many sources are followed: a chain that loops (an error that is
    /// its own source) ends here instead of never.
    const DEPTH: usize = 32;

    fn text(&self) -> String {
        let mut text = self.0.to_string();
        let mut shown = text.clone();
        let mut source = self.0.source();
        let mut depth = 0;
        while let Some(error) = source {
            depth += 1;
            if depth > Self::DEPTH {
                text.push_str(": …");
                break;
            }
            let message = error.to_string();
            if !shown.contains(&message) {
                text.push_str(": ");
                text.push_str(&message);
                shown = message;
            }
            source = error.source();
        }
        text
    }
}

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match crate::unwind::catch(|| self.text()) {
            Ok(text) => f.write_str(&text),
            Err(panic) => write!(f, "(the error's Display panicked: {panic})"),
        }
    }
}

/// One member's line in the [`Report`].
///
/// ```
/// use allstop::Group;
///
/// let mut group = Group::new();
/// group.add("quick", |_stop| async { Ok::<(), std::io::Error>(()) });
/// let report = futures::executor::block_on(group.run());
/// let member = &report.members()[0];
/// assert_eq!(member.name(), "quick");
/// assert!(member.outcome().is_ok());
/// ```
pub struct MemberReport {
    pub(crate) name: Cow<'static, str>,
    pub(crate) stage: Stage,
    /// Boxed: most members are never restarted.
    pub(crate) restarts: Option<Box<Restarts>>,
    pub(crate) outcome: Outcome,
    /// In nanoseconds (584 years fit): a line of 72 bytes, not 80.
    pub(crate) ran_for_nanos: u64,
}

impl fmt::Debug for MemberReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberReport")
            .field("name", &self.name())
            .field("stage", &self.stage)
            .field("restarts", &self.restarts())
            .field("outcome", &self.outcome)
            .field("ran_for", &self.ran_for())
            .finish()
    }
}

impl MemberReport {
    /// The name the member was added with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stage the member stopped in (see [`Group::stage`](crate::Group::stage)).
    ///
    /// ```
    /// let mut group = allstop::Group::new();
    /// group.add("job", |_stop| async { Ok::<(), std::io::Error>(()) });
    /// let report = futures::executor::block_on(group.run());
    /// assert_eq!(report.members()[0].stage(), allstop::Stage::FIRST);
    /// ```
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// How many times the member was restarted (see
    /// [`Group::add_restartable`](crate::Group::add_restartable)).
    ///
    /// ```
    /// let mut group = allstop::Group::new();
    /// group.add("job", |_stop| async { Ok::<(), std::io::Error>(()) });
    /// let report = futures::executor::block_on(group.run());
    /// assert_eq!(report.members()[0].restarts(), 0);
    /// ```
    pub fn restarts(&self) -> u32 {
        self.restarts.as_ref().map_or(0, |r| r.count)
    }

    /// The last few exits (at most five, oldest first) after which the
    /// member was to restart, as text: `"failed: …"`, `"panicked: …"`.
    /// The outcome of the last attempt is [`outcome`](MemberReport::outcome);
    /// a member whose backoff the stop interrupted has its last failure
    /// both here and there.
    pub fn failures(&self) -> &[String] {
        self.restarts.as_ref().map_or(&[], |r| &r.failures)
    }

    /// Whether the member's last failure came past its restart intensity
    /// limit ([`Restart::limit`](crate::Restart::limit)), and so stopped
    /// the group.
    pub fn restart_limit_reached(&self) -> bool {
        self.restarts.as_ref().is_some_and(|r| r.limit_reached)
    }

    /// How the member ended.
    ///
    /// ```
    /// let mut group = allstop::Group::new();
    /// group.add("job", |_stop| async { Ok::<(), std::io::Error>(()) });
    /// let report = futures::executor::block_on(group.run());
    /// assert!(matches!(report.members()[0].outcome(), allstop::Outcome::Ok));
    /// ```
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// Takes the outcome out of the report, to get at the member's error
    /// value itself.
    ///
    /// ```
    /// use allstop::{Group, Outcome};
    ///
    /// let mut group = Group::new();
    /// group.add("fails", |_stop| async { Err::<(), _>(std::io::Error::other("nope")) });
    /// let report = futures::executor::block_on(group.run());
    /// let Outcome::Err(error) = report.into_members().remove(0).into_outcome() else { panic!() };
    /// let io = error.downcast::<std::io::Error>().unwrap();
    /// assert_eq!(io.kind(), std::io::ErrorKind::Other);
    /// ```
    pub fn into_outcome(self) -> Outcome {
        self.outcome
    }

    /// How long the member ran: from the start of the group until the group
    /// saw it end (or cancelled it).
    ///
    /// ```
    /// let mut group = allstop::Group::new();
    /// group.add("job", |_stop| async { Ok::<(), std::io::Error>(()) });
    /// let report = futures::executor::block_on(group.run());
    /// assert!(report.members()[0].ran_for() < std::time::Duration::from_secs(60));
    /// ```
    pub fn ran_for(&self) -> Duration {
        Duration::from_nanos(self.ran_for_nanos)
    }
}

/// Everything a group's run produced: one [`MemberReport`] per member in the
/// order they were added, the [`Cause`] of the stop, and how long the stop
/// took.
///
/// `Display` prints a summary a `main` can write to stderr as it is, and
/// [`exit_code`](Report::exit_code) turns the report into a process exit
/// code: `0` when every member ended `Ok`, `1` otherwise.
///
/// ```
/// use allstop::Group;
/// use std::process::ExitCode;
///
/// let mut group = Group::new();
/// group.add("fails", |_stop| async { Err::<(), _>(std::io::Error::other("bind 127.0.0.1:8080: address in use")) });
/// group.add("worker", |stop| async move { stop.await; Ok::<(), std::io::Error>(()) });
/// let report = futures::executor::block_on(group.run());
/// assert!(!report.is_success());
/// assert_eq!(report.exit_code(), ExitCode::from(1));
/// let text = report.to_string();
/// assert!(text.starts_with("group stopped: member \"fails\" failed: bind 127.0.0.1:8080: address in use"));
/// assert!(text.contains("worker"));
/// ```
#[derive(Debug)]
pub struct Report {
    pub(crate) members: Vec<MemberReport>,
    pub(crate) cause: Option<Cause>,
    /// The member whose exit began the stop, if one did.
    /// (A `u32` keeps `GroupFailed`, which holds a report, small.)
    pub(crate) trigger: Option<u32>,
    pub(crate) drain: Duration,
    pub(crate) stages: Box<[StageReport]>,
}

/// A restartable member's restarts, as the run counts them.
#[derive(Debug, Default)]
pub(crate) struct Restarts {
    /// Attempts started again.
    pub(crate) count: u32,
    /// The last few, oldest first.
    failures: Vec<String>,
    pub(crate) limit_reached: bool,
}

impl Restarts {
    const KEPT: usize = 5;

    /// Notes a failure that a restart is to follow.
    pub(crate) fn failed(&mut self, failure: String) {
        if self.failures.len() == Self::KEPT {
            self.failures.remove(0);
        }
        self.failures.push(failure);
    }

    pub(crate) fn last_failure(&self) -> &str {
        self.failures.last().map_or("", String::as_str)
    }
}

/// When one stage of a group stopped, in the [`Report`]: its members got
/// their stop, and later had all ended (watchers aside). Both are timed
/// from the beginning of the group's stop.
///
/// ```
/// use allstop::{Group, Stage};
///
/// let mut group = Group::new();
/// group.add("app", |_stop| async { Ok::<(), std::io::Error>(()) });
/// group.stage(Stage::LAST);
/// group.add("debug", |stop| async move { stop.await; Ok::<(), std::io::Error>(()) });
/// let report = futures::executor::block_on(group.run());
/// let stages = report.stages();
/// assert_eq!(stages.len(), 2);
/// assert_eq!(stages[1].stage(), Stage::LAST);
/// assert!(stages[0].ended().unwrap() <= stages[1].began().unwrap());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageReport {
    pub(crate) stage: Stage,
    pub(crate) began: Option<Duration>,
    pub(crate) ended: Option<Duration>,
}

impl StageReport {
    /// Which stage.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// When its members got their stop, after the group's stop began;
    /// `None` if the group never stopped it (it was cancelled first).
    pub fn began(&self) -> Option<Duration> {
        self.began
    }

    /// When its last member ended; `None` if one was still running when
    /// the group cancelled it (see [`Outcome::Cancelled`]).
    pub fn ended(&self) -> Option<Duration> {
        self.ended
    }
}

impl Report {
    /// Every member's report, in the order the members were added.
    ///
    /// ```
    /// let mut group = allstop::Group::new();
    /// group.add("b", |_stop| async { Ok::<(), std::io::Error>(()) });
    /// group.add("a", |stop| async move { stop.await; Ok::<(), std::io::Error>(()) });
    /// let report = futures::executor::block_on(group.run());
    /// let names: Vec<_> = report.members().iter().map(|m| m.name()).collect();
    /// assert_eq!(names, ["b", "a"]);
    /// ```
    pub fn members(&self) -> &[MemberReport] {
        &self.members
    }

    /// The member reports, by value.
    pub fn into_members(self) -> Vec<MemberReport> {
        self.members
    }

    /// The report of the member called `name` (the first, if several share
    /// the name).
    ///
    /// ```
    /// let mut group = allstop::Group::new();
    /// group.add("a", |_stop| async { Ok::<(), std::io::Error>(()) });
    /// let report = futures::executor::block_on(group.run());
    /// assert!(report.member("a").unwrap().outcome().is_ok());
    /// assert!(report.member("b").is_none());
    /// ```
    pub fn member(&self, name: &str) -> Option<&MemberReport> {
        self.members.iter().find(|m| m.name() == name)
    }

    /// Why the group stopped; `None` for an empty group (or one whose
    /// runtime dropped every member before any ended).
    ///
    /// ```
    /// let mut group = allstop::Group::new();
    /// group.add("job", |stop| async move { stop.await; Ok::<(), std::io::Error>(()) });
    /// group.stop_handle().stop("maintenance");
    /// let report = futures::executor::block_on(group.run());
    /// assert_eq!(report.cause().unwrap().to_string(), "stop requested: maintenance");
    /// ```
    pub fn cause(&self) -> Option<&Cause> {
        self.cause.as_ref()
    }

    /// Each stage the group's members were in, in the order they stopped,
    /// with when each stopped: one stage unless the group was told
    /// otherwise ([`Group::stage`](crate::Group::stage)).
    ///
    /// ```
    /// let mut group = allstop::Group::new();
    /// group.add("job", |_stop| async { Ok::<(), std::io::Error>(()) });
    /// let report = futures::executor::block_on(group.run());
    /// assert_eq!(report.stages().len(), 1);
    /// ```
    pub fn stages(&self) -> &[StageReport] {
        &self.stages
    }

    /// How long the stop took: from its beginning until every member had
    /// ended.
    ///
    /// ```
    /// let mut group = allstop::Group::new();
    /// group.add("job", |_stop| async { Ok::<(), std::io::Error>(()) });
    /// let report = futures::executor::block_on(group.run());
    /// assert!(report.drain() < std::time::Duration::from_secs(60));
    /// ```
    pub fn drain(&self) -> Duration {
        self.drain
    }

    /// Whether every member ended `Ok`.
    ///
    /// ```
    /// let mut group = allstop::Group::new();
    /// group.add("fails", |_stop| async { Err::<(), _>("no") });
    /// assert!(!futures::executor::block_on(group.run()).is_success());
    /// ```
    pub fn is_success(&self) -> bool {
        self.members.iter().all(|m| m.outcome.is_ok())
    }

    /// `ExitCode::SUCCESS` when every member ended `Ok`, `ExitCode::from(1)`
    /// otherwise.
    ///
    /// ```
    /// use std::process::ExitCode;
    ///
    /// fn main() -> ExitCode {
    ///     let mut group = allstop::Group::new();
    ///     group.add("job", |_stop| async { Ok::<(), std::io::Error>(()) });
    ///     let report = futures::executor::block_on(group.run());
    ///     eprintln!("{report}");
    ///     report.exit_code()
    /// }
    /// ```
    pub fn exit_code(&self) -> ExitCode {
        if self.is_success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    }
}

impl From<&Report> for ExitCode {
    fn from(report: &Report) -> ExitCode {
        report.exit_code()
    }
}

impl From<Report> for ExitCode {
    fn from(report: Report) -> ExitCode {
        report.exit_code()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            None if self.members.is_empty() => return f.write_str("group had no members"),
            // Only when a runtime dropped every member before any ended.
            None => f.write_str("group ended: its members were dropped by their runtime")?,
            Some(cause) => write!(f, "group stopped: {cause}")?,
        }
        write!(f, " (drain {})", Millis(self.drain))?;
        let staged = self.stages.len() > 1;
        // A column for the names, and one for the stages when there are
        // several, each as wide as its widest entry (in characters, as the
        // formatter pads).
        let widest =
            |width: fn(&MemberReport) -> usize| self.members.iter().map(width).max().unwrap_or(0);
        let name_width = widest(|m| m.name().chars().count());
        let tag_width = widest(|m| stage_tag(m).chars().count());
        for member in &self.members {
            write!(f, "\n  {:<name_width$}  ", member.name())?;
            if staged {
                write!(f, "{:<tag_width$}  ", stage_tag(member))?;
            }
            member_summary(f, member)?;
        }
        if staged {
            for stage in &self.stages {
                stage_line(f, stage)?;
            }
        }
        Ok(())
    }
}

/// A member's stage, as the report tags it: `[stage 1]`.
fn stage_tag(member: &MemberReport) -> String {
    format!("[stage {}]", member.stage)
}

/// How a member ended, how long it ran and how often it restarted:
/// `ok  (ran 9039ms; restarted 2 times)`.
fn member_summary(f: &mut fmt::Formatter<'_>, member: &MemberReport) -> fmt::Result {
    write!(f, "{}  (ran {}", member.outcome, Millis(member.ran_for()))?;
    match member.restarts() {
        0 => {}
        1 => f.write_str("; restarted once")?,
        n => write!(f, "; restarted {n} times")?,
    }
    if member.restart_limit_reached() {
        f.write_str(", restart limit reached")?;
    }
    f.write_str(")")
}

/// When a stage stopped, on a line of its own.
fn stage_line(f: &mut fmt::Formatter<'_>, stage: &StageReport) -> fmt::Result {
    write!(f, "\n  stage {}: ", stage.stage)?;
    match (stage.began, stage.ended) {
        (Some(began), Some(ended)) => {
            write!(f, "stopped from +{} to +{}", Millis(began), Millis(ended))
        }
        (Some(began), None) => write!(f, "stopped from +{}, cancelled", Millis(began)),
        _ => f.write_str("cancelled before its turn"),
    }
}

struct Millis(Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_secs_f64() * 1000.0;
        if ms < 10.0 {
            write!(f, "{ms:.1}ms")
        } else {
            write!(f, "{ms:.0}ms")
        }
    }
}

/// The error a [nested group](crate::Group::into_member) returns to its
/// parent when one of its members did not end `Ok`. It carries the nested
/// group's whole report.
///
/// ```
/// use allstop::{Group, Outcome};
///
/// let mut child = Group::new();
/// child.add("db", |_stop| async { Err::<(), _>(std::io::Error::other("connection lost")) });
/// let mut parent = Group::new();
/// parent.add("child", child.into_member());
/// let report = futures::executor::block_on(parent.run());
/// let Outcome::Err(error) = report.members()[0].outcome() else { panic!() };
/// assert_eq!(error.to_string(), "nested group failed: member \"db\" failed: connection lost");
/// ```
#[derive(Debug)]
pub struct GroupFailed {
    pub(crate) report: Report,
}

impl GroupFailed {
    /// The nested group's report.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The nested group's report, by value.
    pub fn into_report(self) -> Report {
        self.report
    }
}

impl GroupFailed {
    /// The one member the error is about: the member whose exit began the
    /// nested group's stop if it did not end `Ok`, otherwise the first that
    /// did not. `Display` names it and `source` is its error, so the two
    /// always agree.
    fn culprit(&self) -> Option<&MemberReport> {
        let members = &self.report.members;
        self.report
            .trigger
            .map(|index| index as usize)
            .and_then(|index| members.get(index))
            .filter(|member| !member.outcome.is_ok())
            .or_else(|| members.iter().find(|member| !member.outcome.is_ok()))
    }
}

impl fmt::Display for GroupFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.culprit() {
            Some(member) => write!(
                f,
                "nested group failed: member {:?} {}",
                member.name(),
                member.outcome
            ),
            None => f.write_str("nested group failed"),
        }
    }
}

impl Error for GroupFailed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.culprit()?.outcome {
            Outcome::Err(error) => Some(&**error as &(dyn Error + 'static)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_that_is_its_own_source_is_written_without_looping() {
        #[derive(Debug)]
        struct Loop;
        impl fmt::Display for Loop {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("loop")
            }
        }
        impl Error for Loop {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(self)
            }
        }
        // Its own message is already shown: the chain adds nothing, and ends.
        assert_eq!(ErrorChain(&Loop).to_string(), "loop: …");
    }

    #[test]
    fn the_stage_tags_and_the_outcomes_of_a_staged_group_line_up_in_columns() {
        let waits = |stop: crate::Stop| async move {
            stop.await;
            Ok::<(), std::io::Error>(())
        };
        let mut group = crate::Group::new();
        group.add("app", |_stop| async { Ok::<(), std::io::Error>(()) });
        group.add("a-longer-name", waits);
        group.stage(Stage::new(1));
        group.add("café", waits);
        group.stage(Stage::LAST);
        group.add("debug", waits);
        let report = futures::executor::block_on(group.run()).to_string();

        let lines: Vec<&str> = report.lines().filter(|l| l.contains("[stage ")).collect();
        assert_eq!(lines.len(), 4, "{report}");
        // Columns in characters, as a terminal shows them.
        let columns = |text: &str| -> Vec<usize> {
            let at = |line: &&str| line[..line.find(text).unwrap()].chars().count();
            lines.iter().map(at).collect()
        };
        for text in ["[stage ", "ok  (ran "] {
            let columns = columns(text);
            assert!(
                columns.iter().all(|&c| c == columns[0]),
                "{text:?} at columns {columns:?}:\n{report}"
            );
        }
    }
}
