//! What real traffic does to the server: a listen backlog filled while the
//! runtime is busy, clients that connect per request, bursts, silent and
//! preface-only clients, HTTP/2 clients that never answer a PING, and a
//! listener that breaks. Written once, generic over the runtime.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use allstop::Outcome;

use crate::cases::{bound, failure, serving, serving_service, start, wait_refused};
use crate::client::Client;
use crate::h2raw::{self, H2};
use crate::net::{App, Busy, Config, Net, BIG};

/// A drain that gives a connection with no request yet seconds to send
/// one: a client thread the machine pauses between its connect and its
/// request must not be mistaken for a lost request.
fn patient() -> Config {
    Config {
        idle_grace: Some(Duration::from_secs(5)),
        ..Config::default()
    }
}

// Connections the kernel accepted while the runtime was too busy to take
// them are served after the stop, not reset with the listener.
pub fn the_backlog_is_served_after_a_busy_runtime_stops<N: Net>() {
    const CLIENTS: usize = 20;
    let app = App::new();
    let (mut group, addr) = serving::<N>(&app, patient());
    let busy = Busy::add_to::<N>(&mut group);
    let handle = group.stop_handle();
    let run = start::<N>(group);
    assert_eq!(Client::connect(addr).unwrap().get("/").unwrap().status, 200);

    busy.begin();
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|_| {
            let mut client = Client::connect(addr).unwrap();
            client.send("/").unwrap();
            client
        })
        .collect();
    handle.stop("test");
    busy.end();

    let answered = clients
        .iter_mut()
        .map(|client| client.read())
        .filter(|response| response.as_ref().is_ok_and(|r| r.text() == "hello"))
        .count();
    assert_eq!(answered, CLIENTS, "connections in the backlog were reset");
    let report = run.join().unwrap();
    assert!(report.is_success(), "{report}");
}

// A flood of new connections does not starve the connections already
// open: the server accepts a turn's worth, then lets the runtime run its
// other tasks. The flood queues in the listen backlog while the runtime is
// busy, then a request comes on an open connection; its handler answers how
// many of the flood the kernel still held when it ran. (tokio's listener
// keeps to its task's budget anyway; async-io's has none.)
#[cfg(target_os = "linux")]
pub fn a_flood_of_connections_does_not_starve_an_open_one<N: Net>() {
    use std::convert::Infallible;
    use std::time::Instant;

    use bytes::Bytes;
    use http_body_util::Full;

    // Many turns' worth: the open connection's request reaches the runtime
    // while the first turns are taken. Each client closes its end at once
    // (the connection stays queued), so the flood needs no file descriptor
    // of the test's until the server takes it.
    const FLOOD: usize = 1000;
    let (listener, addr) = bound_with_backlog(1024);
    let backlog = Arc::new(ListenQueue::of(addr.port()));
    let read = backlog.clone();
    let queued = hyper::service::service_fn(move |_request| {
        let queued = Bytes::from(read.len().to_string());
        async move { Ok::<_, Infallible>(hyper::Response::new(Full::new(queued))) }
    });
    let mut group = N::group();
    group.add("app", N::serve(listener, queued, Config::default()));
    let busy = Busy::add_to::<N>(&mut group);
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let mut open = Client::connect(addr).unwrap();
    assert_eq!(open.get("/").unwrap().text(), "0");

    busy.begin();
    for index in 0..FLOOD {
        let connected = TcpStream::connect_timeout(&addr, Duration::from_secs(5));
        connected.unwrap_or_else(|error| panic!("connection {index} of {FLOOD}: {error}"));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while backlog.len() < FLOOD {
        assert!(
            Instant::now() < deadline,
            "the kernel did not queue the flood"
        );
        thread::yield_now();
    }
    open.send("/").unwrap();
    busy.end();
    let queued: usize = open.read().unwrap().text().parse().unwrap();
    assert!(
        queued > 0,
        "the open connection was served only once all {FLOOD} new ones were accepted"
    );

    handle.stop("test");
    let report = run.join().unwrap();
    assert!(report.is_success(), "{report}");
}

/// A loopback listener whose listen backlog holds `backlog` connections
/// (`std`'s holds 128).
#[cfg(target_os = "linux")]
fn bound_with_backlog(backlog: i32) -> (std::net::TcpListener, std::net::SocketAddr) {
    use socket2::{Domain, Socket, Type};

    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any_port: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any_port.into()).unwrap();
    socket.listen(backlog).unwrap();
    let listener = std::net::TcpListener::from(socket);
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// How many completed connections wait in the listen backlog of a
/// loopback listener: the `rx_queue` of its LISTEN line in `/proc/net/tcp`.
/// The file is opened once, so that reading it needs no file descriptor
/// when a flood has taken them all.
#[cfg(target_os = "linux")]
struct ListenQueue {
    table: std::sync::Mutex<std::fs::File>,
    local: String,
}

#[cfg(target_os = "linux")]
impl ListenQueue {
    fn of(port: u16) -> Self {
        ListenQueue {
            table: std::sync::Mutex::new(std::fs::File::open("/proc/net/tcp").unwrap()),
            local: format!("0100007F:{port:04X}"),
        }
    }

    fn len(&self) -> usize {
        use std::io::{Read, Seek};

        let mut table = String::new();
        let mut file = self.table.lock().unwrap();
        file.rewind().unwrap();
        file.read_to_string(&mut table).unwrap();
        table
            .lines()
            .skip(1)
            .find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let listening = fields[1] == self.local && fields[3] == "0A";
                let queue = fields[4].split(':').nth(1)?;
                listening.then(|| usize::from_str_radix(queue, 16).unwrap())
            })
            .expect("the listener is in /proc/net/tcp")
    }
}

// Clients that open a connection per request, across many stops: every
// connection the kernel completed before the stop was asked for gets its
// answer. (One completed after may be refused or reset: that client had
// sent nothing the server could have taken.)
pub fn no_request_lost_when_clients_connect_per_request<N: Net>() {
    const CLIENTS: usize = 8;
    const STOPS: usize = 20;
    let mut answered = 0;
    for _ in 0..STOPS {
        let app = App::new();
        let (group, addr) = serving::<N>(&app, patient());
        let handle = group.stop_handle();
        let run = start::<N>(group);
        let stopping = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let stopping = stopping.clone();
                let lost = lost.clone();
                thread::spawn(move || loop {
                    let Ok(mut client) = Client::connect(addr) else {
                        return; // refused: the server is gone
                    };
                    // Completed before the test asked for the stop?
                    let before_stop = !stopping.load(Ordering::SeqCst);
                    let answer = client.send("/").and_then(|()| client.read());
                    if answer.is_err() && before_stop {
                        lost.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        app.handled.wait_for(CLIENTS * 10);
        stopping.store(true, Ordering::SeqCst);
        handle.stop("test");
        for client in clients {
            client.join().unwrap();
        }
        let report = run.join().unwrap();
        assert!(report.is_success(), "{report}");
        assert_eq!(lost.load(Ordering::SeqCst), 0, "requests lost in the drain");
        answered += app.handled.get();
    }
    assert!(answered >= STOPS * CLIENTS * 10);
}

// A burst of a thousand connections while the runtime is busy: the listen
// backlog holds them all, so none waits for a SYN retry (a connect that
// the kernel turned away would block here until the server took it).
pub fn a_burst_of_a_thousand_connections_fits_the_backlog<N: Net>() {
    const CLIENTS: usize = 1000;
    let app = App::new();
    let (listener, addr) = bound();
    let mut group = N::group();
    // The adapter's own bind, with its default backlog.
    drop(listener);
    group.add("app", N::serve_on(addr, app.clone()));
    let busy = Busy::add_to::<N>(&mut group);
    let handle = group.stop_handle();
    let run = start::<N>(group);
    crate::cases::wait_answering(addr);

    busy.begin();
    let mut clients = Vec::with_capacity(CLIENTS);
    for index in 0..CLIENTS {
        let connected = TcpStream::connect_timeout(&addr, Duration::from_secs(5));
        let stream = connected.unwrap_or_else(|error| {
            panic!("connection {index} of {CLIENTS} was not taken into the backlog: {error}")
        });
        clients.push(stream);
    }
    busy.end();
    // Every one of them is served.
    for stream in clients {
        let mut client = Client::from(stream);
        assert_eq!(client.get("/").unwrap().text(), "hello");
    }
    handle.stop("test");
    assert!(run.join().unwrap().is_success());
}

// A client that connects and sends nothing, or only part of a request
// head, or only part or all of the HTTP/2 preface, is cut at the
// header-read timeout; the server serves others meanwhile.
pub fn silent_and_preface_only_connections_are_cut<N: Net>() {
    let app = App::new();
    let config = Config {
        header_read_timeout: Some(Duration::from_millis(300)),
        ..Config::default()
    };
    let (group, addr) = serving::<N>(&app, config);
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let sends: [&[u8]; 5] = [
        b"",
        b"G",
        b"PRI * HTTP/2.0\r\n",
        h2raw::PREFACE,
        // The preface and empty settings: an HTTP/2 connection, no request.
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0",
    ];
    let mut silent: Vec<TcpStream> = sends
        .iter()
        .map(|bytes| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.write_all(bytes).unwrap();
            stream
        })
        .collect();
    assert_eq!(
        Client::connect(addr).unwrap().get("/").unwrap().text(),
        "hello"
    );
    for (stream, sent) in silent.iter_mut().zip(sends) {
        assert!(
            h2raw::closed_by_server(stream),
            "a client that sent {:?} was never cut",
            String::from_utf8_lossy(sent)
        );
    }
    assert_eq!(
        Client::connect(addr).unwrap().get("/").unwrap().text(),
        "hello"
    );
    handle.stop("test");
    assert!(run.join().unwrap().is_success());
}

// On HTTP/1 the header-read timeout runs again from the end of each
// response: a request in flight longer than the timeout is answered, but a
// keep-alive client that then sends its next head too slowly, or nothing at
// all, is cut; the server serves others meanwhile.
pub fn the_header_read_timeout_runs_from_each_http1_response<N: Net>() {
    const TIMEOUT: Duration = Duration::from_millis(300);
    let app = App::new();
    let config = Config {
        header_read_timeout: Some(TIMEOUT),
        ..Config::default()
    };
    let (group, addr) = serving::<N>(&app, config);
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let mut slow_head = Client::connect(addr).unwrap();
    let mut silent = Client::connect(addr).unwrap();
    assert_eq!(silent.get("/").unwrap().text(), "hello");
    slow_head.send("/slow").unwrap();
    app.entered.wait_for(1);
    // In flight for twice the timeout: the deadline is for heads only.
    thread::sleep(TIMEOUT * 2);
    app.gate.open();
    assert_eq!(slow_head.read().unwrap().text(), "slow done");
    // The next head, begun and never finished; and no head at all.
    slow_head
        .stream()
        .write_all(b"GET / HTTP/1.1\r\nHost: te")
        .unwrap();
    assert!(
        slow_head.closed_by_server(),
        "a slow second head was never cut"
    );
    assert!(
        silent.closed_by_server(),
        "an idle keep-alive connection was never cut"
    );
    assert_eq!(
        Client::connect(addr).unwrap().get("/").unwrap().text(),
        "hello"
    );
    handle.stop("test");
    assert!(run.join().unwrap().is_success());
}

// An HTTP/2 connection that has made a request has no request heads to
// wait for: idle for longer than the header-read timeout, it stays open and
// serves its next stream.
pub fn an_idle_http2_connection_outlives_the_header_read_timeout<N: Net>() {
    const TIMEOUT: Duration = Duration::from_millis(300);
    let app = App::new();
    let config = Config {
        header_read_timeout: Some(TIMEOUT),
        ..Config::default()
    };
    let (group, addr) = serving::<N>(&app, config);
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let mut client = H2::connect(addr).unwrap();
    client.get(1).unwrap();
    client.read_response(1).unwrap();
    // Idle for three times the timeout.
    thread::sleep(TIMEOUT * 3);
    client.get(3).unwrap();
    let response = client.read_response(3).unwrap();
    assert!(response
        .iter()
        .any(|f| f.kind == h2raw::DATA && f.payload == b"hello"));
    handle.stop("test");
    assert!(run.join().unwrap().is_success());
}

// A response still being written when the drain begins is written whole:
// hyper drops a one-frame body as soon as it is queued, long before a slow
// client has read it, and the writes that follow keep the connection busy.
pub fn a_slow_download_finishes_through_the_drain<N: Net>() {
    let app = App::new();
    let (group, addr) = serving::<N>(&app, Config::default());
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let mut client = Client::connect(addr).unwrap();
    client.send("/big").unwrap();
    assert_eq!(client.read_head().unwrap().0, 200);
    handle.stop("test");
    // Well over twice the idle grace (250 ms) at this pace.
    assert_eq!(client.read_slowly(BIG), BIG, "the download was cut");
    assert!(run.join().unwrap().is_success());
}

// The header-read timeout is for request heads: a response its client
// reads for longer than the timeout is written whole.
pub fn a_slow_download_outlasts_the_header_read_timeout<N: Net>() {
    let app = App::new();
    let config = Config {
        header_read_timeout: Some(Duration::from_millis(300)),
        ..Config::default()
    };
    let (group, addr) = serving::<N>(&app, config);
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let mut client = Client::connect(addr).unwrap();
    client.send("/big").unwrap();
    assert_eq!(client.read_head().unwrap().0, 200);
    assert_eq!(client.read_slowly(BIG), BIG, "the download was cut");
    handle.stop("test");
    assert!(run.join().unwrap().is_success());
}

// An HTTP/2 client that made a request, then sits idle and never answers
// the PING that comes with the GOAWAY, does not hold the drain: the
// connection closes within the idle grace, and the server ends well before
// the group's grace deadline would cancel it.
pub fn idle_http2_connection_closes_without_a_ping_answer<N: Net>() {
    let app = App::new();
    let (mut group, addr) = serving::<N>(&app, Config::default());
    group.grace(Duration::from_secs(30));
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let mut client = H2::connect(addr).unwrap();
    client.get(1).unwrap();
    let response = client.read_response(1).unwrap();
    assert!(response
        .iter()
        .any(|f| f.kind == h2raw::DATA && f.payload == b"hello"));

    handle.stop("test");
    let frames = client.read_to_close().unwrap();
    assert!(frames.iter().any(|f| f.kind == h2raw::GOAWAY), "{frames:?}");
    assert!(frames.iter().any(|f| f.kind == h2raw::PING), "{frames:?}");
    let report = run.join().unwrap();
    assert!(report.is_success(), "{report}");
    assert!(report.member("app").unwrap().outcome().is_ok());
}

// A listener that fails for good ends the server: its handlers see the
// server's own stop (the group's has not come), whether their app was
// built from it or found it in the request; the drain ends, and the
// failure stops the group, naming the listener.
pub fn a_failing_listener_ends_its_handlers_and_the_group<N: Net>() {
    for in_request in [false, true] {
        let app = App::new();
        let config = Config {
            fail_accept_after: Some(1),
            stop_in_requests: Some(in_request),
            ..Config::default()
        };
        let (mut group, addr) = if in_request {
            serving_service::<N, _>(app.clone(), config)
        } else {
            serving::<N>(&app, config)
        };
        group.add("worker", |stop: allstop::Stop| async move {
            stop.await;
            Ok::<(), std::io::Error>(())
        });
        let run = start::<N>(group);
        // The one connection the listener takes: a long poll.
        let response = Client::connect(addr).unwrap().get("/until-stop").unwrap();
        assert_eq!(response.text(), "stopped early", "in request: {in_request}");
        let report = run.join().unwrap();
        let (member, message) = failure(&report);
        assert_eq!(member, "app");
        assert_eq!(message, format!("accept on {addr}: the listener broke"));
        assert!(matches!(
            report.member("worker").unwrap().outcome(),
            Outcome::Ok
        ));
        wait_refused(addr);
    }
}

// An HTTP/2 connection that had made no request when the drain began is
// found out by its first request then, and gets its GOAWAY at once (with a
// long idle grace, it would otherwise wait for that grace).
pub fn an_http2_connection_found_out_during_the_drain_gets_goaway<N: Net>() {
    let app = App::new();
    let config = Config {
        idle_grace: Some(Duration::from_secs(60)),
        ..Config::default()
    };
    let (group, addr) = serving::<N>(&app, config);
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let mut client = H2::connect(addr).unwrap();
    // The server's settings: the connection is accepted and speaks HTTP/2.
    while client.read().unwrap().unwrap().kind != h2raw::SETTINGS {}
    handle.stop("test");
    wait_refused(addr);
    client.get(1).unwrap();
    let mut frames = client.read_response(1).unwrap();
    while !frames.iter().any(|f| f.kind == h2raw::GOAWAY) {
        frames.push(client.read().unwrap().expect("closed without a GOAWAY"));
    }
    assert!(frames
        .iter()
        .any(|f| f.kind == h2raw::DATA && f.payload == b"hello"));
    drop(client);
    assert!(run.join().unwrap().is_success());
}
