//! Run a set of long-lived async tasks as one unit: the first to finish stops
//! all the others, each stops gracefully, and you get every result back.
//!
//! This is the runtime-neutral core of [`allstop`](https://docs.rs/allstop);
//! use it through that crate, which adds the tokio and smol adapters.
//!
//! The guarantees are listed in [`allstop`'s crate
//! documentation](https://docs.rs/allstop) (one list, kept there); each item
//! here documents its own part of them.
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
// No `unsafe` but in one module, the CPU sampler's signal handler
// (`debug::sampler`), which allows it with a safety argument for each block.
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cause;
#[cfg(feature = "pprof")]
#[cfg_attr(docsrs, doc(cfg(feature = "pprof")))]
pub mod debug;
mod error;
// The HTTP server's drain flags (and their unit and model tests).
#[cfg(any(feature = "http", test))]
mod flag;
mod group;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod in_task;
mod latch;
mod member;
mod observer;
mod report;
mod restart;
mod run;
mod runtime;
mod signals;
mod stage;
mod state;
mod stop;
mod tasks;
#[cfg(test)]
mod test_wakers;
#[cfg(feature = "tracing")]
mod tracing;
mod unwind;
mod waiter;

pub use cause::{Cause, Exit};
pub use error::BoxError;
pub use group::{Group, Nested, Run};
pub use observer::{Event, MemberState, MemberStatus, Observer, StageStatus, Status};
pub use report::{CancelReason, GroupFailed, MemberReport, Outcome, Report, StageReport};
pub use restart::Restart;
pub use runtime::{Runtime, Timer};
pub use signals::Signals;
pub use stage::Stage;
pub use stop::{Stop, StopHandle, StopTrigger};
pub use tasks::{TaskToken, TaskTracker};
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub use tracing::Tracing;
