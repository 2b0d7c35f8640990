//! The HTTP server tests, one source run on tokio and on smol.
#![cfg(any(feature = "tokio", feature = "smol"))]

mod cases;
mod client;
#[path = "../common/mod.rs"]
mod common;
#[cfg(feature = "pprof")]
mod debug_cases;
mod h2raw;
mod net;
mod services;
mod traffic;

macro_rules! http_tests {
    ($net:ty) => {
        instantiate!(cases, $net;
            slow_request_completes_while_new_connections_are_refused,
            idle_and_unused_connections_do_not_delay_the_stop,
            half_sent_request_does_not_delay_the_stop,
            http2_gets_goaway_and_its_stream_completes,
            port_is_free_again_after_the_server_returns,
            port_in_use_fails_naming_the_address,
            handler_sees_the_stop_and_ends_early,
            drain_deadline_drops_the_rest,
            malformed_request_gets_400,
            a_panicking_handler_ends_its_connection_only,
            a_panicking_http2_handler_loses_its_stream_only,
            an_upload_arrives_whole_and_in_order,
            a_failed_http2_request_does_not_hold_the_drain,
            header_read_timeout_cuts_slow_senders,
            handlers_see_the_stop_they_were_built_from_or_find_it_when_asked,
            the_app_is_built_once_and_a_panic_building_it_is_the_servers,
            no_request_lost_when_stopping_under_load,
        );
        instantiate!(traffic, $net;
            the_backlog_is_served_after_a_busy_runtime_stops,
            no_request_lost_when_clients_connect_per_request,
            a_burst_of_a_thousand_connections_fits_the_backlog,
            silent_and_preface_only_connections_are_cut,
            idle_http2_connection_closes_without_a_ping_answer,
            a_failing_listener_ends_its_handlers_and_the_group,
            an_http2_connection_found_out_during_the_drain_gets_goaway,
            the_header_read_timeout_runs_from_each_http1_response,
            an_idle_http2_connection_outlives_the_header_read_timeout,
            a_slow_download_finishes_through_the_drain,
            a_slow_download_outlasts_the_header_read_timeout,
        );
        #[cfg(target_os = "linux")]
        instantiate!(traffic, $net;
            a_flood_of_connections_does_not_starve_an_open_one,
        );
        instantiate!(services, $net;
            a_websocket_closes_with_going_away_at_the_stop,
            a_half_closed_tunnel_hears_its_client_out,
            the_drain_waits_for_an_upgraded_connection,
            the_drain_deadline_cuts_an_upgraded_connection,
            an_event_stream_ends_cleanly_at_the_stop,
            an_axum_router_is_served_as_it_is,
            a_service_that_is_not_sync_is_served,
            tonic_routes_are_served_as_they_are,
        );
    };
}

/// One `#[test]` per case of `crate::$module`, on `$net`.
macro_rules! instantiate {
    ($module:ident, $net:ty; $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                crate::common::bounded(|| crate::$module::$test::<$net>());
            }
        )*
    };
}

macro_rules! debug_tests {
    ($net:ty) => {
        instantiate!(debug_cases, $net;
            profile_is_a_gzipped_pprof_protobuf,
            flamegraph_is_svg,
            bad_requests_get_clear_errors,
            every_get_route_answers_head,
            head_over_http2_sends_no_body,
            heap_profile_without_jemalloc_says_how_to_get_one,
            second_profile_conflicts_and_the_stop_ends_the_first,
            readyz_fails_from_the_stop_request,
            group_status_follows_the_members,
        );
    };
}

#[cfg(all(feature = "tokio", feature = "pprof"))]
mod debug_on_tokio {
    debug_tests!(crate::net::Tokio);
}

#[cfg(all(feature = "smol", feature = "pprof"))]
mod debug_on_smol {
    debug_tests!(crate::net::Smol);
}

#[cfg(feature = "tokio")]
mod on_tokio {
    http_tests!(crate::net::Tokio);
}

#[cfg(feature = "smol")]
mod on_smol {
    http_tests!(crate::net::Smol);
}

/// A handler tested on its own, as `Router::oneshot` does it: the app the
/// server builds from its stop is built from `Stop::never()`.
#[test]
fn a_handler_runs_without_a_server_given_stop_never() {
    use axum::extract::State;
    use tower::ServiceExt;

    fn app(stop: allstop::Stop) -> axum::Router {
        axum::Router::new()
            .route(
                "/",
                axum::routing::get(|State(stop): State<allstop::Stop>| async move {
                    if stop.is_stopped() {
                        "stopped"
                    } else {
                        "running"
                    }
                }),
            )
            .with_state(stop)
    }

    let router = app(allstop::Stop::never());
    let request = hyper::Request::get("/")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = futures::executor::block_on(router.oneshot(request)).unwrap();
    assert_eq!(response.status(), 200);
    let body = futures::executor::block_on(http_body_util::BodyExt::collect(response.into_body()))
        .unwrap()
        .to_bytes();
    assert_eq!(body, "running");
}

#[cfg(all(feature = "tokio", feature = "smol"))]
#[test]
fn a_group_spanning_tokio_and_smol_stops_cleanly() {
    crate::common::bounded(crate::cases::a_group_spanning_tokio_and_smol_stops_cleanly);
}

/// The one-line debug server listens on loopback, on 127.0.0.1:8001
/// (a test about that fixed port: tokio, then smol, one after the other).
#[cfg(all(feature = "tokio", feature = "smol", feature = "pprof"))]
#[test]
fn the_debug_server_listens_on_loopback_by_default() {
    use std::net::SocketAddr;

    crate::common::bounded(|| {
        let expected: SocketAddr = "127.0.0.1:8001".parse().unwrap();
        assert_eq!(allstop::debug::DEFAULT_ADDR, expected);
        assert!(allstop::debug::DEFAULT_ADDR.ip().is_loopback());
        // The listening socket on port 8001, from the kernel's table: its
        // local address must be 127.0.0.1 (0100007F), not 0.0.0.0.
        let listening_on_loopback_only = || {
            let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
            let listeners: Vec<String> = table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    (fields[1].ends_with(":1F41") && fields[3] == "0A")
                        .then(|| fields[1].to_owned())
                })
                .collect();
            listeners == ["0100007F:1F41"]
        };
        let answer = |addr: SocketAddr| {
            let started = std::time::Instant::now();
            loop {
                if let Ok(response) =
                    client::Client::connect(addr).and_then(|mut c| c.get("/healthz"))
                {
                    return response.status;
                }
                assert!(started.elapsed() < crate::common::HANG, "nothing on {addr}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        };
        {
            let mut group = allstop::Group::on(allstop::tokio::Tokio::new());
            allstop::debug::add_debug_server(&mut group, allstop::tokio::Tokio::new());
            let handle = group.stop_handle();
            let run = cases::start::<net::Tokio>(group);
            assert_eq!(answer(expected), 200);
            assert!(listening_on_loopback_only());
            handle.stop("test");
            assert!(run.join().unwrap().is_success());
        }
        {
            let mut group = allstop::Group::on(allstop::smol::Smol::new());
            allstop::debug::add_debug_server(&mut group, allstop::smol::Smol::new());
            let handle = group.stop_handle();
            let run = cases::start::<net::Smol>(group);
            assert_eq!(answer(expected), 200);
            assert!(listening_on_loopback_only());
            handle.stop("test");
            assert!(run.join().unwrap().is_success());
        }
    });
}

/// With tokio's clock paused, as a user's own tests may run the server, the
/// request-head deadline keeps to tokio's clock: a client that sends
/// nothing is cut once the paused clock has moved past the timeout (tokio
/// moves it on when the runtime is idle), and the deadline does not ring
/// for ever against the wall clock.
#[cfg(feature = "tokio")]
#[test]
fn the_head_deadline_keeps_to_a_paused_tokio_clock() {
    use tokio::io::AsyncReadExt;

    common::bounded(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let any = "127.0.0.1:0".parse().unwrap();
            let listener = allstop::tokio::http::TcpListener::bind(any).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = allstop::http::Server::on(allstop::tokio::Tokio::new())
                // An hour: on the wall clock the test would time out first.
                .header_read_timeout(std::time::Duration::from_secs(3600));
            let app = net::App::new().service();
            tokio::spawn(async move {
                let _ = server.serve(listener, app, allstop::Stop::never()).await;
            });
            let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut byte = [0u8; 1];
            // The end, or a reset: cut either way.
            assert!(!matches!(silent.read(&mut byte).await, Ok(1..)));
        });
    });
}

/// A server on `Tokio::with_handle(handle)` runs its connections on that
/// runtime, as its members would be, and as a server on
/// `Smol::with_executor` runs them on that executor: here the handler
/// answers from a worker of the given runtime, not of the one serving.
#[cfg(feature = "tokio")]
#[test]
fn a_server_on_a_given_tokio_runtime_runs_its_connections_there() {
    common::bounded(|| {
        let given = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("the-given-runtime")
            .enable_all()
            .build()
            .unwrap();
        let serving = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let thread_name = hyper::service::service_fn(|_request| async {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                bytes::Bytes::from(name),
            )))
        });
        let server =
            allstop::http::Server::on(allstop::tokio::Tokio::with_handle(given.handle().clone()));
        let (listener, addr) = cases::bound();
        let (stop, handle) = {
            let group = allstop::Group::new();
            (group.stop_handle().stop_signal(), group.stop_handle())
        };
        let served = std::thread::spawn(move || {
            serving.block_on(async move {
                listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let listener = allstop::tokio::http::TcpListener::from(listener);
                server.serve(listener, thread_name, stop).await
            })
        });
        let answer = client::Client::connect(addr).unwrap().get("/").unwrap();
        assert_eq!(answer.text(), "the-given-runtime");
        handle.stop("test");
        served.join().unwrap().unwrap();
    });
}
