//! UDP ports over real sockets on 127.0.0.1 and ::1: whole datagrams with their source,
//! truncation reported and never delivered cut, zero-length datagrams, ICMP errors for
//! connected and (Linux) unconnected ports, addresses checked at the call, multicast,
//! many ports on one reactor, panics contained, closing from a callback, pausing in the
//! middle of a batch, dual stack.

mod common;

use std::cell::{Cell, RefCell};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::rc::Rc;
use std::time::Duration;

use common::{Recorder, Seen};
use torsion_reactor::testing::{PATIENCE, test_reactor};
use torsion_reactor::{
    Address, ConnectionLost, DatagramError, DatagramProtocol, DatagramTransport, ErrorKind,
    Interface, MAX_UDP_PAYLOAD_V4, Reactor, UdpOptions,
};

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn addr_of(t: &DatagramTransport) -> SocketAddr {
    t.local_addr().socket_addr().expect("an IP address")
}

/// A port that is certainly closed: bound, its number read, then released.
fn closed_port() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

fn recorder(r: &Reactor, echo: bool) -> (DatagramTransport, Rc<RefCell<Seen>>) {
    let (p, seen) = Recorder::new(echo);
    (r.listen_udp(local(), p).expect("listens"), seen)
}

/// A plain socket on `[::1]:0`; `None` (the test says it is skipped) where there is no
/// IPv6 loopback.
#[cfg(target_os = "linux")]
fn ipv6_loopback() -> Option<UdpSocket> {
    let s = UdpSocket::bind("[::1]:0").ok();
    if s.is_none() {
        eprintln!("SKIPPED: this machine has no IPv6 loopback");
    }
    s
}

/// A recording port on `[::1]:0`.
#[cfg(target_os = "linux")]
fn ipv6_recorder(r: &Reactor) -> (DatagramTransport, Rc<RefCell<Seen>>) {
    let (p, seen) = Recorder::new(false);
    let port = r
        .listen_udp("[::1]:0".parse().unwrap(), p)
        .expect("listens on ::1");
    (port, seen)
}

fn wait(r: &Reactor, what: &str, mut cond: impl FnMut() -> bool) {
    r.run_until(PATIENCE, &mut cond)
        .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
}

#[test]
fn datagrams_arrive_whole_once_with_their_source_from_a_foreign_peer() {
    let r = test_reactor();
    let (port, seen) = recorder(&r, true);
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(PATIENCE)).unwrap();
    let sizes = [1usize, 0, 1200, 9000, MAX_UDP_PAYLOAD_V4];
    for (i, &n) in sizes.iter().enumerate() {
        let data: Vec<u8> = (0..n).map(|b| (b as u8) ^ (i as u8)).collect();
        peer.send_to(&data, addr_of(&port)).unwrap();
    }
    wait(&r, "five datagrams", || {
        seen.borrow().datagrams.len() == sizes.len()
    });
    let got = seen.borrow().datagrams.clone();
    for (i, &n) in sizes.iter().enumerate() {
        let want: Vec<u8> = (0..n).map(|b| (b as u8) ^ (i as u8)).collect();
        assert_eq!(
            got[i].0, want,
            "datagram {i} ({n} bytes) whole and in order"
        );
        assert_eq!(got[i].1, Address::Udp(peer.local_addr().unwrap()));
    }
    // The echoes come back whole, one datagram each.
    let mut buf = vec![0u8; 70_000];
    for &n in &sizes {
        let (len, from) = peer.recv_from(&mut buf).expect("an echo");
        assert_eq!((len, from), (n, addr_of(&port)));
    }
    port.close();
    wait(&r, "connection_lost", || !seen.borrow().lost.is_empty());
    let seen = seen.borrow();
    assert_eq!(seen.made, 1);
    assert!(seen.lost[0].is_clean());
    assert!(seen.errors.is_empty(), "no errors: {:?}", seen.errors);
}

#[test]
fn a_datagram_larger_than_the_buffer_is_reported_never_delivered_cut() {
    let r = test_reactor();
    let (p, seen) = Recorder::new(false);
    let options = UdpOptions {
        max_datagram_size: 100,
        ..UdpOptions::default()
    };
    let port = r.listen_udp_with(local(), p, &options).unwrap();
    assert_eq!(port.max_datagram_size(), 100);
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.send_to(&[1; 100], addr_of(&port)).unwrap();
    peer.send_to(&[2; 101], addr_of(&port)).unwrap();
    peer.send_to(&[3; 5000], addr_of(&port)).unwrap();
    peer.send_to(&[4; 7], addr_of(&port)).unwrap();
    wait(&r, "two datagrams and two reports", || {
        let s = seen.borrow();
        s.datagrams.len() + s.errors.len() == 4
    });
    let s = seen.borrow();
    let sizes: Vec<usize> = s.datagrams.iter().map(|d| d.0.len()).collect();
    assert_eq!(sizes, [100, 7], "only the ones that fit, whole");
    assert!(s.datagrams[0].0.iter().all(|&b| b == 1));
    let reports: Vec<(usize, usize)> = s
        .errors
        .iter()
        .map(|e| match e {
            DatagramError::Truncated { size, limit, from } => {
                assert_eq!(*from, Address::Udp(peer.local_addr().unwrap()));
                (*size, *limit)
            }
            other => panic!("unexpected {other}"),
        })
        .collect();
    assert_eq!(reports, [(101, 100), (5000, 100)], "the real sizes");
    assert!(
        s.errors[0]
            .to_string()
            .contains("larger than the 100-byte receive buffer")
    );
}

#[test]
fn zero_length_datagrams_are_delivered_and_sent() {
    let r = test_reactor();
    let (server, server_seen) = recorder(&r, true);
    let (client, client_seen) = recorder(&r, false);
    client.send_to(b"", &server.local_addr()).unwrap();
    client.send_to(b"", &server.local_addr()).unwrap();
    wait(&r, "two empty echoes", || {
        client_seen.borrow().datagrams.len() == 2
    });
    assert_eq!(server_seen.borrow().datagrams.len(), 2);
    assert!(
        client_seen
            .borrow()
            .datagrams
            .iter()
            .all(|d| d.0.is_empty())
    );
}

#[test]
fn a_connected_port_hears_port_unreachable_and_goes_on() {
    let r = test_reactor();
    let gone = closed_port();
    let (p, seen) = Recorder::new(false);
    let port = r.connect_udp(gone, p).expect("connects");
    assert_eq!(port.peer_addr(), Some(Address::Udp(gone)));
    port.send(b"anyone?").unwrap();
    wait(&r, "port unreachable", || !seen.borrow().errors.is_empty());
    let error = seen.borrow().errors[0].clone();
    match &error {
        DatagramError::Network { error, address } => {
            assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
            assert_eq!(address.as_ref(), Some(&Address::Udp(gone)));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(!port.is_closing(), "the port goes on");
    // It still sends and receives: a peer now listens at that address.
    let revived = UdpSocket::bind(gone).unwrap();
    revived.set_read_timeout(Some(PATIENCE)).unwrap();
    port.send(b"again").unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = revived.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"again"[..], addr_of(&port)));
    revived.send_to(b"back", addr_of(&port)).unwrap();
    wait(&r, "the answer", || !seen.borrow().datagrams.is_empty());
    assert_eq!(seen.borrow().datagrams[0].0, b"back");
}

/// `error` is a port-unreachable report about the datagram sent to `gone`.
#[cfg(target_os = "linux")]
fn assert_refused_about(error: &DatagramError, gone: SocketAddr) {
    match error {
        DatagramError::Network { error, address } => {
            assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
            assert_eq!(
                address.as_ref(),
                Some(&Address::Udp(gone)),
                "the address it concerns"
            );
        }
        other => panic!("unexpected {other}"),
    }
}

#[cfg(target_os = "linux")]
#[test]
fn an_unconnected_port_hears_port_unreachable_with_the_address_on_linux() {
    let r = test_reactor();
    let (port, seen) = recorder(&r, false);
    let gone = closed_port();
    port.send_to(b"hello?", &Address::Udp(gone)).unwrap();
    wait(&r, "port unreachable", || !seen.borrow().errors.is_empty());
    assert_refused_about(&seen.borrow().errors[0], gone);
    // Many unreachable destinations never stop the port, and nothing is reported twice.
    for _ in 0..20 {
        port.send_to(b"x", &Address::Udp(closed_port())).unwrap();
    }
    let (echo, _) = recorder(&r, true);
    port.send_to(b"still here", &echo.local_addr()).unwrap();
    wait(&r, "the echo", || !seen.borrow().datagrams.is_empty());
    wait(&r, "21 reports", || seen.borrow().errors.len() >= 21);
    r.run_until(Duration::from_millis(50), || false).ok();
    assert_eq!(seen.borrow().errors.len(), 21, "{:?}", seen.borrow().errors);
}

#[test]
fn invalid_addresses_are_typed_errors_at_the_call() {
    let r = test_reactor();
    let (port, seen) = recorder(&r, false);
    let cases = [
        (Address::Udp("[::1]:53".parse().unwrap()), "is IPv4"),
        (Address::Udp("127.0.0.1:0".parse().unwrap()), "port 0"),
        (Address::Unix(Some("/tmp/x".into())), "IP addresses only"),
        (Address::Other("nowhere".into()), "IP addresses only"),
    ];
    for (to, why) in cases {
        let err = port.send_to(b"x", &to).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{to}");
        assert!(err.to_string().contains(why), "{to}: {err}");
    }
    let too_big = vec![0u8; MAX_UDP_PAYLOAD_V4 + 1];
    let err = port
        .send_to(&too_big, &Address::Udp(closed_port()))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("65507"), "{err}");
    let err = port.send(b"x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "not connected: {err}");
    let err = port
        .connect(&Address::Udp("[::1]:9".parse().unwrap()))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = r
        .connect_udp("127.0.0.1:0".parse().unwrap(), Recorder::new(false).0)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    // A TCP-flavoured address of an IP is fine.
    port.send_to(b"x", &Address::Tcp(addr_of(&port))).unwrap();
    wait(&r, "the datagram to itself", || {
        seen.borrow().datagrams.len() == 1
    });
    assert!(seen.borrow().errors.is_empty());
}

#[test]
fn a_connected_port_refuses_other_destinations_and_hears_only_its_peer() {
    let r = test_reactor();
    let (a, _) = recorder(&r, false);
    let (b, _) = recorder(&r, false);
    let (p, seen) = Recorder::new(false);
    let port = r.listen_udp(local(), p).unwrap();
    port.connect(&a.local_addr()).unwrap();
    let err = port.send_to(b"x", &b.local_addr()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("is connected to"), "{err}");
    port.send_to(b"ok", &a.local_addr())
        .expect("its own peer is fine");
    b.send_to(b"from b", &port.local_addr()).unwrap();
    a.send_to(b"from a", &port.local_addr()).unwrap();
    wait(&r, "a's datagram", || !seen.borrow().datagrams.is_empty());
    r.run_until(Duration::from_millis(50), || false).ok();
    let got: Vec<Vec<u8>> = seen
        .borrow()
        .datagrams
        .iter()
        .map(|d| d.0.clone())
        .collect();
    assert_eq!(got, [b"from a".to_vec()]);
    port.disconnect().unwrap();
    assert_eq!(port.peer_addr(), None);
    let now = port.local_addr();
    b.send_to(b"b again", &now).unwrap();
    wait(&r, "b's datagram after disconnect", || {
        seen.borrow().datagrams.len() == 2
    });
}

#[test]
fn multicast_join_on_a_bad_interface_is_a_typed_error_naming_it() {
    let r = test_reactor();
    let (port, _) = recorder(&r, false);
    let group = "239.255.77.1".parse().unwrap();
    let err = port
        .join_group(group, &Interface::Name("nosuch0".into()))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("nosuch0"), "{err}");
    assert!(err.to_string().contains("239.255.77.1"), "{err}");
    let err = port
        .join_group(group, &Interface::Address(Ipv4Addr::new(198, 51, 100, 77)))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(
        err.to_string().contains("on interface 198.51.100.77"),
        "{err}"
    );
    let err = port
        .join_group("10.0.0.1".parse().unwrap(), &Interface::Any)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("not a multicast address"), "{err}");
    let err = port
        .join_group("ff02::1:3".parse().unwrap(), &Interface::Any)
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::InvalidInput,
        "an IPv6 group on an IPv4 port"
    );
}

#[test]
fn multicast_on_the_loopback_interface() {
    let r = test_reactor();
    let group: Ipv4Addr = "239.255.77.2".parse().unwrap();
    let (p, seen) = Recorder::new(false);
    let options = UdpOptions {
        reuse_address: true,
        ..UdpOptions::default()
    };
    let listener = r
        .listen_udp_with("0.0.0.0:0".parse().unwrap(), p, &options)
        .unwrap();
    listener
        .join_group(group.into(), &Interface::Name("lo".into()))
        .expect("joins on lo");
    let (sender, _) = recorder(&r, false);
    sender
        .set_multicast_interface(&Interface::Address(Ipv4Addr::LOCALHOST))
        .unwrap();
    sender.set_multicast_ttl(1).unwrap();
    sender.set_multicast_loop(true).unwrap();
    let to = Address::Udp(SocketAddr::new(group.into(), addr_of(&listener).port()));
    sender.send_to(b"to the group", &to).unwrap();
    wait(&r, "the group's datagram", || {
        !seen.borrow().datagrams.is_empty()
    });
    assert_eq!(seen.borrow().datagrams[0].0, b"to the group");
    // Left, the group is not heard: a datagram to it, then one straight to the port.
    listener
        .leave_group(group.into(), &Interface::Name("lo".into()))
        .unwrap();
    sender.send_to(b"after leaving", &to).unwrap();
    sender
        .send_to(
            b"direct",
            &Address::Udp(SocketAddr::new(
                Ipv4Addr::LOCALHOST.into(),
                addr_of(&listener).port(),
            )),
        )
        .unwrap();
    wait(&r, "the direct datagram", || {
        seen.borrow().datagrams.len() >= 2
    });
    assert_eq!(
        seen.borrow().datagrams[1].0,
        b"direct",
        "the group's datagram was not heard once left"
    );
    // By index too, and IPv6 on an IPv6 port (joining works on lo even where the
    // container routes no IPv6 multicast).
    let (p6, _) = Recorder::new(false);
    let v6 = r.listen_udp("[::1]:0".parse().unwrap(), p6).unwrap();
    v6.join_group("ff02::1:77".parse().unwrap(), &Interface::Name("lo".into()))
        .expect("joins an IPv6 group on lo");
    let err = v6
        .join_group(
            "ff02::1:78".parse().unwrap(),
            &Interface::Address(Ipv4Addr::LOCALHOST),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn many_ports_on_one_reactor() {
    let r = test_reactor();
    let ports: Vec<_> = (0..64).map(|_| recorder(&r, true)).collect();
    let (client, seen) = recorder(&r, false);
    for (i, (port, _)) in ports.iter().enumerate() {
        client
            .send_to(format!("{i}").as_bytes(), &port.local_addr())
            .unwrap();
    }
    wait(&r, "64 echoes", || seen.borrow().datagrams.len() == 64);
    let mut from: Vec<SocketAddr> = seen
        .borrow()
        .datagrams
        .iter()
        .map(|d| d.1.socket_addr().unwrap())
        .collect();
    from.sort();
    let mut want: Vec<SocketAddr> = ports.iter().map(|p| addr_of(&p.0)).collect();
    want.sort();
    assert_eq!(from, want, "every port answered once");
    assert_eq!(r.open_connections(), 65);
    for (port, seen) in &ports {
        port.close();
        assert!(port.is_closing());
        let _ = seen;
    }
    wait(&r, "every connection_lost", || {
        ports.iter().all(|(_, s)| s.borrow().lost.len() == 1)
    });
    assert_eq!(r.open_connections(), 1);
}

/// Panics on `boom`, echoes anything else.
struct Fragile;

impl DatagramProtocol for Fragile {
    fn datagram_received(&mut self, t: &DatagramTransport, data: &[u8], from: Address) {
        if data == b"boom" {
            panic!("fragile protocol hit a bomb");
        }
        t.send_to(data, &from).unwrap();
    }
}

#[test]
fn a_panic_in_datagram_received_is_contained_and_the_port_goes_on() {
    let r = test_reactor();
    let server = r.listen_udp(local(), Fragile).unwrap();
    let (client, seen) = recorder(&r, false);
    for m in [&b"one"[..], b"boom", b"two", b"boom", b"three"] {
        client.send_to(m, &server.local_addr()).unwrap();
    }
    let mut caught = Vec::new();
    let deadline = std::time::Instant::now() + PATIENCE;
    while seen.borrow().datagrams.len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the echoes never came"
        );
        if let Err(e) = r.iterate(Duration::from_millis(10)) {
            assert_eq!(e.kind(), ErrorKind::Panicked);
            caught.push(e.to_string());
        }
    }
    let got: Vec<Vec<u8>> = seen
        .borrow()
        .datagrams
        .iter()
        .map(|d| d.0.clone())
        .collect();
    assert_eq!(got, [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
    let all = caught.join("; ");
    assert_eq!(
        all.matches("fragile protocol hit a bomb").count(),
        2,
        "{all}"
    );
    assert!(all.contains("datagram_received"), "{all}");
    assert!(all.contains("the port goes on"), "{all}");
    assert!(!server.is_closing());
}

/// Closes its port on the first datagram it gets, and tries to send afterwards.
struct CloseOnFirst {
    seen: Rc<RefCell<Seen>>,
    after_close: Rc<RefCell<Option<ErrorKind>>>,
}

impl DatagramProtocol for CloseOnFirst {
    fn datagram_received(&mut self, t: &DatagramTransport, data: &[u8], from: Address) {
        self.seen
            .borrow_mut()
            .datagrams
            .push((data.to_vec(), from.clone()));
        t.send_to(b"bye", &from).unwrap();
        t.close();
        t.close(); // again: nothing
        *self.after_close.borrow_mut() = t.send_to(b"late", &from).err().map(|e| e.kind());
    }
    fn connection_lost(&mut self, reason: &ConnectionLost) {
        self.seen.borrow_mut().lost.push(reason.clone());
    }
}

#[test]
fn closing_a_port_from_its_own_callback() {
    let r = test_reactor();
    let seen = Rc::new(RefCell::new(Seen::default()));
    let after = Rc::new(RefCell::new(None));
    let port = r
        .listen_udp(
            local(),
            CloseOnFirst {
                seen: seen.clone(),
                after_close: after.clone(),
            },
        )
        .unwrap();
    let sources = r.registered_sources();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(PATIENCE)).unwrap();
    // Queued before the port reads: they arrive in one batch.
    for m in [&b"first"[..], b"second", b"third"] {
        peer.send_to(m, addr_of(&port)).unwrap();
    }
    wait(&r, "connection_lost", || !seen.borrow().lost.is_empty());
    r.run_until(Duration::from_millis(50), || false).ok();
    let seen = seen.borrow();
    assert_eq!(
        seen.datagrams.len(),
        1,
        "the rest of the batch is discarded"
    );
    assert_eq!(seen.lost.len(), 1, "connection_lost exactly once");
    assert!(seen.lost[0].is_clean());
    assert_eq!(*after.borrow(), Some(ErrorKind::ConnectionClosed));
    let mut buf = [0u8; 8];
    let (n, _) = peer
        .recv_from(&mut buf)
        .expect("the datagram sent before close");
    assert_eq!(&buf[..n], b"bye");
    assert!(port.is_closing());
    assert_eq!(r.registered_sources(), sources - 1, "the socket is gone");
    assert_eq!(
        port.send_to(b"x", &Address::Udp(peer.local_addr().unwrap()))
            .unwrap_err()
            .kind(),
        ErrorKind::ConnectionClosed
    );
}

#[test]
fn connection_lost_exactly_once_however_the_port_ends() {
    let r = test_reactor();
    let (a, seen_a) = recorder(&r, false);
    a.close();
    a.abort();
    a.close();
    let (b, seen_b) = recorder(&r, false);
    b.abort();
    let (_c, seen_c) = recorder(&r, false);
    wait(&r, "a and b lost", || {
        seen_a.borrow().lost.len() == 1 && seen_b.borrow().lost.len() == 1
    });
    assert!(seen_a.borrow().lost[0].is_clean());
    assert!(matches!(seen_b.borrow().lost[0], ConnectionLost::Aborted));
    assert_eq!(seen_a.borrow().made, 1, "connection_made came first");
    // Closing the reactor stops the last one.
    r.close().unwrap();
    assert_eq!(seen_c.borrow().made, 1);
    assert_eq!(seen_c.borrow().lost.len(), 1);
    assert_eq!(seen_a.borrow().lost.len(), 1);
}

/// Pauses reading after the first datagram; records what it gets.
struct PauseAfterOne(Rc<RefCell<Vec<Vec<u8>>>>);

impl DatagramProtocol for PauseAfterOne {
    fn datagram_received(&mut self, t: &DatagramTransport, data: &[u8], _: Address) {
        self.0.borrow_mut().push(data.to_vec());
        if self.0.borrow().len() == 1 {
            t.pause_reading();
            assert!(!t.is_reading());
        }
    }
}

#[test]
fn pausing_in_the_middle_of_a_batch_keeps_the_rest_for_the_resume() {
    let r = test_reactor();
    let got = Rc::new(RefCell::new(Vec::new()));
    let port = r.listen_udp(local(), PauseAfterOne(got.clone())).unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..5u8 {
        peer.send_to(&[i], addr_of(&port)).unwrap();
    }
    wait(&r, "the first datagram", || !got.borrow().is_empty());
    r.run_until(Duration::from_millis(50), || false).ok();
    assert_eq!(got.borrow().len(), 1, "nothing while paused");
    port.resume_reading();
    assert_eq!(
        got.borrow().len(),
        1,
        "never delivered inside the call that resumed"
    );
    wait(&r, "the other four", || got.borrow().len() == 5);
    let order: Vec<u8> = got.borrow().iter().map(|d| d[0]).collect();
    assert_eq!(order, [0, 1, 2, 3, 4]);
}

/// Sends `n` numbered datagrams to `to` from `connection_made`, in one callback.
struct Burst {
    to: Address,
    n: u32,
}

impl DatagramProtocol for Burst {
    fn connection_made(&mut self, t: &DatagramTransport) {
        for i in 0..self.n {
            t.send_to(&i.to_be_bytes(), &self.to).unwrap();
        }
    }
    fn datagram_received(&mut self, _: &DatagramTransport, _: &[u8], _: Address) {}
}

#[test]
fn datagrams_sent_in_one_callback_all_go_out_in_order() {
    let r = test_reactor();
    let (sink, seen) = recorder(&r, false);
    let options = UdpOptions {
        recv_buffer_size: Some(1 << 20),
        ..UdpOptions::default()
    };
    let _ = sink;
    let (p, seen2) = Recorder::new(false);
    let big_sink = r.listen_udp_with(local(), p, &options).unwrap();
    let _burst = r
        .listen_udp(
            local(),
            Burst {
                to: big_sink.local_addr(),
                n: 500,
            },
        )
        .unwrap();
    wait(&r, "500 datagrams", || {
        seen2.borrow().datagrams.len() == 500
    });
    let order: Vec<u32> = seen2
        .borrow()
        .datagrams
        .iter()
        .map(|d| u32::from_be_bytes(d.0[..4].try_into().unwrap()))
        .collect();
    assert_eq!(order, (0..500).collect::<Vec<_>>());
    assert!(seen.borrow().datagrams.is_empty());
}

#[test]
fn an_ipv6_port_and_a_dual_stack_port() {
    let r = test_reactor();
    let (p, seen) = Recorder::new(true);
    let v6 = r.listen_udp("[::1]:0".parse().unwrap(), p).unwrap();
    let (c, cseen) = Recorder::new(false);
    let client = r.listen_udp("[::1]:0".parse().unwrap(), c).unwrap();
    client.send_to(b"six", &v6.local_addr()).unwrap();
    wait(&r, "the IPv6 echo", || !cseen.borrow().datagrams.is_empty());
    assert_eq!(seen.borrow().datagrams[0].1, client.local_addr());

    let options = UdpOptions {
        ipv6_only: Some(false),
        ..UdpOptions::default()
    };
    let (p, dual_seen) = Recorder::new(true);
    let dual = r
        .listen_udp_with("[::]:0".parse().unwrap(), p, &options)
        .unwrap();
    let v4_peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    v4_peer.set_read_timeout(Some(PATIENCE)).unwrap();
    let port = addr_of(&dual).port();
    v4_peer.send_to(b"four", ("127.0.0.1", port)).unwrap();
    wait(&r, "the IPv4 datagram", || {
        !dual_seen.borrow().datagrams.is_empty()
    });
    assert_eq!(
        dual_seen.borrow().datagrams[0].1,
        Address::Udp(v4_peer.local_addr().unwrap()),
        "an IPv4 peer is reported as IPv4, not as ::ffff:a.b.c.d"
    );
    let mut buf = [0u8; 8];
    let (n, _) = v4_peer.recv_from(&mut buf).expect("the echo over IPv4");
    assert_eq!(&buf[..n], b"four");
    let only = UdpOptions {
        ipv6_only: Some(true),
        ..UdpOptions::default()
    };
    let v6_only = r
        .listen_udp_with("[::]:0".parse().unwrap(), Recorder::new(false).0, &only)
        .unwrap();
    let err = v6_only
        .send_to(b"x", &Address::Udp(v4_peer.local_addr().unwrap()))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn reuse_port_lets_two_ports_share_an_address_and_bind_errors_name_it() {
    let r = test_reactor();
    let options = UdpOptions {
        reuse_port: true,
        ..UdpOptions::default()
    };
    let a = r
        .listen_udp_with(local(), Recorder::new(false).0, &options)
        .unwrap();
    let _b = r
        .listen_udp_with(addr_of(&a), Recorder::new(false).0, &options)
        .expect("shares the port");
    let err = r
        .listen_udp(addr_of(&a), Recorder::new(false).0)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(
        err.to_string(),
        format!(
            "cannot listen on UDP {}: address already in use",
            addr_of(&a)
        )
    );
}

#[test]
fn broadcast_needs_to_be_allowed_and_a_refusal_is_reported() {
    let r = test_reactor();
    let (port, seen) = recorder(&r, false);
    let bcast = Address::Udp("255.255.255.255:9".parse().unwrap());
    port.send_to(b"everyone", &bcast).unwrap();
    wait(&r, "the refusal", || !seen.borrow().errors.is_empty());
    match &seen.borrow().errors[0] {
        DatagramError::SendFailed {
            error,
            address,
            size,
        } => {
            assert_eq!(error.raw_os_error(), Some(libc::EACCES));
            assert_eq!(address.as_ref(), Some(&bcast));
            assert_eq!(*size, 8);
        }
        other => panic!("unexpected {other}"),
    }
    port.set_broadcast(true).unwrap();
    port.set_ttl(4).unwrap();
    assert!(!port.is_closing());
}

#[test]
fn the_reactor_shutdown_stops_ports() {
    let r = test_reactor();
    let (_port, seen) = recorder(&r, false);
    let lost = Rc::new(Cell::new(false));
    let l = lost.clone();
    r.call_later(Duration::from_millis(20), move || {
        l.set(true);
        Reactor::current().stop().unwrap();
    });
    r.run().unwrap();
    assert!(lost.get());
    assert_eq!(seen.borrow().made, 1);
    assert_eq!(seen.borrow().lost.len(), 1);
    assert!(seen.borrow().lost[0].is_clean());
    assert_eq!(r.open_connections(), 0);
}

#[test]
fn with_protocol_reaches_the_protocol_and_a_stale_handle_is_harmless() {
    let r = test_reactor();
    let (port, _) = recorder(&r, false);
    let made = port
        .with_protocol(|p: &mut Recorder| p.seen.borrow().made)
        .unwrap();
    assert_eq!(
        made, 0,
        "connection_made runs from the loop, not inside listen_udp"
    );
    wait(&r, "connection_made", || {
        port.with_protocol(|p: &mut Recorder| p.seen.borrow().made)
            .unwrap()
            == 1
    });
    let err = port.with_protocol(|_: &mut Fragile| ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    port.close();
    wait(&r, "closed", || {
        port.with_protocol(|_: &mut Recorder| ()).is_err()
    });
    assert!(port.with_fd(|_| ()).is_err());
    assert!(format!("{port:?}").contains("closing: true"));
}

/// Forwards every datagram it gets through another port's handle.
struct Relay {
    via: DatagramTransport,
    to: Address,
}

impl DatagramProtocol for Relay {
    fn datagram_received(&mut self, _: &DatagramTransport, data: &[u8], _: Address) {
        self.via.send_to(data, &self.to).unwrap();
        assert_eq!(
            self.via.queued_datagrams(),
            1,
            "gathered, not sent inside the callback"
        );
    }
}

#[test]
fn a_datagram_sent_through_another_port_goes_out_before_the_loop_waits() {
    let r = test_reactor();
    let (sink, seen) = recorder(&r, false);
    let (via, _) = recorder(&r, false);
    let relay = r
        .listen_udp(
            local(),
            Relay {
                via: via.clone(),
                to: sink.local_addr(),
            },
        )
        .unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.send_to(b"pass it on", addr_of(&relay)).unwrap();
    wait(&r, "the relayed datagram", || {
        !seen.borrow().datagrams.is_empty()
    });
    assert_eq!(seen.borrow().datagrams[0].0, b"pass it on");
    assert_eq!(seen.borrow().datagrams[0].1, via.local_addr());
    assert_eq!(via.queued_datagrams(), 0);
}

#[test]
fn an_adopted_socket_keeps_its_connection() {
    let r = test_reactor();
    let (server, _) = recorder(&r, true);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(addr_of(&server)).unwrap();
    let (p, seen) = Recorder::new(false);
    let port = r.adopt_udp_socket(socket, p).unwrap();
    assert_eq!(port.peer_addr(), Some(server.local_addr()));
    port.send(b"adopted").unwrap();
    wait(&r, "the echo", || !seen.borrow().datagrams.is_empty());
    assert_eq!(seen.borrow().datagrams[0].0, b"adopted");
}

/// A port flooded without a pause cannot starve the others: each readiness event reads a
/// bounded number of batches, then the loop serves the other ports. Two threads flood
/// one port until a datagram sent to another port arrives (or the deadline passes).
#[test]
fn a_flooded_port_does_not_starve_the_others() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let r = test_reactor();
    let (flooded, flood_seen) = recorder(&r, false);
    let (quiet, quiet_seen) = recorder(&r, false);
    let target = addr_of(&flooded);
    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let s = UdpSocket::bind("127.0.0.1:0").expect("a socket");
                let deadline = std::time::Instant::now() + PATIENCE;
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                    if s.send_to(&[7u8; 64], target).is_ok() {
                        sent += 1;
                    }
                }
                sent
            })
        })
        .collect();
    // Once the flood is under way, one datagram for the quiet port.
    wait(&r, "the flood to arrive", || {
        flood_seen.borrow().datagrams.len() > 1000
    });
    let sender = UdpSocket::bind("127.0.0.1:0").expect("a socket");
    sender.send_to(b"heard", addr_of(&quiet)).expect("sends");
    let served = r.run_until(PATIENCE, || !quiet_seen.borrow().datagrams.is_empty());
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = flooders
        .into_iter()
        .map(|t| t.join().expect("a flooder"))
        .sum();
    served.expect("the quiet port's datagram arrives while the other port is flooded");
    assert_eq!(quiet_seen.borrow().datagrams[0].0, b"heard");
    assert!(sent > 1000, "the flood was real: {sent} datagrams sent");
    flooded.close();
    quiet.close();
}

#[cfg(target_os = "linux")]
#[test]
fn an_unconnected_ipv6_port_hears_port_unreachable_with_the_address_on_linux() {
    // The IPv6 twin of the test above (`IPV6_RECVERR`): ICMPv6 over ::1.
    let Some(closed) = ipv6_loopback() else {
        return;
    };
    let gone = closed.local_addr().unwrap();
    drop(closed);
    let r = test_reactor();
    let (port, seen) = ipv6_recorder(&r);
    port.send_to(b"hello?", &Address::Udp(gone)).unwrap();
    wait(&r, "port unreachable over IPv6", || {
        !seen.borrow().errors.is_empty()
    });
    assert_refused_about(&seen.borrow().errors[0], gone);
    assert!(!port.is_closing(), "the port goes on");
}

/// Runs of datagrams to one destination go out segmented (`UDP_SEGMENT`). A path whose
/// MTU is below the segment size makes the kernel refuse such a message; the port then
/// sends each datagram on its own, and loses none.
#[cfg(target_os = "linux")]
#[test]
fn a_path_too_small_for_segments_falls_back_to_one_datagram_each() {
    use std::os::fd::AsRawFd;
    let Some(rx) = ipv6_loopback() else {
        return;
    };
    rx.set_read_timeout(Some(PATIENCE)).unwrap();
    let to = Address::Udp(rx.local_addr().unwrap());
    let r = test_reactor();
    let (port, seen) = ipv6_recorder(&r);
    // IPV6_MTU: this socket's path MTU, below the 1,400-byte datagrams sent below.
    port.with_fd(|fd| {
        let mtu: libc::c_int = 1280;
        // SAFETY: a valid option value of its size, on an open socket.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU,
                (&mtu as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    })
    .unwrap();
    // Sent from a callback, the ten are gathered into one batch: one run, one message.
    let sender = port.clone();
    let queued = Rc::new(std::cell::Cell::new(false));
    let q = queued.clone();
    r.call_soon(move || {
        for i in 0..10u8 {
            sender.send_to(&[i; 1400], &to).unwrap();
        }
        q.set(true);
    });
    wait(&r, "the ten sent", || {
        queued.get() && port.queued_datagrams() == 0
    });
    let mut buf = [0u8; 2048];
    for i in 0..10u8 {
        let (n, _) = rx.recv_from(&mut buf).expect("every datagram arrives");
        assert_eq!(&buf[..n], &[i; 1400][..], "whole, in order");
    }
    assert!(
        seen.borrow().errors.is_empty(),
        "{:?}",
        seen.borrow().errors
    );
}
