//! Clients of an echo server behind TLS (an `ssl:` endpoint, with a certificate made for
//! the run). Well-behaved ones finish the handshake, check every echoed byte and time
//! their round trips, half-close with `close_notify`, or write their records a byte per
//! segment; hostile ones stall or reset the handshake, speak plain text to the TLS port,
//! never read, reset mid-write, vanish and storm with full handshakes.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, SanType,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::rng::Rng;
use crate::run::{Behaviour, Run, behave, check, pause, reset, served};

const BEHAVIOURS: &[Behaviour] = &[
    ("echo", 30, echo),
    ("close-notify", 8, close_notify),
    ("byte-per-segment", 4, byte_per_segment),
    ("pause", 6, pausing),
    ("never-read", 8, never_read),
    ("stall-handshake", 6, stall_handshake),
    ("plain-text", 8, plain_text),
    ("reset-mid-handshake", 8, reset_mid_handshake),
    ("reset-mid-write", 8, reset_mid_write),
    ("connect-and-vanish", 8, vanish),
    ("handshake-storm", 4, storm),
];

/// Bytes the server may hold for one client: an echo connection's bound (in plaintext),
/// plus the TLS layer's records on their way in and out (a 16 KiB record each way, and
/// rustls's own buffers): see `echo::PER_CONNECTION_BOUND`.
pub const PER_CONNECTION_BOUND: u64 = crate::echo::PER_CONNECTION_BOUND + 128 * 1024;

/// How long the server may take to close a connection that sent plain text instead of a
/// handshake. Its handshake timeout (10 s) would close it anyway: noticing only then
/// means the garbage went unnoticed.
const NOTICE_GARBAGE: Duration = Duration::from_secs(9);

static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();

/// Makes a CA and a certificate it signs for `localhost` and 127.0.0.1, writes the
/// server's certificate and key into `dir`, and sets up the clients to trust the CA.
/// Returns the server's endpoint description.
pub fn setup(dir: &Path) -> Result<String, String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("TLS setup: {what}: {e}");
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(|e| fail("CA", &e))?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "torsion chaos CA");
    let ca_key = KeyPair::generate().map_err(|e| fail("CA key", &e))?;
    let issuer = CertifiedIssuer::self_signed(ca, ca_key).map_err(|e| fail("CA", &e))?;

    let mut leaf = CertificateParams::new(vec!["localhost".to_string()])
        .map_err(|e| fail("certificate", &e))?;
    leaf.subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(|e| fail("key", &e))?;
    let cert = leaf
        .signed_by(&key, &issuer)
        .map_err(|e| fail("certificate", &e))?;

    std::fs::create_dir_all(dir).map_err(|e| fail("directory", &e))?;
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).map_err(|e| fail("writing the certificate", &e))?;
    std::fs::write(&key_file, key.serialize_pem()).map_err(|e| fail("writing the key", &e))?;

    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(issuer.der().to_vec()))
        .map_err(|e| fail("trusting the CA", &e))?;
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let _ = CONFIG.set(Arc::new(config));
    Ok(format!(
        "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}",
        key_file.display(),
        cert_file.display()
    ))
}

/// One client: behaviours at random until the run ends.
pub fn client(run: &Run, id: u64) {
    behave(run, id, BEHAVIOURS);
}

type Tls<S> = StreamOwned<ClientConnection, S>;

fn new_session() -> io::Result<ClientConnection> {
    let config = CONFIG
        .get()
        .ok_or_else(|| io::Error::other("TLS clients before setup"))?;
    ClientConnection::new(Arc::clone(config), ServerName::from(ip_localhost()))
        .map_err(io::Error::other)
}

fn ip_localhost() -> rustls::pki_types::IpAddr {
    rustls::pki_types::IpAddr::from(std::net::IpAddr::from([127, 0, 0, 1]))
}

/// Finishes the handshake over `sock`.
fn handshake<S: Read + Write>(sock: S) -> io::Result<Tls<S>> {
    let mut tls = StreamOwned::new(new_session()?, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// Connects and finishes the handshake for a client that must be served; a failure is
/// the server's.
fn connect_served(run: &Run, id: u64) -> Option<Tls<TcpStream>> {
    served(run, id, run.connect(id).and_then(handshake))
}

/// Sends `msg` and reads its echo back whole; true when it matched.
fn round_trip<S: Read + Write>(run: &Run, id: u64, tls: &mut Tls<S>, msg: &[u8]) -> bool {
    let t0 = Instant::now();
    let mut got = vec![0; msg.len()];
    let result = tls
        .write_all(msg)
        .and_then(|()| tls.flush())
        .and_then(|()| tls.read_exact(&mut got));
    match result {
        Ok(()) => {
            run.latency(t0.elapsed());
            run.sent(msg.len());
            run.received(got.len());
            check(run, id, "echo", msg, &got)
        }
        Err(e) => {
            run.fail(id, format!("echo of {} bytes over TLS: {e}", msg.len()));
            false
        }
    }
}

/// Several messages of random sizes, each read back whole and timed; then `close_notify`
/// or a close without it (which the server must take as the end too).
fn echo(run: &Run, id: u64, rng: &mut Rng) {
    let Some(mut tls) = connect_served(run, id) else {
        return;
    };
    for _ in 0..rng.range(1, 20) {
        if run.over() {
            break;
        }
        let msg = rng.bytes_between(1, 64 * 1024);
        if !round_trip(run, id, &mut tls, &msg) {
            return;
        }
    }
    if rng.chance(50) {
        tls.conn.send_close_notify();
        let _ = tls.flush();
    }
}

/// Sends, then `close_notify` (TLS's half-close), and must get everything back, then the
/// server's `close_notify`.
fn close_notify(run: &Run, id: u64, rng: &mut Rng) {
    let Some(mut tls) = connect_served(run, id) else {
        return;
    };
    let msg = rng.bytes_between(0, 60 * 1024);
    let sent = tls.write_all(&msg).and_then(|()| {
        tls.conn.send_close_notify();
        tls.flush()
    });
    if let Err(e) = sent {
        return run.fail(id, format!("close_notify: sending: {e}"));
    }
    run.sent(msg.len());
    let mut got = Vec::new();
    match tls.read_to_end(&mut got) {
        Ok(_) => {
            run.received(got.len());
            check(run, id, "echo before the server's close_notify", &msg, &got);
        }
        Err(e) => run.fail(id, format!("close_notify: reading to the end: {e}")),
    }
}

/// A socket whose writes go out a byte per segment: records (the handshake's too) reach
/// the server in pieces.
struct Trickle(TcpStream);

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match buf.first() {
            Some(b) => self.0.write(std::slice::from_ref(b)),
            None => Ok(0),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Handshake and a small echo with every TLS byte in its own segment.
fn byte_per_segment(run: &Run, id: u64, rng: &mut Rng) {
    let tls = run.connect(id).map(Trickle).and_then(handshake);
    let mut tls = match tls {
        Ok(t) => t,
        Err(e) => return run.fail(id, format!("a handshake a byte per segment: {e}")),
    };
    let msg = rng.bytes_between(1, 2 * 1024);
    round_trip(run, id, &mut tls, &msg);
}

/// Sends, stops reading for seconds, then must find its whole echo.
fn pausing(run: &Run, id: u64, rng: &mut Rng) {
    let Some(mut tls) = connect_served(run, id) else {
        return;
    };
    let msg = rng.bytes_between(1, 32 * 1024);
    if let Err(e) = tls.write_all(&msg).and_then(|()| tls.flush()) {
        return run.fail(id, format!("pause: sending: {e}"));
    }
    run.sent(msg.len());
    pause(run, rng.range(500, 3000));
    let mut got = vec![0; msg.len()];
    match tls.read_exact(&mut got) {
        Ok(()) => {
            run.received(got.len());
            check(run, id, "echo after a pause", &msg, &got);
        }
        Err(e) => run.fail(id, format!("pause: reading after the pause: {e}")),
    }
}

/// Writes records and never reads: the server must stop reading it, not buffer.
fn never_read(run: &Run, id: u64, rng: &mut Rng) {
    let Ok(mut tls) = run.connect(id).and_then(handshake) else {
        return;
    };
    let data = rng.bytes(256 * 1024);
    let until = Instant::now() + Duration::from_millis(rng.range(200, 2000));
    if tls.sock.set_nonblocking(true).is_err() {
        return;
    }
    let mut at = 0;
    while Instant::now() < until && !run.over() {
        // rustls takes plaintext up to its own buffer limit; then only the socket drains it.
        if let Ok(n) = tls.conn.writer().write(&data[at..]) {
            run.sent(n);
            at = (at + n) % data.len();
        }
        match tls.conn.write_tls(&mut tls.sock) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => pause(run, 50),
            Err(_) => break,
        }
    }
    if rng.chance(50) {
        reset(tls.sock);
    }
}

/// Sends the `ClientHello` (or part of it), then nothing for a while.
fn stall_handshake(run: &Run, id: u64, rng: &mut Rng) {
    let Ok(mut sock) = run.connect(id) else {
        return;
    };
    let Ok(mut session) = new_session() else {
        return;
    };
    let mut hello = Vec::new();
    let _ = session.write_tls(&mut hello);
    let cut = if rng.chance(50) {
        hello.len()
    } else {
        rng.range(1, hello.len().max(2) as u64) as usize
    };
    let _ = sock.write_all(&hello[..cut.min(hello.len())]);
    pause(run, rng.range(500, 3000));
    if rng.chance(50) {
        reset(sock);
    }
}

/// Speaks plain text (an HTTP request, then random bytes) to the TLS port: the server must
/// close the connection soon, not wait for its handshake timeout.
fn plain_text(run: &Run, id: u64, rng: &mut Rng) {
    let Ok(mut sock) = run.connect(id) else {
        return;
    };
    let mut garbage = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    garbage.extend(rng.bytes_between(0, 4096));
    let t0 = Instant::now();
    if sock.write_all(&garbage).is_err() {
        return; // closed already: what we want
    }
    run.sent(garbage.len());
    let mut sink = Vec::new();
    match sock.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => return run.fail(id, format!("plain text to the TLS port: {e}")),
    }
    let took = t0.elapsed();
    if took > NOTICE_GARBAGE {
        run.fail(
            id,
            format!(
                "the server took {:.1} s to close a connection that sent plain text",
                took.as_secs_f64()
            ),
        );
    }
}

/// Starts a handshake, sometimes reads the server's first flight, then resets.
fn reset_mid_handshake(run: &Run, id: u64, rng: &mut Rng) {
    let Ok(mut sock) = run.connect(id) else {
        return;
    };
    let Ok(mut session) = new_session() else {
        return;
    };
    let _ = session.write_tls(&mut sock);
    if rng.chance(50) {
        let mut buf = [0u8; 4096];
        let _ = sock.read(&mut buf);
    }
    reset(sock);
}

/// Writes a lot, then resets while the server is still echoing.
fn reset_mid_write(run: &Run, id: u64, rng: &mut Rng) {
    let Ok(mut tls) = run.connect(id).and_then(handshake) else {
        return;
    };
    let data = rng.bytes_between(1, 256 * 1024);
    if tls.sock.set_nonblocking(true).is_ok() {
        if let Ok(n) = tls.conn.writer().write(&data) {
            run.sent(n);
        }
        while let Ok(n) = tls.conn.write_tls(&mut tls.sock) {
            if n == 0 {
                break;
            }
        }
    }
    reset(tls.sock);
}

/// Connects and goes away at once, sometimes after a byte, sometimes with a reset.
fn vanish(run: &Run, id: u64, rng: &mut Rng) {
    let Ok(mut sock) = run.connect(id) else {
        return;
    };
    if rng.chance(30) {
        let _ = sock.write_all(&[0x16]);
    }
    if rng.chance(50) {
        reset(sock);
    }
}

/// Full handshakes in a row, each closed at once (with `close_notify` or without).
fn storm(run: &Run, id: u64, rng: &mut Rng) {
    for _ in 0..rng.range(3, 15) {
        if run.over() {
            return;
        }
        let Ok(mut tls) = run.connect(id).and_then(handshake) else {
            continue;
        };
        if rng.chance(50) {
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
        if rng.chance(30) {
            reset(tls.sock);
        }
    }
}
