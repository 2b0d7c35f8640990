//! What Rust services serve, through allstop's server, with the clients
//! users run: WebSockets (tungstenite), event streams, an axum `Router`,
//! tonic `Routes` (tonic's own client). Written once, generic over the
//! runtime.

use std::net::SocketAddr;
use std::time::Duration;

use allstop::{Outcome, Stop};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::cases::{bound, serving, serving_service, start, wait_refused};
use crate::client::Client;
use crate::common::Counter;
use crate::net::{App, Config, Net};

/// The clients' own runtime, apart from the server's.
fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn websocket(addr: SocketAddr, path: &str) -> Socket {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (socket, response) = tokio_tungstenite::client_async(format!("ws://{addr}{path}"), stream)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    socket
}

async fn echoes(socket: &mut Socket, text: &str) {
    socket.send(Message::text(text)).await.unwrap();
    let answer = socket.next().await.unwrap().unwrap();
    assert_eq!(answer, Message::text(text));
}

// A WebSocket handler sees the stop and closes with 1001 Going Away; the
// client's close completes, and the server ends cleanly.
pub fn a_websocket_closes_with_going_away_at_the_stop<N: Net>() {
    let app = App::on::<N>();
    let (mut group, addr) = serving::<N>(&app, Config::default());
    group.grace(Duration::from_secs(30));
    let handle = group.stop_handle();
    let run = start::<N>(group);
    client_runtime().block_on(async {
        let mut socket = websocket(addr, "/ws").await;
        echoes(&mut socket, "hi").await;
        handle.stop("test");
        match socket.next().await {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away),
            other => panic!("expected a close frame, got {other:?}"),
        }
        // Reading on answers the close; the server then ends the stream.
        while let Some(Ok(_)) = socket.next().await {}
    });
    let report = run.join().unwrap();
    assert!(report.is_success(), "{report}");
    app.sockets_ended.wait_for(1);
}

// The drain counts an upgraded connection: a WebSocket that ignores the
// stop keeps working after the listener has closed, and the server ends
// only once it is closed.
pub fn the_drain_waits_for_an_upgraded_connection<N: Net>() {
    let app = App::on::<N>();
    let (group, addr) = serving::<N>(&app, Config::default());
    let handle = group.stop_handle();
    let run = start::<N>(group);
    client_runtime().block_on(async {
        let mut socket = websocket(addr, "/ws-deaf").await;
        echoes(&mut socket, "before").await;
        handle.stop("test");
        wait_refused(addr);
        echoes(&mut socket, "during the drain").await;
        assert!(!run.is_finished(), "the server ended with a WebSocket open");
        socket.close(None).await.unwrap();
        while let Some(Ok(_)) = socket.next().await {}
    });
    let report = run.join().unwrap();
    assert!(report.is_success(), "{report}");
}

// An upgraded connection's handler that ends its writing half while its
// own read waits (a tunnel's copy in both directions, in one task): the
// client reads the end of the stream at once, and the handler still hears
// what the client sends after it.
pub fn a_half_closed_tunnel_hears_its_client_out<N: Net>() {
    use std::io::{Read, Write};

    let app = App::on::<N>();
    let (group, addr) = serving::<N>(&app, Config::default());
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client
        .write_all(
            b"GET /tunnel HTTP/1.1\r\nhost: test\r\nconnection: upgrade\r\nupgrade: tunnel\r\n\r\n",
        )
        .unwrap();
    // A bound on each read, not a guess at how long one takes.
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut received = Vec::new();
    client.read_to_end(&mut received).unwrap();
    let received = String::from_utf8(received).unwrap();
    assert!(received.starts_with("HTTP/1.1 101"), "{received}");
    assert!(received.ends_with("\r\n\r\nhello"), "{received}");
    client.write_all(b"bye").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    app.tunnels_heard.wait_for(1);
    handle.stop("test");
    let report = run.join().unwrap();
    assert!(report.is_success(), "{report}");
}

// The drain deadline cuts an upgraded connection that outlives it, and
// counts it.
pub fn the_drain_deadline_cuts_an_upgraded_connection<N: Net>() {
    let app = App::on::<N>();
    let config = Config {
        drain_timeout: Some(Duration::from_millis(200)),
        ..Config::default()
    };
    let (group, addr) = serving::<N>(&app, config);
    let handle = group.stop_handle();
    let run = start::<N>(group);
    client_runtime().block_on(async {
        let mut socket = websocket(addr, "/ws-deaf").await;
        echoes(&mut socket, "before").await;
        handle.stop("test");
        // Nothing more comes: the connection is cut.
        match socket.next().await {
            None | Some(Err(_)) => {}
            Some(Ok(message)) => panic!("the cut socket said {message:?}"),
        }
    });
    let report = run.join().unwrap();
    let Outcome::Err(error) = report.member("app").unwrap().outcome() else {
        panic!("{report}");
    };
    assert_eq!(
        error.to_string(),
        format!("serving {addr}: drain deadline passed with 1 connection(s) open")
    );
    app.sockets_ended.wait_for(1);
}

// A stream of events ends cleanly at the stop (the last chunk, not a cut),
// so the server ends before the group's grace deadline.
pub fn an_event_stream_ends_cleanly_at_the_stop<N: Net>() {
    let app = App::new();
    let (mut group, addr) = serving::<N>(&app, Config::default());
    group.grace(Duration::from_secs(30));
    let handle = group.stop_handle();
    let run = start::<N>(group);
    let mut client = Client::connect(addr).unwrap();
    client.send("/events").unwrap();
    let (status, headers) = client.read_head().unwrap();
    assert_eq!(status, 200);
    assert!(headers
        .iter()
        .any(|(name, value)| name.eq_ignore_ascii_case("transfer-encoding") && value == "chunked"));
    assert_eq!(client.read_chunk().unwrap().unwrap(), b"data: hello\n\n");
    handle.stop("test");
    assert_eq!(
        client.read_chunk().unwrap(),
        None,
        "the stream did not end cleanly"
    );
    let report = run.join().unwrap();
    assert!(report.is_success(), "{report}");
}

// An axum `Router`, built from the server's stop, which its state keeps,
// served as it is.
pub fn an_axum_router_is_served_as_it_is<N: Net>() {
    use axum::extract::State;
    use axum::routing::get;

    let entered = Counter::new();
    let waiting = entered.clone();
    let router =
        axum::Router::new()
            .route(
                "/",
                get(|State((name, _)): State<(&'static str, Stop)>| async move {
                    format!("hello, {name}")
                }),
            )
            .route(
                "/long-poll",
                get(
                    move |State((_, stop)): State<(&'static str, Stop)>| async move {
                        waiting.add();
                        stop.await;
                        "stopped"
                    },
                ),
            );
    let app = move |stop: Stop| router.with_state(("axum", stop));
    let (group, addr) = serving_service::<N, _>(app, Config::default());
    let handle = group.stop_handle();
    let run = start::<N>(group);
    assert_eq!(
        Client::connect(addr).unwrap().get("/").unwrap().text(),
        "hello, axum"
    );
    let long_poll = std::thread::spawn(move || Client::connect(addr)?.get("/long-poll"));
    entered.wait_for(1);
    handle.stop("test");
    assert_eq!(long_poll.join().unwrap().unwrap().text(), "stopped");
    assert!(run.join().unwrap().is_success());
}

// A tower service that is `Send` but not `Sync` is served, as hyper and
// `axum::serve` serve it: tower's `BoxCloneService`, the usual name of a
// stack of layers, is one. Its handler finds the stop in its request
// (axum's `Extension`), where the server was told to put it.
pub fn a_service_that_is_not_sync_is_served<N: Net>() {
    use axum::extract::Extension;
    use axum::routing::get;
    use tower::util::BoxCloneService;

    let router = axum::Router::new().route(
        "/",
        get(|Extension(stop): Extension<Stop>| async move {
            if stop.is_stopped() {
                "stopped"
            } else {
                "boxed, running"
            }
        }),
    );
    let service: BoxCloneService<_, _, std::convert::Infallible> = BoxCloneService::new(router);
    let config = Config {
        stop_in_requests: Some(true),
        ..Config::default()
    };
    let (group, addr) = serving_service::<N, _>(service, config);
    let handle = group.stop_handle();
    let run = start::<N>(group);
    assert_eq!(
        Client::connect(addr).unwrap().get("/").unwrap().text(),
        "boxed, running"
    );
    handle.stop("test");
    assert!(run.join().unwrap().is_success());
}

// tonic `Routes` (the gRPC health service), served as they are, answer
// tonic's own client over HTTP/2.
pub fn tonic_routes_are_served_as_they_are<N: Net>() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let (reporter, health) = tonic_health::server::health_reporter();
    let routes = tonic::service::Routes::new(health);
    let (listener, addr) = bound();
    let mut group = N::group();
    group.add("grpc", N::serve(listener, routes, Config::default()));
    let handle = group.stop_handle();
    let run = start::<N>(group);
    client_runtime().block_on(async {
        reporter
            .set_service_status("allstop", tonic_health::ServingStatus::Serving)
            .await;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = HealthClient::new(channel);
        let request = HealthCheckRequest {
            service: "allstop".into(),
        };
        let response = client.check(request).await.unwrap().into_inner();
        assert_eq!(response.status(), ServingStatus::Serving);
        let unknown = HealthCheckRequest {
            service: "nope".into(),
        };
        let status = client.check(unknown).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
    });
    handle.stop("test");
    assert!(run.join().unwrap().is_success());
}
