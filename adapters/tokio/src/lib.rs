//! The tokio adapter of [`allstop`](https://docs.rs/allstop): run a group's
//! members as tokio tasks, bound its drain with tokio's timer, serve HTTP
//! with hyper on tokio sockets, and stop on SIGINT or SIGTERM.
//!
//! Use it through `allstop` with `features = ["tokio"]`, as `allstop::tokio`.
//!
//! ```no_run
//! use allstop::http::Server;
//! use allstop::tokio::{signals, Tokio};
//! use allstop::Group;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper::service::service_fn;
//! use std::time::Duration;
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     let hello = service_fn(|_req| async {
//!         Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from("hello\n"))))
//!     });
//!     let mut group = Group::on(Tokio::new());
//!     group.grace(Duration::from_secs(10));
//!     group.add("app", Server::on(Tokio::new()).serve_on("127.0.0.1:8080".parse().unwrap(), hello));
//!     group.add_watcher("signals", signals());
//!     let report = group.run().await;
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

pub use allstop_core::Signals;
pub use runtime::{Tokio, TokioTask};
pub use signals::signals;
