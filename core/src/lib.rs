//! Run a set of long-lived async tasks as one unit: the first to finish stops
//! all the others, each stops gracefully, and you get every result back.
//!
//! This is the runtime-neutral core of [`allstop`](https://docs.rs/allstop);
//! use it through that crate, which adds the tokio and smol adapters.
//!
//! # Guarantees
//!
//! A [`Group`] holds named members. Each member is a closure that takes a
//! [`Stop`] signal and returns a future of `Result<(), E>`.
//!
//! 1. **The first exit stops all.** The first member to finish — `Ok`, `Err`
//!    or a panic — stops the group: every member's `Stop` resolves. The stop
//!    is broadcast once; a `Stop` polled later is ready at once.
//! 2. **Nothing leaks.** [`Group::run`] returns only after every member has
//!    finished or been cancelled; by then every member future has been
//!    dropped and every task the group spawned is gone.
//! 3. **Every result comes back.** The [`Report`] has one [`Outcome`] per
//!    member in the order they were added — `Ok`, `Err(error)` unchanged,
//!    `Panicked(message)`, `Cancelled` — with how long each ran and the
//!    [`Cause`] of the stop. It converts into a process exit code.
//! 4. **Collection never blocks.** Results travel on a channel sized to the
//!    number of members, so a finishing member never waits for the
//!    collector.
//! 5. **An optional grace deadline.** Members still running when it passes
//!    are cancelled and reported `Cancelled`. A second external stop request
//!    cuts the grace short.
//! 6. **External stop.** A cloneable [`StopHandle`] stops the group from
//!    outside, with a reason that becomes the cause.
//! 7. **Nesting.** A group can be a member of another group: it stops when
//!    its parent stops, and its failure stops the parent.
//! 8. **Embeddable.** No `process::exit`, no panic on a member's error, no
//!    global state, no runtime of its own: the group runs inside your task
//!    on any executor ([`Group::run`]), or spawns a task per member through
//!    the [`Runtime`] trait ([`Group::run_spawned`]).
//! 9. **An empty group** returns at once with an empty report.
//!
//! # Limits
//!
//! Cancelling means dropping: a member that blocks its thread inside `poll`
//! cannot be cancelled, and the group waits for it. Panics are caught with
//! `catch_unwind`, so they need `panic = "unwind"` (the default).
//!
//! # Example
//!
//! ```
//! use allstop::Group;
//!
//! let mut group = Group::new();
//! group.add("server", |stop| async move {
//!     // Serve until the stop, then drain and return.
//!     stop.await;
//!     Ok::<(), std::io::Error>(())
//! });
//! group.add("job", |_stop| async {
//!     // Finishing stops the server too.
//!     Ok::<(), std::io::Error>(())
//! });
//! let report = futures::executor::block_on(group.run());
//! assert!(report.is_success());
//! println!("{report}");
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "pprof")]
#[cfg_attr(docsrs, doc(cfg(feature = "pprof")))]
pub mod debug;
mod group;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod member;
mod observer;
mod report;
mod run;
mod runtime;
mod stop;
#[cfg(feature = "tracing")]
mod tracing;
mod waiter;

pub use group::{Group, Nested, Run};
pub use observer::{Event, MemberState, MemberStatus, Observer, Status};
pub use report::{GroupFailed, MemberReport, Outcome, Report};
pub use runtime::{Runtime, Timer};
pub use stop::{Cause, Finish, Stop, StopHandle};
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub use tracing::Tracing;

/// The error type members return, once boxed: anything that converts into
/// it (`std::io::Error`, `String`, `&str`, your own error types) can be a
/// member's error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
