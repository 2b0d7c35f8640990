//! The examples, end to end: each program built, started as a child
//! process on free ports, and checked from outside as a user would: the
//! flags, the routes, the drain on SIGTERM, the exit codes.
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

use std::io::Write;
use std::net::TcpListener;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use client::Client;
use common::HANG;
use program::{binary, free_port, get, wait_refused, Program};

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
        &["--stop-delay-ms", "soon"],
        &["--stop-delay-ms", "-1"],
        &["--stop-delay-ms", "1.5"],
        &["--stop-delay-ms"],
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
    let usage = String::from_utf8_lossy(&output.stdout);
    assert!(usage.contains("--grace SECS"), "{usage}");
    assert!(usage.contains("--stop-delay-ms N"), "{usage}");
}

/// Polls `/readyz` until it answers 503.
fn wait_not_ready(debug: std::net::SocketAddr) {
    let started = Instant::now();
    while get(debug, "/readyz").status != 503 {
        assert!(started.elapsed() < HANG, "/readyz never turned 503");
        thread::sleep(Duration::from_millis(5));
    }
}

/// With `--stop-delay-ms`, SIGTERM turns `/readyz` to 503 while the app
/// (on new and on kept-alive connections) and the debug server serve on;
/// the stop begins only when the delay has passed, and the exit is clean.
fn stop_delay_fails_readiness_and_serves_on(example: &str) {
    let delay = Duration::from_millis(3000);
    let mut program = Program::start(example, &["--stop-delay-ms", "3000"]);
    let (app, debug) = (program.app, program.debug);
    assert_eq!(get(debug, "/readyz").status, 200);
    let mut kept = Client::connect(app).unwrap();
    assert_eq!(kept.get("/").unwrap().status, 200);

    let signalled = Instant::now();
    program.signal("TERM");
    wait_not_ready(debug);
    assert_eq!(get(app, "/").text(), "hello, QCon!\n");
    let response = kept.get("/").unwrap();
    assert_eq!(response.status, 200);
    assert!(
        !response.closes(),
        "the connection is kept while the delay runs"
    );
    assert_eq!(get(debug, "/healthz").status, 200);
    assert_eq!(get(debug, "/readyz").status, 503);
    assert!(
        signalled.elapsed() < delay,
        "the checks above took longer than the delay: {:?}",
        signalled.elapsed()
    );

    let status = program.wait();
    let stderr = program.stderr();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(signalled.elapsed() >= delay, "{stderr}");
    assert!(kept.closed_by_server());
    assert!(
        stderr.contains("stop requested: SIGTERM received; stopping in 3000 ms"),
        "{stderr}"
    );
    assert!(
        stderr.contains("group stopped: stop requested: SIGTERM received"),
        "{stderr}"
    );
}

/// A second SIGTERM during the stop delay stops at once: no rest of the
/// delay, no grace (members still draining are cancelled, so the exit code
/// may be 1), and the report is printed.
fn second_sigterm_stops_at_once_during_the_stop_delay(example: &str) {
    let mut program = Program::start(example, &["--stop-delay-ms", "600000"]);
    let debug = program.debug;
    program.signal("TERM");
    wait_not_ready(debug);
    assert_eq!(get(program.app, "/").status, 200);
    program.signal("TERM");
    // `wait` fails after a minute, far less than the delay.
    let status = program.wait();
    let stderr = program.stderr();
    assert!(matches!(status.code(), Some(0 | 1)), "{status}: {stderr}");
    assert!(
        stderr.contains("group stopped: stop requested: SIGTERM received"),
        "{stderr}"
    );
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

/// The debug server stops last: while the app drains a slow request after
/// SIGTERM, `/readyz` answers 503 (never a refused connection) and
/// `/debug/group` shows the app stopping and the debug server still
/// running, its stage not begun; then the exit is clean.
fn readiness_answers_503_while_the_app_drains(example: &str) {
    let mut program = Program::start(example, &[]);
    let (app, debug) = (program.app, program.debug);
    assert_eq!(get(debug, "/readyz").status, 200);
    let mut client = Client::connect(app).unwrap();
    client.send("/slow?ms=3000").unwrap();
    let slow = thread::spawn(move || client.read());
    // Accepted in order: once this answers, the slow request is in.
    assert_eq!(get(app, "/").status, 200);
    program.signal("TERM");
    wait_refused(app);
    let mut polls = 0;
    while !slow.is_finished() {
        let mut client = Client::connect(debug).expect("the debug server refused during the drain");
        let ready = client.get("/readyz").unwrap();
        if slow.is_finished() {
            break;
        }
        assert_eq!((ready.status, ready.text()), (503, "stopping\n"));
        let group = get(debug, "/debug/group");
        let text = group.text();
        if slow.is_finished() {
            break;
        }
        assert!(
            text.contains("{\"name\":\"app\",\"state\":\"stopping\""),
            "{text}"
        );
        assert!(
            text.contains("{\"name\":\"debug\",\"state\":\"running\""),
            "{text}"
        );
        assert!(
            text.contains("{\"stage\":\"last\",\"began_ms\":null"),
            "{text}"
        );
        polls += 1;
        thread::sleep(Duration::from_millis(50));
    }
    assert!(polls > 0, "the drain ended before the first poll");
    let response = slow.join().unwrap().expect("the slow request was dropped");
    assert_eq!(response.status, 200);
    let status = program.wait();
    assert_eq!(status.code(), Some(0), "{}", program.stderr());
    assert!(
        program.stderr().contains("stage last stopping"),
        "{}",
        program.stderr()
    );
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
            fn stop_delay_fails_readiness_and_serves_on() {
                crate::common::bounded(|| {
                    super::stop_delay_fails_readiness_and_serves_on($example)
                });
            }

            #[test]
            fn second_sigterm_stops_at_once_during_the_stop_delay() {
                crate::common::bounded(|| {
                    super::second_sigterm_stops_at_once_during_the_stop_delay($example)
                });
            }

            #[test]
            fn readiness_answers_503_while_the_app_drains() {
                crate::common::bounded(|| {
                    super::readiness_answers_503_while_the_app_drains($example)
                });
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
example_tests!(hello_axum, "hello_axum");

/// hello_axum: at SIGTERM the WebSocket echo closes with 1001 Going Away
/// and the event stream ends cleanly, so the program exits 0 at once
/// rather than at the grace deadline.
#[test]
fn hello_axum_ends_its_websocket_and_event_stream_at_sigterm() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::Message;

    common::bounded(|| {
        let mut program = Program::start("hello_axum", &["--grace", "60"]);
        let app = program.app;
        let mut events = Client::connect(app).unwrap();
        events.send("/events").unwrap();
        let (status, headers) = events.read_head().unwrap();
        assert_eq!(status, 200);
        assert!(headers
            .iter()
            .any(|(name, value)| name.eq_ignore_ascii_case("content-type")
                && value == "text/event-stream"));
        let first = events.read_chunk().unwrap().unwrap();
        assert!(String::from_utf8_lossy(&first).contains("data: tick 0"));

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut signalled = None;
        runtime.block_on(async {
            let stream = tokio::net::TcpStream::connect(app).await.unwrap();
            let (mut socket, _) = tokio_tungstenite::client_async(format!("ws://{app}/ws"), stream)
                .await
                .unwrap();
            socket.send(Message::text("hi")).await.unwrap();
            assert_eq!(socket.next().await.unwrap().unwrap(), Message::text("hi"));
            program.signal("TERM");
            signalled = Some(Instant::now());
            match socket.next().await {
                Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away),
                other => panic!("expected a close frame, got {other:?}"),
            }
            while let Some(Ok(_)) = socket.next().await {}
        });
        // Ticks (and keep-alive comments) until the stream's clean end.
        while let Some(_chunk) = events.read_chunk().unwrap() {}
        let status = program.wait();
        assert_eq!(status.code(), Some(0), "{}", program.stderr());
        // Well before the 60 s grace: nothing waited for a deadline.
        let took = signalled.unwrap().elapsed();
        assert!(took < Duration::from_secs(20), "exit took {took:?}");
    });
}

/// hello_tokio built with the `heap` feature runs jemalloc with its
/// profiler: `/debug/pprof/heap` is a heap profile that `go tool pprof`
/// reads, and so is a CPU profile.
#[cfg(feature = "heap")]
#[test]
fn hello_tokio_serves_heap_and_cpu_profiles_that_go_tool_pprof_reads() {
    common::bounded(|| {
        let go = common::debian_tool("go", "golang-go");
        let mut program = Program::start("hello_tokio", &[]);
        let directory = std::env::temp_dir().join(format!("allstop-pprof-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let hello_tokio = binary("hello_tokio");
        // The heap profile has addresses, looked up in the binary; the CPU
        // profile has names already.
        for (path, kind, binary) in [
            ("/debug/pprof/heap", "inuse_space", Some(&hello_tokio)),
            ("/debug/pprof/profile?seconds=1", "cpu", None),
        ] {
            let response = get(program.debug, path);
            assert_eq!(
                response.status,
                200,
                "{path}: {}",
                String::from_utf8_lossy(&response.body)
            );
            let top = pprof_top(&go, &directory, &response.body, binary);
            assert!(top.contains(&format!("Type: {kind}")), "{path}: {top}");
        }
        let _ = std::fs::remove_dir_all(&directory);
        program.signal("TERM");
        assert_eq!(program.wait().code(), Some(0), "{}", program.stderr());
    });
}

/// A CPU profile of hello_tokio taken while clients keep it busy with
/// requests: `go tool pprof -top` lists functions by name, and among them
/// functions of tokio, hyper or allstop (the profile carries names only,
/// no addresses `go tool pprof` could look up itself: the names are the
/// sampler's own, from the binary's symbol table).
#[cfg(target_os = "linux")]
#[test]
fn a_cpu_profile_of_hello_tokio_under_load_names_its_functions_in_go_tool_pprof() {
    common::bounded(|| {
        let go = common::debian_tool("go", "golang-go");
        let mut program = Program::start("hello_tokio", &[]);
        let (profile, answered) = profile_under_load(&program);
        assert_eq!(profile.status, 200, "{}", profile.text());

        let directory =
            std::env::temp_dir().join(format!("allstop-pprof-cpu-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        // Read as it is, and with the binary, as a user may ask: the names
        // are the profile's either way.
        let hello_tokio = binary("hello_tokio");
        for binary in [None, Some(&hello_tokio)] {
            let top = pprof_top(&go, &directory, &profile.body, binary);
            assert!(top.contains("Type: cpu"), "{top}");
            let functions = top_functions(&top);
            assert!(
                functions.iter().any(|function| {
                    ["tokio", "hyper", "allstop"]
                        .iter()
                        .any(|ours| function.contains(ours))
                }),
                "no function of tokio, hyper or allstop in the profile read with \
                 {binary:?} ({answered} requests answered meanwhile):\n{top}"
            );
        }
        let _ = std::fs::remove_dir_all(&directory);
        program.signal("TERM");
        assert_eq!(program.wait().code(), Some(0), "{}", program.stderr());
    });
}

/// A stripped program (no symbol table: its own frames have no name in
/// it) gives a profile whose unnamed frames carry their addresses, in the
/// mappings they lie in, the program's first: what `go tool pprof` needs to
/// name them from the unstripped binary and its debug information. (Naming
/// them takes `go tool pprof` over a minute on a debug build, so the test
/// reads the addresses and mappings, and a name check runs on the
/// unstripped program above.)
#[cfg(target_os = "linux")]
#[test]
fn a_cpu_profile_of_a_stripped_program_carries_addresses_and_mappings() {
    common::bounded(|| {
        let go = common::debian_tool("go", "golang-go");
        let directory =
            std::env::temp_dir().join(format!("allstop-pprof-stripped-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let stripped = directory.join("hello_tokio");
        let objcopy = common::debian_tool("objcopy", "binutils");
        let status = Command::new(objcopy)
            .arg("--strip-all")
            .arg(binary("hello_tokio"))
            .arg(&stripped)
            .status()
            .unwrap();
        assert!(status.success(), "objcopy --strip-all failed");
        let mut program = Program::start_binary(&stripped, &[]);
        let (profile, _answered) = profile_under_load(&program);
        assert_eq!(profile.status, 200, "{}", profile.text());
        // Read as it is, the stripped program's own frames have no names.
        let top = pprof_top(&go, &directory, &profile.body, None);
        assert!(
            !top_functions(&top)
                .iter()
                .any(|function| { !function.starts_with('[') && function.contains("tokio") }),
            "the stripped program named its frames:\n{top}"
        );
        // Its first mapping is the program, and frames lie in it by address.
        let file = directory.join("profile.pb.gz");
        std::fs::write(&file, &profile.body).unwrap();
        let output = Command::new(&go)
            .args(["tool", "pprof", "-raw", "-symbolize=none"])
            .arg(&file)
            .env("HOME", &directory)
            .output()
            .unwrap();
        let raw = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{raw}");
        let first_mapping = raw
            .lines()
            .skip_while(|line| *line != "Mappings")
            .nth(1)
            .unwrap_or_default();
        assert!(
            first_mapping.starts_with("1: 0x")
                && first_mapping
                    .trim_end()
                    .ends_with(&*stripped.to_string_lossy()),
            "{raw}"
        );
        let in_program = raw
            .lines()
            .skip_while(|line| *line != "Locations")
            .filter(|line| line.contains(": 0x") && line.trim_end().ends_with("M=1"))
            .count();
        assert!(
            in_program > 10,
            "{in_program} frames by address in the program:\n{raw}"
        );
        let _ = std::fs::remove_dir_all(&directory);
        program.signal("TERM");
        assert_eq!(program.wait().code(), Some(0), "{}", program.stderr());
    });
}

/// A 2 s CPU profile of `program` while four clients keep it busy on
/// keep-alive connections, each sending its next request as soon as the
/// last is answered; and how many requests were answered meanwhile.
#[cfg(target_os = "linux")]
fn profile_under_load(program: &Program) -> (client::Response, usize) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    let app = program.app;
    let done = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (done, answered) = (done.clone(), answered.clone());
            thread::spawn(move || {
                let mut client = Client::connect(app).unwrap();
                while !done.load(Ordering::Relaxed) {
                    assert_eq!(client.get("/").unwrap().status, 200);
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    while answered.load(Ordering::Relaxed) < 100 {
        thread::sleep(Duration::from_millis(10));
    }
    let profile = get(program.debug, "/debug/pprof/profile?seconds=2");
    done.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    (profile, answered.load(Ordering::Relaxed))
}

/// `go tool pprof -top` on `profile` (written into `directory`, also its
/// HOME), with the `binary` to look its addresses up in, if any: its
/// output, once it has succeeded.
///
/// A CPU profile's frames are named already: its mapping says so, and
/// `go tool pprof` keeps the names even when given the binary.
#[cfg(any(feature = "heap", target_os = "linux"))]
fn pprof_top(
    go: &str,
    directory: &std::path::Path,
    profile: &[u8],
    binary: Option<&std::path::PathBuf>,
) -> String {
    let file = directory.join("profile.pb.gz");
    std::fs::write(&file, profile).unwrap();
    let output = Command::new(go)
        .args(["tool", "pprof", "-top"])
        .args(binary)
        .arg(&file)
        .env("HOME", directory)
        .output()
        .unwrap();
    let top = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{top}");
    top
}

/// The function column of `go tool pprof -top`: what follows the five
/// numbers (flat, flat%, sum%, cum, cum%) on each line after the header.
#[cfg(target_os = "linux")]
fn top_functions(top: &str) -> Vec<&str> {
    top.lines()
        .skip_while(|line| !line.trim_start().starts_with("flat"))
        .skip(1)
        .filter_map(function_column)
        .collect()
}

/// What follows the five numbers on one line of `go tool pprof -top`.
#[cfg(target_os = "linux")]
fn function_column(line: &str) -> Option<&str> {
    let mut rest = line.trim_start();
    for _ in 0..5 {
        rest = rest.split_once(char::is_whitespace)?.1.trim_start();
    }
    Some(rest)
}
