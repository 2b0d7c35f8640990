//! The program from *Practical Go*, on tokio: an app server and a debug
//! server that stop together, gracefully, on SIGINT or SIGTERM — or when
//! either of them fails.
//!
//! ```text
//! cargo run --example hello_tokio --features tokio,pprof,tracing
//! curl http://127.0.0.1:8080/
//! go tool pprof http://127.0.0.1:8001/debug/pprof/profile?seconds=5
//! ```
//!
//! With `--features tokio,pprof,tracing,heap` it also serves heap profiles:
//! `go tool pprof http://127.0.0.1:8001/debug/pprof/heap`.

mod shared;

// Heap profiles at /debug/pprof/heap (feature `heap`): jemalloc as the
// allocator, with its profiler on.
#[cfg(all(feature = "heap", target_os = "linux"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(all(feature = "heap", target_os = "linux"))]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:19\0";

use std::process::ExitCode;

use allstop::debug::DebugRoutes;
use allstop::http::Server;
use allstop::tokio::{signals, Tokio};
use allstop::Group;

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
    // In the last stage: /readyz answers 503 while the app drains.
    DebugRoutes::new().add_to(&mut group, Server::on(Tokio::new()), flags.debug);
    group.add_watcher("signals", signals());

    tracing::info!(
        "app on http://{}/, debug server on http://{}/debug/pprof/",
        flags.app,
        flags.debug
    );
    shared::finish(group.run().await)
}
