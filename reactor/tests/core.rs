//! The reactor core: ordering, timers, Clock, threads, panics, stop and restart.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{logged, logs, reactor, run};
use torsion_reactor::{Clock, ErrorKind, Phase, Reactor, SystemEvent};

fn stop_later(r: &Reactor, ms: u64) {
    r.call_later(Duration::from_millis(ms), || {
        Reactor::current().stop().unwrap()
    });
}

#[test]
fn call_soon_is_fifo_and_defers_nested_calls_to_the_next_iteration() {
    let r = reactor();
    let log = Rc::new(RefCell::new(Vec::new()));
    for i in 0..3 {
        let log = log.clone();
        r.call_soon(move || {
            log.borrow_mut().push(format!("a{i}"));
            let log2 = log.clone();
            Reactor::current().call_soon(move || log2.borrow_mut().push(format!("b{i}")));
        });
    }
    // Three iterations with zero timeout: first runs a0..a2, second b0..b2.
    r.iterate(Duration::ZERO).unwrap();
    assert_eq!(*log.borrow(), ["a0", "a1", "a2"]);
    r.iterate(Duration::ZERO).unwrap();
    assert_eq!(*log.borrow(), ["a0", "a1", "a2", "b0", "b1", "b2"]);
}

#[test]
fn timers_fire_in_deadline_order_fifo_on_ties_and_never_early() {
    let r = reactor();
    let log = Rc::new(RefCell::new(Vec::new()));
    let start = Instant::now();
    let deadline = start + Duration::from_millis(30);
    for i in 0..5 {
        let log = log.clone();
        r.call_at(deadline, move || log.borrow_mut().push((i, Instant::now())));
    }
    let l = log.clone();
    r.call_later(Duration::from_millis(10), move || {
        l.borrow_mut().push((100, Instant::now()))
    });
    r.run_until(Duration::from_secs(10), || log.borrow().len() == 6)
        .unwrap();
    let order: Vec<i32> = log.borrow().iter().map(|(i, _)| *i).collect();
    assert_eq!(order, [100, 0, 1, 2, 3, 4]);
    assert!(log.borrow()[0].1 >= start + Duration::from_millis(10));
    for (_, at) in &log.borrow()[1..] {
        assert!(*at >= deadline, "fired early");
    }
}

#[test]
fn zero_delay_timer_rearmed_from_itself_runs_once_per_iteration() {
    let r = reactor();
    let count = Rc::new(Cell::new(0));
    fn arm(count: Rc<Cell<u32>>) {
        Reactor::current().call_later(Duration::ZERO, move || {
            count.set(count.get() + 1);
            arm(count.clone());
        });
    }
    arm(count.clone());
    r.iterate(Duration::from_millis(50)).unwrap();
    assert_eq!(count.get(), 1);
    r.iterate(Duration::from_millis(50)).unwrap();
    assert_eq!(count.get(), 2);
}

#[test]
fn cancel_reset_delay_and_their_errors() {
    let clock = Clock::new();
    let fired = Rc::new(Cell::new(0));
    let f = fired.clone();
    let call = clock.call_later(Duration::from_secs(10), move || f.set(f.get() + 1));
    let t0 = call.time().unwrap();
    call.delay(Duration::from_secs(5)).unwrap();
    assert_eq!(call.time().unwrap(), t0 + Duration::from_secs(5));
    clock.advance(Duration::from_secs(12));
    assert_eq!(fired.get(), 0, "delayed to 15 s");
    call.reset(Duration::from_secs(1)).unwrap(); // now 12 + 1
    clock.advance(Duration::from_millis(999));
    assert_eq!(fired.get(), 0);
    clock.advance(Duration::from_millis(1));
    assert_eq!(fired.get(), 1);
    assert!(!call.active());
    assert!(call.time().is_none());
    assert!(matches!(
        call.cancel().unwrap_err().kind(),
        ErrorKind::AlreadyCalled
    ));
    assert!(matches!(
        call.reset(Duration::ZERO).unwrap_err().kind(),
        ErrorKind::AlreadyCalled
    ));
    assert!(matches!(
        call.delay(Duration::ZERO).unwrap_err().kind(),
        ErrorKind::AlreadyCalled
    ));

    let other = clock.call_later(Duration::from_secs(1), || {
        panic!("cancelled calls never run")
    });
    other.cancel().unwrap();
    assert!(matches!(
        other.cancel().unwrap_err().kind(),
        ErrorKind::AlreadyCancelled
    ));
    assert!(matches!(
        other.reset(Duration::ZERO).unwrap_err().kind(),
        ErrorKind::AlreadyCancelled
    ));
    let msg = other.cancel().unwrap_err().to_string();
    assert_eq!(
        msg,
        "cannot cancel a delayed call that was already cancelled"
    );
    clock.advance(Duration::from_secs(5));
}

#[test]
fn cancel_drops_the_closure_immediately() {
    let r = reactor();
    let token = Rc::new(());
    let t = token.clone();
    let call = r.call_later(Duration::from_secs(3600), move || drop(t));
    assert_eq!(Rc::strong_count(&token), 2);
    call.cancel().unwrap();
    assert_eq!(Rc::strong_count(&token), 1);
}

#[test]
fn huge_delay_saturates_instead_of_panicking() {
    let r = reactor();
    let call = r.call_later(Duration::MAX, || {});
    assert!(call.active());
    call.cancel().unwrap();
    assert!(torsion_reactor::delay_from_secs(f64::INFINITY).is_err());
    assert!(matches!(
        torsion_reactor::delay_from_secs(-0.5).unwrap_err().kind(),
        ErrorKind::InvalidDelay
    ));
}

#[test]
fn clock_runs_calls_scheduled_during_advance_when_due() {
    let clock = Clock::new();
    let log = Rc::new(RefCell::new(Vec::new()));
    let (c, l) = (clock.clone(), log.clone());
    clock.call_later(Duration::from_secs(1), move || {
        l.borrow_mut().push("first");
        let l2 = l.clone();
        c.call_later(Duration::from_secs(1), move || {
            l2.borrow_mut().push("second")
        });
        let l3 = l.clone();
        c.call_later(Duration::from_secs(5), move || l3.borrow_mut().push("late"));
    });
    clock.advance(Duration::from_secs(3));
    assert_eq!(*log.borrow(), ["first", "second"]);
    assert_eq!(clock.pending(), 1);
    assert_eq!(clock.elapsed(), Duration::from_secs(3));
}

#[test]
fn call_from_many_threads_loses_nothing() {
    thread_local!(static SEEN: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) });
    let r = reactor();
    let remote = r.remote();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let remote = remote.clone();
            std::thread::spawn(move || {
                for i in 0..1000u64 {
                    let v = t * 1000 + i;
                    remote
                        .call_from_thread(move || SEEN.with(|s| s.borrow_mut().push(v)))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    r.run_until(Duration::from_secs(10), || {
        SEEN.with(|s| s.borrow().len()) == 8000
    })
    .unwrap();
    let mut seen = SEEN.with(|s| s.borrow().clone());
    // Each thread's calls arrive in the order that thread made them.
    for t in 0..8u64 {
        let mine: Vec<u64> = seen.iter().copied().filter(|v| v / 1000 == t).collect();
        assert!(mine.windows(2).all(|w| w[0] < w[1]));
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..8000).collect::<Vec<u64>>(),
        "none lost or duplicated"
    );
}

#[test]
fn calls_from_threads_before_run_and_while_stopped_run_later() {
    let r = reactor();
    let remote = r.remote();
    let flag = Arc::new(Mutex::new(Vec::new()));
    let f = flag.clone();
    std::thread::spawn(move || {
        remote
            .call_from_thread(move || f.lock().unwrap().push("queued before run"))
            .unwrap();
    })
    .join()
    .unwrap();
    stop_later(&r, 1);
    run(&r);
    assert_eq!(*flag.lock().unwrap(), ["queued before run"]);
}

#[test]
fn remote_wakes_a_reactor_blocked_without_timers() {
    let r = reactor();
    let remote = r.remote();
    let handle = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        remote
            .call_from_thread(|| Reactor::current().stop().unwrap())
            .unwrap();
    });
    // No timers: only the remote call's wake-up can end this run.
    run(&r);
    handle.join().unwrap();
}

#[test]
fn remote_refuses_calls_once_the_reactor_thread_is_gone() {
    let remote = std::thread::spawn(|| Reactor::current().remote())
        .join()
        .unwrap();
    let err = remote.call_from_thread(|| {}).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::ReactorGone));
}

#[test]
fn panicking_callbacks_are_logged_with_their_origin_and_the_loop_goes_on() {
    logs();
    let r = reactor();
    r.set_fail_on_caught(false); // the panics are the point here
    let after = Rc::new(Cell::new(false));
    r.call_soon(|| panic!("boom in call_soon"));
    r.call_later(Duration::from_millis(1), || panic!("boom in a timer"));
    let a = after.clone();
    r.call_later(Duration::from_millis(5), move || {
        a.set(true);
        Reactor::current().stop().unwrap();
    });
    run(&r);
    assert!(after.get());
    let soon = logged("boom in call_soon");
    let soon = soon.first().expect("the panic was logged");
    assert!(soon.starts_with("ERROR"), "{soon}");
    assert!(soon.contains("core.rs"), "origin in {soon}");
    assert!(!logged("boom in a timer").is_empty());
}

#[test]
fn stop_errors_when_not_running_and_the_reactor_restarts() {
    let r = reactor();
    assert!(matches!(
        r.stop().unwrap_err().kind(),
        ErrorKind::NotRunning
    ));
    let runs = Rc::new(Cell::new(0));
    let startups = Rc::new(Cell::new(0));
    let shutdowns = Rc::new(RefCell::new(Vec::new()));
    let s = startups.clone();
    let id = r.add_system_event_trigger(Phase::During, SystemEvent::Startup, move || {
        s.set(s.get() + 1)
    });
    for phase in [Phase::After, Phase::Before, Phase::During] {
        let sd = shutdowns.clone();
        r.add_system_event_trigger(phase, SystemEvent::Shutdown, move || {
            sd.borrow_mut().push(phase)
        });
    }
    for _ in 0..3 {
        let runs2 = runs.clone();
        r.call_when_running(move || {
            runs2.set(runs2.get() + 1);
            let reactor = Reactor::current();
            assert!(reactor.running());
            assert!(matches!(
                reactor.run().unwrap_err().kind(),
                ErrorKind::AlreadyRunning
            ));
            reactor.stop().unwrap();
        });
        run(&r);
        assert!(!r.running());
    }
    assert_eq!(runs.get(), 3);
    assert_eq!(startups.get(), 3);
    assert_eq!(
        shutdowns.borrow()[..3],
        [Phase::Before, Phase::During, Phase::After]
    );
    assert!(r.remove_system_event_trigger(id));
    assert!(!r.remove_system_event_trigger(id));
}

#[test]
fn stop_from_a_callback_ends_after_the_current_iteration() {
    let r = reactor();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    r.call_soon(move || {
        l.borrow_mut().push("stopper");
        Reactor::current().stop().unwrap();
        let l2 = l.clone();
        Reactor::current().call_soon(move || l2.borrow_mut().push("next iteration"));
    });
    let l = log.clone();
    r.call_soon(move || l.borrow_mut().push("same iteration"));
    run(&r);
    assert_eq!(log.borrow()[..2], ["stopper", "same iteration"]);
}

#[test]
fn add_reader_and_writer_on_a_socket_pair() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    let r = reactor();
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let a = Rc::new(a);
    let fd = a.as_raw_fd();
    let got = Rc::new(RefCell::new(Vec::new()));
    let (reader, g) = (a.clone(), got.clone());
    r.add_reader(a.clone(), move || {
        let mut buf = [0u8; 16];
        if let Ok(n) = (&*reader).read(&mut buf) {
            g.borrow_mut().extend_from_slice(&buf[..n]);
        }
    })
    .unwrap();
    let writes = Rc::new(Cell::new(0));
    let w = writes.clone();
    r.add_writer(a.clone(), move || {
        w.set(w.get() + 1);
        Reactor::current().remove_writer(fd);
    })
    .unwrap();
    assert!(matches!(
        r.add_reader(a.clone(), || {}).unwrap_err().kind(),
        ErrorKind::AlreadyWatched
    ));
    (&b).write_all(b"ping").unwrap();
    r.run_until(Duration::from_secs(10), || got.borrow().len() == 4)
        .unwrap();
    assert_eq!(&*got.borrow(), b"ping");
    assert_eq!(writes.get(), 1, "the writer removed itself after one call");
    let before = r.registered_sources();
    assert!(r.remove_reader(fd));
    assert!(!r.remove_reader(fd));
    assert_eq!(r.registered_sources(), before - 1);
    assert_eq!(Rc::strong_count(&a), 1, "the reactor dropped its handles");
}

#[test]
fn a_reader_that_removes_itself_is_told_it_was_there_and_nothing_stays_registered() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    let r = reactor();
    let (a, b) = UnixStream::pair().unwrap();
    let fd = a.as_raw_fd();
    let before = r.registered_sources();
    let answers = Rc::new(RefCell::new(Vec::new()));
    let ans = answers.clone();
    r.add_reader(a, move || {
        let r = Reactor::current();
        ans.borrow_mut().push(r.remove_reader(fd));
        ans.borrow_mut().push(r.remove_reader(fd));
    })
    .unwrap();
    (&b).write_all(b"x").unwrap();
    r.run_until(Duration::from_secs(10), || !answers.borrow().is_empty())
        .unwrap();
    assert_eq!(*answers.borrow(), [true, false]);
    assert_eq!(r.registered_sources(), before);
}

#[test]
fn add_reader_works_on_a_file_which_is_always_readable() {
    use std::io::Read;
    let r = reactor();
    let path = std::env::temp_dir().join(format!("torsion-reader-{}", std::process::id()));
    std::fs::write(&path, vec![b'r'; 100_000]).unwrap();
    let file = Rc::new(std::fs::File::open(&path).unwrap());
    std::fs::remove_file(&path).unwrap();
    let got = Rc::new(Cell::new(0usize));
    let done = Rc::new(Cell::new(false));
    let (f, g, d) = (file.clone(), got.clone(), done.clone());
    r.add_reader(file, move || {
        let mut buf = [0u8; 8192];
        match (&*f).read(&mut buf) {
            Ok(0) | Err(_) => {
                d.set(true);
                Reactor::current().remove_reader(std::os::fd::AsRawFd::as_raw_fd(&*f));
            }
            Ok(n) => g.set(g.get() + n),
        }
    })
    .unwrap();
    r.run_until(Duration::from_secs(10), || done.get()).unwrap();
    assert_eq!(got.get(), 100_000);
}
