//! HTTP: the servers, each run as a child process (`--server KIND PORT`), and
//! the parent side that drives them with wrk.
//!
//! Every server answers `GET /` with the same 13 bytes and stops on
//! SIGTERM; on exit it prints `stop_to_exit_us N`: the time from the signal
//! to the end of its drain.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};

/// The servers, in the order the tables show them.
pub const SERVERS: [&str; 12] = [
    "allstop on tokio",
    "allstop on tokio, no header-read timeout",
    "allstop on tokio, stop in requests",
    "bare hyper-util on tokio",
    "allstop on smol",
    "allstop on smol, no header-read timeout",
    "allstop on smol, stop in requests",
    "bare smol-hyper on smol",
    "bare smol-hyper on smol, hyper's header-read timeout",
    "axum Router on allstop (tokio)",
    "axum Router on allstop, its handler taking the stop from its state",
    "axum Router on axum::serve",
];

/// The servers of the drain benchmark: ours, and hyper-util's
/// `GracefulShutdown` as the reference.
pub const DRAINERS: [&str; 3] = [
    "allstop on tokio",
    "allstop on smol",
    "bare hyper-util on tokio",
];

/// The bare server each is compared with.
pub fn baseline_of(name: &str) -> Option<&'static str> {
    match name {
        "allstop on tokio"
        | "allstop on tokio, no header-read timeout"
        | "allstop on tokio, stop in requests" => Some("bare hyper-util on tokio"),
        "allstop on smol"
        | "allstop on smol, no header-read timeout"
        | "allstop on smol, stop in requests"
        | "bare smol-hyper on smol, hyper's header-read timeout" => Some("bare smol-hyper on smol"),
        "axum Router on allstop (tokio)"
        | "axum Router on allstop, its handler taking the stop from its state" => {
            Some("axum Router on axum::serve")
        }
        _ => None,
    }
}

async fn hello(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"hello, QCon!\n",
    ))))
}

fn report_stop(signalled: &Mutex<Option<Instant>>) {
    if let Some(at) = *signalled.lock().unwrap() {
        println!("stop_to_exit_us {}", at.elapsed().as_micros());
    }
}

/// Runs server `kind` on `port` until SIGTERM (the child side).
pub fn serve(kind: &str, port: u16) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    match kind {
        "allstop on tokio" => allstop_tokio(addr, true, false),
        "allstop on tokio, no header-read timeout" => allstop_tokio(addr, false, false),
        "allstop on tokio, stop in requests" => allstop_tokio(addr, true, true),
        "allstop on smol" => allstop_smol(addr, true, false),
        "allstop on smol, no header-read timeout" => allstop_smol(addr, false, false),
        "allstop on smol, stop in requests" => allstop_smol(addr, true, true),
        "bare hyper-util on tokio" => bare_tokio(addr),
        "bare smol-hyper on smol" => bare_smol(addr, false),
        "bare smol-hyper on smol, hyper's header-read timeout" => bare_smol(addr, true),
        "axum Router on allstop (tokio)" => axum_on_allstop(addr),
        "axum Router on allstop, its handler taking the stop from its state" => {
            axum_with_the_stop_on_allstop(addr)
        }
        "axum Router on axum::serve" => axum_serve(addr),
        "debug server on tokio" => debug_server(addr),
        "debug server on tokio, a core busy" => {
            std::thread::spawn(burn_a_core);
            debug_server(addr)
        }
        other => panic!("unknown server {other:?}"),
    }
}

/// The moment the stop began, for `stop_to_exit_us`.
fn stop_clock(group: &mut allstop::Group) -> Arc<Mutex<Option<Instant>>> {
    let signalled = Arc::new(Mutex::new(None));
    let clock = signalled.clone();
    group.observe(move |event: &allstop::Event<'_>| {
        if let allstop::Event::StopBegan { .. } = event {
            *clock.lock().unwrap() = Some(Instant::now());
        }
    });
    signalled
}

fn allstop_tokio(addr: SocketAddr, header_read_timeout: bool, stop_in_requests: bool) {
    use allstop::tokio::{signals, Tokio};

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = allstop::Group::on(Tokio::new());
    group.grace(Duration::from_secs(10));
    let signalled = stop_clock(&mut group);
    let mut server = allstop::http::Server::on(Tokio::new());
    if !header_read_timeout {
        server = server.header_read_timeout(None);
    }
    server = server.stop_in_requests(stop_in_requests);
    group.add(
        "app",
        server.serve_on(addr, hyper::service::service_fn(hello)),
    );
    group.add_watcher("signals", signals());
    let report = runtime.block_on(group.run());
    report_stop(&signalled);
    assert!(report.is_success(), "{report}");
}

fn allstop_smol(addr: SocketAddr, header_read_timeout: bool, stop_in_requests: bool) {
    use allstop::smol::{signals, Smol};

    let mut group = allstop::Group::on(Smol::new());
    group.grace(Duration::from_secs(10));
    let signalled = stop_clock(&mut group);
    let mut server = allstop::http::Server::on(Smol::new());
    if !header_read_timeout {
        server = server.header_read_timeout(None);
    }
    server = server.stop_in_requests(stop_in_requests);
    group.add(
        "app",
        server.serve_on(addr, hyper::service::service_fn(hello)),
    );
    group.add_watcher("signals", signals());
    let report = smol::block_on(group.run());
    report_stop(&signalled);
    assert!(report.is_success(), "{report}");
}

fn axum_router() -> axum::Router {
    axum::Router::new().route("/", axum::routing::get(|| async { "hello, QCon!\n" }))
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The same `Router`, served by allstop as it is.
fn axum_on_allstop(addr: SocketAddr) {
    use allstop::tokio::{signals, Tokio};

    let mut group = allstop::Group::on(Tokio::new());
    group.grace(Duration::from_secs(10));
    let signalled = stop_clock(&mut group);
    group.add(
        "app",
        allstop::http::Server::on(Tokio::new()).serve_on(addr, axum_router()),
    );
    group.add_watcher("signals", signals());
    let report = tokio_runtime().block_on(group.run());
    report_stop(&signalled);
    assert!(report.is_success(), "{report}");
}

/// The same answer from a `Router` built from the server's stop, whose
/// handler takes it from the state (a clone per request), as a handler that
/// ends a stream at the stop does.
fn axum_with_the_stop_on_allstop(addr: SocketAddr) {
    use allstop::tokio::{signals, Tokio};
    use allstop::Stop;
    use axum::extract::State;

    fn app(stop: Stop) -> axum::Router {
        axum::Router::new()
            .route(
                "/",
                axum::routing::get(|State(stop): State<Stop>| async move {
                    debug_assert!(!stop.is_stopped());
                    "hello, QCon!\n"
                }),
            )
            .with_state(stop)
    }

    let mut group = allstop::Group::on(Tokio::new());
    group.grace(Duration::from_secs(10));
    let signalled = stop_clock(&mut group);
    group.add(
        "app",
        allstop::http::Server::on(Tokio::new()).serve_on(addr, app),
    );
    group.add_watcher("signals", signals());
    let report = tokio_runtime().block_on(group.run());
    report_stop(&signalled);
    assert!(report.is_success(), "{report}");
}

/// The debug server alone, for the profile's memory cost.
fn debug_server(addr: SocketAddr) {
    use allstop::tokio::{signals, Tokio};

    let mut group = allstop::Group::on(Tokio::new());
    let signalled = stop_clock(&mut group);
    allstop::debug::DebugRoutes::new().add_to(
        &mut group,
        allstop::http::Server::on(Tokio::new()),
        addr,
    );
    group.add_watcher("signals", signals());
    let report = tokio_runtime().block_on(group.run());
    report_stop(&signalled);
    assert!(report.is_success(), "{report}");
}

/// Keeps a core busy for the process's life, so a profile has samples and
/// names them.
#[inline(never)]
fn burn_a_core() {
    let mut x = 0u64;
    loop {
        for i in 0..10_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
    }
}

/// A process's memory, from `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss: u64,
    pub anon: u64,
    pub peak: u64,
}

pub fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss: field("VmRSS:"),
        anon: field("RssAnon:"),
        peak: field("VmHWM:"),
    }
}

/// GETs `path` and reads the whole answer.
pub fn fetch(addr: SocketAddr, path: &str) -> usize {
    use std::io::{Read, Write};

    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    answer.len()
}

/// The debug server's memory: before, at the peak of a one-second CPU
/// profile, after it, and after two more; with a core busy or not.
pub fn profile_memory(busy: bool) -> [Memory; 4] {
    let server = Server::start(if busy {
        "debug server on tokio, a core busy"
    } else {
        "debug server on tokio"
    });
    let pid = server.child.id();
    let idle = memory(pid);
    fetch(server.addr, "/debug/pprof/profile?seconds=1");
    let one = memory(pid);
    fetch(server.addr, "/debug/pprof/profile?seconds=1");
    fetch(server.addr, "/debug/pprof/profile?seconds=1");
    let three = memory(pid);
    server.stop();
    let peak = Memory {
        rss: one.peak,
        ..one
    };
    [idle, peak, one, three]
}

/// axum's own server, with its graceful shutdown on SIGTERM.
fn axum_serve(addr: SocketAddr) {
    tokio_runtime().block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let signalled = Arc::new(Mutex::new(None));
        let clock = signalled.clone();
        let sigterm = async move {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
            terminate.recv().await;
            *clock.lock().unwrap() = Some(Instant::now());
        };
        axum::serve(listener, axum_router())
            .with_graceful_shutdown(sigterm)
            .await
            .unwrap();
        report_stop(&signalled);
    });
}

/// hyper-util's documented server: an accept loop, a task per connection,
/// and `GracefulShutdown` on SIGTERM.
fn bare_tokio(addr: SocketAddr) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use hyper_util::server::graceful::GracefulShutdown;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let builder = auto::Builder::new(TokioExecutor::new());
        let graceful = GracefulShutdown::new();
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), hyper::service::service_fn(hello))
                        .into_owned();
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                }
                _ = terminate.recv() => break,
            }
        }
        let signalled = Instant::now();
        drop(listener);
        graceful.shutdown().await;
        println!("stop_to_exit_us {}", signalled.elapsed().as_micros());
    });
}

/// smol-hyper's glue with an accept loop and a smol task per connection;
/// with `header_read_timeout`, hyper's own 10 s timeout on every request
/// head, on smol-hyper's async-io timer, for comparison with allstop's.
fn bare_smol(addr: SocketAddr, header_read_timeout: bool) {
    use async_io::Async;
    use hyper_util::server::conn::auto;
    use smol_hyper::rt::FuturesIo;

    #[derive(Clone)]
    struct Spawn;

    impl<F> hyper::rt::Executor<F> for Spawn
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        fn execute(&self, future: F) {
            smol::spawn(future).detach();
        }
    }

    smol::block_on(async {
        let listener = Async::<std::net::TcpListener>::bind(addr).unwrap();
        let mut builder = auto::Builder::new(Spawn);
        if header_read_timeout {
            builder
                .http1()
                .timer(smol_hyper::rt::SmolTimer::new())
                .header_read_timeout(Duration::from_secs(10));
        }
        let builder = Arc::new(builder);
        let signals = async_signal::Signals::new([async_signal::Signal::Term]).unwrap();
        let accept = async {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.get_ref().set_nodelay(true);
                let builder = builder.clone();
                smol::spawn(async move {
                    let _ = builder
                        .serve_connection(FuturesIo::new(stream), hyper::service::service_fn(hello))
                        .await;
                })
                .detach();
            }
        };
        let terminate = async {
            let mut signals = signals;
            futures::StreamExt::next(&mut signals).await;
        };
        futures::pin_mut!(accept, terminate);
        futures::future::select(accept, terminate).await;
        // No graceful drain: this server is the throughput baseline only.
        println!("stop_to_exit_us 0");
    });
}

/// The requests of the allocation count's two runs.
pub const FEW: u64 = 1000;
pub const MANY: u64 = 5000;

/// What one more `GET /` on a keep-alive connection allocates in server
/// `kind`: the difference between two runs, so that starting, the
/// connection and stopping cancel out.
pub fn allocations_per_request(kind: &str) -> f64 {
    let [few, many] = [FEW, MANY].map(|requests| {
        let server = Server::start_with(kind, &[("ALLSTOP_COUNT_ALLOCATIONS", "1")]);
        get_many(server.addr, requests);
        server.stop_and_count().1
    });
    (many as f64 - few as f64) / (MANY - FEW) as f64
}

/// `requests` sequential `GET /` on one connection, each answer read whole.
fn get_many(addr: SocketAddr, requests: u64) {
    use std::io::{BufRead, BufReader, Read, Write};

    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for _ in 0..requests {
        writer
            .write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            .unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
    }
}

/// The idle keep-alive connections of the idle benchmark.
pub const IDLE: usize = 10_000;

/// The servers of the idle benchmark: ours on both runtimes, and the bare
/// servers.
pub const IDLERS: [&str; 4] = [
    "allstop on tokio",
    "bare hyper-util on tokio",
    "allstop on smol",
    "bare smol-hyper on smol",
];

/// What [`IDLE`] idle keep-alive connections cost server `kind`: its
/// resident memory per connection (KiB), and the time from SIGTERM to its
/// exit with them all open.
pub fn idle_connections(kind: &str) -> (f64, Duration) {
    let server = Server::start(kind);
    let pid = server.child.id();
    fetch(server.addr, "/");
    let before = memory(pid).rss;
    let addr = server.addr;
    // Four clients open them, each its share: one request per connection,
    // answered, then left open and silent.
    let open: Vec<std::net::TcpStream> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(move || (0..IDLE / 4).map(|_| keep_alive(addr)).collect::<Vec<_>>())
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|client| client.join().unwrap())
            .collect()
    });
    let after = memory(pid).rss;
    let per_connection = (after.saturating_sub(before)) as f64 / IDLE as f64;
    // Idle for longer than allstop's idle grace (250 ms), which a
    // connection active just before the stop is given: here the stop's cost
    // is closing idle connections, not waiting.
    std::thread::sleep(Duration::from_millis(500));
    let stop_to_exit = server.stop();
    drop(open);
    (per_connection, stop_to_exit)
}

/// A connection that has had one `GET /` answered, kept open.
fn keep_alive(addr: SocketAddr) -> std::net::TcpStream {
    use std::io::{Read, Write};

    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        .unwrap();
    // The answer: headers and the 13-byte body, in one segment here.
    let mut answer = [0u8; 512];
    let mut read = 0;
    while !answer[..read].ends_with(b"hello, QCon!\n") {
        let n = stream.read(&mut answer[read..]).unwrap();
        assert!(n > 0, "closed before the answer");
        read += n;
    }
    stream
}

/// A server child process.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

impl Server {
    pub fn start(kind: &str) -> Server {
        Server::start_with(kind, &[])
    }

    /// As `start`, with more environment variables.
    pub fn start_with(kind: &str, env: &[(&str, &str)]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--server", kind, &port.to_string()])
            // smol's global executor: as many threads as tokio's workers.
            .env("SMOL_THREADS", "2")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{kind} never listened"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Server { child, addr }
    }

    /// SIGTERM, then the server's `stop_to_exit_us`.
    pub fn stop(self) -> Duration {
        self.stop_and_count().0
    }

    /// SIGTERM, then the server's `stop_to_exit_us` and its allocations
    /// (counted when `ALLSTOP_COUNT_ALLOCATIONS` was set).
    pub fn stop_and_count(mut self) -> (Duration, u64) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let output = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        assert!(output.status.success(), "the server failed");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let micros: u64 = stdout
            .lines()
            .find_map(|line| line.strip_prefix("stop_to_exit_us "))
            .and_then(|us| us.parse().ok())
            .expect("stop_to_exit_us");
        let allocations = stdout
            .lines()
            .find_map(|line| line.strip_prefix("allocations "))
            .and_then(|count| count.parse().ok())
            .expect("allocations");
        (Duration::from_micros(micros), allocations)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What wrk said.
#[derive(Debug, Default, Clone)]
pub struct Load {
    pub requests_per_sec: f64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub connect_errors: u64,
    pub timeouts: u64,
    pub non_2xx: u64,
}

/// Starts `wrk -t1 -c32 -d{secs}s` against `addr`.
pub fn wrk(addr: SocketAddr, secs: u64) -> Child {
    Command::new("wrk")
        .args([
            "-t1",
            "-c32",
            &format!("-d{secs}s"),
            &format!("http://{addr}/"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("wrk")
}

pub fn parse_wrk(output: &str) -> Load {
    let mut load = Load::default();
    for line in output.lines().map(str::trim) {
        if let Some(rate) = line.strip_prefix("Requests/sec:") {
            load.requests_per_sec = rate.trim().parse().unwrap_or(0.0);
        } else if let Some(errors) = line.strip_prefix("Socket errors:") {
            for part in errors.split(',') {
                let mut words = part.split_whitespace();
                let (Some(kind), Some(count)) = (words.next(), words.next()) else {
                    continue;
                };
                let count = count.parse().unwrap_or(0);
                match kind {
                    "connect" => load.connect_errors = count,
                    "read" => load.read_errors = count,
                    "write" => load.write_errors = count,
                    "timeout" => load.timeouts = count,
                    _ => {}
                }
            }
        } else if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
            load.non_2xx = count.trim().parse().unwrap_or(0);
        }
    }
    load
}

/// Runs wrk for `secs` against a fresh `kind` server: the throughput.
pub fn throughput(kind: &str, secs: u64) -> Load {
    let server = Server::start(kind);
    let output = wrk(server.addr, secs).wait_with_output().unwrap();
    server.stop();
    parse_wrk(&String::from_utf8_lossy(&output.stdout))
}

/// Runs wrk against a fresh `kind` server and stops the server `after`
/// into the run: the losses and the stop-to-exit time.
pub fn drain(kind: &str, secs: u64, after: Duration) -> (Load, Duration) {
    let server = Server::start(kind);
    let load = wrk(server.addr, secs);
    std::thread::sleep(after);
    let stop_to_exit = server.stop();
    let output = load.wait_with_output().unwrap();
    (
        parse_wrk(&String::from_utf8_lossy(&output.stdout)),
        stop_to_exit,
    )
}
