//! The examples as child processes: built if need be, started on free
//! ports, signalled and waited for, with their stderr kept for the
//! assertions.
#![allow(dead_code)]

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{self, Client};
use crate::common::HANG;

/// The example's binary, next to this test's (`target/<profile>/examples/`);
/// built if it is not there.
pub fn binary(example: &str) -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let path = deps
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(example);
    // Built (or found up to date) once per test process: a binary left by
    // an earlier build of other code must not be the one tested.
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !built.iter().any(|name| name == example) {
        let status = Command::new(option_env!("CARGO").unwrap_or("cargo"))
            .args(["build", "--example", example, "--all-features"])
            .status()
            .unwrap();
        assert!(status.success(), "cannot build {example}");
        built.push(example.to_owned());
    }
    path
}

pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Two free ports, one for the app and one for the debug server: both are
/// held until both are picked, so that the kernel cannot hand out the same
/// one twice (a second `free_port` may get the port the first just let go).
pub fn free_ports() -> (SocketAddr, SocketAddr) {
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    let debug = TcpListener::bind("127.0.0.1:0").unwrap();
    (app.local_addr().unwrap(), debug.local_addr().unwrap())
}

pub struct Program {
    child: Child,
    pub app: SocketAddr,
    pub debug: SocketAddr,
    stderr: Arc<Mutex<String>>,
    /// Reads the program's stderr into `stderr` until the program closes
    /// it; joined once the program has exited, for all of it.
    reader: Option<thread::JoinHandle<()>>,
}

impl Program {
    pub fn spawn(example: &str, app: SocketAddr, debug: SocketAddr, extra: &[&str]) -> Program {
        Program::spawn_binary(&binary(example), app, debug, extra)
    }

    /// Starts the example binary at `path` (a copy, say) and waits until
    /// both servers answer.
    pub fn start_binary(path: &std::path::Path, extra: &[&str]) -> Program {
        let (app, debug) = free_ports();
        let mut program = Program::spawn_binary(path, app, debug, extra);
        program.wait_answering(program.app, "/");
        program.wait_answering(program.debug, "/healthz");
        program
    }

    fn spawn_binary(
        path: &std::path::Path,
        app: SocketAddr,
        debug: SocketAddr,
        extra: &[&str],
    ) -> Program {
        let mut child = Command::new(path)
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
        let reader = thread::spawn(move || {
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
            reader: Some(reader),
        }
    }

    /// Starts `example` on free ports and waits until both servers answer.
    pub fn start(example: &str, extra: &[&str]) -> Program {
        let (app, debug) = free_ports();
        Program::start_on(example, app, debug, extra)
    }

    /// Starts `example` on the given ports (a restart uses its
    /// predecessor's) and waits until both servers answer.
    pub fn start_on(example: &str, app: SocketAddr, debug: SocketAddr, extra: &[&str]) -> Program {
        let mut program = Program::spawn(example, app, debug, extra);
        program.wait_answering(program.app, "/");
        program.wait_answering(program.debug, "/healthz");
        program
    }

    /// Waits until `addr` answers `path` with 200; fails at once if the
    /// program has exited meanwhile (a port it could not bind, say).
    pub fn wait_answering(&mut self, addr: SocketAddr, path: &str) {
        let started = Instant::now();
        loop {
            if let Ok(response) = Client::connect(addr).and_then(|mut c| c.get(path)) {
                assert_eq!(response.status, 200);
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                self.read_all_stderr();
                panic!(
                    "{addr}{path} never answered: the program exited ({status}):\n{}",
                    self.stderr()
                );
            }
            assert!(
                started.elapsed() < HANG,
                "{addr}{path} never answered:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn wait(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.read_all_stderr();
                return status;
            }
            if started.elapsed() > HANG {
                let _ = self.child.kill();
                panic!("the program did not exit:\n{}", self.stderr());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Once the program has exited: waits until its stderr has been read to
    /// the end.
    fn read_all_stderr(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn get(addr: SocketAddr, path: &str) -> client::Response {
    Client::connect(addr).unwrap().get(path).unwrap()
}

pub fn wait_refused(addr: SocketAddr) {
    let started = Instant::now();
    while !matches!(TcpStream::connect(addr), Err(e) if e.kind() == io::ErrorKind::ConnectionRefused)
    {
        assert!(started.elapsed() < HANG, "{addr} still accepts connections");
        thread::sleep(Duration::from_millis(1));
    }
}
