//! Remote::blocking_call_from_thread: a thread calls into the running reactor and waits for
//! the answer; typed errors instead of a hang when the reactor is not running.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use torsion_reactor::testing::{PATIENCE, test_reactor};
use torsion_reactor::{Deferred, Error, ErrorKind, Reactor, defer_later};

/// Starts `f` on a new thread once the reactor runs `run_until`, and runs the reactor until
/// the thread has answered.
fn from_thread<T: Send + 'static>(
    r: &Reactor,
    f: impl FnOnce(torsion_reactor::Remote) -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let remote = r.remote();
    let mut f = Some(f);
    let mut answer = None;
    r.call_soon(move || {
        let f = f.take().unwrap();
        std::thread::spawn(move || tx.send(f(remote)).unwrap());
    });
    r.run_until(PATIENCE, || {
        if answer.is_none() {
            answer = rx.try_recv().ok();
        }
        answer.is_some()
    })
    .expect("the thread answered");
    answer.unwrap()
}

#[test]
fn a_thread_gets_the_result_of_a_deferred_and_of_a_plain_call() {
    let r = test_reactor();
    let got = from_thread(&r, |remote| {
        let later = remote.blocking_call_from_thread(|| {
            defer_later(&Reactor::current(), Duration::from_millis(5), || 6 * 7)
        });
        let plain = remote.blocking_call(|| Reactor::current().pending_timers());
        (later, plain)
    });
    assert_eq!(got.0.unwrap(), 42);
    assert_eq!(got.1.unwrap(), 0);
}

#[test]
fn errors_and_panics_come_back_typed() {
    let r = test_reactor();
    r.set_fail_on_caught(false);
    let (failed, panicked) = from_thread(&r, |remote| {
        let failed: Result<(), Error> = remote.blocking_call_from_thread(|| {
            Deferred::fail(Error::new(ErrorKind::Other, "no such user"))
        });
        let panicked = remote.blocking_call(|| -> u8 { panic!("bug on the reactor") });
        (failed, panicked)
    });
    assert_eq!(failed.unwrap_err().to_string(), "no such user");
    let panicked = panicked.unwrap_err();
    assert_eq!(panicked.kind(), ErrorKind::Panicked);
    assert!(
        panicked.to_string().contains("bug on the reactor"),
        "{panicked}"
    );
}

#[test]
fn a_reactor_that_is_not_running_is_an_error_not_a_hang() {
    let r = test_reactor();
    let remote = r.remote();
    let err = std::thread::spawn(move || remote.blocking_call(|| 1))
        .join()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotRunning);
    // On the reactor's own thread it would wait forever.
    let err = r.remote().blocking_call(|| 1).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongThread);
}

#[test]
fn a_reactor_that_stops_before_the_answer_releases_the_waiting_thread() {
    let r = test_reactor();
    let started = Arc::new(AtomicBool::new(false));
    let s = started.clone();
    let remote = r.remote();
    let (tx, rx) = mpsc::channel();
    r.call_soon(move || {
        std::thread::spawn(move || {
            let never: Result<(), Error> = remote.blocking_call_from_thread(move || {
                s.store(true, Ordering::SeqCst);
                let (d, resolver) = Deferred::new();
                std::mem::forget(resolver); // never fires
                d
            });
            tx.send(never).unwrap();
        });
    });
    r.run_until(PATIENCE, || started.load(Ordering::SeqCst))
        .expect("the call started");
    // run_until has returned: the reactor is no longer being run.
    let err = rx.recv_timeout(PATIENCE).expect("released").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotRunning);
    assert!(err.to_string().contains("stopped running"), "{err}");
}
