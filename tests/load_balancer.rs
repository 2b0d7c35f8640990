//! Rolling restarts behind a real load balancer: two instances of an
//! example behind HAProxy (installed from the distribution's packages when
//! it is missing), health-checked on the debug server's `/readyz`, under
//! keep-alive load through the balancer. Each instance in turn gets SIGTERM,
//! exits, and is restarted on the same ports once the balancer has seen it
//! down; then the next.
//!
//! With `--stop-delay-ms` longer than the balancer's detection time (check
//! interval × fall, plus a check's own time) not one request fails: the
//! instance fails its readiness checks, is taken out of rotation, and only
//! then closes its ports. Without the delay the ports close at once and the
//! balancer goes on sending new connections to them until its next check
//! fails: those requests fail (503). Both are measured here, on tokio and on
//! smol; the counts are printed (`-- --nocapture`).
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
#[path = "common/program.rs"]
mod program;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use client::Client;
use common::HANG;
use program::{free_port, get, Program};

/// The balancer's health-check interval; with `fall 1` a single failed
/// check takes an instance out of rotation, so it notices a stop within
/// one interval plus the check's own time.
const CHECK_INTERVAL_MS: u64 = 200;

/// The stop delay of the zero-loss runs: five check intervals, a wide
/// margin over the detection time on a busy machine.
const STOP_DELAY_MS: &str = "1000";

/// Keep-alive clients sending requests through the balancer.
const CLIENTS: usize = 4;

/// Successful requests through the balancer that must pass before the
/// first restart, and after each restarted instance is back in rotation.
const WARM_UP: u64 = 500;

/// How long one run's load may last, whatever happens.
const LOAD_LIMIT: Duration = Duration::from_secs(40);

/// The `haproxy` binary, installed with apt-get on first use if it is not
/// there (CI runs as root on a fresh Debian machine).
fn haproxy() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| common::debian_tool("haproxy", "haproxy"))
}

/// One run at a time: two runs side by side on a 2-core machine would
/// share its CPUs and blur each other's timing.
fn alone() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// HAProxy in the foreground, as a child process, with its configuration,
/// stats socket and log in a directory of its own.
struct Haproxy {
    child: Child,
    dir: PathBuf,
    frontend: SocketAddr,
}

impl Haproxy {
    /// Starts HAProxy in front of `servers` (name, app address, debug
    /// address) and waits until its stats socket answers.
    fn start(servers: &[(&str, SocketAddr, SocketAddr)]) -> Haproxy {
        let dir = std::env::temp_dir().join(format!(
            "allstop-load-balancer-{}-{}",
            std::process::id(),
            free_port().port()
        ));
        fs::create_dir_all(&dir).unwrap();
        let frontend = free_port();
        let mut config = format!(
            "\
global
    stats socket {socket} level admin
    maxconn 4096

defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    timeout http-keep-alive 10s
    timeout check 1s
    # A request sent to a closed port fails: no retry, no other server.
    retries 0

frontend web
    bind {frontend}
    default_backend app

backend app
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
",
            socket = dir.join("stats.sock").display(),
        );
        for (name, app, debug) in servers {
            config.push_str(&format!(
                "    server {name} {app} check port {} inter {CHECK_INTERVAL_MS}ms fall 1 rise 1\n",
                debug.port()
            ));
        }
        fs::write(dir.join("haproxy.cfg"), config).unwrap();
        let log = fs::File::create(dir.join("haproxy.log")).unwrap();
        let child = Command::new(haproxy())
            .arg("-db")
            .arg("-f")
            .arg(dir.join("haproxy.cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut haproxy = Haproxy {
            child,
            dir,
            frontend,
        };
        let started = Instant::now();
        while UnixStream::connect(haproxy.dir.join("stats.sock")).is_err() {
            if let Some(status) = haproxy.child.try_wait().unwrap() {
                panic!("haproxy exited ({status}):\n{}", haproxy.log());
            }
            assert!(started.elapsed() < HANG, "haproxy never started");
            thread::sleep(Duration::from_millis(10));
        }
        haproxy
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("haproxy.log")).unwrap_or_default()
    }

    /// The backend's servers as HAProxy sees them (`show stat`): name →
    /// column → value.
    fn servers(&self) -> HashMap<String, HashMap<String, String>> {
        let mut socket = UnixStream::connect(self.dir.join("stats.sock")).unwrap();
        socket.write_all(b"show stat\n").unwrap();
        let mut csv = String::new();
        socket.read_to_string(&mut csv).unwrap();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .and_then(|line| line.strip_prefix("# "))
            .expect("a stats header")
            .split(',')
            .collect();
        lines
            .map(|line| {
                header
                    .iter()
                    .map(|name| name.to_string())
                    .zip(line.split(',').map(str::to_owned))
                    .collect::<HashMap<_, _>>()
            })
            .filter(|row| row["pxname"] == "app" && row["svname"] != "BACKEND")
            .map(|row| (row["svname"].clone(), row))
            .collect()
    }

    fn server(&self, name: &str) -> HashMap<String, String> {
        self.servers()
            .remove(name)
            .expect("a server of the backend")
    }

    /// Waits until HAProxy's health checks say `name` is `state` ("UP" or
    /// "DOWN").
    fn wait_state(&self, name: &str, state: &str) {
        let started = Instant::now();
        while self.server(name)["status"] != state {
            assert!(
                started.elapsed() < HANG,
                "{name} never {state}: {:?}\n{}",
                self.server(name),
                self.log()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Responses with status 2xx that `name` has given through HAProxy.
    fn served(&self, name: &str) -> u64 {
        self.server(name)["hrsp_2xx"].parse().unwrap()
    }

    /// Waits until `name` has served `n` more responses through HAProxy
    /// than `before`: it is in rotation.
    fn wait_served(&self, name: &str, before: u64, n: u64) {
        let started = Instant::now();
        while self.served(name) < before + n {
            assert!(
                started.elapsed() < HANG,
                "{name} gets no traffic: {:?}",
                self.server(name)
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// What the load saw.
#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    /// Responses other than 200, by status.
    statuses: Mutex<BTreeMap<u16, u64>>,
    /// Connections refused, reset or closed before a whole response.
    io_errors: AtomicU64,
}

impl Counts {
    fn failures(&self) -> u64 {
        self.statuses.lock().unwrap().values().sum::<u64>() + self.io_errors.load(Ordering::Relaxed)
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests, {} failed (statuses {:?}, I/O errors {})",
            self.requests.load(Ordering::Relaxed),
            self.failures(),
            self.statuses.lock().unwrap(),
            self.io_errors.load(Ordering::Relaxed)
        )
    }
}

/// Keep-alive HTTP/1.1 clients sending `GET /` through the balancer, each
/// on its own thread, counting every request and every failure.
struct Load {
    counts: Arc<Counts>,
    done: Arc<AtomicBool>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(target: SocketAddr) -> Load {
        let counts = Arc::new(Counts::default());
        let done = Arc::new(AtomicBool::new(false));
        let clients = (0..CLIENTS)
            .map(|_| {
                let (counts, done) = (counts.clone(), done.clone());
                thread::spawn(move || client(target, &counts, &done))
            })
            .collect();
        Load {
            counts,
            done,
            clients,
        }
    }

    fn stop(self) -> Arc<Counts> {
        // Relaxed: `join` below orders everything the clients did.
        self.done.store(true, Ordering::Relaxed);
        for client in self.clients {
            client.join().unwrap();
        }
        self.counts
    }
}

fn client(target: SocketAddr, counts: &Counts, done: &AtomicBool) {
    let started = Instant::now();
    let mut connection: Option<Client> = None;
    // Relaxed: a flag polled in a loop, no data published with it.
    while !done.load(Ordering::Relaxed) && started.elapsed() < LOAD_LIMIT {
        counts.requests.fetch_add(1, Ordering::Relaxed);
        if connection.is_none() {
            match Client::connect(target) {
                Ok(mut client) => {
                    let timeout = Some(Duration::from_secs(5));
                    client.stream().set_read_timeout(timeout).unwrap();
                    connection = Some(client);
                }
                Err(_) => {
                    counts.io_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        }
        let client = connection.as_mut().expect("connected above");
        match client.get("/") {
            Ok(response) => {
                if response.status != 200 {
                    *counts
                        .statuses
                        .lock()
                        .unwrap()
                        .entry(response.status)
                        .or_default() += 1;
                }
                if response.closes() {
                    connection = None;
                }
            }
            Err(_) => {
                counts.io_errors.fetch_add(1, Ordering::Relaxed);
                connection = None;
            }
        }
    }
}

/// Waits until the load has sent `n` more requests.
fn wait_requests(counts: &Counts, n: u64) {
    let target = counts.requests.load(Ordering::Relaxed) + n;
    let started = Instant::now();
    while counts.requests.load(Ordering::Relaxed) < target {
        assert!(started.elapsed() < HANG, "the load is stuck: {counts}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Two instances of `example` (started with `flags`) behind HAProxy under
/// load, restarted one after the other. Every instance must exit 0.
/// Returns what the load saw, how long it ran, and the failures during each
/// restart (from the SIGTERM until the new instance is back in rotation).
fn rolling_restart(example: &str, flags: &[&str]) -> (Arc<Counts>, Duration, [u64; 2]) {
    let mut instances = [
        ("a", Program::start(example, flags)),
        ("b", Program::start(example, flags)),
    ];
    let servers: Vec<_> = instances
        .iter()
        .map(|(name, program)| (*name, program.app, program.debug))
        .collect();
    let haproxy = Haproxy::start(&servers);
    for (name, _) in &instances {
        haproxy.wait_state(name, "UP");
    }
    assert_eq!(get(haproxy.frontend, "/").text(), "hello, QCon!\n");

    let load = Load::start(haproxy.frontend);
    let loaded = Instant::now();
    for (name, _) in &instances {
        haproxy.wait_served(name, 0, WARM_UP / 2);
    }
    let mut lost = [0; 2];
    for (i, (name, program)) in instances.iter_mut().enumerate() {
        let failed_before = load.counts.failures();
        let (app, debug) = (program.app, program.debug);
        program.signal("TERM");
        let status = program.wait();
        assert_eq!(status.code(), Some(0), "{name}:\n{}", program.stderr());
        // A restart that takes longer than a check interval, as most do.
        haproxy.wait_state(name, "DOWN");
        *program = Program::start_on(example, app, debug, flags);
        haproxy.wait_state(name, "UP");
        let served = haproxy.served(name);
        haproxy.wait_served(name, served, WARM_UP / 2);
        wait_requests(&load.counts, WARM_UP);
        lost[i] = load.counts.failures() - failed_before;
    }
    let counts = load.stop();
    let elapsed = loaded.elapsed();

    for (name, program) in &mut instances {
        program.signal("TERM");
        let status = program.wait();
        assert_eq!(status.code(), Some(0), "{name}:\n{}", program.stderr());
    }
    (counts, elapsed, lost)
}

/// With the stop delay, no request through the balancer fails.
fn no_request_fails_with_a_stop_delay(example: &str) {
    let (counts, elapsed, lost) = rolling_restart(example, &["--stop-delay-ms", STOP_DELAY_MS]);
    println!(
        "{example}, --stop-delay-ms {STOP_DELAY_MS}, checks every {CHECK_INTERVAL_MS} ms: \
         {counts} in {elapsed:.1?}; failed during the restart of a: {}, of b: {}",
        lost[0], lost[1]
    );
    assert_eq!(counts.failures(), 0, "{counts}");
}

/// Without it, requests fail: the balancer keeps sending new connections to
/// a closed port until its next check.
fn requests_fail_without_a_stop_delay(example: &str) {
    let (counts, elapsed, lost) = rolling_restart(example, &[]);
    println!(
        "{example}, no stop delay, checks every {CHECK_INTERVAL_MS} ms: \
         {counts} in {elapsed:.1?}; failed during the restart of a: {}, of b: {}",
        lost[0], lost[1]
    );
    assert!(counts.failures() > 0, "{counts}");
}

macro_rules! load_balancer_tests {
    ($module:ident, $example:literal) => {
        mod $module {
            #[test]
            fn rolling_restart_loses_no_request_with_a_stop_delay() {
                let _alone = super::alone();
                super::haproxy();
                crate::common::bounded(|| super::no_request_fails_with_a_stop_delay($example));
            }

            #[test]
            fn rolling_restart_loses_requests_without_a_stop_delay() {
                let _alone = super::alone();
                super::haproxy();
                crate::common::bounded(|| super::requests_fail_without_a_stop_delay($example));
            }
        }
    };
}

load_balancer_tests!(hello_tokio, "hello_tokio");
load_balancer_tests!(hello_smol, "hello_smol");
