//! Run a set of long-lived async tasks — an HTTP server, a debug server,
//! workers, a signal watcher — as one unit: the first to finish stops all the
//! others, each stops gracefully, and you get every result back.
//!
//! It is Go's "never start a goroutine without knowing when it will stop"
//! (Dave Cheney, *Practical Go*) as a library: no process exit from inside,
//! no leaked task, no runtime imposed.
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
//!    dropped and every task the group spawned is gone, members on another
//!    runtime ([`Group::add_on`]) included. Whatever a member does — panic
//!    in `poll` or in `Drop`, return an error whose `Display` panics — is an
//!    outcome: never an unwind through `run`, an abort or a hang.
//! 3. **Every result comes back.** The [`Report`] has one [`Outcome`] per
//!    member in the order they were added — `Ok`, `Err(error)` unchanged,
//!    `Panicked(message)`, `Cancelled(reason)` ([`CancelReason`]: the
//!    deadline, a second request, the parent) — with how long each ran and
//!    the [`Cause`] of the stop. It converts into a process exit code.
//! 4. **Collection never blocks.** Results travel on a channel sized to the
//!    number of members, so a finishing member never waits for the
//!    collector.
//! 5. **An optional grace deadline.** Members still running when it passes
//!    are cancelled and reported `Cancelled`; each gets a last poll first,
//!    so a member that is done by then is done, on every runtime, even with
//!    a zero grace. A second external stop request cuts the grace short;
//!    made before the run, it starts no member.
//! 6. **External stop.** A cloneable [`StopHandle`] stops the group from
//!    outside, with a reason that becomes the cause.
//! 7. **Nesting.** A group can be a member of another group: it stops when
//!    its parent stops, and its failure stops the parent.
//! 8. **Embeddable.** No `process::exit`, no panic on a member's error, no
//!    global state, no runtime of its own: the group runs inside your task
//!    on any executor ([`Group::new`]), or spawns a task per member through
//!    the [`Runtime`] trait ([`Group::on`]), whose timer it then uses.
//! 9. **An empty group** returns at once with an empty report, and its
//!    [`Stop`] resolves: every `Stop` of a group has resolved once its run
//!    has returned.
//! 10. **Stop in order.** Members may be placed in stages
//!     ([`Group::stage`], [`Stage`]): a member of a later stage receives its
//!     stop only when every member of the earlier stages has ended; members
//!     of one stage stop together. A failure in any stage still begins the
//!     stop, which then goes in order; one grace deadline covers every
//!     stage, and cancels what still runs at it whatever its stage; a second
//!     stop request cuts every stage short. By default there is one stage.
//!     The debug server (`add_debug_server`) is in [`Stage::LAST`], so `/readyz`
//!     answers 503 and `/debug/group` shows the drain for as long as the app
//!     drains. A nested group is one member of its parent's stage.
//! 11. **Restart what may restart.** A member added with
//!     [`Group::add_restartable`] is restarted on failure (or on any exit),
//!     after an exponential backoff with jitter, at most N times within T
//!     ([`Restart`]); past that limit its failure stops the group, and the
//!     report says so. Nothing is restarted once the stop has begun: a
//!     member in its backoff then ends with its last outcome. Every restart
//!     shows in the [`Event`]s, the `Tracing` logs, `/debug/group` and the
//!     report ([`MemberReport::restarts`], [`MemberReport::failures`]). By
//!     default nothing restarts: the first exit stops all.
//!
//! # Limits
//!
//! Cancelling means dropping: a member that blocks its thread inside `poll`
//! cannot be cancelled, and the group waits for it. Panics are caught with
//! `catch_unwind`, so they need `panic = "unwind"` (the default). A nested
//! group made with [`Group::on`] and nested with [`Group::into_member`]
//! that its parent *cancels* (rather than stops) cancels its own tasks but
//! cannot wait for them: a dropped future cannot await. A nested group made
//! with [`Group::new`] keeps guarantee 2 whole.
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
//! eprintln!("{report}");
//! ```
//!
//! # Serving HTTP
//!
//! With the `tokio` or `smol` feature, a member serves any hyper or tower
//! service — an axum `Router`, tonic `Routes` — with a graceful drain that
//! loses no request a client has sent (see `allstop::http` for what the drain
//! promises). Handlers see the server's stop, fired when the group stops or
//! the server stops on its own: serve a function of the stop that builds
//! the service (`|stop: Stop| app.with_state(stop)`), called once when the
//! server starts.
//!
//! An axum `Router`, built from the stop and otherwise served as it is; at
//! the stop the event stream ends and the drain is quick:
//!
//! ```
//! # #[cfg(feature = "tokio")]
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use allstop::http::Server;
//! use allstop::tokio::Tokio;
//! use allstop::Stop;
//! use axum::extract::State;
//! use axum::response::sse::{Event, Sse};
//! use futures::StreamExt;
//!
//! fn app(stop: Stop) -> axum::Router {
//!     axum::Router::new()
//!         .route("/", axum::routing::get(|| async { "hello" }))
//!         .route("/events", axum::routing::get(|State(stop): State<Stop>| async move {
//!             let events = futures::stream::repeat_with(|| Ok::<_, std::convert::Infallible>(Event::default().data("tick")));
//!             // One line ends a stream at the stop.
//!             Sse::new(events.take_until(stop))
//!         }))
//!         .with_state(stop)
//! }
//!
//! let mut group = allstop::Group::on(Tokio::new());
//! group.add("app", Server::on(Tokio::new()).serve_on("127.0.0.1:0".parse().unwrap(), app));
//! group.stop_handle().stop("example");
//! assert!(group.run().await.is_success());
//! # });
//! ```
//!
//! tonic `Routes` are served the same way (gRPC is HTTP/2):
//! `group.add("grpc", Server::on(Tokio::new()).serve_on(addr, tonic::service::Routes::new(svc)))`.
//!
//! A server that is not allstop's is a member too, since a [`Stop`] is a
//! future: `axum::serve(listener, app).with_graceful_shutdown(stop)`, or
//! tonic's `Server::builder().add_service(svc).serve_with_shutdown(addr,
//! stop)`. (Their drains are their own: axum's waits for every connection
//! with no deadline, so set the group's grace.)
//!
//! ```
//! # #[cfg(feature = "tokio")]
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
//! let mut group = allstop::Group::on(allstop::tokio::Tokio::new());
//! group.add("axum", move |stop| async move {
//!     axum::serve(listener, app).with_graceful_shutdown(stop).await
//! });
//! group.stop_handle().stop("example");
//! assert!(group.run().await.is_success());
//! # });
//! ```
//!
//! A raw TCP server spawns a task per connection: a [`TaskTracker`] counts
//! them, so that the member returns only after the last one, and nothing
//! leaks. Each task gets the stop too.
//!
//! ```
//! # #[cfg(feature = "tokio")]
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use allstop::{Stop, TaskTracker};
//! use tokio::io::AsyncWriteExt;
//!
//! async fn serve(listener: tokio::net::TcpListener, stop: Stop) -> std::io::Result<()> {
//!     let connections = TaskTracker::new();
//!     // Accept until the stop.
//!     while let Some(accepted) = stop.until(listener.accept()).await {
//!         let (mut socket, _peer) = accepted?;
//!         let stop = stop.clone();
//!         tokio::spawn(connections.track(async move {
//!             // Serve the connection; say goodbye at the stop.
//!             stop.await;
//!             let _ = socket.write_all(b"bye\n").await;
//!         }));
//!     }
//!     drop(listener); // refuse new connections
//!     connections.wait().await;
//!     Ok(())
//! }
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let mut group = allstop::Group::on(allstop::tokio::Tokio::new());
//! group.add("tcp", move |stop| serve(listener, stop));
//! group.stop_handle().stop("example");
//! assert!(group.run().await.is_success());
//! # });
//! ```
//!
//! To test a handler on its own (`Router::oneshot`), build the app from
//! [`Stop::never`]. Handlers that would rather find the stop in each
//! request's extensions (axum's `Extension<Stop>`) can, with
//! `Server::stop_in_requests(true)`, at three allocations per request.
//!
//! # Features
//!
//! | feature | gives |
//! |---|---|
//! | `http` | `allstop::http`: the graceful hyper server, runtime-neutral |
//! | `tokio` | `allstop::tokio`: tokio tasks and timer, HTTP on tokio sockets, signals (implies `http`) |
//! | `smol` | `allstop::smol`: the same on smol and async-io (implies `http`) |
//! | `tracing` | `allstop::Tracing`: an observer that logs the group's lifecycle as `tracing` events |
//! | `heap` | `/debug/pprof/heap` in the debug server: heap profiles from jemalloc's profiler (Linux; implies `pprof`) |
//! | `pprof` | `allstop::debug`: the debug server (CPU profiles, flamegraphs, health, readiness, group status), with `add_debug_server` (Unix only) |
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use allstop_core::*;

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use allstop_tokio as tokio;

#[cfg(feature = "smol")]
#[cfg_attr(docsrs, doc(cfg(feature = "smol")))]
pub use allstop_smol as smol;
