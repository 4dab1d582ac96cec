//! Unix datagram ports over real sockets: echo to a client that binds an automatic
//! (abstract) name, abstract server names, the path's mode and removal, an unnamed peer,
//! truncation, and the bounded send queue with pause_writing, drops reported and
//! resume_writing (a Unix receiver that does not read makes the sender's socket block,
//! which UDP on loopback never does).

mod common;

use std::cell::RefCell;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Recorder, Seen};
use torsion_reactor::testing::{PATIENCE, test_reactor};
use torsion_reactor::{
    Address, DatagramError, DatagramTransport, ErrorKind, Reactor, UnixDatagramOptions,
};

/// A socket path unique to this test, removed when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new(name: &str) -> TempPath {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "torsion-dgram-{}-{n}-{name}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        TempPath(path)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn wait(r: &Reactor, what: &str, mut cond: impl FnMut() -> bool) {
    r.run_until(PATIENCE, &mut cond)
        .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
}

fn recorder_at(r: &Reactor, path: &TempPath, echo: bool) -> (DatagramTransport, Rc<RefCell<Seen>>) {
    let (p, seen) = Recorder::new(echo);
    (r.listen_unix_datagram(&path.0, p).expect("listens"), seen)
}

#[test]
fn echo_to_a_connected_client_with_an_automatic_name() {
    let r = test_reactor();
    let path = TempPath::new("echo");
    let (server, server_seen) = recorder_at(&r, &path, true);
    assert_eq!(server.local_addr(), Address::Unix(Some(path.0.clone())));
    let (p, seen) = Recorder::new(false);
    let client = r.connect_unix_datagram(&path.0, p).expect("connects");
    assert_eq!(
        client.peer_addr(),
        Some(Address::Unix(Some(path.0.clone())))
    );
    for m in [&b"one"[..], b"", b"three"] {
        client.send(m).unwrap();
    }
    wait(&r, "three echoes", || seen.borrow().datagrams.len() == 3);
    let got: Vec<Vec<u8>> = seen
        .borrow()
        .datagrams
        .iter()
        .map(|d| d.0.clone())
        .collect();
    assert_eq!(got, [b"one".to_vec(), Vec::new(), b"three".to_vec()]);
    let from = server_seen.borrow().datagrams[0].1.clone();
    assert!(
        matches!(&from, Address::UnixAbstract(name) if !name.is_empty()),
        "the client's automatic name: {from:?}"
    );
    assert_eq!(client.local_addr(), from);
    assert!(from.to_string().starts_with('@'));
}

#[test]
fn an_abstract_server_name() {
    let r = test_reactor();
    let name = format!("torsion-test-{}-abstract", std::process::id());
    let (p, seen) = Recorder::new(true);
    let server = r
        .listen_unix_datagram(format!("\0{name}"), p)
        .expect("listens on an abstract name");
    assert_eq!(
        server.local_addr(),
        Address::UnixAbstract(name.clone().into_bytes())
    );
    assert_eq!(server.local_addr().to_string(), format!("@{name}"));
    let (c, cseen) = Recorder::new(false);
    let client = r.connect_unix_datagram(format!("\0{name}"), c).unwrap();
    client.send(b"hi").unwrap();
    wait(&r, "the echo", || !cseen.borrow().datagrams.is_empty());
    assert_eq!(seen.borrow().datagrams.len(), 1);
    // A second port on the same name fails, naming it.
    let err = r
        .listen_unix_datagram(format!("\0{name}"), Recorder::new(false).0)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot listen on the Unix datagram socket @{name}: address already in use")
    );
}

#[test]
fn the_path_gets_its_mode_and_goes_away_on_close() {
    let r = test_reactor();
    let path = TempPath::new("mode");
    let options = UnixDatagramOptions {
        mode: 0o600,
        ..UnixDatagramOptions::default()
    };
    let (p, seen) = Recorder::new(false);
    let port = r.listen_unix_datagram_with(&path.0, p, &options).unwrap();
    let mode = std::fs::metadata(&path.0).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let err = r
        .listen_unix_datagram(&path.0, Recorder::new(false).0)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(
        err.to_string().contains(&path.0.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().ends_with("address already in use"), "{err}");
    port.close();
    assert!(!path.0.exists(), "removed when the port closes");
    wait(&r, "connection_lost", || seen.borrow().lost.len() == 1);
}

#[test]
fn connecting_to_nothing_fails_at_the_call_naming_the_path() {
    let r = test_reactor();
    let path = TempPath::new("nothing");
    let err = r
        .connect_unix_datagram(&path.0, Recorder::new(false).0)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(
        err.to_string().contains(&path.0.display().to_string()),
        "{err}"
    );
    assert!(
        err.to_string().ends_with("no such file or directory"),
        "{err}"
    );
    std::fs::write(&path.0, b"not a socket").unwrap();
    let err = r
        .connect_unix_datagram(&path.0, Recorder::new(false).0)
        .unwrap_err();
    assert!(err.to_string().ends_with("connection refused"), "{err}");
}

#[test]
fn an_unnamed_peer_cannot_be_answered_and_the_error_says_why() {
    let r = test_reactor();
    let path = TempPath::new("unnamed");
    let (server, seen) = recorder_at(&r, &path, false);
    let peer = UnixDatagram::unbound().unwrap();
    peer.send_to(b"who am I", &path.0).unwrap();
    wait(&r, "the datagram", || !seen.borrow().datagrams.is_empty());
    let from = seen.borrow().datagrams[0].1.clone();
    assert_eq!(from, Address::Unix(None));
    let err = server.send_to(b"answer", &from).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("did not bind a name"), "{err}");
    let err = server
        .send_to(b"x", &Address::Udp("127.0.0.1:9".parse().unwrap()))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        server.set_broadcast(true).is_err(),
        "no IP options on a Unix port"
    );
}

#[test]
fn a_large_unix_datagram_is_reported_not_cut() {
    let r = test_reactor();
    let path = TempPath::new("trunc");
    let options = UnixDatagramOptions {
        max_datagram_size: 1000,
        ..UnixDatagramOptions::default()
    };
    let (p, seen) = Recorder::new(false);
    let _port = r.listen_unix_datagram_with(&path.0, p, &options).unwrap();
    let peer = UnixDatagram::unbound().unwrap();
    peer.send_to(&[9; 1001], &path.0).unwrap();
    peer.send_to(&[8; 1000], &path.0).unwrap();
    wait(&r, "a report and a datagram", || {
        let s = seen.borrow();
        s.errors.len() == 1 && s.datagrams.len() == 1
    });
    assert!(matches!(
        seen.borrow().errors[0],
        DatagramError::Truncated {
            size: 1001,
            limit: 1000,
            ..
        }
    ));
    assert_eq!(seen.borrow().datagrams[0].0.len(), 1000);
}

/// Sends 100-byte numbered datagrams until the queue refuses one; returns how many were
/// accepted and how many refusals it took to stop (always 1 here).
fn fill(port: &DatagramTransport, to: Option<&Address>) -> (u32, u32) {
    let mut accepted = 0u32;
    loop {
        let mut data = [0u8; 100];
        data[..4].copy_from_slice(&accepted.to_be_bytes());
        let sent = match to {
            Some(to) => port.send_to(&data, to),
            None => port.send(&data),
        };
        match sent {
            Ok(()) => accepted += 1,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::QueueFull, "{e}");
                assert!(e.to_string().contains("send queue is full"), "{e}");
                return (accepted, 1);
            }
        }
        assert!(accepted < 100_000, "the queue never filled");
    }
}

/// The bounded queue, against a receiver that does not read until told to.
fn bounded_queue(connected: bool) {
    let r = test_reactor();
    let target = TempPath::new("slow-receiver");
    let receiver = UnixDatagram::bind(&target.0).unwrap();
    receiver.set_nonblocking(true).unwrap();
    let (p, seen) = Recorder::new(false);
    let port = if connected {
        r.connect_unix_datagram(&target.0, p).unwrap()
    } else {
        let own = TempPath::new("sender");
        let port = r.listen_unix_datagram(&own.0, p).unwrap();
        std::mem::forget(own); // removed by the port when it closes
        port
    };
    port.set_write_buffer_limits(2000, 500);
    port.set_send_queue_limit(4000);
    wait(&r, "connection_made", || seen.borrow().made == 1);
    let to = Address::Unix(Some(target.0.clone()));
    let (accepted, refused) = fill(&port, (!connected).then_some(&to));
    assert!(
        port.buffer_size() <= 4000,
        "bounded: {}",
        port.buffer_size()
    );
    assert!(
        port.buffer_size() > 3900,
        "filled to the bound: {}",
        port.buffer_size()
    );
    assert!(port.is_writing_paused());
    assert_eq!(port.dropped_datagrams(), u64::from(refused));
    wait(&r, "pause_writing and the drop report", || {
        let s = seen.borrow();
        s.paused == 1 && !s.errors.is_empty()
    });
    assert!(
        matches!(
            seen.borrow().errors[0],
            DatagramError::Dropped {
                count: 1,
                bytes: 100
            }
        ),
        "{:?}",
        seen.borrow().errors
    );
    assert_eq!(seen.borrow().resumed, 0);
    // While the receiver stays full the port waits; it does not spin. (An unconnected Unix
    // datagram socket is reported writable even then: the port falls back to a timer.)
    let mut turns = 0;
    let until = std::time::Instant::now() + Duration::from_millis(200);
    while std::time::Instant::now() < until {
        r.iterate(Duration::from_millis(20)).unwrap();
        turns += 1;
    }
    assert!(
        turns < 100,
        "{turns} loop iterations in 200 ms: the port spins"
    );
    // Now the receiver reads: everything accepted arrives, in order, and the sender hears
    // resume_writing.
    let mut next = 0u32;
    let mut buf = [0u8; 200];
    wait(&r, "every accepted datagram", || {
        while let Ok(n) = receiver.recv(&mut buf) {
            assert_eq!(n, 100);
            assert_eq!(
                u32::from_be_bytes(buf[..4].try_into().unwrap()),
                next,
                "in order"
            );
            next += 1;
        }
        next == accepted
    });
    wait(&r, "resume_writing", || seen.borrow().resumed == 1);
    assert_eq!(port.buffer_size(), 0);
    assert!(!port.is_writing_paused());
    std::thread::sleep(Duration::from_millis(20));
    assert!(receiver.recv(&mut buf).is_err(), "no extra datagram");
    port.close();
    wait(&r, "connection_lost", || seen.borrow().lost.len() == 1);
}

#[test]
fn the_send_queue_is_bounded_when_the_receiver_does_not_read_connected() {
    bounded_queue(true);
}

#[test]
fn the_send_queue_is_bounded_when_the_receiver_does_not_read_unconnected() {
    bounded_queue(false);
}

#[test]
fn closing_with_a_queue_flushes_it_first_and_abort_drops_it() {
    let r = test_reactor();
    let target = TempPath::new("flush-target");
    let receiver = UnixDatagram::bind(&target.0).unwrap();
    receiver.set_nonblocking(true).unwrap();
    let (p, seen) = Recorder::new(false);
    let port = r.connect_unix_datagram(&target.0, p).unwrap();
    let (accepted, _) = fill(&port, None);
    port.close();
    assert!(port.is_closing());
    assert_eq!(
        port.send(b"x").unwrap_err().kind(),
        ErrorKind::ConnectionClosed
    );
    let mut got = 0u32;
    let mut buf = [0u8; 200];
    wait(&r, "the queue flushed and the port lost", || {
        while receiver.recv(&mut buf).is_ok() {
            got += 1;
        }
        seen.borrow().lost.len() == 1
    });
    while receiver.recv(&mut buf).is_ok() {
        got += 1;
    }
    assert_eq!(got, accepted, "close sent everything queued");
    assert!(seen.borrow().lost[0].is_clean());

    let (p, seen) = Recorder::new(false);
    let port = r.connect_unix_datagram(&target.0, p).unwrap();
    let _ = fill(&port, None);
    port.abort();
    wait(&r, "connection_lost", || seen.borrow().lost.len() == 1);
    assert!(!seen.borrow().lost[0].is_clean());
    let mut after = 0;
    while receiver.recv(&mut buf).is_ok() {
        after += 1;
    }
    assert!(
        after < 20,
        "abort dropped the queue (only what the kernel held came: {after})"
    );
}

#[test]
fn an_adopted_socket_pair() {
    let r = test_reactor();
    let (a, b) = UnixDatagram::pair().unwrap();
    let (p, seen) = Recorder::new(true);
    let port = r.adopt_unix_datagram(a, p).unwrap();
    assert_eq!(port.peer_addr(), Some(Address::Unix(None)));
    b.send(b"paired").unwrap();
    wait(&r, "the datagram", || !seen.borrow().datagrams.is_empty());
    assert_eq!(seen.borrow().datagrams[0].1, Address::Unix(None));
    // The echo goes to the connected (unnamed) peer.
    b.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 16];
    let n = b.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"paired");
}
