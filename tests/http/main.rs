//! The HTTP server tests, one source run on tokio and on smol.
#![cfg(any(feature = "tokio", feature = "smol"))]

mod cases;
mod client;
#[path = "../common/mod.rs"]
mod common;
#[cfg(feature = "pprof")]
mod debug_cases;
mod net;

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
            header_read_timeout_cuts_slow_senders,
            no_request_lost_when_stopping_under_load,
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

#[cfg(all(feature = "tokio", feature = "smol"))]
#[test]
fn a_group_spanning_tokio_and_smol_stops_cleanly() {
    crate::common::bounded(crate::cases::a_group_spanning_tokio_and_smol_stops_cleanly);
}
