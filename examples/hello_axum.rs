//! The program from *Practical Go* with an axum `Router`: state, a
//! tower-http layer, a WebSocket echo at `/ws` and a server-sent-events
//! stream at `/events`, served by allstop as it is, beside the debug server.
//! At the stop the WebSocket closes with 1001 Going Away and the event
//! stream ends, so the drain is quick and clean.
//!
//! ```text
//! cargo run --example hello_axum --features tokio,pprof,tracing
//! curl http://127.0.0.1:8080/
//! curl -N http://127.0.0.1:8080/events
//! ```

mod shared;

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use allstop::debug::DebugRoutes;
use allstop::http::Server;
use allstop::tokio::{signals, Tokio};
use allstop::{Group, Stop};
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures::{Stream, StreamExt};
use tower_http::trace::TraceLayer;

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
    group.add(
        "app",
        // Built from the server's stop, which its handlers keep.
        Server::on(Tokio::new()).serve_on(flags.app, router),
    );
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

/// What the handlers share.
#[derive(Clone)]
struct AppState {
    /// Requests to `/` so far.
    hellos: Arc<AtomicU64>,
    /// The server's: fires when the group stops.
    stop: Stop,
}

fn router(stop: Stop) -> Router {
    Router::new()
        .route("/", get(hello))
        .route("/slow", get(slow))
        .route("/ws", get(websocket))
        .route("/events", get(events))
        .layer(TraceLayer::new_for_http())
        .with_state(AppState {
            hellos: Arc::default(),
            stop,
        })
}

async fn hello(State(state): State<AppState>) -> &'static str {
    state.hellos.fetch_add(1, Ordering::Relaxed);
    "hello, QCon!\n"
}

async fn slow(RawQuery(query): RawQuery) -> (StatusCode, String) {
    match shared::slow_ms(query.as_deref()) {
        Ok(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            (StatusCode::OK, format!("slept {ms} ms\n"))
        }
        Err(problem) => (StatusCode::BAD_REQUEST, problem),
    }
}

/// Echoes text messages; at the stop closes with 1001 Going Away.
async fn websocket(upgrade: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    upgrade.on_upgrade(move |socket| echo(socket, state.stop))
}

async fn echo(mut socket: WebSocket, stop: Stop) {
    loop {
        match stop.until(socket.recv()).await {
            Some(Some(Ok(Message::Text(text)))) => {
                if socket.send(Message::Text(text)).await.is_err() {
                    return;
                }
            }
            Some(Some(Ok(_))) => {}
            // The client closed or went away.
            Some(None | Some(Err(_))) => return,
            None => {
                let close = CloseFrame {
                    code: close_code::AWAY,
                    reason: "server stopping".into(),
                };
                if socket.send(Message::Close(Some(close))).await.is_ok() {
                    // Wait for the client's close (the group's grace bounds
                    // a client that never sends it).
                    while let Some(Ok(_)) = socket.recv().await {}
                }
                return;
            }
        }
    }
}

/// A tick a second, from the first at once; the stream ends at the stop
/// (one line: `take_until(stop)`), so it never holds the drain.
async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let ticks = futures::stream::unfold(0u64, |tick| async move {
        if tick > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Some((Ok(Event::default().data(format!("tick {tick}"))), tick + 1))
    });
    Sse::new(ticks.take_until(state.stop)).keep_alive(KeepAlive::default())
}
