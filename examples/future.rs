//! A result that comes later: a task sets a future (a `Deferred`) after two seconds, and
//! the main program awaits and prints it (the asyncio "future" seed program).
//!
//! `cargo run --example future` waits two seconds, prints `Future Completed`, and exits.

use std::time::Duration;

use torsion::reactor::{Deferred, Reactor, sleep};

fn main() {
    let reactor = Reactor::current();
    // The receiving side is awaited; the firing side goes to whoever produces the result.
    let (future, resolver) = Deferred::<String>::new();
    reactor.spawn(async move {
        sleep(Duration::from_secs(2)).await;
        if let Err(err) = resolver.callback("Future Completed".to_string()) {
            eprintln!("future: {err}");
        }
    });
    match reactor.run_until_complete(future) {
        Ok(Ok(message)) => println!("{message}"),
        Ok(Err(err)) | Err(err) => {
            eprintln!("future: {err}");
            std::process::exit(1);
        }
    }
}
