//! The loop's own rules: no nested loops, a reactor's life (new, install, close), what it
//! does with what it catches, and a `Clock` that runs Deferred callbacks without a loop.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::time::Duration;

use common::{PATIENCE, listen, reactor, run};
use torsion_reactor::{
    Clock, ConnectionLost, Deferred, ErrorKind, Protocol, Reactor, Scheduler, SchedulerExt,
    Transport, defer_later, factory_fn, sleep,
};

/// Tries every way of running the loop from inside a callback and records each outcome.
fn try_every_nested_loop(log: &Rc<RefCell<Vec<ErrorKind>>>) {
    let r = Reactor::current();
    let mut log = log.borrow_mut();
    log.push(r.iterate(Duration::ZERO).unwrap_err().kind());
    log.push(
        r.run_until(PATIENCE, || true)
            .map_or_else(|e| e.kind(), |()| ErrorKind::Other),
    );
    log.push(r.run_until(PATIENCE, || false).unwrap_err().kind());
    log.push(r.run().unwrap_err().kind());
    log.push(r.run_until_complete(async {}).unwrap_err().kind());
    log.push(r.close().unwrap_err().kind());
}

#[test]
fn every_way_of_nesting_the_loop_is_refused_from_a_callback() {
    let r = reactor();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    r.call_soon(move || try_every_nested_loop(&l));
    r.run_until(PATIENCE, || !log.borrow().is_empty())
        .expect("the callback runs");
    let kinds = log.borrow().clone();
    // `run_until` with a condition that is already true returns at once, nesting nothing.
    assert_eq!(
        kinds,
        [
            ErrorKind::AlreadyRunning,
            ErrorKind::Other,
            ErrorKind::AlreadyRunning,
            ErrorKind::AlreadyRunning,
            ErrorKind::AlreadyRunning,
            ErrorKind::AlreadyRunning,
        ]
    );
    // From a timer and from a task too.
    let l = log.clone();
    log.borrow_mut().clear();
    r.call_later(Duration::from_millis(1), move || try_every_nested_loop(&l));
    r.run_until(PATIENCE, || !log.borrow().is_empty())
        .expect("the timer runs");
    assert_eq!(log.borrow()[0], ErrorKind::AlreadyRunning);
    let l = log.clone();
    log.borrow_mut().clear();
    let task = r.spawn(async move { try_every_nested_loop(&l) });
    r.run_until(PATIENCE, || task.is_fired())
        .expect("the task runs");
    assert_eq!(log.borrow()[0], ErrorKind::AlreadyRunning);
}

/// Tries to iterate the loop from `data_received` and keeps every byte it is given.
struct Nester {
    got: Rc<RefCell<Vec<u8>>>,
    refused: Rc<Cell<u32>>,
}

impl Protocol for Nester {
    fn data_received(&mut self, _: &Transport, data: &[u8]) {
        self.got.borrow_mut().extend_from_slice(data);
        if let Err(e) = Reactor::current().iterate(Duration::from_millis(10)) {
            assert_eq!(e.kind(), ErrorKind::AlreadyRunning);
            self.refused.set(self.refused.get() + 1);
        }
    }
}

#[test]
fn a_protocol_that_tries_to_nest_the_loop_loses_no_byte() {
    let r = reactor();
    let got: Rc<RefCell<Vec<u8>>> = Rc::default();
    let refused = Rc::new(Cell::new(0));
    let (g, f) = (got.clone(), refused.clone());
    let (_port, addr) = listen(
        &r,
        factory_fn(move |_| Nester {
            got: g.clone(),
            refused: f.clone(),
        }),
    );
    let mut client = TcpStream::connect(addr).unwrap();
    let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let writer = {
        let sent = sent.clone();
        let mut c = client.try_clone().unwrap();
        std::thread::spawn(move || c.write_all(&sent).unwrap())
    };
    r.run_until(PATIENCE, || got.borrow().len() == sent.len())
        .expect("every byte arrives");
    writer.join().unwrap();
    assert_eq!(*got.borrow(), sent, "in order, none lost, none twice");
    assert!(refused.get() >= 1, "each nested iterate was refused");
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let reader = std::thread::spawn(move || client.read_to_end(&mut rest).map(|_| rest));
    r.run_until(PATIENCE, || reader.is_finished())
        .expect("the server closes after the half-close");
    assert!(reader.join().unwrap().unwrap().is_empty());
}

/// Records its lifecycle.
struct Watched(Rc<RefCell<Vec<String>>>);

impl Protocol for Watched {
    fn connection_made(&mut self, _: &Transport) {
        self.0.borrow_mut().push("made".into());
    }
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    fn connection_lost(&mut self, reason: &ConnectionLost) {
        self.0.borrow_mut().push(format!("lost: {reason}"));
    }
}

#[test]
fn close_aborts_connections_once_and_a_closed_reactor_refuses_work() {
    let r = Reactor::new().unwrap();
    r.set_handle_signals(false);
    let events: Rc<RefCell<Vec<String>>> = Rc::default();
    let e = events.clone();
    let port = r
        .listen_tcp(
            "127.0.0.1:0".parse().unwrap(),
            factory_fn(move |_| Watched(e.clone())),
        )
        .unwrap();
    let addr = port.local_addr().socket_addr().unwrap();
    let _client = TcpStream::connect(addr).unwrap();
    r.run_until(PATIENCE, || r.open_connections() == 1)
        .expect("accepted");
    let never = Rc::new(Cell::new(false));
    let n = never.clone();
    r.call_later(Duration::from_secs(60), move || n.set(true));
    let dropped = Rc::new(());
    let d = dropped.clone();
    r.call_soon(move || drop(d));

    r.close().unwrap();
    assert!(r.is_closed());
    assert_eq!(
        *events.borrow(),
        ["made", "lost: the connection was aborted locally"],
        "connection_lost delivered once, by close"
    );
    assert_eq!(r.open_connections(), 0);
    assert_eq!(r.registered_sources(), 0, "every registration released");
    assert_eq!(r.pending_timers(), 0);
    assert_eq!(Rc::strong_count(&dropped), 1, "queued callbacks dropped");
    assert!(!port.is_listening());
    r.close().unwrap(); // again: nothing

    for err in [
        r.run().unwrap_err(),
        r.iterate(Duration::ZERO).unwrap_err(),
        r.listen_tcp(
            "127.0.0.1:0".parse().unwrap(),
            factory_fn(|_| Watched(Rc::default())),
        )
        .unwrap_err(),
        r.add_reader(std::io::stdin(), || {}).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::ReactorClosed, "{err}");
    }
    assert!(!never.get());
}

#[test]
fn install_new_reactors_and_close_the_installed_one() {
    let first = Reactor::current();
    let fresh = Reactor::new().unwrap();
    assert!(!fresh.same_reactor(&first));
    let previous = fresh.install().expect("current() had installed one");
    assert!(previous.same_reactor(&first));
    assert!(Reactor::current().same_reactor(&fresh));
    fresh.close().unwrap();
    let next = Reactor::current();
    assert!(
        !next.same_reactor(&fresh),
        "closing the installed reactor uninstalls it"
    );
    assert!(!next.is_closed());
}

#[test]
fn the_running_reactor_is_current_inside_its_callbacks() {
    let installed = reactor();
    let other = Reactor::new().unwrap();
    other.set_handle_signals(false);
    let seen = Rc::new(Cell::new(false));
    let (s, o) = (seen.clone(), other.clone());
    other.call_soon(move || s.set(Reactor::current().same_reactor(&o)));
    other.iterate(Duration::ZERO).unwrap();
    assert!(
        seen.get(),
        "a reactor iterating on this thread is the current one"
    );
    assert!(Reactor::current().same_reactor(&installed));
    other.close().unwrap();
}

#[test]
fn close_while_running_is_refused() {
    let r = reactor();
    let outcome = Rc::new(RefCell::new(None));
    let o = outcome.clone();
    r.call_soon(move || {
        let r = Reactor::current();
        *o.borrow_mut() = Some(r.close().unwrap_err().kind());
        r.stop().unwrap();
    });
    run(&r);
    assert_eq!(*outcome.borrow(), Some(ErrorKind::AlreadyRunning));
    assert!(!r.is_closed());
}

#[test]
fn the_error_handler_gets_panics_and_unhandled_errors() {
    let r = reactor();
    r.set_fail_on_caught(false);
    let seen: Rc<RefCell<Vec<String>>> = Rc::default();
    let s = seen.clone();
    r.set_error_handler(move |caught| s.borrow_mut().push(caught.to_string()));
    r.call_soon(|| panic!("handler-marker-1"));
    let d = Deferred::<u32>::fail(torsion_reactor::Error::new(
        ErrorKind::Other,
        "handler-marker-2",
    ));
    drop(d); // nobody takes the error
    r.run_until(PATIENCE, || seen.borrow().len() == 2)
        .expect("both reach the handler");
    let seen = seen.borrow();
    let panic = seen.iter().find(|s| s.contains("handler-marker-1"));
    let panic = panic.expect("the panic reached the handler");
    assert!(panic.contains("panicked: handler-marker-1"), "{seen:?}");
    assert!(panic.contains("loop_rules.rs"), "with its origin: {seen:?}");
    let unhandled = seen.iter().find(|s| s.contains("handler-marker-2"));
    let unhandled = unhandled.expect("the unhandled error reached the handler");
    assert!(unhandled.contains("Unhandled error"), "{seen:?}");
}

#[test]
fn fail_on_caught_turns_a_caught_panic_into_the_iterations_error_once() {
    let r = reactor();
    r.call_soon(|| panic!("strict-marker"));
    let err = r.iterate(Duration::ZERO).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked);
    assert!(err.to_string().contains("strict-marker"), "{err}");
    r.iterate(Duration::ZERO)
        .expect("reported once; the loop goes on");
    r.call_soon(|| panic!("expected-marker"));
    r.set_fail_on_caught(false);
    r.iterate(Duration::ZERO).expect("off: only logged");
}

#[test]
fn a_clock_runs_deferred_callbacks_and_tasks_without_the_reactor_running() {
    let _r = reactor();
    let clock = Clock::new();
    let got = Rc::new(Cell::new(0));
    let g = got.clone();
    defer_later(&clock, Duration::from_secs(5), || 20)
        .map(|n| n + 1)
        .and_then(|n| Deferred::succeed(n * 2))
        .on_result(move |r| g.set(r.unwrap()));
    clock.advance(Duration::from_secs(4));
    assert_eq!(got.get(), 0);
    clock.advance(Duration::from_secs(1));
    assert_eq!(got.get(), 42, "the whole chain ran inside advance");

    // A chain step that schedules on the clock again runs within the same advance.
    let steps = Rc::new(RefCell::new(Vec::new()));
    let (s, c) = (steps.clone(), clock.clone());
    defer_later(&clock, Duration::from_secs(1), || 1).on_result(move |_| {
        s.borrow_mut().push("first");
        let s = s.clone();
        defer_later(&c, Duration::from_secs(1), || 2)
            .on_result(move |_| s.borrow_mut().push("second"));
    });
    clock.advance(Duration::from_secs(3));
    assert_eq!(*steps.borrow(), ["first", "second"]);
}

#[test]
fn call_soon_on_a_clock_runs_once_per_advance_even_when_it_reschedules_itself() {
    fn again(clock: Clock, count: Rc<Cell<u32>>) {
        count.set(count.get() + 1);
        let c = clock.clone();
        clock.call_soon(move || again(c, count));
    }
    let clock = Clock::new();
    let count = Rc::new(Cell::new(0));
    let (c, n) = (clock.clone(), count.clone());
    clock.call_soon(move || again(c, n));
    assert_eq!(count.get(), 0, "nothing runs inside call_soon");
    clock.advance(Duration::ZERO);
    assert_eq!(count.get(), 1);
    clock.advance(Duration::from_secs(10));
    assert_eq!(count.get(), 2, "one turn per advance, not a loop");
    assert_eq!(clock.pending(), 1);
}

#[test]
fn a_task_sleeping_on_the_reactor_and_scheduler_handles() {
    let r = reactor();
    let scheduler = r.scheduler();
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    scheduler.call_later(Duration::from_millis(1), move || f.set(true));
    let slept = r.spawn(async { sleep(Duration::from_millis(2)).await });
    r.run_until(PATIENCE, || fired.get() && slept.is_fired())
        .expect("the timer and the task both finish");
    let _ = scheduler.now();
}
