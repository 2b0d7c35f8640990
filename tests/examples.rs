//! The examples, end to end: each program built, started as a child
//! process on free ports, and checked from outside as a user would
//! (DESIGN.md "Examples contract").
#![cfg(all(
    unix,
    feature = "tokio",
    feature = "smol",
    feature = "pprof",
    feature = "tracing"
))]

#[path = "http/client.rs"]
mod client;
#[path = "common/mod.rs"]
mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use client::Client;
use common::HANG;

/// The example's binary, next to this test's (`target/<profile>/examples/`);
/// built if it is not there.
fn binary(example: &str) -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let path = deps
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(example);
    if !path.exists() {
        let status = Command::new(option_env!("CARGO").unwrap_or("cargo"))
            .args(["build", "--example", example, "--all-features"])
            .status()
            .unwrap();
        assert!(status.success(), "cannot build {example}");
    }
    path
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Program {
    child: Child,
    app: SocketAddr,
    debug: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Program {
    fn spawn(example: &str, app: SocketAddr, debug: SocketAddr, extra: &[&str]) -> Program {
        let mut child = Command::new(binary(example))
            .arg("--app")
            .arg(app.to_string())
            .arg("--debug")
            .arg(debug.to_string())
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut pipe = child.stderr.take().unwrap();
        thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buffer) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Program {
            child,
            app,
            debug,
            stderr,
        }
    }

    /// Starts `example` and waits until both servers answer.
    fn start(example: &str, extra: &[&str]) -> Program {
        let program = Program::spawn(example, free_port(), free_port(), extra);
        program.wait_answering(program.app, "/");
        program.wait_answering(program.debug, "/healthz");
        program
    }

    fn wait_answering(&self, addr: SocketAddr, path: &str) {
        let started = Instant::now();
        loop {
            if let Ok(response) = Client::connect(addr).and_then(|mut c| c.get(path)) {
                assert_eq!(response.status, 200);
                return;
            }
            assert!(
                started.elapsed() < HANG,
                "{addr}{path} never answered:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread take the last of stderr.
                thread::sleep(Duration::from_millis(50));
                return status;
            }
            if started.elapsed() > HANG {
                let _ = self.child.kill();
                panic!("the program did not exit:\n{}", self.stderr());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(addr: SocketAddr, path: &str) -> client::Response {
    Client::connect(addr).unwrap().get(path).unwrap()
}

fn wait_refused(addr: SocketAddr) {
    let started = Instant::now();
    while !matches!(TcpStream::connect(addr), Err(e) if e.kind() == io::ErrorKind::ConnectionRefused)
    {
        assert!(started.elapsed() < HANG, "{addr} still accepts connections");
        thread::sleep(Duration::from_millis(1));
    }
}

/// GET /, the debug routes, a profile; then SIGTERM with 16 slow requests
/// in flight: all 16 complete, new connections are refused, exit 0.
fn serves_and_drains_on_sigterm(example: &str) {
    let mut program = Program::start(example, &[]);
    let (app, debug) = (program.app, program.debug);
    assert_eq!(get(app, "/").text(), "hello, QCon!\n");
    assert_eq!(get(app, "/slow?ms=nope").status, 400);
    assert_eq!(get(app, "/slow?ms=60001").status, 400);
    let index = get(debug, "/debug/pprof/");
    assert!(index.text().contains("go tool pprof"));
    let group = get(debug, "/debug/group");
    for name in ["\"app\"", "\"debug\"", "\"signals\""] {
        assert!(group.text().contains(name), "{}", group.text());
    }
    let profile = get(debug, "/debug/pprof/profile?seconds=1");
    assert_eq!(profile.status, 200);
    assert_eq!(&profile.body[..2], [0x1f, 0x8b], "gzip");

    let slow: Vec<_> = (0..16)
        .map(|_| {
            let mut client = Client::connect(app).unwrap();
            client.send("/slow?ms=1500").unwrap();
            thread::spawn(move || client.read())
        })
        .collect();
    // Accepted in order: once this answers, the 16 are accepted too.
    assert_eq!(get(app, "/").status, 200);
    program.signal("TERM");
    wait_refused(app);
    for request in slow {
        let response = request.join().unwrap().expect("a slow request was dropped");
        assert_eq!((response.status, response.text()), (200, "slept 1500 ms\n"));
    }
    let status = program.wait();
    let stderr = program.stderr();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("app on http://{app}/")),
        "{stderr}"
    );
    assert!(
        stderr.contains("stopping: stop requested: SIGTERM received"),
        "{stderr}"
    );
    assert!(stderr.contains("drain took"), "{stderr}");
    assert!(
        stderr.contains("group stopped: stop requested: SIGTERM received"),
        "{stderr}"
    );
}

/// A port already taken: exit 1 within seconds, with the report naming the
/// member, the address and the OS error.
fn taken_port_fails(example: &str, member: &str) {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (app, debug) = if member == "app" {
        (addr, free_port())
    } else {
        (free_port(), addr)
    };
    let started = Instant::now();
    let mut program = Program::spawn(example, app, debug, &[]);
    let status = program.wait();
    let stderr = program.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    let line = format!("group stopped: member \"{member}\" failed: bind {addr}: ");
    assert!(stderr.contains(&line), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
}

/// Bad flags: usage and exit 2; `--help`: usage and exit 0.
fn bad_flags_exit_2(example: &str) {
    for args in [
        &["--grace", "soon"][..],
        &["--app", "nowhere"],
        &["--bogus"],
        &["--debug"],
    ] {
        let output = Command::new(binary(example)).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("usage:"), "{args:?}: {stderr}");
    }
    let output = Command::new(binary(example))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("--grace SECS"));
}

/// Idle keep-alive and half-sent connections do not hold the exit: it is
/// clean (0: nothing was cancelled at the deadline).
fn idle_and_half_sent_connections_do_not_delay_the_exit(example: &str) {
    let mut program = Program::start(example, &["--grace", "60"]);
    let app = program.app;
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut client = Client::connect(app).unwrap();
        assert_eq!(client.get("/").unwrap().status, 200);
        held.push(client);
    }
    for _ in 0..20 {
        let mut client = Client::connect(app).unwrap();
        client
            .stream()
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        held.push(client);
    }
    assert_eq!(get(app, "/").status, 200);
    let signalled = Instant::now();
    program.signal("TERM");
    let status = program.wait();
    assert_eq!(status.code(), Some(0), "{}", program.stderr());
    assert!(signalled.elapsed() < Duration::from_secs(60));
    for client in &mut held {
        assert!(client.closed_by_server());
    }
}

macro_rules! example_tests {
    ($module:ident, $example:literal) => {
        mod $module {
            #[test]
            fn serves_and_drains_on_sigterm() {
                crate::common::bounded(|| super::serves_and_drains_on_sigterm($example));
            }

            #[test]
            fn taken_app_port_fails_naming_the_member_and_address() {
                crate::common::bounded(|| super::taken_port_fails($example, "app"));
            }

            #[test]
            fn taken_debug_port_fails_naming_the_member_and_address() {
                crate::common::bounded(|| super::taken_port_fails($example, "debug"));
            }

            #[test]
            fn bad_flags_exit_2() {
                crate::common::bounded(|| super::bad_flags_exit_2($example));
            }

            #[test]
            fn idle_and_half_sent_connections_do_not_delay_the_exit() {
                crate::common::bounded(|| {
                    super::idle_and_half_sent_connections_do_not_delay_the_exit($example)
                });
            }
        }
    };
}

example_tests!(hello_tokio, "hello_tokio");
example_tests!(hello_smol, "hello_smol");
example_tests!(hello_mixed, "hello_mixed");
