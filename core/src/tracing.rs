//! The group's lifecycle as `tracing` events: an observer.

use crate::observer::{Event, Observer};
use crate::report::Outcome;

/// An [`Observer`] that reports the group's lifecycle as [`tracing`]
/// events, target `allstop`: members starting (debug), a stop requested or
/// beginning with its cause (info), each stage of a staged group stopping
/// and stopped (info), members exiting (info when `Ok`, error
/// otherwise), members cancelled, with the reason (warn), and the group done
/// with its drain time (info).
///
/// ```
/// let mut group = allstop::Group::new();
/// group.observe(allstop::Tracing);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Tracing;

impl Observer for Tracing {
    fn on_event(&self, event: &Event<'_>) {
        // Every variant is named here, so that a new one is not forgotten.
        match event {
            Event::StopRequested { .. }
            | Event::StopBegan { .. }
            | Event::StageStopping { .. }
            | Event::StageStopped { .. }
            | Event::GroupDone { .. } => group(event),
            Event::MemberStarted { .. }
            | Event::MemberExited { .. }
            | Event::MemberCancelled { .. } => member(event),
            Event::MemberRestarting { .. }
            | Event::MemberRestarted { .. }
            | Event::RestartLimitReached { .. } => restart(event),
        }
    }
}

/// Logs the events of the group as a whole: the stop, its stages, the end.
fn group(event: &Event<'_>) {
    match event {
        Event::StopRequested { reason, delay } => tracing::info!(
            target: "allstop",
            "stop requested: {reason}; stopping in {} ms",
            delay.as_millis()
        ),
        Event::StopBegan { cause } => tracing::info!(target: "allstop", "stopping: {cause}"),
        Event::StageStopping { stage } => {
            tracing::info!(target: "allstop", "stage {stage} stopping")
        }
        Event::StageStopped { stage } => {
            tracing::info!(target: "allstop", "stage {stage} stopped")
        }
        Event::GroupDone { report } => match report.cause() {
            Some(cause) => tracing::info!(
                target: "allstop",
                "stopped: {cause}; drain took {} ms",
                report.drain().as_millis()
            ),
            None => tracing::info!(target: "allstop", "stopped: the group had no members"),
        },
        _ => {}
    }
}

/// Logs a member starting and ending.
fn member(event: &Event<'_>) {
    match event {
        Event::MemberStarted { name, .. } => {
            tracing::debug!(target: "allstop", member = %name, "member started");
        }
        Event::MemberExited { name, outcome, .. } => match outcome {
            Outcome::Ok => tracing::info!(target: "allstop", member = %name, "member exited"),
            other => tracing::error!(target: "allstop", member = %name, "member {other}"),
        },
        Event::MemberCancelled { name, reason, .. } => tracing::warn!(
            target: "allstop",
            member = %name,
            "member cancelled: {reason}"
        ),
        _ => {}
    }
}

/// Logs a restartable member's restarts, and its limit.
fn restart(event: &Event<'_>) {
    match event {
        Event::MemberRestarting {
            name,
            error,
            restart,
            delay,
            ..
        } => tracing::warn!(
            target: "allstop",
            member = %name,
            "member {error}; restart {restart} in {} ms",
            delay.as_millis()
        ),
        Event::MemberRestarted { name, restart, .. } => {
            tracing::info!(target: "allstop", member = %name, "member restarted ({restart})")
        }
        Event::RestartLimitReached { name, restarts, .. } => tracing::error!(
            target: "allstop",
            member = %name,
            "member failed past its restart limit ({restarts} restarts): stopping the group"
        ),
        _ => {}
    }
}
