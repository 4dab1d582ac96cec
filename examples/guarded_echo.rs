//! An echo server that protects itself (the guide's chapter on policies): a connection
//! idle for a minute is closed, each address may hold 10 connections, at most 100 are
//! served at once (50 more wait their turn), and each connection may send and receive at
//! most 1 MiB a second.
//!
//! ```text
//! cargo run --example guarded_echo                # listens on tcp:8000
//! nc 127.0.0.1 8000
//! ```

use std::time::Duration;

use torsion::prelude::*;
use torsion::protocols::policy::{
    ConnectionLimit, FactoryExt, LimitConnectionsByPeer, RateLimit, TimeoutPolicy,
};

struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        transport.write(data);
    }

    fn pause_writing(&mut self, transport: &Transport) {
        transport.pause_reading();
    }

    fn resume_writing(&mut self, transport: &Transport) {
        transport.resume_reading();
    }
}

fn main() {
    // The policies keep time with this thread's reactor (a `Clock` in tests).
    let time = Reactor::current().scheduler();
    let idle = TimeoutPolicy::new(time.clone(), Duration::from_secs(60))
        .on_timeout(|_: &mut Echo, t: &Transport| t.write(b"Idle for a minute: bye.\r\n"));
    let rate = RateLimit::new(time.clone())
        .read_limit(1 << 20)
        .write_limit(1 << 20);
    // The last policy added is the outermost: it decides first, so a connection from an
    // address that already has 10 is refused before anything else looks at it.
    let factory = factory_fn(|_| Echo)
        .with_policy(idle)
        .with_policy(rate)
        .with_policy(ConnectionLimit::hold(100, 50, time))
        .with_policy(LimitConnectionsByPeer::new(10));
    torsion::program::serve("tcp:8000", factory);
}
