//! Observability: the loop's counters (`Reactor::stats`) over real loopback connections,
//! the slow-callback warnings (asyncio's debug mode), and what reaches the error handler
//! (unhandled Deferred errors; failed accepts, provoked in a child process whose
//! descriptor table is full).
//!
//! A slow callback is what these tests are about, so some callbacks here block the loop on
//! purpose: they spin on the clock for a few tens of milliseconds (never `sleep`).

mod common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{PATIENCE, listen, logged, logs};
use torsion_reactor::{
    Caught, CaughtKind, ConnectionLost, Deferred, ErrorKind, Protocol, Reactor, Transport,
    factory_fn,
};

/// The test reactor, with no random faults on this test's thread: these tests check the
/// counters exactly (bytes, accept errors, time spent waiting), and an injected fault is
/// counted too (an accept error, a write cut short, a wait that returns at once).
fn reactor() -> torsion_reactor::Reactor {
    #[cfg(feature = "fault-injection")]
    torsion_reactor::testing::faults::reset();
    common::reactor()
}

/// Keeps the loop busy for `d` (the thing under test: a callback that blocks the loop).
fn spin(d: Duration) {
    let began = Instant::now();
    while began.elapsed() < d {
        std::hint::spin_loop();
    }
}

struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        t.write(data);
    }
}

#[test]
fn an_echoed_connection_is_counted_from_accept_to_its_clean_close() {
    let r = reactor();
    let (_port, addr) = listen(&r, factory_fn(|_| Echo));
    r.iterate(Duration::ZERO).unwrap();
    let before = r.stats();

    let client = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        let sent = vec![7u8; 100_000];
        s.write_all(&sent).expect("write");
        s.shutdown(Shutdown::Write).expect("shutdown");
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("read the echo to the end");
        got.len()
    });
    r.run_until(PATIENCE, || {
        client.is_finished() && r.stats().connections_closed() > before.connections_closed()
    })
    .expect("the client is echoed and the connection closes");
    assert_eq!(client.join().unwrap(), 100_000);

    let after = r.stats();
    assert_eq!(after.accepted - before.accepted, 1);
    assert_eq!(after.connections_opened - before.connections_opened, 1);
    assert_eq!(after.closed_clean - before.closed_clean, 1);
    assert_eq!(after.connections_open, 0);
    assert_eq!(after.bytes_read - before.bytes_read, 100_000);
    assert_eq!(after.bytes_written - before.bytes_written, 100_000);
    assert_eq!(after.write_buffered, 0);
    assert!(after.io_events > before.io_events, "{after:?}");
    assert!(after.iterations > before.iterations, "{after:?}");
    assert!(
        after.callbacks > before.callbacks,
        "connection_lost went through the queue: {after:?}"
    );
    assert_eq!(after.accept_errors, 0);
    let text = after.to_text();
    assert!(text.contains("\naccepted 1\n"), "{text}");
    assert!(
        text.contains(&format!("\nbytes_read {}\n", after.bytes_read)),
        "{text}"
    );
}

/// Closes its connection the way `how` says, when data arrives.
struct Closer {
    how: &'static str,
}

impl Protocol for Closer {
    fn data_received(&mut self, t: &Transport, _data: &[u8]) {
        match self.how {
            "abort" => t.abort_connection(),
            "panic" => panic!("observe-closer-panics"),
            _ => {}
        }
    }
}

#[test]
fn closes_are_counted_by_reason() {
    let r = reactor();
    r.set_fail_on_caught(false); // one protocol panics on purpose
    r.set_error_handler(|_| {}); // and its report is not news here
    let lost: Rc<RefCell<Vec<String>>> = Rc::default();
    let open = |how: &'static str| {
        let lost = lost.clone();
        struct Watch(Closer, Rc<RefCell<Vec<String>>>);
        impl Protocol for Watch {
            fn data_received(&mut self, t: &Transport, data: &[u8]) {
                self.0.data_received(t, data)
            }
            fn connection_lost(&mut self, reason: &ConnectionLost) {
                self.1.borrow_mut().push(format!("{reason:?}"));
            }
        }
        listen(&r, factory_fn(move |_| Watch(Closer { how }, lost.clone()))).1
    };
    let (abort, panic, reset) = (open("abort"), open("panic"), open("reset"));
    r.iterate(Duration::ZERO).unwrap();
    let before = r.stats();

    let clients = std::thread::spawn(move || {
        for addr in [abort, panic] {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(b"x").expect("write");
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest); // the server closes it
        }
        // A reset: linger 0, then close with nothing read.
        let s = socket2::Socket::from(TcpStream::connect(reset).expect("connect"));
        s.set_linger(Some(Duration::ZERO)).expect("SO_LINGER");
        drop(s);
    });
    r.run_until(PATIENCE, || lost.borrow().len() == 3)
        .expect("three connections end");
    clients.join().unwrap();
    let after = r.stats();
    assert_eq!(after.closed_aborted - before.closed_aborted, 1, "{lost:?}");
    assert_eq!(after.closed_error - before.closed_error, 1, "{lost:?}");
    assert_eq!(after.closed_reset - before.closed_reset, 1, "{lost:?}");
    assert_eq!(after.closed_clean, before.closed_clean, "{lost:?}");
    assert_eq!(after.connections_open, 0);
}

#[test]
fn write_buffered_shows_the_bytes_a_peer_does_not_read() {
    let r = reactor();
    let transport: Rc<RefCell<Option<Transport>>> = Rc::default();
    let t = transport.clone();
    struct Flood(Rc<RefCell<Option<Transport>>>);
    impl Protocol for Flood {
        fn connection_made(&mut self, t: &Transport) {
            t.set_write_buffer_limits(64 << 20, 32 << 20); // no pause: we want it queued
            t.write(&vec![1u8; 16 << 20]);
            *self.0.borrow_mut() = Some(t.clone());
        }
        fn data_received(&mut self, _t: &Transport, _data: &[u8]) {}
    }
    let (_port, addr) = listen(&r, factory_fn(move |_| Flood(t.clone())));
    let sleeper = TcpStream::connect(addr).expect("connect"); // never reads
    r.run_until(PATIENCE, || transport.borrow().is_some())
        .expect("the connection is made");
    let t = transport.borrow().clone().unwrap();
    r.run_until(PATIENCE, || {
        r.stats().write_buffered == t.buffer_size() as u64 && t.buffer_size() > 0
    })
    .expect("the reactor's count is the connection's buffer");
    let stats = r.stats();
    assert!(stats.write_buffered > 0 && stats.write_buffered < 16 << 20);
    assert_eq!(
        stats.bytes_written + stats.write_buffered,
        16 << 20,
        "what was not sent is what is buffered"
    );
    t.abort_connection();
    assert_eq!(r.stats().write_buffered, 0, "an abort drops the buffer");
    drop(sleeper);
}

#[test]
fn a_blocked_loop_shows_as_timer_lag_and_busy_time() {
    let r = reactor();
    r.iterate(Duration::ZERO).unwrap();
    r.reset_peaks();
    let before = r.stats();
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    r.call_later(Duration::from_millis(1), move || f.set(true));
    r.call_soon(|| spin(Duration::from_millis(50)));
    r.run_until(PATIENCE, || fired.get())
        .expect("the timer fires");
    let after = r.stats();
    assert_eq!(after.timers - before.timers, 1);
    // Due 1 ms in, it could not run before the 50 ms callback returned.
    assert!(
        after.timer_lag_max >= Duration::from_millis(45),
        "{:?}",
        after.timer_lag_max
    );
    assert!(after.timer_lag_total - before.timer_lag_total >= after.timer_lag_max);
    assert!(after.busy - before.busy >= Duration::from_millis(50));
    assert!(after.utilisation_since(&before) > 0.0);
    assert!(after.utilisation_since(&before) <= 1.0);

    r.reset_peaks();
    assert_eq!(r.stats().timer_lag_max, Duration::ZERO);
    assert_eq!(
        r.stats().timer_lag_total,
        after.timer_lag_total,
        "totals stay"
    );
}

#[test]
fn waiting_in_the_poller_counts_as_polling_not_busy() {
    let r = reactor();
    r.iterate(Duration::ZERO).unwrap();
    let before = r.stats();
    r.iterate(Duration::from_millis(30)).unwrap(); // nothing to do: it waits
    let after = r.stats();
    assert!(after.polling - before.polling >= Duration::from_millis(25));
    assert!(after.utilisation_since(&before) < 0.5, "{after:?}");
}

#[test]
fn slow_callbacks_are_logged_with_their_origin_and_duration() {
    logs();
    let r = reactor();
    r.set_slow_callback_threshold(Some(Duration::from_millis(20)));
    let before = r.stats();
    let done = Rc::new(Cell::new(0));

    let d = done.clone();
    let soon_line = line!() + 1; // the call on the next line
    r.call_soon(move || {
        spin(Duration::from_millis(40));
        d.set(d.get() + 1)
    });
    let d = done.clone();
    let timer_line = line!() + 1; // the call on the next line
    r.call_later(Duration::ZERO, move || {
        spin(Duration::from_millis(40));
        d.set(d.get() + 1)
    });
    let d = done.clone();
    let task_line = line!() + 1; // the call on the next line
    let _task = r.spawn(async move {
        spin(Duration::from_millis(40));
        d.set(d.get() + 1)
    });
    let d = done.clone();
    let fast_line = line!() + 1; // the call on the next line
    r.call_soon(move || d.set(d.get() + 1));

    struct Slow;
    impl Protocol for Slow {
        fn data_received(&mut self, _t: &Transport, _data: &[u8]) {
            spin(Duration::from_millis(40));
        }
    }
    let (_port, addr) = listen(&r, factory_fn(|_| Slow));
    let mut client = TcpStream::connect(addr).expect("connect");
    client.write_all(b"slow").unwrap();
    let peer = client.local_addr().unwrap().to_string();
    let method = format!("the protocol's data_received on the connection from {peer}");

    r.run_until(PATIENCE, || done.get() == 4 && !logged(&method).is_empty())
        .expect("every callback runs and the slow protocol method is logged");
    let file = "observe.rs";
    for (what, line) in [("callback", soon_line), ("timer", timer_line)] {
        let lines = logged(&format!("a {what} scheduled at "))
            .into_iter()
            .filter(|l| l.contains(&format!("{file}:{line}:")))
            .collect::<Vec<_>>();
        assert_eq!(lines.len(), 1, "the slow {what} is logged once: {lines:?}");
        assert!(lines[0].starts_with("WARN "), "{lines:?}");
        assert!(lines[0].contains("blocked the loop for 0.0"), "{lines:?}");
    }
    let task = logged("a poll of the task spawned at ")
        .into_iter()
        .filter(|l| l.contains(&format!("{file}:{task_line}:")))
        .count();
    assert_eq!(task, 1, "the slow task poll is logged");
    let fast = logged(&format!("{file}:{fast_line}:"));
    assert!(fast.is_empty(), "a fast callback is not: {fast:?}");
    let method = logged(&method);
    assert_eq!(method.len(), 1, "{method:?}");
    assert!(r.stats().slow_callbacks - before.slow_callbacks >= 4);
}

#[test]
fn slow_callbacks_are_not_timed_while_the_threshold_is_off() {
    logs();
    let r = reactor();
    assert_eq!(r.slow_callback_threshold(), None, "off unless asked");
    let before = r.stats();
    let ran = Rc::new(Cell::new(false));
    let d = ran.clone();
    let line = line!() + 1; // the call on the next line
    r.call_soon(move || {
        spin(Duration::from_millis(30));
        d.set(true)
    });
    r.run_until(PATIENCE, || ran.get()).expect("it runs");
    assert!(logged(&format!("observe.rs:{line}:")).is_empty());
    assert_eq!(r.stats().slow_callbacks, before.slow_callbacks);
}

#[test]
fn an_unhandled_deferred_error_reaches_the_handler_typed() {
    let r = reactor();
    let seen: Rc<RefCell<Vec<Caught>>> = Rc::default();
    let s = seen.clone();
    r.set_error_handler(move |caught| s.borrow_mut().push(caught.clone()));
    let line = line!() + 1; // the call on the next line
    let d = Deferred::<u32>::fail(torsion_reactor::Error::new(
        ErrorKind::Other,
        "observe-unhandled",
    ));
    drop(d);
    r.run_until(PATIENCE, || !seen.borrow().is_empty())
        .expect("the error reaches the handler");
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].kind(), CaughtKind::UnhandledError);
    assert!(seen[0].message().contains("observe-unhandled"), "{seen:?}");
    assert!(
        seen[0].context().contains(&format!("observe.rs:{line}:")),
        "{seen:?}"
    );
    assert_eq!(seen[0].os_error(), None);
}

/// Runs the test `name` of this binary in a child process with `env` set, and checks that
/// it passed (the child does what must not happen in a shared test process: change the
/// descriptor limit, read an environment variable at reactor creation).
fn in_child(name: &str, env: (&str, &str)) {
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(env.0, env.1)
        .output()
        .expect("the child runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the child failed:\n{text}");
    assert!(text.contains("1 passed"), "the child ran the test:\n{text}");
}

const CHILD: &str = "TORSION_OBSERVE_CHILD";

fn is_child(what: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|v| v == what)
}

#[test]
fn accepting_without_descriptors_reaches_the_handler_then_serving_resumes() {
    in_child("child_out_of_descriptors", (CHILD, "fds"));
}

#[test]
fn child_out_of_descriptors() {
    if !is_child("fds") {
        return; // run by the test above, in its own process
    }
    // This test is about the kernel's own EMFILE and how often it is reported: an injected
    // accept fault (ECONNABORTED is reported too) would add a report the kernel never made.
    #[cfg(feature = "fault-injection")]
    let _real = torsion_reactor::testing::faults::suspend();
    let r = reactor();
    let seen: Rc<RefCell<Vec<Caught>>> = Rc::default();
    let s = seen.clone();
    r.set_error_handler(move |caught| s.borrow_mut().push(caught.clone()));
    let served = Rc::new(Cell::new(false));
    let sv = served.clone();
    struct Mark(Rc<Cell<bool>>);
    impl Protocol for Mark {
        fn connection_made(&mut self, t: &Transport) {
            self.0.set(true);
            t.write(b"hi");
        }
        fn data_received(&mut self, _t: &Transport, _data: &[u8]) {}
    }
    let (_port, addr) = listen(&r, factory_fn(move |_| Mark(sv.clone())));
    r.iterate(Duration::ZERO).unwrap();
    let client = TcpStream::connect(addr).expect("connect (the kernel completes it)");

    // Fill the descriptor table, under a low limit so that it is quick.
    let limit = libc::rlimit {
        rlim_cur: 256,
        rlim_max: 256,
    };
    // SAFETY: setrlimit reads the struct we pass; this process is the child alone.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let mut filler = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        filler.push(f);
    }
    r.run_until(PATIENCE, || !seen.borrow().is_empty())
        .expect("the failed accept reaches the handler");
    {
        let seen = seen.borrow();
        assert_eq!(seen[0].kind(), CaughtKind::Accept, "{seen:?}");
        assert_eq!(seen[0].os_error().and_then(|e| e.1), Some(libc::EMFILE));
        assert!(seen[0].context().contains(&addr.to_string()), "{seen:?}");
        assert!(seen[0].to_string().contains("pausing accepts"), "{seen:?}");
    }
    assert!(!served.get());
    drop(filler);
    r.run_until(PATIENCE, || served.get())
        .expect("accepting resumes once descriptors are free");
    let stats = r.stats();
    assert!(stats.accept_errors >= 1, "{stats:?}");
    assert_eq!(stats.accepted, 1);
    assert_eq!(
        seen.borrow().len(),
        1,
        "reported once a minute at most: {:?}",
        seen.borrow()
    );
    drop(client);
}

#[test]
fn the_environment_turns_slow_callback_warnings_on() {
    in_child("child_slow_env", ("TORSION_SLOW_CALLBACK_MS", "15"));
}

#[test]
fn child_slow_env() {
    if std::env::var("TORSION_SLOW_CALLBACK_MS").is_err() {
        return; // run by the test above, in its own process
    }
    let r = Reactor::new().unwrap();
    assert_eq!(r.slow_callback_threshold(), Some(Duration::from_millis(15)));
}
