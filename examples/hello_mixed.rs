//! One group across two runtimes: the app server on tokio, the debug server
//! on smol, in one process; they stop together, gracefully, on SIGINT or
//! SIGTERM — or when either of them fails.
//!
//! ```text
//! cargo run --example hello_mixed --features tokio,smol,pprof,tracing
//! ```

mod shared;

use std::process::ExitCode;

use allstop::debug::DebugRoutes;
use allstop::http::Server;
use allstop::smol::Smol;
use allstop::tokio::{signals, Tokio};
use allstop::{Group, Stage};

#[tokio::main]
async fn main() -> ExitCode {
    let flags = shared::Flags::parse();
    shared::init_logging();

    let mut group = Group::on(Tokio::new());
    group.grace(flags.grace);
    if !flags.stop_delay.is_zero() {
        // Readiness off first, serving on; the stop after the delay.
        group.stop_delay(flags.stop_delay);
    }
    group.observe(allstop::Tracing);
    let app = shared::app(|d| Box::pin(tokio::time::sleep(d)));
    group.add("app", Server::on(Tokio::new()).serve_on(flags.app, app));
    // The debug server runs on smol's executor, in the same group, and
    // stops last: /readyz answers 503 while the app drains.
    let debug = DebugRoutes::new().attach(&mut group);
    group.in_stage(Stage::LAST, |group| {
        group.add_on(
            "debug",
            Smol::new(),
            Server::on(Smol::new()).serve_on(flags.debug, debug),
        );
    });
    group.add_watcher("signals", signals());

    tracing::info!(
        "app on http://{}/ (tokio), debug server on http://{}/debug/pprof/ (smol)",
        flags.app,
        flags.debug
    );
    shared::finish(group.run().await)
}
