//! One service on several endpoints, run as a service tree (Twisted's `twist` style): a
//! server service per `--listen`, and optionally a client service that keeps a connection
//! to an upstream up and gets a copy of every byte the clients send.
//!
//! ```text
//! cargo run --example twist -- echo --listen tcp:7007 --listen unix:/tmp/echo.sock
//! cargo run --example twist -- echo --listen tcp:7007 --upstream tcp:127.0.0.1:9000
//! ```
//!
//! Once every endpoint listens, one `listening on ADDRESS` line per `--listen` goes to
//! stdout, in order. A malformed argument or endpoint: one line on stderr, exit 2. A listen
//! failure: one line on stderr naming the address and the cause, exit 1. SIGINT or SIGTERM:
//! the tree stops in reverse order: the servers stop listening and drain their connections
//! (flushing what is buffered, aborting what is left after `--drain` seconds), then the
//! upstream connection is closed after its last copied bytes; exit 0.

use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use torsion::endpoints::{ClientService, ServerService, client_from_string, server_from_string};
use torsion::program;
use torsion::protocols::services::{Chargen, Daytime, Discard, Echo, Qotd, Time};
use torsion::reactor::{
    Address, BoxedFactory, ConnectionLost, Factory, MultiService, Protocol, Reactor, Scheduler,
    ServiceRunner, Transport, factory_fn,
};

const USAGE: &str =
    "SERVICE --listen ENDPOINT [--listen ENDPOINT]... [--upstream ENDPOINT] [--drain SECONDS]
  SERVICE: echo, discard, chargen, daytime, time or qotd
  --listen: where to serve it (repeatable), e.g. tcp:7007 or unix:/tmp/echo.sock
  --upstream: a client endpoint that gets a copy of every byte clients send, over one
              connection kept up (reconnecting with backoff), e.g. tcp:127.0.0.1:9000
  --drain: how long a stop lets connections finish before aborting them (default 3)
example: twist echo --listen tcp:7007 --listen tcp6:7007";

/// A factory for the service called `name`.
fn service_factory(name: &str, scheduler: &Rc<dyn Scheduler>) -> Option<BoxedFactory> {
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

/// What the command line asks for.
struct Plan {
    service: String,
    listen: Vec<String>,
    upstream: Option<String>,
    drain: Duration,
}

fn parse(args: &[String]) -> Plan {
    let mut service = None;
    let mut listen = Vec::new();
    let mut upstream = None;
    let mut drain = Duration::from_secs(3);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| match it.next() {
            Some(v) => v.clone(),
            None => program::usage_error(&format!("{flag} needs a value")),
        };
        match arg.as_str() {
            "--listen" => listen.push(value("--listen")),
            "--upstream" => upstream = Some(value("--upstream")),
            "--drain" => {
                let v = value("--drain");
                drain = match v
                    .parse::<f64>()
                    .ok()
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                {
                    Some(d) => d,
                    None => program::usage_error(&format!(
                        "--drain {v:?}: expected a number of seconds, such as 3 or 0.5"
                    )),
                };
            }
            flag if flag.starts_with("--") => program::usage_error(&format!(
                "unknown option {flag}\nusage: {} {USAGE}",
                program::name()
            )),
            name if service.is_none() => service = Some(name.to_string()),
            extra => program::usage_error(&format!(
                "unexpected argument {extra:?} (one SERVICE, then options)"
            )),
        }
    }
    let Some(service) = service else {
        program::usage_error(&format!(
            "name a service\nusage: {} {USAGE}",
            program::name()
        ));
    };
    if listen.is_empty() {
        program::usage_error(&format!(
            "give at least one --listen ENDPOINT\nusage: {} {USAGE}",
            program::name()
        ));
    }
    Plan {
        service,
        listen,
        upstream,
        drain,
    }
}

/// Forwards everything to the service's protocol, and copies what clients send upstream.
struct Tee {
    inner: Box<dyn Protocol>,
    upstream: Rc<ClientService>,
}

impl Protocol for Tee {
    fn connection_made(&mut self, t: &Transport) {
        self.inner.connection_made(t)
    }
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        // While the upstream is down, the copy is dropped (the service goes on).
        if let Some(upstream) = self.upstream.connection() {
            upstream.write(data);
        }
        self.inner.data_received(t, data)
    }
    fn eof_received(&mut self, t: &Transport) -> bool {
        self.inner.eof_received(t)
    }
    fn connection_lost(&mut self, reason: &ConnectionLost) {
        self.inner.connection_lost(reason)
    }
    fn pause_writing(&mut self, t: &Transport) {
        self.inner.pause_writing(t)
    }
    fn resume_writing(&mut self, t: &Transport) {
        self.inner.resume_writing(t)
    }
    fn reading_resumed(&mut self, t: &Transport) {
        self.inner.reading_resumed(t)
    }
}

/// Reads nothing it needs: the upstream only receives copies.
struct Upstream;
impl Protocol for Upstream {
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
}

fn main() {
    program::init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: {} {USAGE}", program::name());
        std::process::exit(0);
    }
    let plan = parse(&args);
    let reactor = Reactor::current();
    let scheduler: Rc<dyn Scheduler> = reactor.scheduler();
    let Some(factory) = service_factory(&plan.service, &scheduler) else {
        program::usage_error(&format!(
            "unknown service {:?}: expected echo, discard, chargen, daytime, time or qotd",
            plan.service
        ));
    };

    // The tree: the upstream client first (started first, stopped last, so the copies of
    // the servers' last bytes still reach it), then the servers.
    let root = MultiService::new("twist");
    let factory = match &plan.upstream {
        Some(description) => {
            let endpoint = match client_from_string(&reactor, description) {
                Ok(endpoint) => endpoint,
                Err(err) => program::usage_error(&format!("--upstream: {err}")),
            };
            let upstream = ClientService::new("upstream", endpoint, factory_fn(|_| Upstream));
            add(&root, upstream.clone());
            let inner = factory;
            BoxedFactory::new(factory_fn(move |peer: &Address| {
                inner.build_protocol(peer).map(|p| Tee {
                    inner: p,
                    upstream: upstream.clone(),
                })
            }))
        }
        None => factory,
    };
    let mut servers = Vec::new();
    for (i, description) in plan.listen.iter().enumerate() {
        let endpoint = match server_from_string(&reactor, description) {
            Ok(endpoint) => endpoint,
            Err(err) => program::usage_error(&format!("--listen: {err}")),
        };
        let server = ServerService::new(
            format!("listen {i}: {description}"),
            endpoint,
            factory.clone(),
        );
        server.set_drain_timeout(plan.drain);
        add(&root, server.clone());
        servers.push(server);
    }

    let runner = ServiceRunner::new(&reactor, root).on_started(move || {
        let mut out = std::io::stdout().lock();
        for server in &servers {
            if let Some(port) = server.port() {
                let _ = writeln!(out, "listening on {}", port.local_addr());
            }
        }
        let _ = out.flush();
    });
    match runner.run() {
        Ok(()) => std::process::exit(0),
        Err(err) => program::fail(&err.to_string()),
    }
}

fn add(root: &MultiService, service: Rc<dyn torsion::reactor::Service>) {
    if let Err(err) = root.add_service(service) {
        program::usage_error(&err.to_string()); // the same --listen twice
    }
}
