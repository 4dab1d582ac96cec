//! Timers: `call_soon`, `call_later` with several delays, a cancelled call and the
//! reactor's clock. Prints each event in the order it fires, then stops itself.
//!
//! `cargo run --example timers`

use std::time::Duration;

use torsion::reactor::Reactor;

fn main() {
    let reactor = Reactor::current();
    let start = reactor.time();
    let elapsed = move || Reactor::current().time().duration_since(start).as_millis();

    reactor.call_soon(move || println!("call_soon ran first (t={} ms)", elapsed()));
    for ms in [300u64, 100, 200] {
        reactor.call_later(Duration::from_millis(ms), move || {
            println!(
                "call_later({ms} ms) fired at t>={ms} ms: {}",
                elapsed() >= ms as u128
            )
        });
    }
    let cancelled = reactor.call_later(Duration::from_millis(150), || {
        println!("this never prints: the call was cancelled")
    });
    cancelled.cancel().expect("the call is still pending");
    println!("cancelled a call; still active: {}", cancelled.active());

    reactor.call_later(Duration::from_millis(400), move || {
        println!("stopping at t={} ms", elapsed());
        Reactor::current().stop().expect("the reactor is running");
    });
    if let Err(err) = reactor.run() {
        eprintln!("timers: {err}");
        std::process::exit(1);
    }
}
