//! What the protocols crate's socket tests share: one deadline, a strict reactor per test
//! (a panic caught in a callback fails the test with its message) and a TCP listener on a
//! free loopback port.
#![allow(dead_code)] // each test file uses part of this

use std::net::SocketAddr;

use torsion_reactor::testing::test_reactor;
use torsion_reactor::{Factory, ListeningPort, Reactor};

pub use torsion_reactor::testing::PATIENCE;

thread_local! {
    static MADE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// This test's reactor (each test runs on its own thread): made on the first call, later
/// calls return it.
pub fn reactor() -> Reactor {
    if MADE.with(|m| m.replace(true)) {
        Reactor::current()
    } else {
        test_reactor()
    }
}

/// Listens on a free port of 127.0.0.1 with `factory`.
pub fn listen<F: Factory>(r: &Reactor, factory: F) -> (ListeningPort, SocketAddr) {
    let port = r
        .listen_tcp("127.0.0.1:0".parse().expect("an address"), factory)
        .expect("listening on a free loopback port");
    let addr = port.local_addr().socket_addr().expect("a TCP address");
    (port, addr)
}
