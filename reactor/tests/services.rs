//! Services: a MultiService's order (start in order, stop in reverse, one at a time), stop
//! errors, failed starts, children added and removed while running; draining a listening
//! port's connections; the shutdown waiting for a service tree's stop.

mod common;

use std::cell::{Cell, RefCell};
use std::io::Read;
use std::net::TcpStream;
use std::rc::Rc;
use std::time::Duration;

use common::{PATIENCE, collect, listen, logged, logs, reactor, wait};
use torsion_reactor::{
    ConnectionLost, Deferred, ErrorKind, MultiService, Protocol, Reactor, Resolver, Service,
    ServiceRunner, Transport, defer_later, factory_fn, service_fn,
};

type Log = Rc<RefCell<Vec<String>>>;
/// The stops a test has yet to finish, by service name.
type Pending = Rc<RefCell<Vec<(String, Resolver<()>)>>>;

/// A service that records its start and stop in `log`; its stop finishes only when the
/// test resolves it (kept in `pending`), so the test sees whether the next one waits.
fn slow(name: &'static str, log: &Log, pending: &Pending) -> Rc<dyn Service> {
    let (l1, l2, p) = (log.clone(), log.clone(), pending.clone());
    service_fn(
        name,
        move || {
            l1.borrow_mut().push(format!("start {name}"));
            Deferred::succeed(())
        },
        move || {
            l2.borrow_mut().push(format!("stop {name}"));
            let (d, r) = Deferred::new();
            p.borrow_mut().push((name.to_string(), r));
            d
        },
    )
}

/// A service that records its start and stop and finishes both at once.
fn quick(name: &'static str, log: &Log) -> Rc<dyn Service> {
    let (l1, l2) = (log.clone(), log.clone());
    service_fn(
        name,
        move || {
            l1.borrow_mut().push(format!("start {name}"));
            Deferred::succeed(())
        },
        move || {
            l2.borrow_mut().push(format!("stop {name}"));
            Deferred::succeed(())
        },
    )
}

#[test]
fn multi_service_starts_in_order_and_stops_in_reverse_one_at_a_time() {
    let r = reactor();
    let log: Log = Default::default();
    let pending: Pending = Default::default();
    let root = MultiService::new("app");
    for name in ["db", "cache", "web"] {
        root.add_service(slow(name, &log, &pending)).unwrap();
    }
    wait(&collect(root.start())).expect("the tree starts");
    assert!(root.is_running());
    assert_eq!(*log.borrow(), ["start db", "start cache", "start web"]);

    let stopped = collect(root.stop());
    assert!(!root.is_running(), "not running from the call to stop");
    // Only "web" is asked to stop until its stop finishes.
    r.run_until(PATIENCE, || pending.borrow().len() == 1)
        .unwrap();
    r.iterate(Duration::from_millis(20)).unwrap();
    assert_eq!(log.borrow().last().unwrap(), "stop web");
    assert_eq!(pending.borrow().len(), 1, "cache waits for web's stop");
    for next in ["web", "cache", "db"] {
        let (name, resolver) = pending.borrow_mut().remove(0);
        assert_eq!(name, next);
        resolver.callback(()).unwrap();
        if next != "db" {
            r.run_until(PATIENCE, || pending.borrow().len() == 1)
                .unwrap();
        }
    }
    wait(&stopped).expect("the tree stops");
    assert_eq!(
        log.borrow()[3..],
        ["stop web", "stop cache", "stop db"],
        "reverse order"
    );
}

#[test]
fn a_failing_stop_is_reported_and_the_others_still_stop() {
    let _r = reactor();
    logs();
    let log: Log = Default::default();
    let root = MultiService::new("app");
    root.add_service(quick("first", &log)).unwrap();
    let l = log.clone();
    root.add_service(service_fn(
        "broken",
        || Deferred::succeed(()),
        move || {
            l.borrow_mut().push("stop broken".into());
            Deferred::fail(torsion_reactor::Error::new(
                ErrorKind::Other,
                "the disk is full",
            ))
        },
    ))
    .unwrap();
    root.add_service(quick("last", &log)).unwrap();
    wait(&collect(root.start())).unwrap();

    let err = wait(&collect(root.stop())).expect_err("the tree reports the failed stop");
    assert_eq!(
        log.borrow()[2..],
        ["stop last", "stop broken", "stop first"],
        "first still stopped after broken failed"
    );
    assert_eq!(
        err.to_string(),
        "service \"app\" stopped, but 1 of its services failed to stop: \"broken\" (the disk is full)"
    );
    assert!(!root.is_running());
    assert!(
        !logged("service \"broken\" failed to stop: the disk is full").is_empty(),
        "the failure is logged when it happens"
    );
}

#[test]
fn a_panicking_stop_is_contained_and_the_others_still_stop() {
    let r = reactor();
    r.set_fail_on_caught(false);
    logs();
    let log: Log = Default::default();
    let root = MultiService::new("app");
    root.add_service(quick("first", &log)).unwrap();
    root.add_service(service_fn(
        "bad",
        || Deferred::succeed(()),
        || -> Deferred<()> { panic!("bug in stop") },
    ))
    .unwrap();
    wait(&collect(root.start())).unwrap();
    let err = wait(&collect(root.stop())).unwrap_err();
    assert!(err.to_string().contains("bug in stop"), "{err}");
    assert_eq!(log.borrow().last().unwrap(), "stop first");
    assert!(
        !logged("the stop of service \"bad\"").is_empty(),
        "the panic goes to the reactor's error handler"
    );
}

#[test]
fn a_failed_start_stops_the_started_ones_and_fails_the_start() {
    let _r = reactor();
    let log: Log = Default::default();
    let root = MultiService::new("app");
    root.add_service(quick("db", &log)).unwrap();
    root.add_service(quick("cache", &log)).unwrap();
    root.add_service(service_fn(
        "web",
        || {
            Deferred::fail(torsion_reactor::Error::new(
                ErrorKind::Io,
                "cannot listen on 127.0.0.1:80: permission denied",
            ))
        },
        || Deferred::succeed(()),
    ))
    .unwrap();
    root.add_service(quick("never", &log)).unwrap();
    let err = wait(&collect(root.start())).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot listen on 127.0.0.1:80: permission denied",
        "the child's error, as it is"
    );
    assert_eq!(
        *log.borrow(),
        ["start db", "start cache", "stop cache", "stop db"]
    );
    assert!(!root.is_running());
    // It can be started again (and fails the same way).
    assert!(wait(&collect(root.start())).is_err());
}

#[test]
fn children_added_or_removed_while_running_are_started_or_stopped() {
    let _r = reactor();
    let log: Log = Default::default();
    let root = MultiService::new("app");
    let first = quick("first", &log);
    root.add_service(first.clone()).unwrap();
    let late = quick("late", &log);
    // Not running: added, not started.
    wait(&collect(root.add_service(late.clone()).unwrap())).unwrap();
    assert!(!late.is_running());
    root.remove_service("late").unwrap();

    wait(&collect(root.start())).unwrap();
    let added = root.add_service(late.clone()).unwrap();
    wait(&collect(added)).unwrap();
    assert!(late.is_running(), "started because the tree runs");
    let dup = root.add_service(quick("late", &log)).unwrap_err();
    assert_eq!(dup.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        dup.to_string(),
        "cannot add service \"late\" to \"app\": it already has a service of that name"
    );

    wait(&collect(root.remove_service("late").unwrap())).unwrap();
    assert!(!late.is_running(), "stopped because the tree runs");
    assert!(root.get_service("late").is_none());
    assert_eq!(
        root.remove_service("nope").unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    wait(&collect(root.stop())).unwrap();
    assert_eq!(
        *log.borrow(),
        ["start first", "start late", "stop late", "stop first"]
    );
}

#[test]
fn stopping_while_starting_waits_for_the_start_then_stops_what_started() {
    let r = reactor();
    let log: Log = Default::default();
    let root = MultiService::new("app");
    let gate: Rc<RefCell<Option<Resolver<()>>>> = Default::default();
    let (g, l) = (gate.clone(), log.clone());
    root.add_service(service_fn(
        "slow-start",
        move || {
            l.borrow_mut().push("start slow-start".into());
            let (d, resolver) = Deferred::new();
            *g.borrow_mut() = Some(resolver);
            d
        },
        {
            let l = log.clone();
            move || {
                l.borrow_mut().push("stop slow-start".into());
                Deferred::succeed(())
            }
        },
    ))
    .unwrap();
    root.add_service(quick("after", &log)).unwrap();
    let started = collect(root.start());
    r.run_until(PATIENCE, || gate.borrow().is_some()).unwrap();
    let stopped = collect(root.stop());
    gate.borrow_mut().take().unwrap().callback(()).unwrap();
    wait(&stopped).unwrap();
    assert_eq!(wait(&started).unwrap_err().kind(), ErrorKind::Cancelled);
    assert_eq!(
        *log.borrow(),
        ["start slow-start", "stop slow-start"],
        "\"after\" never started"
    );
}

/// Keeps what it receives.
struct Quiet;
impl Protocol for Quiet {
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
}

#[test]
fn a_listening_port_drains_the_connections_it_accepted() {
    let r = reactor();
    const BIG: usize = 4 << 20;
    let lost: Rc<RefCell<Vec<ConnectionLost>>> = Default::default();
    struct Big(Rc<RefCell<Vec<ConnectionLost>>>);
    impl Protocol for Big {
        fn connection_made(&mut self, t: &Transport) {
            t.write(&vec![b'x'; BIG]); // more than the socket takes at once
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
        fn connection_lost(&mut self, reason: &ConnectionLost) {
            self.0.borrow_mut().push(reason.clone());
        }
    }
    let l = lost.clone();
    let (port, addr) = listen(&r, factory_fn(move |_| Big(l.clone())));
    let (other_port, other_addr) = listen(&r, factory_fn(|_| Quiet));
    let mut client = TcpStream::connect(addr).unwrap();
    let _other = TcpStream::connect(other_addr).unwrap();
    r.run_until(PATIENCE, || {
        port.open_connections() == 1 && other_port.open_connections() == 1
    })
    .unwrap();

    port.stop_listening();
    port.lose_connections();
    let drained = collect(port.when_connections_closed());
    // The reader is slow: the port waits for the flush.
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        client.read_to_end(&mut all).map(|_| all.len())
    });
    wait(&drained).unwrap();
    assert_eq!(reader.join().unwrap().unwrap(), BIG, "every byte, then EOF");
    assert!(lost.borrow()[0].is_clean(), "{:?}", lost.borrow());
    assert_eq!(port.open_connections(), 0);
    assert_eq!(
        other_port.open_connections(),
        1,
        "another port's connections are not touched"
    );
    other_port.abort_connections();
    wait(&collect(other_port.when_connections_closed())).unwrap();
}

#[test]
fn the_shutdown_waits_for_the_service_tree_to_stop() {
    let r = reactor();
    let log: Log = Default::default();
    let clock_free = Rc::new(Cell::new(false));
    let root = MultiService::new("app");
    root.add_service(quick("db", &log)).unwrap();
    let (l, done) = (log.clone(), clock_free.clone());
    root.add_service(service_fn(
        "web",
        || Deferred::succeed(()),
        move || {
            l.borrow_mut().push("stop web (slow)".into());
            let done = done.clone();
            let l = l.clone();
            // A stop that takes a while: the reactor keeps running meanwhile.
            defer_later(&Reactor::current(), Duration::from_millis(50), move || {
                l.borrow_mut().push("web stopped".into());
                done.set(true);
            })
        },
    ))
    .unwrap();
    let started = Rc::new(Cell::new(false));
    let s = started.clone();
    let runner = ServiceRunner::new(&r, root.clone()).on_started(move || {
        s.set(true);
        Reactor::current().stop().unwrap();
    });
    runner.run().expect("the tree starts and stops");
    assert!(started.get());
    assert!(clock_free.get());
    assert_eq!(
        *log.borrow(),
        ["start db", "stop web (slow)", "web stopped", "stop db"]
    );
    assert!(!root.is_running());
}

#[test]
fn run_service_returns_the_start_error() {
    let r = reactor();
    let root = service_fn(
        "web",
        || {
            Deferred::fail(torsion_reactor::Error::new(
                ErrorKind::Io,
                "cannot listen on 127.0.0.1:80: permission denied",
            ))
        },
        || Deferred::succeed(()),
    );
    let err = r.run_service(root).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot listen on 127.0.0.1:80: permission denied"
    );
    // The reactor can run again (the hook was removed).
    r.call_soon(|| Reactor::current().stop().unwrap());
    r.run().unwrap();
}

#[test]
fn a_second_stop_cuts_a_hung_shutdown_hook_short() {
    let r = reactor();
    let hung: Rc<RefCell<Option<Resolver<()>>>> = Default::default();
    let h = hung.clone();
    let hook = r.add_shutdown_hook(move || {
        let (d, resolver) = Deferred::new();
        *h.borrow_mut() = Some(resolver); // never fired
        let _ = Reactor::current().call_later(Duration::from_millis(20), || {
            Reactor::current().stop().unwrap(); // the second stop
        });
        d
    });
    r.call_soon(|| Reactor::current().stop().unwrap());
    r.run().unwrap();
    assert!(hung.borrow().is_some());
    r.remove_system_event_trigger(hook);
    drop(hung.borrow_mut().take());
}
