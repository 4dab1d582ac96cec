//! `listen_on_threads`: one TCP endpoint served by several reactors, one per thread, over
//! real loopback sockets: connections are spread evenly, each thread builds its own factory,
//! a non-TCP endpoint is refused, and the workers stop with the accepting reactor.

use std::cell::Cell;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use torsion_endpoints::listen_on_threads;
use torsion_reactor::testing::{read_while_running, test_reactor};
use torsion_reactor::{ErrorKind, Protocol, Reactor, Transport, factory_fn};

/// Answers with the serving thread's name and the message (the name once: the message may
/// arrive in several reads, as it does under injected faults).
#[derive(Default)]
struct Named {
    named: bool,
}

impl Protocol for Named {
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        if !std::mem::replace(&mut self.named, true) {
            let name = std::thread::current().name().unwrap_or("?").to_string();
            t.write(format!("{name}|").as_bytes());
        }
        t.write(data);
    }
}

fn ask(addr: SocketAddr, msg: &str, r: &Reactor) -> (TcpStream, String) {
    let mut c = TcpStream::connect(addr).expect("connects");
    c.write_all(msg.as_bytes()).expect("writes");
    let got = read_while_running(r, &mut c, |got| got.ends_with(msg.as_bytes()))
        .expect("the answer comes back");
    (c, String::from_utf8(got).expect("text"))
}

#[test]
fn three_reactors_share_the_connections_evenly_and_stop_together() {
    let r = test_reactor();
    let built = Arc::new(AtomicUsize::new(0));
    let b = built.clone();
    let port = listen_on_threads(&r, "tcp:0:interface=127.0.0.1", 3, move || {
        b.fetch_add(1, Ordering::Relaxed);
        factory_fn(|_| Named::default())
    })
    .expect("listens");
    assert_eq!(built.load(Ordering::Relaxed), 3, "one factory per thread");
    let addr = port.local_addr().socket_addr().expect("TCP");
    let mut open = Vec::new();
    let mut by_thread = std::collections::BTreeMap::new();
    for i in 0..30 {
        let (c, answer) = ask(addr, &format!("msg {i}"), &r);
        let (name, rest) = answer.split_once('|').expect("name|message");
        assert_eq!(rest, format!("msg {i}"));
        *by_thread.entry(name.to_string()).or_insert(0) += 1;
        open.push(c);
    }
    assert_eq!(by_thread.len(), 3, "{by_thread:?}");
    assert!(by_thread.values().all(|&n| n == 10), "{by_thread:?}");
    assert_eq!(port.loads(), [10, 10, 10]);
    // Stopping the accepting reactor stops the workers; join returns.
    let stopped = Rc::new(Cell::new(false));
    let s = stopped.clone();
    r.call_soon(move || {
        s.set(true);
        Reactor::current().stop().expect("running");
    });
    r.run().expect("runs until stopped");
    assert!(stopped.get());
    port.join();
}

#[test]
fn only_tcp_endpoints_and_at_least_one_thread() {
    let r = test_reactor();
    let sock = std::env::temp_dir().join(format!("torsion-threads-{}.sock", std::process::id()));
    let err = listen_on_threads(&r, &format!("unix:{}", sock.display()), 2, || {
        factory_fn(|_| Named::default())
    })
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("tcp"), "{err}");
    let err = listen_on_threads(&r, "tcp:0", 0, || factory_fn(|_| Named::default())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err =
        listen_on_threads(&r, "tcp:port=x", 2, || factory_fn(|_| Named::default())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn with_reuseport_every_reactor_listens_for_itself() {
    let r = test_reactor();
    let port = listen_on_threads(&r, "tcp:0:interface=127.0.0.1:reuseport=1", 3, || {
        factory_fn(|_| Named::default())
    })
    .expect("listens");
    let addr = port.local_addr().socket_addr().expect("TCP");
    let mut open = Vec::new();
    let mut threads = std::collections::BTreeSet::new();
    for i in 0..30 {
        let (c, answer) = ask(addr, &format!("rp {i}"), &r);
        let (name, rest) = answer.split_once('|').expect("name|message");
        assert_eq!(rest, format!("rp {i}"));
        threads.insert(name.to_string());
        open.push(c);
    }
    // The kernel's hash decides who serves what; every connection is counted once.
    assert_eq!(port.loads().iter().sum::<usize>(), 30, "{:?}", port.loads());
    assert_eq!(port.loads().len(), 3);
    assert!(!threads.is_empty());
    r.call_soon(|| Reactor::current().stop().expect("running"));
    r.run().expect("runs until stopped");
    port.join();
}
