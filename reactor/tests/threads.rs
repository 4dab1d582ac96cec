//! The reactor's thread pool: defer_to_thread under load, panics, call_in_thread, shutdown.

mod common;

use common::{PATIENCE, reactor, run};

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use torsion_reactor::{ErrorKind, Reactor, gather};

#[test]
fn defer_to_thread_under_load_delivers_every_result_on_the_reactor_thread() {
    let r = reactor();
    r.set_thread_pool_size(4).unwrap();
    let reactor_thread = std::thread::current().id();
    let received = Rc::new(Cell::new(0u64));
    let sum = Rc::new(Cell::new(0u64));
    const JOBS: u64 = 10_000;
    for i in 0..JOBS {
        let (received, sum) = (received.clone(), sum.clone());
        r.defer_to_thread(move || {
            assert_ne!(std::thread::current().id(), reactor_thread);
            i * 2
        })
        .on_result(move |v| {
            assert_eq!(std::thread::current().id(), reactor_thread);
            received.set(received.get() + 1);
            sum.set(sum.get() + v.unwrap());
        });
    }
    assert!(r.thread_pool_threads() <= 4);
    r.run_until(PATIENCE, || received.get() == JOBS).unwrap();
    assert_eq!(sum.get(), JOBS * (JOBS - 1));
    assert!(r.thread_pool_threads() >= 1 && r.thread_pool_threads() <= 4);
}

#[test]
fn a_panic_in_a_thread_job_fails_its_deferred_and_the_pool_goes_on() {
    let r = reactor();
    let bad = r.defer_to_thread(|| -> u32 { panic!("thread-job-panic") });
    let good = r.defer_to_thread(|| 5u32);
    let out = r
        .run_until_complete(async move { (bad.await, good.await) })
        .unwrap();
    let err = out.0.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Panicked));
    assert!(err.to_string().contains("thread-job-panic"));
    assert!(
        err.to_string().contains("threads.rs"),
        "names the call site: {err}"
    );
    assert_eq!(out.1.unwrap(), 5);

    // call_in_thread: a panicking job is logged, the workers go on.
    r.call_in_thread(|| panic!("call-in-thread-panic")).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..10 {
        let (d, remote) = (done.clone(), r.remote());
        r.call_in_thread(move || {
            d.fetch_add(1, Ordering::SeqCst);
            remote.call_from_thread(|| ()).unwrap(); // wake the reactor to look
        })
        .unwrap();
    }
    r.run_until(PATIENCE, || done.load(Ordering::SeqCst) == 10)
        .unwrap();
}

#[test]
fn call_in_thread_reports_back_through_remote_and_the_pool_is_joined_at_shutdown() {
    let r = reactor();
    thread_local! {
        static GOT: Rc<RefCell<Vec<i32>>> = Rc::new(RefCell::new(Vec::new()));
    }
    let remote = r.remote();
    for i in 0..8 {
        let remote = remote.clone();
        r.call_in_thread(move || {
            // Runs on the reactor's thread, so it may touch its thread-locals.
            let report = move || GOT.with(|g| g.borrow_mut().push(i));
            remote.call_from_thread(report).unwrap();
        })
        .unwrap();
    }
    let g = GOT.with(|g| g.clone());
    r.run_until(PATIENCE, || g.borrow().len() == 8).unwrap();
    let mut all = g.borrow().clone();
    all.sort();
    assert_eq!(all, (0..8).collect::<Vec<_>>());

    // run() shuts the pool down on the way out; the next job starts it again.
    assert!(r.thread_pool_threads() > 0);
    r.call_soon(|| Reactor::current().stop().unwrap());
    run(&r);
    assert_eq!(r.thread_pool_threads(), 0);
    let again = r.run_until_complete(r.defer_to_thread(|| "again")).unwrap();
    assert_eq!(again.unwrap(), "again");
}

#[test]
fn pool_size_is_bounded_and_validated() {
    let r = reactor();
    assert!(matches!(
        r.set_thread_pool_size(0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    ));
    r.set_thread_pool_size(2).unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let jobs = (0..50).map(|_| {
        let (running, peak) = (running.clone(), peak.clone());
        r.defer_to_thread(move || {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::yield_now();
            running.fetch_sub(1, Ordering::SeqCst);
        })
    });
    let all = r.run_until_complete(gather(jobs)).unwrap();
    assert_eq!(all.unwrap().len(), 50);
    assert!(peak.load(Ordering::SeqCst) <= 2);
    assert!(
        r.thread_pool_threads() == 0,
        "joined when run_until_complete's run() ended"
    );
}
