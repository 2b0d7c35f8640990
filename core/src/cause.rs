//! Why a group stopped, and how a member ended, in words.

use std::fmt;

use crate::report::{ErrorChain, Outcome};

/// Why a group stopped.
///
/// The cause is decided once, by whatever stops the group first: the first
/// member to finish, an external [`StopHandle::stop`](crate::StopHandle::stop), or the parent group of
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
        /// How it ended.
        exit: Exit,
    },
    /// [`StopHandle::stop`](crate::StopHandle::stop) was called, for the reason given there.
    Requested(String),
    /// The group is a member of another group, and that group stopped.
    Parent(Box<Cause>),
}

/// How a member ended, in words: what a [`Cause`] and a
/// [`Status`](crate::Status) keep of its [`Outcome`]. It is `Clone` and
/// comparable, as the outcome (which holds the error itself) is not; the
/// error value is in the outcome, in the report.
///
/// It reads as the outcome reads:
///
/// ```
/// use allstop::Exit;
///
/// assert_eq!(Exit::Failed("boom".into()).to_string(), "failed: boom");
/// assert_eq!(Exit::Ok.to_string(), "ok");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// It returned `Ok(())`.
    Ok,
    /// It returned an error; the error's message, with its sources.
    Failed(String),
    /// It panicked; the panic's message.
    Panicked(String),
}

impl Exit {
    /// The words for `outcome`. A cancelled member did not exit by itself:
    /// `Ok` here, its reason being in its own state.
    pub(crate) fn of(outcome: &Outcome) -> Exit {
        match outcome {
            Outcome::Ok | Outcome::Cancelled(_) => Exit::Ok,
            // `ErrorChain` catches a `Display` that panics.
            Outcome::Err(error) => Exit::Failed(ErrorChain(&**error).to_string()),
            Outcome::Panicked(message) => Exit::Panicked(message.clone()),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Ok => f.write_str("ok"),
            Exit::Failed(error) => write!(f, "failed: {error}"),
            Exit::Panicked(message) => write!(f, "panicked: {message}"),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Finished {
                member,
                exit: Exit::Ok,
            } => write!(f, "member {member:?} finished"),
            Cause::Finished { member, exit } => write!(f, "member {member:?} {exit}"),
            Cause::Requested(reason) => write!(f, "stop requested: {reason}"),
            Cause::Parent(cause) => write!(f, "parent group stopped: {cause}"),
        }
    }
}
