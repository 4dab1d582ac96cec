//! Unix stream sockets through the same Protocol, Factory and Transport API as TCP: echo,
//! half-close, flow control, peer credentials, file mode, and the path's removal.

mod common;

use common::{PATIENCE as LONG, reactor};

use std::cell::{Cell, RefCell};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use torsion_reactor::{
    Address, ClientFactory, ConnectionLost, Connector, Factory, ListeningPort, PeerCredentials,
    Protocol, Reactor, Transport, UnixConnectOptions, UnixListenOptions, factory_fn,
};

/// A socket path in the temp directory, unique to this test; removed (with anything left
/// next to it) when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new(name: &str) -> TempPath {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "torsion-unix-{}-{n}-{name}.sock",
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

fn listen<F: Factory>(r: &Reactor, path: &Path, factory: F) -> ListeningPort {
    r.listen_unix(path, factory).expect("listens")
}

struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        t.try_write(data).unwrap();
    }
}

/// A client protocol that sends `message` on connect, keeps what comes back, and records
/// how the connection ended.
struct Client {
    message: Vec<u8>,
    half_close: bool,
    got: Rc<RefCell<Vec<u8>>>,
    lost: Rc<RefCell<Option<String>>>,
    transport: Rc<RefCell<Option<Transport>>>,
}

impl Protocol for Client {
    fn connection_made(&mut self, t: &Transport) {
        *self.transport.borrow_mut() = Some(t.clone());
        t.try_write(&self.message).unwrap();
        if self.half_close {
            t.lose_write_connection().unwrap();
        }
    }
    fn data_received(&mut self, _: &Transport, data: &[u8]) {
        self.got.borrow_mut().extend_from_slice(data);
    }
    fn connection_lost(&mut self, reason: &ConnectionLost) {
        *self.lost.borrow_mut() = Some(match reason {
            ConnectionLost::Done => "done".to_owned(),
            other => other.to_string(),
        });
    }
}

#[derive(Default, Clone)]
struct Seen {
    got: Rc<RefCell<Vec<u8>>>,
    lost: Rc<RefCell<Option<String>>>,
    transport: Rc<RefCell<Option<Transport>>>,
    failed: Rc<RefCell<Option<String>>>,
}

struct ClientMaker {
    seen: Seen,
    message: Vec<u8>,
    half_close: bool,
}

impl Factory for ClientMaker {
    type Protocol = Client;
    fn build_protocol(&self, _: &Address) -> Option<Client> {
        Some(Client {
            message: self.message.clone(),
            half_close: self.half_close,
            got: self.seen.got.clone(),
            lost: self.seen.lost.clone(),
            transport: self.seen.transport.clone(),
        })
    }
}

impl ClientFactory for ClientMaker {
    fn client_connection_failed(&self, _: &Connector, reason: &ConnectionLost) {
        *self.seen.failed.borrow_mut() = Some(reason.to_string());
    }
}

fn connect(r: &Reactor, path: &Path, message: &[u8], half_close: bool) -> (Connector, Seen) {
    let seen = Seen::default();
    let connector = r.connect_unix_with(
        path,
        ClientMaker {
            seen: seen.clone(),
            message: message.to_vec(),
            half_close,
        },
        &UnixConnectOptions {
            timeout: Some(LONG),
        },
    );
    (connector, seen)
}

#[test]
fn echo_over_a_unix_socket() {
    let r = reactor();
    let path = TempPath::new("echo");
    let port = listen(&r, &path.0, factory_fn(|_| Echo));
    assert_eq!(port.local_addr(), Address::Unix(Some(path.0.clone())));
    let message: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (connector, seen) = connect(&r, &path.0, &message, false);
    r.run_until(LONG, || seen.got.borrow().len() >= message.len())
        .unwrap();
    assert!(*seen.got.borrow() == message);
    let t = seen.transport.borrow().clone().expect("connected");
    assert_eq!(t.peer_addr(), Address::Unix(Some(path.0.clone())));
    assert!(connector.transport().is_some());
    connector.disconnect();
    r.run_until(LONG, || seen.lost.borrow().is_some()).unwrap();
    assert_eq!(seen.lost.borrow().as_deref(), Some("done"));
    port.stop_listening();
}

#[test]
fn half_close_delivers_eof_and_the_server_can_still_answer() {
    struct Answer(Vec<u8>, Rc<Cell<bool>>);
    impl Protocol for Answer {
        fn data_received(&mut self, _: &Transport, d: &[u8]) {
            self.0.extend_from_slice(d);
        }
        fn eof_received(&mut self, t: &Transport) -> bool {
            self.1.set(true);
            let reply = format!("got {} bytes", self.0.len());
            t.try_write(reply.as_bytes()).unwrap();
            t.lose_connection();
            true
        }
    }
    let r = reactor();
    let path = TempPath::new("half");
    let eof = Rc::new(Cell::new(false));
    let e = eof.clone();
    let _port = listen(
        &r,
        &path.0,
        factory_fn(move |_| Some(Answer(Vec::new(), e.clone()))),
    );
    let (_connector, seen) = connect(&r, &path.0, b"12345", true);
    r.run_until(LONG, || seen.lost.borrow().is_some()).unwrap();
    assert!(eof.get(), "eof_received was called");
    assert_eq!(*seen.got.borrow(), b"got 5 bytes");
    assert_eq!(seen.lost.borrow().as_deref(), Some("done"));
}

#[test]
fn a_peer_that_does_not_read_pauses_the_writer_and_resumes_it_when_it_reads() {
    #[derive(Clone, Default)]
    struct Flow {
        paused: Rc<Cell<u32>>,
        resumed: Rc<Cell<u32>>,
    }
    struct Flood(Flow);
    impl Protocol for Flood {
        fn connection_made(&mut self, t: &Transport) {
            t.set_write_buffer_limits(64 * 1024, 16 * 1024);
            t.try_write(&vec![5u8; 8 * 1024 * 1024]).unwrap();
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
        fn pause_writing(&mut self, _: &Transport) {
            self.0.paused.set(self.0.paused.get() + 1);
        }
        fn resume_writing(&mut self, _: &Transport) {
            self.0.resumed.set(self.0.resumed.get() + 1);
        }
    }
    /// Reads nothing until told to.
    struct Sluggish(Rc<RefCell<Vec<u8>>>, Rc<RefCell<Option<Transport>>>);
    impl Protocol for Sluggish {
        fn connection_made(&mut self, t: &Transport) {
            t.pause_reading();
            *self.1.borrow_mut() = Some(t.clone());
        }
        fn data_received(&mut self, _: &Transport, d: &[u8]) {
            self.0.borrow_mut().extend_from_slice(d);
        }
    }
    impl ClientFactory for FnSluggish {}
    struct FnSluggish(Rc<RefCell<Vec<u8>>>, Rc<RefCell<Option<Transport>>>);
    impl Factory for FnSluggish {
        type Protocol = Sluggish;
        fn build_protocol(&self, _: &Address) -> Option<Sluggish> {
            Some(Sluggish(self.0.clone(), self.1.clone()))
        }
    }

    let r = reactor();
    let path = TempPath::new("flow");
    let flow = Flow::default();
    let f = flow.clone();
    let _port = listen(&r, &path.0, factory_fn(move |_| Some(Flood(f.clone()))));
    let got: Rc<RefCell<Vec<u8>>> = Rc::default();
    let client: Rc<RefCell<Option<Transport>>> = Rc::default();
    let _connector = r.connect_unix_with(
        &path.0,
        FnSluggish(got.clone(), client.clone()),
        &UnixConnectOptions {
            timeout: Some(LONG),
        },
    );
    r.run_until(LONG, || flow.paused.get() == 1).unwrap();
    assert_eq!(
        flow.resumed.get(),
        0,
        "nothing drains while the peer does not read"
    );
    assert!(got.borrow().is_empty());
    let reader = client.borrow().clone().expect("connected");
    reader.resume_reading();
    r.run_until(LONG, || got.borrow().len() == 8 * 1024 * 1024)
        .unwrap();
    r.run_until(LONG, || flow.resumed.get() >= 1)
        .expect("resume_writing once the peer read");
    assert!(got.borrow().iter().all(|&b| b == 5));
}

#[test]
fn peer_credentials_name_this_process_on_both_ends() {
    let r = reactor();
    let path = TempPath::new("cred");
    let server_side: Rc<RefCell<Option<Transport>>> = Rc::default();
    let s = server_side.clone();
    struct Keep(Rc<RefCell<Option<Transport>>>);
    impl Protocol for Keep {
        fn connection_made(&mut self, t: &Transport) {
            *self.0.borrow_mut() = Some(t.clone());
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    }
    let _port = listen(&r, &path.0, factory_fn(move |_| Some(Keep(s.clone()))));
    let (_connector, seen) = connect(&r, &path.0, b"", false);
    r.run_until(LONG, || {
        server_side.borrow().is_some() && seen.transport.borrow().is_some()
    })
    .unwrap();
    // SAFETY: plain getters without arguments.
    let me = unsafe {
        PeerCredentials {
            uid: libc::getuid(),
            gid: libc::getgid(),
            pid: Some(libc::getpid()),
        }
    };
    let server = server_side.borrow().clone().expect("accepted");
    let client = seen.transport.borrow().clone().expect("connected");
    assert_eq!(server.peer_credentials(), Some(me));
    assert_eq!(client.peer_credentials(), Some(me));
}

#[test]
fn the_mode_is_applied_and_the_path_is_removed_on_stop() {
    let r = reactor();
    let path = TempPath::new("mode");
    let lock = path.0.with_extension("sock.lock");
    std::fs::write(&lock, "1\n").unwrap();
    let options = UnixListenOptions {
        mode: 0o600,
        lock_file: Some(lock.clone()),
        ..UnixListenOptions::default()
    };
    let port = r
        .listen_unix_with(&path.0, factory_fn(|_| Echo), &options)
        .unwrap();
    let mode = std::fs::metadata(&path.0).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(port.is_listening());
    port.stop_listening();
    assert!(!port.is_listening());
    assert!(!path.0.exists(), "the socket path is removed");
    assert!(!lock.exists(), "the lock file is removed with it");
}

#[test]
fn listening_on_an_existing_path_fails_and_names_it() {
    let r = reactor();
    let path = TempPath::new("taken");
    std::fs::write(&path.0, "not a socket").unwrap();
    let err = r.listen_unix(&path.0, factory_fn(|_| Echo)).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&path.0.display().to_string()) && message.contains("in use"),
        "{message}"
    );
    assert!(path.0.exists(), "someone else's file is left alone");
}

#[test]
fn connecting_to_a_missing_socket_fails_and_leaves_nothing_registered() {
    let r = reactor();
    let path = TempPath::new("missing");
    let (connector, seen) = connect(&r, &path.0, b"", false);
    r.run_until(LONG, || seen.failed.borrow().is_some())
        .unwrap();
    let failed = seen.failed.borrow().clone().unwrap();
    assert!(failed.contains("no such file"), "{failed}");
    assert_eq!(
        connector.state(),
        torsion_reactor::ConnectorState::Disconnected
    );
    assert_eq!(r.registered_sources(), 0);
}
