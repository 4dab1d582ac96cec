//! Datagram endpoints over real sockets: `udp`, `udp6` and `unixgram` servers opened from
//! descriptions, clients that resolve a host name off the reactor thread, and errors that
//! name the address.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use torsion::endpoints::{
    DatagramClientEndpoint, DatagramEndpoint, UdpClient, UdpServer, datagram_client_from_string,
    datagram_from_string,
};
use torsion::reactor::testing::{PATIENCE, test_reactor};
use torsion::reactor::{Address, DatagramProtocol, DatagramTransport, ErrorKind, Reactor};

struct Echo;

impl DatagramProtocol for Echo {
    fn datagram_received(&mut self, t: &DatagramTransport, data: &[u8], from: Address) {
        t.send_to(data, &from).unwrap();
    }
}

/// Sends `message` when its port opens and keeps the answers.
struct Ask {
    message: &'static [u8],
    got: Rc<RefCell<Vec<Vec<u8>>>>,
}

impl DatagramProtocol for Ask {
    fn connection_made(&mut self, t: &DatagramTransport) {
        t.send(self.message).unwrap();
    }
    fn datagram_received(&mut self, _: &DatagramTransport, data: &[u8], _: Address) {
        self.got.borrow_mut().push(data.to_vec());
    }
}

fn ask(r: &Reactor, client: &str, message: &'static [u8]) -> Vec<Vec<u8>> {
    let got = Rc::new(RefCell::new(Vec::new()));
    let endpoint = datagram_client_from_string(r, client).expect("a client description");
    let port = common::wait(
        r,
        endpoint.connect(Ask {
            message,
            got: got.clone(),
        }),
    )
    .expect("connects");
    r.run_until(PATIENCE, || !got.borrow().is_empty())
        .expect("an answer");
    port.close();
    got.take()
}

#[test]
fn udp_server_and_a_client_that_resolves_localhost() {
    let r = test_reactor();
    let server = datagram_from_string(&r, "udp:0:interface=127.0.0.1")
        .unwrap()
        .listen(Echo)
        .unwrap();
    let port = server.local_addr().socket_addr().unwrap().port();
    assert_eq!(
        ask(&r, &format!("udp:127.0.0.1:{port}"), b"by ip"),
        [b"by ip".to_vec()]
    );
    // "localhost" is resolved on the thread pool. It may resolve to ::1 first, where a UDP
    // "connect" succeeds too but nobody listens: the bind address pins IPv4.
    let by_name = format!(r"udp:host=localhost:port={port}:bindAddress=127.0.0.1");
    assert_eq!(ask(&r, &by_name, b"by name"), [b"by name".to_vec()]);
}

#[test]
fn udp6_server_and_client() {
    let r = test_reactor();
    let server = datagram_from_string(&r, r"udp6:0:interface=\:\:1")
        .unwrap()
        .listen(Echo)
        .unwrap();
    let port = server.local_addr().socket_addr().unwrap().port();
    assert_eq!(
        ask(&r, &format!(r"udp6:host=\:\:1:port={port}"), b"six"),
        [b"six".to_vec()]
    );
}

#[test]
fn specs_built_in_rust() {
    let r = test_reactor();
    let mut spec = UdpServer::new(0);
    spec.interface = [127, 0, 0, 1].into();
    let server = DatagramEndpoint::new(&r, spec).listen(Echo).unwrap();
    let port = server.local_addr().socket_addr().unwrap().port();
    let got = Rc::new(RefCell::new(Vec::new()));
    let client = DatagramClientEndpoint::new(&r, UdpClient::new("127.0.0.1", port));
    common::wait(
        &r,
        client.connect(Ask {
            message: b"rust",
            got: got.clone(),
        }),
    )
    .unwrap();
    r.run_until(PATIENCE, || !got.borrow().is_empty()).unwrap();
    assert_eq!(*got.borrow(), [b"rust".to_vec()]);
}

#[test]
fn unixgram_server_with_its_lock_file_and_an_abstract_one() {
    let r = test_reactor();
    let path = std::env::temp_dir().join(format!("torsion-ep-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let description = format!("unixgram:{}:mode=600", path.display());
    let server = datagram_from_string(&r, &description)
        .unwrap()
        .listen(Echo)
        .unwrap();
    let lock = format!("{}.lock", path.display());
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap().trim(),
        std::process::id().to_string()
    );
    let client = format!("unixgram:{}", path.display());
    assert_eq!(ask(&r, &client, b"path"), [b"path".to_vec()]);
    server.close();
    assert!(!path.exists() && !std::path::Path::new(&lock).exists());

    let name = format!("unixgram:@torsion-ep-{}", std::process::id());
    let server = datagram_from_string(&r, &name)
        .unwrap()
        .listen(Echo)
        .unwrap();
    assert!(matches!(server.local_addr(), Address::UnixAbstract(_)));
    assert_eq!(ask(&r, &name, b"abstract"), [b"abstract".to_vec()]);
}

#[test]
fn failures_name_the_address_and_the_cause() {
    let r = test_reactor();
    let first = datagram_from_string(&r, "udp:0:interface=127.0.0.1")
        .unwrap()
        .listen(Echo)
        .unwrap();
    let taken = first.local_addr().socket_addr().unwrap();
    let err = datagram_from_string(&r, &format!("udp:{}:interface=127.0.0.1", taken.port()))
        .unwrap()
        .listen(Echo)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot listen on UDP {taken}: address already in use")
    );
    let missing = std::env::temp_dir().join(format!("torsion-ep-none-{}.sock", std::process::id()));
    let err = common::wait(
        &r,
        datagram_client_from_string(&r, &format!("unixgram:{}", missing.display()))
            .unwrap()
            .connect(Echo),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    let err = common::wait(
        &r,
        datagram_client_from_string(&r, "udp:host=nosuch.invalid:port=53:timeout=10")
            .unwrap()
            .connect(Echo),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot connect to nosuch.invalid:53: cannot resolve the host name"),
        "{err}"
    );
}
