//! The classic small services (echo, discard, chargen, daytime, time, qotd), each on the
//! endpoints given on the command line.
//!
//! ```text
//! cargo run --example services -- echo=tcp:7007 chargen=tcp:port=0:interface=127.0.0.1
//! cargo run --example services -- echo=tcp:7007 echo=unix:/tmp/echo.sock time=tcp:3737
//! nc 127.0.0.1 7007
//! ```
//!
//! Each argument is `NAME=ENDPOINT`; a service may be named more than once. Once all are
//! listening, one line per argument goes to stdout, in order:
//! `listening on NAME ADDRESS`. A malformed argument or endpoint: one line on stderr,
//! exit 2. A listen failure: one line on stderr naming the address and the cause, exit 1.
//! SIGINT or SIGTERM: graceful shutdown, exit 0.

use std::io::Write;
use std::rc::Rc;

use torsion::program;
use torsion::protocols::services::{Chargen, Daytime, Discard, Echo, Qotd, Time};
use torsion::reactor::{BoxedFactory, Reactor, Scheduler, factory_fn};

const SERVICES: &str = "echo, discard, chargen, daytime, time, qotd";

const USAGE: &str = "NAME=ENDPOINT...
  NAME: one of echo (RFC 862), discard (863), chargen (864), daytime (867),
        time (868), qotd (865)
  ENDPOINT: where to serve it, e.g. tcp:7007 or tcp:port=0:interface=127.0.0.1
example: services echo=tcp:7007 chargen=tcp:1919";

/// A factory for the service called `name`.
fn factory(name: &str, scheduler: &Rc<dyn Scheduler>) -> Option<BoxedFactory> {
    let scheduler = Rc::clone(scheduler);
    Some(match name {
        "echo" => BoxedFactory::new(factory_fn(|_| Echo::new())),
        "discard" => BoxedFactory::new(factory_fn(|_| Discard::new())),
        "chargen" => BoxedFactory::new(factory_fn(move |_| {
            Some(Chargen::new(Rc::clone(&scheduler)))
        })),
        "daytime" => BoxedFactory::new(factory_fn(|_| Daytime::new())),
        "time" => BoxedFactory::new(factory_fn(|_| Time::new())),
        "qotd" => BoxedFactory::new(factory_fn(|_| Qotd::default())),
        _ => return None,
    })
}

fn main() {
    program::init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: {} {USAGE}", program::name());
        std::process::exit(0);
    }
    if args.is_empty() {
        program::usage_error(&format!(
            "name at least one service to serve\nusage: {} {USAGE}",
            program::name()
        ));
    }
    let reactor = Reactor::current();
    let scheduler: Rc<dyn Scheduler> = reactor.scheduler();

    // Check every argument before listening on any.
    let mut plan = Vec::new();
    for arg in &args {
        let Some((name, description)) = arg.split_once('=') else {
            program::usage_error(&format!(
                "argument {arg:?} is not NAME=ENDPOINT (for example echo=tcp:7007)"
            ));
        };
        let Some(factory) = factory(name, &scheduler) else {
            program::usage_error(&format!(
                "unknown service {name:?} in {arg:?}: expected one of {SERVICES}"
            ));
        };
        let endpoint = match torsion::endpoints::server_from_string(&reactor, description) {
            Ok(endpoint) => endpoint,
            Err(err) => program::usage_error(&format!("{name}: {err}")),
        };
        plan.push((name.to_string(), endpoint, factory));
    }

    let mut lines = Vec::new();
    let mut ports = Vec::new();
    for (name, endpoint, factory) in plan {
        match endpoint.listen(factory) {
            Ok(port) => {
                lines.push(format!("listening on {name} {}", port.local_addr()));
                ports.push(port);
            }
            Err(err) => program::fail(&format!("{name}: {err}")),
        }
    }
    reactor.call_when_running(move || {
        let mut out = std::io::stdout().lock();
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    });
    program::run(&reactor);
}
