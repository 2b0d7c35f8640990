//! The smol adapter of [`allstop`](https://docs.rs/allstop): run a group's
//! members as smol tasks, bound its drain with async-io's timer, serve HTTP
//! with hyper on async-io sockets (its deadlines on a
//! [`ThreadTimer`](http::ThreadTimer)), and stop on SIGINT or SIGTERM.
//!
//! Use it through `allstop` with `features = ["smol"]`, as `allstop::smol`.
//!
//! ```no_run
//! use allstop::http::Server;
//! use allstop::smol::{signals, Smol};
//! use allstop::Group;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper::service::service_fn;
//! use std::time::Duration;
//!
//! fn main() -> std::process::ExitCode {
//!     let hello = service_fn(|_req| async {
//!         Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from("hello\n"))))
//!     });
//!     let mut group = Group::on(Smol::new());
//!     group.grace(Duration::from_secs(10));
//!     group.add("app", Server::on(Smol::new()).serve_on("127.0.0.1:8080".parse().unwrap(), hello));
//!     group.add_watcher("signals", signals());
//!     let report = smol::block_on(group.run());
//!     eprintln!("{report}");
//!     report.exit_code()
//! }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod http;
mod runtime;
mod signals;
mod timer;

pub use allstop_core::Signals;
pub use runtime::{Smol, SmolSleep, SmolTask};
pub use signals::signals;
