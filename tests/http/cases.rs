//! The HTTP drain tests, written once, generic over the runtime.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use allstop::http::IntoHttpService;
use allstop::{Cause, Exit, Group, Outcome, Report, Stop};

use crate::client::Client;
use crate::common::{Counter, HANG};
use crate::net::{fnv1a, App, Config, Net};

pub fn bound() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

pub fn start<N: Net>(group: Group) -> thread::JoinHandle<Report> {
    thread::spawn(move || N::block_on(group.run()))
}

/// The member whose failure stopped the group, and its error message.
pub fn failure(report: &Report) -> (&str, &str) {
    let Some(Cause::Finished {
        member,
        exit: Exit::Failed(message),
    }) = report.cause()
    else {
        panic!("not stopped by a failure: {report}");
    };
    (member, message)
}

/// Waits until `addr` refuses connections: the listener is gone.
pub fn wait_refused(addr: SocketAddr) {
    let started = Instant::now();
    loop {
        match TcpStream::connect(addr) {
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => return,
            _ => {
                assert!(started.elapsed() < HANG, "{addr} still accepts connections");
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Waits until `addr` answers `GET /`.
pub fn wait_answering(addr: SocketAddr) {
    let started = Instant::now();
    while !Client::connect(addr)
        .and_then(|mut c| c.get("/"))
        .is_ok_and(|r| r.status == 200)
    {
        assert!(started.elapsed() < HANG, "{addr} never answered");
        thread::sleep(Duration::from_millis(5));
    }
}

/// A group serving `app` on a fresh port, and the port.
pub fn serving<N: Net>(app: &App, config: Config) -> (Group, SocketAddr) {
    serving_service::<N, _>(app.clone().service(), config)
}

/// A group whose member "app" serves `service` on a loopback port of its
/// own, and that port's address.
pub fn serving_service<N: Net, M>(
    service: impl IntoHttpService<M>,
    config: Config,
) -> (Group, SocketAddr) {
    let (listener, addr) = bound();
    let mut group = N::group();
    group.add("app", N::serve(listener, service, config));
    (group, addr)
}

// an in-flight request completes during the drain, marked
// `Connection: close`, while new connections are refused.
pub fn slow_request_completes_while_new_connections_are_refused<N: Net>() {
    let app = App::new();
    let (group, addr) = serving::<N>(&app, Config::default());
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let client = thread::spawn(move || Client::connect(addr)?.get("/slow"));
    app.entered.wait_for(1);
    handle.stop("test");
    wait_refused(addr);
    app.gate.open();
    let response = client.join().unwrap().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "slow done");
    assert!(response.closes(), "{response:?}");
    let report = run.join().unwrap();
    assert!(report.is_success(), "{report}");
}

// idle keep-alive connections and connections that never sent a
// request do not hold the stop; the server closes them.
pub fn idle_and_unused_connections_do_not_delay_the_stop<N: Net>() {
    let app = App::new();
    let (group, addr) = serving::<N>(&app, Config::default());
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let mut idle: Vec<Client> = (0..4)
        .map(|_| {
            let mut client = Client::connect(addr).unwrap();
            let response = client.get("/").unwrap();
            assert_eq!(response.text(), "hello");
            assert!(!response.closes());
            client
        })
        .collect();
    let mut unused: Vec<Client> = (0..4).map(|_| Client::connect(addr).unwrap()).collect();
    // One more full request, after the unused ones connected: they were
    // accepted before it (the listener accepts in order).
    assert_eq!(Client::connect(addr).unwrap().get("/").unwrap().status, 200);
    handle.stop("test");
    // No drain deadline is set: only closing these connections ends the run.
    let report = run.join().unwrap();
    assert!(report.is_success(), "{report}");
    for client in idle.iter_mut().chain(unused.iter_mut()) {
        assert!(client.closed_by_server());
    }
}

// a client that sends half a request head does not hold the stop.
pub fn half_sent_request_does_not_delay_the_stop<N: Net>() {
    let app = App::new();
    let (group, addr) = serving::<N>(&app, Config::default());
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let mut slow = Client::connect(addr).unwrap();
    slow.stream()
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        .unwrap();
    assert_eq!(Client::connect(addr).unwrap().get("/").unwrap().status, 200);
    handle.stop("test");
    let report = run.join().unwrap();
    assert!(report.is_success(), "{report}");
    assert!(slow.closed_by_server());
}

// an HTTP/2 connection gets GOAWAY; its stream in flight completes.
pub fn http2_gets_goaway_and_its_stream_completes<N: Net>() {
    let app = App::new();
    let (group, addr) = serving::<N>(&app, Config::default());
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let connection_ended = Counter::new();
    let ended = connection_ended.clone();
    let client = thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut sender, connection) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(stream),
            )
            .await
            .unwrap();
            let connection = tokio::spawn(async move {
                let result = connection.await;
                ended.add();
                result
            });
            let request = hyper::Request::get(format!("http://{addr}/slow"))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            let status = response.status();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            // GOAWAY, then the last stream done: the connection ends cleanly.
            connection.await.unwrap().unwrap();
            (status, body, sender.is_closed())
        })
    });
    app.entered.wait_for(1);
    handle.stop("test");
    wait_refused(addr);
    assert_eq!(connection_ended.get(), 0, "the stream in flight was cut");
    app.gate.open();
    let (status, body, closed) = client.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "slow done");
    assert!(closed);
    assert!(run.join().unwrap().is_success());
}

// the port can be bound again as soon as the server has returned, even
// though it closed connections (which leaves them in TIME_WAIT).
pub fn port_is_free_again_after_the_server_returns<N: Net>() {
    let app = App::new();
    let (group, addr) = serving::<N>(&app, Config::default());
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let mut client = Client::connect(addr).unwrap();
    assert_eq!(client.get("/").unwrap().status, 200);
    handle.stop("test");
    assert!(run.join().unwrap().is_success());
    assert!(client.closed_by_server());
    N::bind(addr).expect("the port is free again");
}

// a port in use fails the member with an error naming the address, and
// stops the rest of the group.
pub fn port_in_use_fails_naming_the_address<N: Net>() {
    let (_taken, addr) = bound();
    let mut group = N::group();
    group.add("worker", |stop: Stop| async move {
        stop.await;
        Ok::<(), std::io::Error>(())
    });
    group.add("app", N::serve_on(addr, App::new()));
    let report = N::block_on(group.run());
    let (member, message) = failure(&report);
    assert_eq!(member, "app");
    assert!(message.starts_with(&format!("bind {addr}: ")), "{message}");
    assert!(message.contains("in use"), "{message}");
    assert!(report.member("worker").unwrap().outcome().is_ok());
    assert_eq!(report.exit_code(), std::process::ExitCode::from(1));
    assert!(report.to_string().contains(&format!("bind {addr}")));
}

// a handler that waits on the stop signal ends early, whether its app was
// built from the stop or found it in the request.
pub fn handler_sees_the_stop_and_ends_early<N: Net>() {
    for in_request in [false, true] {
        let app = App::new();
        let (group, addr) = if in_request {
            let config = Config {
                stop_in_requests: Some(true),
                ..Config::default()
            };
            serving_service::<N, _>(app.clone(), config)
        } else {
            serving::<N>(&app, Config::default())
        };
        let handle = group.stop_handle();
        let run = start::<N>(group);
        let client = thread::spawn(move || Client::connect(addr)?.get("/until-stop"));
        app.entered.wait_for(1);
        handle.stop("test");
        let response = client.join().unwrap().unwrap();
        assert_eq!(response.text(), "stopped early", "in request: {in_request}");
        assert!(run.join().unwrap().is_success());
    }
}

// the drain deadline drops what is left and says so.
pub fn drain_deadline_drops_the_rest<N: Net>() {
    let app = App::new();
    let config = Config {
        drain_timeout: Some(Duration::from_millis(100)),
        ..Config::default()
    };
    let (group, addr) = serving::<N>(&app, config);
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let client = thread::spawn(move || Client::connect(addr)?.get("/slow"));
    app.entered.wait_for(1);
    handle.stop("test");
    // The gate is never opened: only the deadline ends the run.
    let report = run.join().unwrap();
    let Outcome::Err(error) = report.member("app").unwrap().outcome() else {
        panic!("{report}");
    };
    assert_eq!(
        error.to_string(),
        format!("serving {addr}: drain deadline passed with 1 connection(s) open")
    );
    assert!(
        client.join().unwrap().is_err(),
        "the dropped request got an answer"
    );
    app.gate.open();
}

// the header-read timeout cuts a client that sends its head too slowly,
// while the server runs on.
pub fn header_read_timeout_cuts_slow_senders<N: Net>() {
    let app = App::new();
    let config = Config {
        header_read_timeout: Some(Duration::from_millis(200)),
        ..Config::default()
    };
    let (group, addr) = serving::<N>(&app, config);
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let mut slow = Client::connect(addr).unwrap();
    slow.stream()
        .write_all(b"GET / HTTP/1.1\r\nHost: te")
        .unwrap();
    // Blocks until the server gives up on the head: well before the
    // client's own 5 s limit (hyper's default would be 30 s).
    slow.stream()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8; 1];
    match std::io::Read::read(slow.stream(), &mut byte) {
        Ok(0) => {}
        Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("the slow sender was not cut: {other:?}"),
    }
    assert_eq!(
        Client::connect(addr).unwrap().get("/").unwrap().text(),
        "hello"
    );
    handle.stop("test");
    assert!(run.join().unwrap().is_success());
}

// Handlers see the stop their app was built from, and find it in their
// requests only when the server is told to put it there (it costs
// allocations per request).
pub fn handlers_see_the_stop_they_were_built_from_or_find_it_when_asked<N: Net>() {
    let cases = [
        (true, None, "from the server"),
        (false, None, "no stop"),
        (false, Some(true), "in the request"),
        (true, Some(false), "from the server"),
    ];
    for (built_from_stop, stop_in_requests, expected) in cases {
        let app = App::new();
        let config = Config {
            stop_in_requests,
            ..Config::default()
        };
        let (group, addr) = if built_from_stop {
            serving::<N>(&app, config)
        } else {
            serving_service::<N, _>(app.clone(), config)
        };
        let handle = group.stop_handle();
        let run = start::<N>(group);
        let answer = Client::connect(addr).unwrap().get("/has-stop").unwrap();
        assert_eq!(answer.text(), expected, "{stop_in_requests:?}");
        handle.stop("test");
        assert!(run.join().unwrap().is_success());
    }
}

// An app built from the stop is built once per server, not per connection
// or request; one whose building panics is the server's panic: reported,
// and its port closed.
pub fn the_app_is_built_once_and_a_panic_building_it_is_the_servers<N: Net>() {
    let app = App::new();
    let built = Arc::new(AtomicUsize::new(0));
    let counted = built.clone();
    let build = move |stop: Stop| {
        counted.fetch_add(1, Ordering::Relaxed);
        app.service()(stop)
    };
    let (group, addr) = serving_service::<N, _>(build, Config::default());
    let handle = group.stop_handle();
    let run = start::<N>(group);
    for _ in 0..3 {
        let mut client = Client::connect(addr).unwrap();
        for _ in 0..2 {
            assert_eq!(client.get("/").unwrap().text(), "hello");
        }
    }
    handle.stop("test");
    assert!(run.join().unwrap().is_success());
    assert_eq!(built.load(Ordering::Relaxed), 1);

    let build = |_: Stop| -> App { panic!("no app today") };
    let (group, addr) = serving_service::<N, _>(build, Config::default());
    let report = start::<N>(group).join().unwrap();
    match report.member("app").unwrap().outcome() {
        Outcome::Panicked(message) => assert!(message.contains("no app today"), "{message}"),
        other => panic!("{other:?}"),
    }
    wait_refused(addr);
}

// Bad input: a malformed request gets 400 and the server goes on serving.
pub fn malformed_request_gets_400<N: Net>() {
    let app = App::new();
    let (group, addr) = serving::<N>(&app, Config::default());
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let mut bad = Client::connect(addr).unwrap();
    bad.stream().write_all(b"NONSENSE\r\n\r\n").unwrap();
    let response = bad.read().unwrap();
    assert_eq!(response.status, 400);
    assert_eq!(
        Client::connect(addr).unwrap().get("/").unwrap().text(),
        "hello"
    );
    handle.stop("test");
    assert!(run.join().unwrap().is_success());
}

// A handler that panics ends its own connection, unanswered, as a panic in
// any task does: the server serves the connections already open and new
// ones, the lost connection does not hold the drain, and the server ends
// `Ok` (the panic was a connection's, not the member's).
pub fn a_panicking_handler_ends_its_connection_only<N: Net>() {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::Full;

    let service = hyper::service::service_fn(|request: hyper::Request<_>| async move {
        if request.uri().path() == "/panic" {
            panic!("a handler panicked, on purpose");
        }
        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from("ok"))))
    });
    let (group, addr) = serving_service::<N, _>(service, Config::default());
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let mut before = Client::connect(addr).unwrap();
    assert_eq!(before.get("/").unwrap().text(), "ok");

    let mut panicking = Client::connect(addr).unwrap();
    let lost = panicking.get("/panic").unwrap_err();
    assert_eq!(lost.kind(), io::ErrorKind::UnexpectedEof, "{lost}");
    assert_eq!(before.get("/").unwrap().text(), "ok");
    assert_eq!(
        Client::connect(addr).unwrap().get("/").unwrap().text(),
        "ok"
    );

    handle.stop("test");
    let report = run.join().unwrap();
    assert!(report.is_success(), "{report}");
}

// Over HTTP/2 a panicking handler loses its stream only (reset): the next
// stream on the same connection is answered, and the drain is not held.
pub fn a_panicking_http2_handler_loses_its_stream_only<N: Net>() {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::Full;

    use crate::h2raw::{DATA, H2, RST_STREAM};

    let calls = Arc::new(AtomicUsize::new(0));
    let service = hyper::service::service_fn(move |_request| {
        let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                panic!("a handler panicked, on purpose");
            }
            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from("ok"))))
        }
    });
    let config = Config {
        drain_timeout: Some(Duration::from_secs(10)),
        ..Config::default()
    };
    let (group, addr) = serving_service::<N, _>(service, config);
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let mut client = H2::connect(addr).unwrap();
    client.get(1).unwrap();
    client.read_until(RST_STREAM, 1).unwrap();
    client.get(3).unwrap();
    let answer = client.read_response(3).unwrap();
    let body: Vec<u8> = answer
        .iter()
        .filter(|frame| frame.kind == DATA)
        .flat_map(|frame| frame.payload.iter().copied())
        .collect();
    assert_eq!(body, b"ok");

    handle.stop("test");
    let report = run.join().unwrap();
    assert!(report.is_success(), "{report}");
}

// A request body far larger than any one read, written in pieces of
// uneven sizes with the next request in the same write as its end: the
// handler gets every byte, in order, and the next request is answered too.
pub fn an_upload_arrives_whole_and_in_order<N: Net>() {
    let app = App::new();
    let (group, addr) = serving::<N>(&app, Config::default());
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let upload: Vec<u8> = (0..(3 << 20) + 12_345u32)
        .map(|i| (i.wrapping_mul(7) ^ (i >> 11)) as u8)
        .collect();
    let mut client = Client::connect(addr).unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
        upload.len()
    );
    client.stream().write_all(head.as_bytes()).unwrap();
    let (mut rest, mut piece) = (&upload[..], 1);
    while rest.len() > 1000 {
        let (sent, left) = rest.split_at(piece.min(rest.len() - 1000));
        client.stream().write_all(sent).unwrap();
        rest = left;
        piece = piece * 3 % 200_003 + 1;
    }
    let mut last = rest.to_vec();
    last.extend_from_slice(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    client.stream().write_all(&last).unwrap();
    assert_eq!(
        client.read().unwrap().text(),
        format!("{} {:016x}", upload.len(), fnv1a(&upload))
    );
    assert_eq!(client.read().unwrap().text(), "hello");
    handle.stop("test");
    assert!(run.join().unwrap().is_success());
}

// A handler that fails over HTTP/2 gets its stream reset, and the request
// no longer counts as in flight: the connection, still open, drains once
// idle, rather than holding the drain to its deadline (an error then).
pub fn a_failed_http2_request_does_not_hold_the_drain<N: Net>() {
    use crate::h2raw::{H2, RST_STREAM};

    let fails = hyper::service::service_fn(|_request| async {
        Err::<hyper::Response<http_body_util::Empty<bytes::Bytes>>, _>(io::Error::other("failed"))
    });
    let config = Config {
        drain_timeout: Some(Duration::from_secs(10)),
        ..Config::default()
    };
    let (group, addr) = serving_service::<N, _>(fails, config);
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let mut client = H2::connect(addr).unwrap();
    client.get(1).unwrap();
    client.read_until(RST_STREAM, 1).unwrap();
    handle.stop("test");
    let report = run.join().unwrap();
    assert!(report.is_success(), "{report}");
}

// No request lost: keep-alive clients sending back to back while the server
// stops. Every request a client wrote gets a full response; a client only
// ever finds the connection closed before writing, never after.
pub fn no_request_lost_when_stopping_under_load<N: Net>() {
    const CLIENTS: usize = 16;
    let app = App::new();
    let (group, addr) = serving::<N>(&app, Config::default());
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let answered = Arc::new(AtomicUsize::new(0));
    let lost = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let answered = answered.clone();
            let lost = lost.clone();
            thread::spawn(move || {
                'connections: loop {
                    let Ok(mut client) = Client::connect(addr) else {
                        // Refused: the server is gone. Done.
                        return;
                    };
                    loop {
                        if client.send("/").is_err() {
                            // Closed before the request was written: not sent.
                            continue 'connections;
                        }
                        match client.read() {
                            Ok(response) => {
                                assert_eq!(response.text(), "hello");
                                answered.fetch_add(1, Ordering::SeqCst);
                                if response.closes() {
                                    continue 'connections;
                                }
                            }
                            Err(_) => {
                                lost.fetch_add(1, Ordering::SeqCst);
                                continue 'connections;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    // Stop mid-stream, once every client is well under way.
    app.handled.wait_for(CLIENTS * 50);
    handle.stop("test");
    for client in clients {
        client.join().unwrap();
    }
    let report = run.join().unwrap();
    assert!(report.is_success(), "{report}");
    assert_eq!(lost.load(Ordering::SeqCst), 0, "requests lost in the drain");
    assert_eq!(answered.load(Ordering::SeqCst), app.handled.get());
}

// one group, run on tokio, with one server on tokio and one on smol;
// both serve, both drain, the group stops cleanly.
#[cfg(all(feature = "tokio", feature = "smol"))]
pub fn a_group_spanning_tokio_and_smol_stops_cleanly() {
    use crate::net::{Smol, Tokio};

    let app = App::new();
    let (on_tokio, tokio_addr) = bound();
    let (on_smol, smol_addr) = bound();
    let mut group = Tokio::group();
    group.add(
        "on tokio",
        Tokio::serve(on_tokio, app.clone().service(), Config::default()),
    );
    group.add_on(
        "on smol",
        allstop::smol::Smol::new(),
        Smol::serve(on_smol, app.clone().service(), Config::default()),
    );
    let handle = group.stop_handle();
    let run = start::<Tokio>(group);
    assert_eq!(
        Client::connect(tokio_addr)
            .unwrap()
            .get("/")
            .unwrap()
            .text(),
        "hello"
    );
    assert_eq!(
        Client::connect(smol_addr).unwrap().get("/").unwrap().text(),
        "hello"
    );
    let client = thread::spawn(move || Client::connect(smol_addr)?.get("/slow"));
    app.entered.wait_for(1);
    handle.stop("test");
    wait_refused(tokio_addr);
    wait_refused(smol_addr);
    app.gate.open();
    assert_eq!(client.join().unwrap().unwrap().text(), "slow done");
    let report = run.join().unwrap();
    assert!(report.is_success(), "{report}");
    assert_eq!(report.members().len(), 2);
}
