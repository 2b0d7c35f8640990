//! The signal member on smol, in a process of its own.
#![cfg(all(unix, feature = "smol"))]

#[path = "common/mod.rs"]
mod common;
#[path = "common/signals.rs"]
mod signals;

#[test]
fn signal_stops_the_group_and_a_second_cuts_the_grace() {
    common::bounded(|| {
        signals::signal_stops_the_group_and_a_second_cuts_the_grace(
            smol::block_on,
            allstop::Group::on(allstop::smol::Smol::new()),
            allstop::smol::signals(),
        )
    });
}
