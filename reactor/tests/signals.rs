//! Signal handlers (asyncio's `add_signal_handler`): run from the loop, coalesced,
//! replaced and removed, one set per reactor, and the default action back once removed.

use std::cell::Cell;
use std::process::Command;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use torsion_reactor::testing::{PATIENCE, test_reactor};
use torsion_reactor::{ErrorKind, Reactor};

/// Raises `signal` in this thread: its handler has run when this returns (a signal sent
/// to the process with `kill` may be taken by another thread later). The handler writes
/// to every reactor's pipe for the signal, whichever thread runs it.
fn signal_self(signal: i32) {
    // SAFETY: raising a signal this process handles in these tests.
    assert_eq!(unsafe { libc::raise(signal) }, 0);
}

#[test]
fn a_handler_runs_from_the_loop_once_for_signals_that_arrived_together() {
    let reactor = test_reactor();
    let calls = Rc::new(Cell::new(0));
    let in_loop = Rc::new(Cell::new(true));
    let (c, l) = (calls.clone(), in_loop.clone());
    reactor
        .add_signal_handler(libc::SIGUSR1, move || {
            c.set(c.get() + 1);
            // From the loop: the reactor is iterating (a nested iterate is refused).
            let nested = Reactor::current().iterate(Duration::ZERO);
            l.set(l.get() && nested.is_err_and(|e| e.kind() == ErrorKind::AlreadyRunning));
        })
        .unwrap();
    for _ in 0..5 {
        signal_self(libc::SIGUSR1);
    }
    // Not called by the signal itself: only when the loop runs.
    assert_eq!(calls.get(), 0);
    reactor.run_until(PATIENCE, || calls.get() > 0).unwrap();
    for _ in 0..5 {
        reactor.iterate(Duration::from_millis(2)).unwrap();
    }
    assert_eq!(
        calls.get(),
        1,
        "five signals before the loop looked: one call"
    );
    assert!(in_loop.get());
    signal_self(libc::SIGUSR1);
    reactor.run_until(PATIENCE, || calls.get() == 2).unwrap();
    assert!(reactor.remove_signal_handler(libc::SIGUSR1));
    assert!(!reactor.remove_signal_handler(libc::SIGUSR1));
}

#[test]
fn a_new_handler_replaces_the_old_and_a_handler_may_remove_itself() {
    let reactor = test_reactor();
    let first = Rc::new(Cell::new(0));
    let second = Rc::new(Cell::new(0));
    let f = first.clone();
    reactor
        .add_signal_handler(libc::SIGHUP, move || f.set(f.get() + 1))
        .unwrap();
    let s = second.clone();
    reactor
        .add_signal_handler(libc::SIGHUP, move || {
            s.set(s.get() + 1);
            assert!(Reactor::current().remove_signal_handler(libc::SIGHUP));
        })
        .unwrap();
    signal_self(libc::SIGHUP);
    reactor.run_until(PATIENCE, || second.get() == 1).unwrap();
    assert_eq!(first.get(), 0, "replaced");
    assert!(
        !reactor.remove_signal_handler(libc::SIGHUP),
        "it removed itself"
    );
}

#[test]
fn signals_that_cannot_be_handled_are_refused() {
    let reactor = test_reactor();
    for signal in [libc::SIGKILL, libc::SIGSTOP, libc::SIGSEGV, 0, -1, 1000] {
        let err = reactor.add_signal_handler(signal, || {}).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{signal}: {err}");
    }
    let err = reactor
        .add_signal_handler(libc::SIGKILL, || {})
        .unwrap_err();
    assert!(
        err.to_string().starts_with("SIGKILL cannot be handled"),
        "{err}"
    );
}

#[test]
fn each_reactor_runs_its_own_handlers() {
    let reactor = test_reactor();
    let here = Rc::new(Cell::new(0));
    let h = here.clone();
    reactor
        .add_signal_handler(libc::SIGUSR2, move || h.set(h.get() + 1))
        .unwrap();
    let there = Arc::new(AtomicUsize::new(0));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let t = there.clone();
    let thread = std::thread::spawn(move || {
        let reactor = test_reactor();
        let t2 = t.clone();
        reactor
            .add_signal_handler(libc::SIGUSR2, move || {
                t2.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        ready_tx.send(()).unwrap();
        reactor
            .run_until(PATIENCE, || t.load(Ordering::SeqCst) > 0)
            .unwrap();
        reactor.remove_signal_handler(libc::SIGUSR2);
    });
    ready_rx.recv().unwrap();
    signal_self(libc::SIGUSR2);
    reactor.run_until(PATIENCE, || here.get() > 0).unwrap();
    thread.join().unwrap();
    assert_eq!(there.load(Ordering::SeqCst), 1);
    assert_eq!(here.get(), 1);
    reactor.remove_signal_handler(libc::SIGUSR2);
}

#[test]
fn a_handler_for_sigint_replaces_the_graceful_stop() {
    let reactor = test_reactor();
    reactor.set_handle_signals(true);
    let seen = Rc::new(Cell::new(0));
    let s = seen.clone();
    reactor
        .add_signal_handler(libc::SIGINT, move || {
            s.set(s.get() + 1);
            if s.get() == 2 {
                Reactor::current().stop().unwrap();
            }
        })
        .unwrap();
    reactor.call_soon(|| signal_self(libc::SIGINT));
    let s = seen.clone();
    reactor.call_later(Duration::from_millis(50), move || {
        // Still running after the first SIGINT: the handler took its place.
        assert_eq!(s.get(), 1);
        signal_self(libc::SIGINT);
    });
    reactor.run().unwrap();
    assert_eq!(seen.get(), 2);
    assert!(reactor.remove_signal_handler(libc::SIGINT));
}

/// Run as a child process of the test below: handles SIGUSR1, removes the handler, then
/// raises SIGUSR1, which must kill it (the default action is back).
#[test]
fn removed_handler_child() {
    if std::env::var_os("TORSION_SIGNAL_CHILD").is_none() {
        return; // only meaningful as the child of the test below
    }
    let reactor = test_reactor();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    reactor
        .add_signal_handler(libc::SIGUSR1, move || c.set(c.get() + 1))
        .unwrap();
    signal_self(libc::SIGUSR1);
    reactor.run_until(PATIENCE, || calls.get() == 1).unwrap();
    assert!(reactor.remove_signal_handler(libc::SIGUSR1));
    // `raise` delivers to this thread before it returns: the process ends here.
    // SAFETY: raising a signal in this (test child) process.
    unsafe { libc::raise(libc::SIGUSR1) };
    std::process::exit(3);
}

#[test]
fn once_removed_the_signal_has_its_default_effect_again() {
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "removed_handler_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TORSION_SIGNAL_CHILD", "1")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.status.signal(),
        Some(libc::SIGUSR1),
        "{:?}\n{}",
        status.status,
        String::from_utf8_lossy(&status.stderr)
    );
}
