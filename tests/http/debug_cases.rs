//! The debug server tests, written once, generic over the
//! runtime.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use allstop::debug::DebugRoutes;
use allstop::{Event, Group, Stop};
use pprof::protos::Message;

use crate::cases::{bound, start};
use crate::client::{Client, Response};
use crate::common::{Counter, Gate, ManualTimer, HANG};
use crate::net::{Config, Net};

/// One profiler per process: tests that profile take turns.
static PROFILER: Mutex<()> = Mutex::new(());

fn profiler_turn() -> std::sync::MutexGuard<'static, ()> {
    PROFILER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn debug_serving<N: Net>(config: Config) -> (Group, SocketAddr, DebugRoutes) {
    let (listener, addr) = bound();
    let mut group = N::group();
    let debug = DebugRoutes::new().attach(&mut group);
    group.add("debug", N::serve(listener, debug.clone(), config));
    (group, addr, debug)
}

fn get(addr: SocketAddr, path: &str) -> Response {
    Client::connect(addr).unwrap().get(path).unwrap()
}

/// Keeps a core busy until dropped, so a profile has samples.
struct Burn(Arc<AtomicBool>, Option<thread::JoinHandle<()>>);

fn burn() -> Burn {
    let done = Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let thread = thread::spawn(move || {
        let mut x = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for i in 0..10_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
    });
    Burn(done, Some(thread))
}

impl Drop for Burn {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        if let Some(thread) = self.1.take() {
            let _ = thread.join();
        }
    }
}

fn decode(response: &Response) -> pprof::protos::Profile {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&response.body[..])
        .read_to_end(&mut raw)
        .expect("gzip");
    pprof::protos::Profile::decode(raw.as_slice()).expect("a pprof protobuf")
}

/// A valid CPU profile; `busy` when the process burned CPU throughout, so
/// there must be samples.
fn assert_cpu_profile(response: &Response, busy: bool) {
    assert_eq!(response.status, 200, "{:?}", response.headers);
    assert_eq!(
        response.header("content-type"),
        Some("application/octet-stream")
    );
    assert!(response
        .header("content-disposition")
        .is_some_and(|v| v.contains("filename=\"profile.pb.gz\"")));
    let profile = decode(response);
    let names: Vec<_> = profile
        .sample_type
        .iter()
        .map(|t| profile.string_table[t.ty as usize].as_str())
        .collect();
    assert_eq!(names, ["samples", "cpu"]);
    if busy {
        assert!(
            !profile.sample.is_empty(),
            "a profile of a busy process has samples"
        );
        // The busy function is named, demangled, in a sample's frames.
        let named = profile
            .sample
            .iter()
            .flat_map(|s| &s.location_id)
            .any(|id| {
                let location = profile.location.iter().find(|l| l.id == *id).unwrap();
                location.line.iter().any(|line| {
                    let function = profile.function.iter().find(|f| f.id == line.function_id);
                    function.is_some_and(|f| {
                        profile.string_table[f.name as usize].contains("debug_cases::burn")
                    })
                })
            });
        assert!(
            named,
            "no sample names the busy function: {:?}",
            profile.string_table
        );
    }
    assert!(profile.duration_nanos > 0);
}

// a CPU profile decodes, with the pprof crate's own types, into a
// profile with samples of type samples/cpu and a duration.
pub fn profile_is_a_gzipped_pprof_protobuf<N: Net>() {
    let _turn = profiler_turn();
    let (group, addr, _debug) = debug_serving::<N>(Config::default());
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let busy = burn();
    let response = get(addr, "/debug/pprof/profile?seconds=1");
    drop(busy);
    assert_cpu_profile(&response, true);
    handle.stop("test");
    assert!(run.join().unwrap().is_success());
}

// the same profile as an SVG flamegraph.
pub fn flamegraph_is_svg<N: Net>() {
    let _turn = profiler_turn();
    let (group, addr, _debug) = debug_serving::<N>(Config::default());
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let busy = burn();
    let response = get(addr, "/debug/pprof/flamegraph?seconds=1");
    drop(busy);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("image/svg+xml"));
    let svg = response.text();
    assert!(
        svg.starts_with("<?xml") && svg.contains("<svg"),
        "{}",
        &svg[..svg.len().min(200)]
    );
    handle.stop("test");
    assert!(run.join().unwrap().is_success());
}

// bad input gets a status and a message saying what is accepted.
pub fn bad_requests_get_clear_errors<N: Net>() {
    let (group, addr, _debug) = debug_serving::<N>(Config::default());
    let handle = group.stop_handle();
    let run = start::<N>(group);
    for query in [
        "seconds",
        "seconds=",
        "seconds=abc",
        "seconds=1.5",
        "seconds=0",
        "seconds=-1",
        "seconds=301",
    ] {
        for route in ["profile", "flamegraph"] {
            let response = get(addr, &format!("/debug/pprof/{route}?{query}"));
            assert_eq!(response.status, 400, "{route}?{query}");
            assert!(
                response.text().contains("whole seconds from 1 to 300"),
                "{route}?{query}: {}",
                response.text()
            );
        }
    }
    let response = get(addr, "/debug/nothing-here");
    assert_eq!(response.status, 404);
    let mut client = Client::connect(addr).unwrap();
    client.send_method("POST", "/debug/pprof/profile").unwrap();
    let response = client.read().unwrap();
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD"));
    handle.stop("test");
    assert!(run.join().unwrap().is_success());
}

/// Every route that answers GET answers HEAD: the same status and headers,
/// no body (so the connection stays usable for the next request), and no
/// profile taken for the profile routes.
pub fn every_get_route_answers_head<N: Net>() {
    // It checks that no profile runs: none of the other tests' either.
    let _turn = profiler_turn();
    let (group, addr, _debug) = debug_serving::<N>(Config::default());
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let mut client = Client::connect(addr).unwrap();
    for (path, status, content_type) in [
        ("/healthz", 200, "text/plain; charset=utf-8"),
        ("/readyz", 200, "text/plain; charset=utf-8"),
        ("/debug/group", 200, "application/json"),
        ("/debug/pprof/", 200, "text/html; charset=utf-8"),
        (
            "/debug/pprof/profile?seconds=300",
            200,
            "application/octet-stream",
        ),
        ("/debug/pprof/flamegraph?seconds=300", 200, "image/svg+xml"),
        (
            "/debug/pprof/profile?seconds=0",
            400,
            "text/plain; charset=utf-8",
        ),
    ] {
        client.send_method("HEAD", path).unwrap();
        let (got, headers) = client.read_head().unwrap();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            (got, header("content-type")),
            (status, Some(content_type)),
            "HEAD {path}"
        );
        // (A GET of a profile route would take a profile; /debug/group's
        // uptimes change length between two requests.)
        if !(status == 200 && path.contains("seconds")) && path != "/debug/group" {
            let get = get(addr, path);
            assert_eq!(get.status, status, "GET {path}");
            let length = get.body.len().to_string();
            assert_eq!(
                header("content-length"),
                Some(length.as_str()),
                "HEAD {path}"
            );
        }
    }
    assert!(!get(addr, "/debug/group")
        .text()
        .contains("\"profiling\":true"));
    // The same connection, after seven HEAD answers: no body was sent.
    assert_eq!(client.get("/healthz").unwrap().text(), "ok\n");
    handle.stop("test");
    assert!(run.join().unwrap().is_success());
}

/// Polls `/debug/group` until a profile is running.
fn wait_profiling(addr: SocketAddr) {
    let started = Instant::now();
    while !get(addr, "/debug/group")
        .text()
        .contains("\"profiling\":true")
    {
        assert!(started.elapsed() < HANG, "the profile never started");
        thread::sleep(Duration::from_millis(5));
    }
}

// a second profile while one runs gets 409; a running profile never
// holds the shutdown: the stop ends it early, with what it has.
pub fn second_profile_conflicts_and_the_stop_ends_the_first<N: Net>() {
    let _turn = profiler_turn();
    let (group, addr, _debug) = debug_serving::<N>(Config::default());
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let busy = burn();
    let first = thread::spawn(move || get(addr, "/debug/pprof/profile?seconds=300"));
    wait_profiling(addr);
    for route in ["profile", "flamegraph"] {
        let second = get(addr, &format!("/debug/pprof/{route}?seconds=1"));
        assert_eq!(second.status, 409);
        assert!(
            second.text().contains("already running"),
            "{}",
            second.text()
        );
    }
    let stopped = Instant::now();
    handle.stop("test");
    let first = first.join().unwrap();
    drop(busy);
    // Ended by the stop, not by its 300 seconds; short, perhaps without
    // samples, but a profile.
    assert!(stopped.elapsed() < Duration::from_secs(60));
    assert_cpu_profile(&first, false);
    assert!(run.join().unwrap().is_success());
}

// /healthz answers while up; /readyz turns 503 from the moment a stop
// is requested, while the server keeps serving through the stop delay.
pub fn readyz_fails_from_the_stop_request<N: Net>() {
    let timer = ManualTimer::new();
    let (mut group, addr, debug) = debug_serving::<N>(Config::default());
    group
        .timer(timer.clone())
        .stop_delay(Duration::from_secs(5));
    let handle = group.stop_handle();
    let run = start::<N>(group);
    assert_eq!(get(addr, "/healthz").status, 200);
    let ready = get(addr, "/readyz");
    assert_eq!((ready.status, ready.text()), (200, "ready\n"));
    handle.stop("deploy");
    timer.wait_requested();
    assert!(!debug.status().is_ready());
    let ready = get(addr, "/readyz");
    assert_eq!((ready.status, ready.text()), (503, "stopping\n"));
    assert_eq!(get(addr, "/healthz").status, 200);
    timer.fire();
    assert!(run.join().unwrap().is_success());
}

// /debug/group shows the members and their states, before and after a
// member exits.
pub fn group_status_follows_the_members<N: Net>() {
    // A long idle grace keeps our keep-alive connection open through the
    // drain, to ask again after the stop began.
    let config = Config {
        idle_grace: Some(HANG),
        ..Config::default()
    };
    let (mut group, addr, _debug) = debug_serving::<N>(config);
    let (finish, finishing) = (Gate::new(), Gate::new());
    let exit = finish.clone();
    group.add("job", move |_stop| async move {
        exit.wait().await;
        Ok::<(), std::io::Error>(())
    });
    let drain = finishing.clone();
    group.add("worker", move |stop: Stop| async move {
        stop.await;
        drain.wait().await;
        Ok::<(), std::io::Error>(())
    });
    // The job's exit, as the group records it (after the stop it begins,
    // when the job runs on a task of its own).
    let job_exited = Counter::new();
    let seen = job_exited.clone();
    group.observe(move |event: &Event<'_>| {
        if let Event::MemberExited { name: "job", .. } = event {
            seen.add();
        }
    });
    let run = start::<N>(group);
    let mut client = Client::connect(addr).unwrap();
    let before = client.get("/debug/group").unwrap();
    assert_eq!(before.header("content-type"), Some("application/json"));
    let before = before.text().to_owned();
    // (`profiling` is process-wide: another test may be profiling.)
    assert!(
        before.starts_with("{\"ready\":true,\"stopping\":false,\"profiling\":"),
        "{before}"
    );
    assert!(before.contains(",\"cause\":null,\"members\":["), "{before}");
    for name in ["debug", "job", "worker"] {
        assert!(
            before.contains(&format!(
                "{{\"name\":\"{name}\",\"state\":\"running\",\"outcome\":null,\"uptime_ms\":"
            )),
            "{before}"
        );
    }
    finish.open();
    job_exited.wait_for(1);
    // The server has seen the stop once its port refuses connections.
    crate::cases::wait_refused(addr);
    let after = client.get("/debug/group").unwrap();
    assert!(after.closes(), "answered during the drain");
    let after = after.text().to_owned();
    assert!(
        after.starts_with("{\"ready\":false,\"stopping\":true,"),
        "{after}"
    );
    assert!(
        after.contains(",\"cause\":\"member \\\"job\\\" finished\","),
        "{after}"
    );
    assert!(
        after.contains("{\"name\":\"job\",\"state\":\"exited\",\"outcome\":\"ok\""),
        "{after}"
    );
    assert!(
        after.contains("{\"name\":\"worker\",\"state\":\"stopping\",\"outcome\":null"),
        "{after}"
    );
    finishing.open();
    assert!(run.join().unwrap().is_success());
}

/// Without jemalloc's profiler (this test's process uses the system
/// allocator), the heap profile is a 501 that says how to turn it on.
pub fn heap_profile_without_jemalloc_says_how_to_get_one<N: Net>() {
    let (group, addr, _debug) = debug_serving::<N>(Config::default());
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let response = get(addr, "/debug/pprof/heap");
    assert_eq!(response.status, 501, "{}", response.text());
    let text = response.text();
    for needed in [
        "tikv_jemallocator::Jemalloc",
        "#[global_allocator]",
        "_rjem_malloc_conf",
        "prof:true",
        "`heap` feature",
    ] {
        assert!(text.contains(needed), "{needed:?} missing from {text}");
    }
    assert!(get(addr, "/debug/pprof/").text().contains("heap"));
    handle.stop("test");
    assert!(run.join().unwrap().is_success());
}

/// HEAD over HTTP/2: the same status and headers, and no DATA frame. hyper
/// leaves the body out on HTTP/1 only; the server does it on HTTP/2, for
/// every service (seen failing without).
pub fn head_over_http2_sends_no_body<N: Net>() {
    use crate::h2raw::{self, H2};

    let (group, addr, _debug) = debug_serving::<N>(Config::default());
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let mut client = H2::connect(addr).unwrap();
    // :method HEAD (literal, indexed name 2), :scheme http, :path /healthz
    // (literal, indexed name 4), :authority "test".
    let mut block = vec![0x02, 0x04];
    block.extend_from_slice(b"HEAD");
    block.extend_from_slice(&[0x86, 0x04, 0x08]);
    block.extend_from_slice(b"/healthz");
    block.extend_from_slice(&[0x41, 0x04]);
    block.extend_from_slice(b"test");
    client.send(h2raw::HEADERS, 0x1 | 0x4, 1, &block).unwrap();
    let frames = client.read_response(1).unwrap();
    let on_stream: Vec<_> = frames.iter().filter(|f| f.stream == 1).collect();
    assert_eq!(on_stream[0].kind, h2raw::HEADERS, "{frames:?}");
    assert!(
        on_stream
            .iter()
            .all(|f| f.kind != h2raw::DATA || f.payload.is_empty()),
        "a body on the wire: {frames:?}"
    );
    handle.stop("test");
    assert!(run.join().unwrap().is_success());
}
