//! Why a group stopped, and how the member that stopped it finished.

use std::fmt;

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
        /// How it finished.
        how: Finish,
    },
    /// [`StopHandle::stop`](crate::StopHandle::stop) was called, for the reason given there.
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
