//! The program from *Practical Go*, on smol: an app server and a debug
//! server that stop together, gracefully, on SIGINT or SIGTERM — or when
//! either of them fails.
//!
//! ```text
//! cargo run --example hello_smol --features smol,pprof,tracing
//! curl http://127.0.0.1:8080/
//! go tool pprof http://127.0.0.1:8001/debug/pprof/profile?seconds=5
//! ```

mod shared;

use std::process::ExitCode;

use allstop::debug::DebugRoutes;
use allstop::http::Server;
use allstop::smol::{signals, Smol};
use allstop::Group;

fn main() -> ExitCode {
    let flags = shared::Flags::parse();
    shared::init_logging();

    let mut group = Group::on(Smol::new());
    group.grace(flags.grace);
    if !flags.stop_delay.is_zero() {
        // Readiness off first, serving on; the stop after the delay.
        group.stop_delay(flags.stop_delay);
    }
    group.observe(allstop::Tracing);
    let app = shared::app(|d| {
        Box::pin(async move {
            async_io::Timer::after(d).await;
        })
    });
    group.add("app", Server::on(Smol::new()).serve_on(flags.app, app));
    // In the last stage: /readyz answers 503 while the app drains.
    DebugRoutes::new().add_to(&mut group, Server::on(Smol::new()), flags.debug);
    group.add_watcher("signals", signals());

    tracing::info!(
        "app on http://{}/, debug server on http://{}/debug/pprof/",
        flags.app,
        flags.debug
    );
    shared::finish(smol::block_on(group.run()))
}
