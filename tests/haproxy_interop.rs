//! Against a real HAProxy (Debian's `haproxy` package; `.ci/run` installs it): HAProxy in
//! TCP mode with `send-proxy` and `send-proxy-v2` in front of the `echo_server` example
//! run with `haproxy:tcp:...`; the echo works and the server logs the test client's own
//! address, not HAProxy's. Then HAProxy's version 2 TLVs (unique id, CRC32c; ALPN and
//! authority from a TLS frontend) read by an in-process `haproxy:` server, and HAProxy
//! relaying TLS untouched to a `haproxy:ssl:` server, the header read before the
//! handshake.

mod common;

#[path = "../tls/tests/support/pki.rs"]
mod pki;

use std::cell::RefCell;
use std::io::{ErrorKind as IoErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{Server, example};
use torsion::endpoints::haproxy::ProxyHeader;
use torsion::endpoints::{quote, server_from_string};
use torsion::reactor::testing::{PATIENCE, test_reactor};
use torsion::reactor::{Address, Protocol, Reactor, Transport, factory_fn};
use torsion::tls::{ClientOptions, TlsInfo, TrustRoots};

const LONG: Duration = Duration::from_secs(30);

/// The HAProxy program: on the PATH, or where Debian puts it (`/usr/sbin`, not on a
/// user's PATH).
fn haproxy_bin() -> &'static str {
    ["haproxy", "/usr/sbin/haproxy"]
        .into_iter()
        .find(|bin| {
            Command::new(bin)
                .arg("-v")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .unwrap_or("haproxy")
}

/// Whether HAProxy is here; if not, says so loudly (the test then checks nothing).
fn haproxy_installed() -> bool {
    let found = Command::new(haproxy_bin())
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!(
            "\n!!! SKIPPED: haproxy is not installed (apt-get install haproxy; .ci/run does \
             it as root). The HAProxy interop tests checked nothing.\n"
        );
    }
    found
}

/// A port that was free a moment ago (HAProxy's configuration cannot say "any port").
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binds a free port");
    l.local_addr().expect("an address").port()
}

/// A running HAProxy, killed when dropped.
struct Haproxy {
    child: Child,
    _dir: TempDir,
    ports: Vec<u16>,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts HAProxy with the configuration `config` gives for fresh frontend ports (one per
/// `frontends`), and waits until every frontend accepts connections. A port another
/// process took between our check and HAProxy's bind makes it exit: then it starts again
/// with other ports.
fn start_haproxy(frontends: usize, config: impl Fn(&[u16]) -> String) -> Haproxy {
    let dir = std::env::temp_dir().join(format!(
        "torsion-haproxy-interop-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let dir = TempDir(dir);
    let cfg = dir.0.join("haproxy.cfg");
    for attempt in 1..=5 {
        let ports: Vec<u16> = (0..frontends).map(|_| free_port()).collect();
        let text = format!(
            "global\n    maxconn 200\n\ndefaults\n    mode tcp\n    timeout connect 5s\n    \
             timeout client 30s\n    timeout server 30s\n\n{}",
            config(&ports)
        );
        std::fs::write(&cfg, text).expect("writes the configuration");
        let mut child = Command::new(haproxy_bin())
            .arg("-db") // foreground
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("haproxy starts");
        let deadline = Instant::now() + LONG;
        let mut exited = None;
        let ready = loop {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                break false;
            }
            if ports
                .iter()
                .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
            {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(20)); // polling for a foreign process
        };
        if ready {
            return Haproxy {
                child,
                _dir: dir,
                ports,
            };
        }
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            if exited.is_none() {
                let _ = child.kill();
            }
            let _ = e.read_to_string(&mut err);
        }
        let _ = child.wait();
        if exited.is_none() || attempt == 5 {
            panic!("haproxy did not become ready (attempt {attempt}): {err}");
        }
        eprintln!("haproxy exited at start (a port race?), trying other ports: {err}");
    }
    unreachable!("every attempt returns or panics")
}

/// A client on 127.0.0.2 (so that its address cannot be mistaken for HAProxy's, which
/// connects from 127.0.0.1) connected to `port` on 127.0.0.1.
fn client_from_127_0_0_2(port: u16) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    let local: SocketAddr = "127.0.0.2:0".parse().expect("an address");
    socket.bind(&local.into()).expect("binds 127.0.0.2");
    let to: SocketAddr = ([127, 0, 0, 1], port).into();
    socket.connect(&to.into()).expect("connects to haproxy");
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(LONG)).expect("a timeout");
    s
}

#[test]
fn echo_server_behind_haproxy_sees_the_real_client() {
    if !haproxy_installed() {
        return;
    }
    let server = Server::start_with(
        Command::new(example("echo_server"))
            .arg("haproxy:tcp:port=0:interface=127.0.0.1")
            .env("RUST_LOG", "info"),
    );
    let echo = server.socket_addr().port();
    let haproxy = start_haproxy(2, |p| {
        format!(
            "listen v1\n    bind 127.0.0.1:{}\n    server echo 127.0.0.1:{echo} send-proxy\n\n\
             listen v2\n    bind 127.0.0.1:{}\n    server echo 127.0.0.1:{echo} send-proxy-v2\n",
            p[0], p[1]
        )
    });
    // HAProxy's readiness probes connected without a header: the server closed them.
    for (name, port) in [
        ("send-proxy", haproxy.ports[0]),
        ("send-proxy-v2", haproxy.ports[1]),
    ] {
        let mut c = client_from_127_0_0_2(port);
        let me = c.local_addr().expect("an address");
        c.write_all(b"hello through haproxy").expect("write");
        let mut got = vec![0; 21];
        c.read_exact(&mut got).expect("the echo");
        assert_eq!(got, b"hello through haproxy", "{name}");
        let line = format!("connection from {me}");
        assert!(
            server.wait_for_stderr(&line, LONG),
            "{name}: the server should log {line:?}"
        );
    }
}

/// What one connection's transport said.
struct Conn {
    peer: Address,
    header: Option<Rc<ProxyHeader>>,
    tls: bool,
}

/// Every connection made (HAProxy's own readiness probes, relayed, included).
#[derive(Default)]
struct Seen(Vec<Conn>);

impl Seen {
    /// The connection from `peer`.
    fn from(&self, peer: &Address) -> &Conn {
        self.0
            .iter()
            .find(|c| &c.peer == peer)
            .unwrap_or_else(|| panic!("no connection from {peer}"))
    }
}

struct Record(Rc<RefCell<Seen>>);

impl Protocol for Record {
    fn connection_made(&mut self, t: &Transport) {
        self.0.borrow_mut().0.push(Conn {
            peer: t.peer_addr(),
            header: t.extra::<ProxyHeader>(),
            tls: TlsInfo::of(t).is_some(),
        });
    }
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        t.write(data);
    }
}

fn listen_recording(reactor: &Reactor, description: &str) -> (u16, Rc<RefCell<Seen>>) {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let s = Rc::clone(&seen);
    let port = server_from_string(reactor, description)
        .expect("a valid description")
        .listen(factory_fn(move |_| Record(Rc::clone(&s))))
        .expect("listens");
    let n = port.local_addr().socket_addr().expect("TCP").port();
    std::mem::forget(port);
    (n, seen)
}

/// Sends `ping` on a non-blocking client and runs the reactor until it comes back.
fn ping_through(reactor: &Reactor, mut c: TcpStream) {
    c.set_nonblocking(true).expect("non-blocking");
    c.write_all(b"ping").expect("write");
    let mut got = Vec::new();
    reactor
        .run_until(PATIENCE, || {
            let mut buf = [0; 16];
            match c.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == IoErrorKind::WouldBlock => {}
                Err(e) => panic!("the client failed: {e}"),
            }
            got == b"ping"
        })
        .expect("the echo comes back through haproxy");
}

#[test]
fn haproxy_v2_tlvs_reach_the_protocol() {
    if !haproxy_installed() {
        return;
    }
    let reactor = test_reactor();
    let (backend, seen) = listen_recording(&reactor, "haproxy:tcp:0:interface=127.0.0.1");
    let pki = pki::Pki::new("haproxy-interop");
    let issued = pki.server("server", &["localhost"]);
    let both = pki.path("both.pem");
    pki::combined(&issued, &both);
    let haproxy = start_haproxy(2, |p| {
        format!(
            "frontend plain\n    bind 127.0.0.1:{}\n    unique-id-format torsion-%cp\n    \
             default_backend be\n\n\
             frontend tls\n    bind 127.0.0.1:{} ssl crt {} alpn h2,http/1.1\n    \
             unique-id-format torsion-tls\n    default_backend be\n\n\
             backend be\n    server s 127.0.0.1:{backend} send-proxy-v2 \
             proxy-v2-options unique-id,authority,crc32c,ssl\n",
            p[0],
            p[1],
            both.display()
        )
    });
    // Plain: the unique id and a checked CRC32c.
    let c = client_from_127_0_0_2(haproxy.ports[0]);
    let me = c.local_addr().expect("an address");
    ping_through(&reactor, c);
    {
        let seen = seen.borrow();
        let header = seen
            .from(&Address::Tcp(me))
            .header
            .as_ref()
            .expect("a header");
        assert_eq!(
            header.unique_id(),
            Some(format!("torsion-{}", me.port()).as_bytes())
        );
        assert!(
            header.tlv(0x03).is_some(),
            "HAProxy sent a CRC32c (and it matched)"
        );
    }

    // Through HAProxy's TLS frontend: the ALPN and SNI it negotiated come as TLVs.
    let options = ClientOptions::new().alpn(["h2"]);
    let me = hello_over_tls(&reactor, &pki, options, haproxy.ports[1]);
    let seen = seen.borrow();
    let header = seen.from(&me).header.as_ref().expect("a header");
    assert_eq!(header.alpn(), Some(&b"h2"[..]));
    assert_eq!(header.authority(), Some("localhost"));
    assert_eq!(header.unique_id(), Some(&b"torsion-tls"[..]));
    assert!(header.tlv(0x20).is_some(), "the SSL TLV, kept raw");
}

#[test]
fn haproxy_relays_tls_to_a_haproxy_ssl_server() {
    if !haproxy_installed() {
        return;
    }
    let reactor = test_reactor();
    let pki = pki::Pki::new("haproxy-ssl");
    let issued = pki.server("server", &["localhost"]);
    let (backend, seen) = listen_recording(
        &reactor,
        &format!(
            "haproxy:ssl:0:interface=127.0.0.1:privateKey={}:certKey={}",
            quote(issued.key.to_str().expect("UTF-8")),
            quote(issued.cert.to_str().expect("UTF-8"))
        ),
    );
    let haproxy = start_haproxy(1, |p| {
        format!(
            "listen relay\n    bind 127.0.0.1:{}\n    server s 127.0.0.1:{backend} send-proxy-v2\n",
            p[0]
        )
    });
    let client = hello_over_tls(&reactor, &pki, ClientOptions::new(), haproxy.ports[0]);
    // Found by the client's own address: the TLS server sees the client, not HAProxy.
    assert!(seen.borrow().from(&client).tls);
}

/// Connects over TLS (trusting the PKI's CA, as `localhost`) to a local `port`, waits for
/// the server's `hello`, hangs up, and returns the client's own address (what a server
/// behind HAProxy should see as the peer).
fn hello_over_tls(
    reactor: &torsion_reactor::Reactor,
    pki: &pki::Pki,
    options: ClientOptions,
    port: u16,
) -> torsion_reactor::Address {
    let connector = options
        .trust_roots(TrustRoots::from_pem_file(&pki.ca).expect("the CA"))
        .build()
        .expect("a connector");
    let answered = Rc::new(RefCell::new(Vec::new()));
    let a = Rc::clone(&answered);
    let tls = connector
        .wrap(
            "localhost",
            factory_fn(move |_| common::Hello(Rc::clone(&a))),
        )
        .expect("a TLS factory");
    let connector = reactor.connect_tcp(([127, 0, 0, 1], port).into(), tls);
    reactor
        .run_until(PATIENCE, || answered.borrow().as_slice() == b"hello")
        .expect("the hello comes back through HAProxy");
    let me = connector
        .transport()
        .map(|t| t.local_addr())
        .expect("connected");
    connector.disconnect();
    me
}
