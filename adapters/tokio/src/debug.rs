//! The debug server as one member.

use std::net::SocketAddr;

use allstop_core::debug::{Debug, DEFAULT_ADDR};
use allstop_core::{Group, Stage};

/// Adds the debug server (see [`allstop::debug`](allstop_core::debug)) to
/// `group` as the member `"debug"` in the last stage
/// ([`Stage::LAST`]: it stops after every other member has ended), on [`DEFAULT_ADDR`] (`127.0.0.1:8001`,
/// loopback only: profiles reveal internals). Returns the routes, whose
/// [`status`](Debug::status) shows the group.
///
/// ```
/// let mut group = allstop::Group::new();
/// allstop::tokio::add_debug_server(&mut group);
/// assert_eq!(group.len(), 1);
/// ```
pub fn add_debug_server(group: &mut Group) -> Debug {
    add_debug_server_on(group, DEFAULT_ADDR)
}

/// As [`add_debug_server`], on `addr`. Think twice before an address other
/// than loopback.
pub fn add_debug_server_on(group: &mut Group, addr: SocketAddr) -> Debug {
    let debug = Debug::new().attach(group);
    // Last to stop, whatever is added after it: /readyz answers 503 and
    // /debug/group shows the drain for as long as the other members drain.
    group.in_stage(Stage::LAST, |group| {
        group.add("debug", crate::http::serve_on(addr, debug.clone()));
    });
    debug
}
