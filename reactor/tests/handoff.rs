//! Handing accepted connections to reactors on other threads (`Reactor::handoff`,
//! `Reactor::listen_tcp_balanced`), over real loopback sockets: every connection is served
//! exactly once, the least loaded reactor gets each new one, a target that stopped is
//! skipped, and a target on the accepting thread serves without crossing threads.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use common::{PATIENCE, reactor};
use torsion_reactor::testing::read_while_running;
use torsion_reactor::{
    ErrorKind, Handoff, Protocol, Reactor, Remote, TcpListenOptions, Transport, factory_fn,
};

/// Echoes, after the name of the thread that serves the connection (once: the bytes may
/// arrive in several reads, as they do under injected faults).
#[derive(Default)]
struct Echo {
    named: bool,
}

impl Protocol for Echo {
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        if !std::mem::replace(&mut self.named, true) {
            let name = std::thread::current().name().unwrap_or("?").to_string();
            t.write(format!("{name}:").as_bytes());
        }
        t.write(data);
    }
}

/// A reactor on its own thread (named `name`), serving handed-over connections until told
/// to stop; then it closes (which closes its inbox).
struct Worker {
    handoff: Handoff,
    remote: Remote,
    done: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

fn worker(name: &str) -> Worker {
    let (tx, rx) = mpsc::channel();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let reactor = Reactor::new().expect("a reactor");
            reactor.install();
            let handoff = reactor
                .handoff(factory_fn(|_| Echo::default()))
                .expect("an inbox");
            tx.send((handoff, reactor.remote()))
                .expect("the test waits");
            // Until the test says stop (with a deadline: never a hang).
            reactor
                .run_until(PATIENCE, move || d.load(Ordering::Acquire))
                .expect("told to stop in time");
            reactor.close().expect("closes");
        })
        .expect("a thread");
    let (handoff, remote) = rx.recv().expect("the worker starts");
    Worker {
        handoff,
        remote,
        done,
        thread,
    }
}

fn stop(w: Worker) {
    w.done.store(true, Ordering::Release);
    w.remote.call_from_thread(|| {}).ok(); // wakes it
    w.thread.join().expect("the worker thread ends cleanly");
}

/// Sends `msg` on a new connection and returns the answer (the serving thread's name, a
/// colon, the message); keeps the connection open.
fn ask(addr: SocketAddr, msg: &str, r: &Reactor) -> (TcpStream, String) {
    let mut c = TcpStream::connect(addr).expect("connects");
    c.write_all(msg.as_bytes()).expect("writes");
    let got = read_while_running(r, &mut c, |got| got.ends_with(msg.as_bytes()))
        .expect("the answer comes back");
    (c, String::from_utf8(got).expect("text"))
}

#[test]
fn connections_go_to_the_least_loaded_reactor_and_each_is_served_once() {
    let r = reactor();
    let w = worker("worker-a");
    let mine = r
        .handoff(factory_fn(|_| Echo::default()))
        .expect("an inbox here");
    let port = r
        .listen_tcp_balanced(
            "127.0.0.1:0".parse().unwrap(),
            &[mine.clone(), w.handoff.clone()],
            &TcpListenOptions::default(),
        )
        .expect("listens");
    let addr = port.local_addr().socket_addr().unwrap();
    let here = std::thread::current().name().unwrap_or("?").to_string();
    let mut open = Vec::new();
    let (mut served_here, mut served_there) = (0, 0);
    for i in 0..20 {
        let (c, answer) = ask(addr, &format!("hello {i}"), &r);
        assert!(answer.ends_with(&format!(":hello {i}")), "{answer:?}");
        if answer.starts_with(&format!("{here}:")) {
            served_here += 1;
        } else {
            assert!(answer.starts_with("worker-a:"), "{answer:?}");
            served_there += 1;
        }
        open.push(c);
    }
    assert_eq!((served_here, served_there), (10, 10), "evenly balanced");
    assert_eq!((mine.load(), w.handoff.load()), (10, 10));
    // Closing connections lowers a reactor's load: the next ones go there.
    for c in open.drain(10..) {
        drop(c);
    }
    r.run_until(PATIENCE, || mine.load() + w.handoff.load() == 10)
        .expect("closed connections stop counting");
    let (low_before, high_before) = (
        mine.load().min(w.handoff.load()),
        mine.load().max(w.handoff.load()),
    );
    for i in 0..(high_before - low_before) {
        let (c, _) = ask(addr, &format!("refill {i}"), &r);
        open.push(c);
    }
    assert_eq!(
        mine.load(),
        w.handoff.load(),
        "new connections went to the lighter one"
    );
    stop(w);
    port.stop_listening();
}

#[test]
fn a_stopped_reactor_is_skipped() {
    let r = reactor();
    let w = worker("worker-b");
    let theirs = w.handoff.clone();
    let mine = r
        .handoff(factory_fn(|_| Echo::default()))
        .expect("an inbox here");
    let port = r
        .listen_tcp_balanced(
            "127.0.0.1:0".parse().unwrap(),
            &[mine.clone(), theirs.clone()],
            &TcpListenOptions::default(),
        )
        .expect("listens");
    let addr = port.local_addr().socket_addr().unwrap();
    stop(w);
    assert!(!theirs.is_open(), "its reactor stopped: its inbox closed");
    let here = std::thread::current().name().unwrap_or("?").to_string();
    let mut open = Vec::new();
    for i in 0..6 {
        let (c, answer) = ask(addr, &format!("still {i}"), &r);
        assert!(answer.starts_with(&format!("{here}:")), "{answer:?}");
        open.push(c);
    }
    assert_eq!(mine.load(), 6);
    port.stop_listening();
}

#[test]
fn a_balanced_listener_needs_a_target() {
    let r = reactor();
    let err = r
        .listen_tcp_balanced(
            "127.0.0.1:0".parse().unwrap(),
            &[],
            &TcpListenOptions::default(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}
