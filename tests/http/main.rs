//! The HTTP server tests, one source run on tokio and on smol.
#![cfg(any(feature = "tokio", feature = "smol"))]

mod cases;
mod client;
#[path = "../common/mod.rs"]
mod common;
mod net;

macro_rules! http_tests {
    ($net:ty) => {
        http_tests!($net;
            slow_request_completes_while_new_connections_are_refused,
            idle_and_unused_connections_do_not_delay_the_stop,
            half_sent_request_does_not_delay_the_stop,
            http2_gets_goaway_and_its_stream_completes,
            port_is_free_again_after_the_server_returns,
            port_in_use_fails_naming_the_address,
            handler_sees_the_stop_and_ends_early,
            drain_deadline_drops_the_rest,
            malformed_request_gets_400,
            header_read_timeout_cuts_slow_senders,
            no_request_lost_when_stopping_under_load,
        );
    };
    ($net:ty; $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                crate::common::bounded(|| crate::cases::$test::<$net>());
            }
        )*
    };
}

#[cfg(feature = "tokio")]
mod on_tokio {
    http_tests!(crate::net::Tokio);
}

#[cfg(feature = "smol")]
mod on_smol {
    http_tests!(crate::net::Smol);
}

#[cfg(all(feature = "tokio", feature = "smol"))]
#[test]
fn a_group_spanning_tokio_and_smol_stops_cleanly() {
    crate::common::bounded(crate::cases::a_group_spanning_tokio_and_smol_stops_cleanly);
}
