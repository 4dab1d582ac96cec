//! connect_stream and serve_streams over endpoint strings (tcp, unix, TLS): the same
//! streams whatever the endpoint, flow control through the TLS layer, and errors that name
//! the description or the address.

mod common;
#[path = "../tls/tests/support/pki.rs"]
mod pki;

use std::time::Duration;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use common::{reactor, wait};
use torsion::endpoints::{client_from_string, connect_stream, quote, serve_streams};
use torsion::reactor::{
    AsyncStream, Deferred, ErrorKind, Protocol, Reactor, Transport, factory_fn,
};

/// Answers each line with its length, until end of file.
async fn lengths(mut stream: AsyncStream) -> std::io::Result<()> {
    loop {
        let line = stream.read_line(1024).await?;
        if line.is_empty() {
            return Ok(());
        }
        stream
            .write_all(format!("{}\n", line.len()).as_bytes())
            .await?;
    }
}

/// Connects to `description`, sends two lines and half-closes; returns the answers.
fn ask(r: &Reactor, description: String) -> Vec<u8> {
    let task = r.spawn(async move {
        let mut stream = connect_stream(&description).await?;
        stream.write_all(b"hello\nworld!\n").await?;
        stream.shutdown()?;
        let mut answers = Vec::new();
        loop {
            let chunk = stream.read_chunk(100).await?;
            if chunk.is_empty() {
                return Ok::<_, std::io::Error>(answers);
            }
            answers.extend_from_slice(&chunk);
        }
    });
    wait(r, task).unwrap().unwrap()
}

#[test]
fn over_tcp() {
    let r = reactor();
    let port = serve_streams("tcp:0:interface=127.0.0.1", lengths).unwrap();
    let addr = port.local_addr().socket_addr().unwrap();
    let answers = ask(&r, format!("tcp:host=127.0.0.1:port={}", addr.port()));
    assert_eq!(answers, b"6\n7\n");
    port.stop_listening();
}

#[test]
fn over_unix_sockets() {
    let r = reactor();
    let path = std::env::temp_dir().join(format!("torsion-streams-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let port = serve_streams(&format!("unix:{}:lockfile=0", path.display()), lengths).unwrap();
    let answers = ask(&r, format!("unix:{}", path.display()));
    assert_eq!(answers, b"6\n7\n");
    port.stop_listening();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn errors_name_the_description_or_the_address() {
    let r = reactor();
    let bad = wait(
        &r,
        connect_stream("tcp:host=127.0.0.1:port=nope").map(|_| ()),
    );
    let bad = bad.unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidInput);
    assert!(bad.to_string().contains("nope"), "{bad}");
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let refused = wait(
        &r,
        connect_stream(&format!("tcp:host=127.0.0.1:port={}", free.port())).map(|_| ()),
    )
    .unwrap_err();
    assert!(
        refused.to_string().contains("connection refused"),
        "{refused}"
    );
    let err = serve_streams("tcp:port=-1", lengths).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn cancelling_connect_stream_stops_the_attempt() {
    let r = reactor();
    let port = serve_streams("tcp:0:interface=127.0.0.1", lengths).unwrap();
    let addr = port.local_addr().socket_addr().unwrap();
    let endpoint =
        client_from_string(&r, &format!("tcp:host=127.0.0.1:port={}", addr.port())).unwrap();
    let connecting: Deferred<AsyncStream> = endpoint.connect_stream();
    connecting.cancel();
    let outcome = wait(&r, connecting.map(|_| ()));
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Cancelled);
    r.run_until(Duration::from_secs(10), || r.open_connections() == 0)
        .expect("nothing left open");
    port.stop_listening();
}

/// `ssl:` and `tls:` descriptions for a server with a fresh certificate for `localhost`,
/// and a client trusting its CA (port filled in later).
fn tls_descriptions(pki: &pki::Pki) -> (String, impl Fn(u16) -> String) {
    let issued = pki.server("server", &["localhost"]);
    let path = |p: &std::path::Path| quote(p.to_str().expect("a UTF-8 path"));
    let server = format!(
        "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}",
        path(&issued.key),
        path(&issued.cert)
    );
    let ca = path(&pki.ca);
    (server, move |port| {
        format!("tls:host=localhost:port={port}:trustRoots={ca}")
    })
}

#[test]
fn over_tls() {
    let r = reactor();
    let pki = pki::Pki::new("streams-tls");
    let (server, client) = tls_descriptions(&pki);
    let port = serve_streams(&server, lengths).unwrap();
    let addr = port.local_addr().socket_addr().unwrap();
    let answers = ask(&r, client(addr.port()));
    assert_eq!(answers, b"6\n7\n");
    port.stop_listening();
}

/// Echoes with `drain`, as examples/async_echo.rs does: its task stops reading while the
/// client does not read its echoes.
async fn echo(mut stream: AsyncStream) -> std::io::Result<()> {
    loop {
        let chunk = stream.read_chunk(64 * 1024).await?;
        if chunk.is_empty() {
            return Ok(());
        }
        stream.write_bytes(chunk)?;
        stream.drain().await?;
    }
}

/// Sends all its bytes at once, reads nothing until told, then checks the echo.
struct Flood {
    sent: Vec<u8>,
    got: Rc<RefCell<Vec<u8>>>,
    paused: Rc<Cell<bool>>,
}

impl Protocol for Flood {
    fn connection_made(&mut self, t: &Transport) {
        t.pause_reading();
        self.paused.set(true);
        t.write(&self.sent);
    }
    fn data_received(&mut self, _t: &Transport, data: &[u8]) {
        self.got.borrow_mut().extend_from_slice(data);
    }
}

/// A stream server behind TLS, against a client that sends 4 MiB without reading: the
/// server's stream fills to its limit and pauses reading the TLS transport, its writes
/// wait in `drain`, and everything comes back in order once the client reads. Flow control
/// goes through the TLS layer both ways; if a pause or a resume were lost on the way, the
/// echo would stop short.
#[test]
fn flow_control_goes_through_tls() {
    let r = reactor();
    let pki = pki::Pki::new("streams-tls-flow");
    let (server, client) = tls_descriptions(&pki);
    let port = serve_streams(&server, echo).unwrap();
    let addr = port.local_addr().socket_addr().unwrap();
    let sent: Vec<u8> = (0..4 << 20).map(|i: usize| (i % 251) as u8).collect();
    let got = Rc::new(RefCell::new(Vec::new()));
    let paused = Rc::new(Cell::new(false));
    let (g, p, s) = (got.clone(), paused.clone(), sent.clone());
    let endpoint = client_from_string(&r, &client(addr.port())).unwrap();
    let transport = wait(
        &r,
        endpoint.connect(factory_fn(move |_| Flood {
            sent: s.clone(),
            got: g.clone(),
            paused: p.clone(),
        })),
    )
    .expect("connects over TLS");
    assert!(paused.get());
    // Until the client's own buffer stops shrinking, the server has taken what it can: its
    // stream buffer is full, its echo waits in drain, and TCP holds back the rest.
    let mut last = usize::MAX;
    r.run_until(Duration::from_secs(30), || {
        let now = transport.buffer_size();
        let stuck = now == last && now > 0;
        last = now;
        stuck
    })
    .expect("the server stops taking bytes while its echo is not read");
    assert!(got.borrow().is_empty());
    transport.resume_reading();
    r.run_until(Duration::from_secs(60), || got.borrow().len() >= sent.len())
        .unwrap_or_else(|e| {
            panic!(
                "{} of {} bytes came back: {e}",
                got.borrow().len(),
                sent.len()
            )
        });
    assert!(
        *got.borrow() == sent,
        "the echo is the bytes sent, in order"
    );
    transport.lose_connection();
    port.stop_listening();
}
