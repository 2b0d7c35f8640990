//! The signal member on tokio, in a process of its own.
#![cfg(all(unix, feature = "tokio"))]

#[path = "common/mod.rs"]
mod common;
#[path = "common/signals.rs"]
mod signals;

#[test]
fn signal_stops_the_group_and_a_second_cuts_the_grace() {
    common::bounded(|| {
        signals::signal_stops_the_group_and_a_second_cuts_the_grace(
            |run| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(run)
            },
            allstop::Group::on(allstop::tokio::Tokio::new()),
            allstop::tokio::signals(),
        )
    });
}
