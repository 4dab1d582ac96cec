//! Ten tasks on the reactor: each prints its own number, then the program reports that all
//! are done (the asyncio "tasks" seed program, in Rust `async` on torsion's reactor).
//!
//! `cargo run --example tasks` prints `Processing 0` … `Processing 9`, then
//! `Tasks Completed`, and exits.

use std::time::Duration;

use torsion::reactor::{Reactor, gather, sleep};

/// One unit of work: report, then wait a little as if for I/O.
async fn process(n: u32) {
    println!("Processing {n}");
    sleep(Duration::from_millis(100)).await;
}

fn main() {
    let reactor = Reactor::current();
    let main_task = async {
        // `n` is moved into each task: every task prints its own number (the classic
        // late-binding bug of `lambda: process(i)` cannot happen here).
        let tasks: Vec<_> = (0..10)
            .map(|n| Reactor::current().spawn(process(n)))
            .collect();
        gather(tasks).await
    };
    match reactor.run_until_complete(main_task) {
        Ok(Ok(_)) => println!("Tasks Completed"),
        Ok(Err(err)) | Err(err) => {
            eprintln!("tasks: {err}");
            std::process::exit(1);
        }
    }
}
