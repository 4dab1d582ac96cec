//! The smallest torsion program: schedule a callback, run the reactor, and stop.
//!
//! `cargo run --example hello` prints `Hello World` and exits.

use torsion::reactor::Reactor;

fn main() {
    let reactor = Reactor::current();
    reactor.call_soon(|| {
        println!("Hello World");
        Reactor::current().stop().expect("the reactor is running");
    });
    if let Err(err) = reactor.run() {
        eprintln!("hello: {err}");
        std::process::exit(1);
    }
}
