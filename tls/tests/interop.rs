//! Interoperation with TLS stacks no one here wrote: `openssl s_client`/`s_server` and
//! Python's `ssl` module, both directions, TLS 1.2 and 1.3, ALPN, client certificates, and
//! the rejections (a wrong host name, an untrusted CA).
//!
//! `openssl` and `python3` must be installed (`.ci/run` installs openssl when missing).

mod support;

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::rc::Rc;
use std::time::Instant;

use support::pki::Pki;
use support::{OneShot, Recorder, Shared, localhost, run_until, seen};
use torsion_reactor::testing::{PATIENCE, test_reactor, wait_for};
use torsion_reactor::{ConnectionLost, Protocol, Reactor, TlsFailureKind, Transport, factory_fn};
use torsion_tls::{ClientAuth, ClientOptions, Identity, ServerOptions, TlsInfo, TrustRoots};

fn tool(name: &str) -> Command {
    let found = Command::new(name)
        .arg(if name == "openssl" {
            "version"
        } else {
            "--version"
        })
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} is not installed: these tests talk to it (apt-get install {}; .ci/run does)",
        if name == "openssl" {
            "openssl"
        } else {
            "python3"
        }
    );
    Command::new(name)
}

/// Echoes; closes (with close_notify) after a newline. Records what the server saw.
struct EchoLine(Shared);

impl Protocol for EchoLine {
    fn connection_made(&mut self, t: &Transport) {
        let mut seen = self.0.borrow_mut();
        seen.made = true;
        seen.info = TlsInfo::of(t);
    }
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        self.0.borrow_mut().data.extend_from_slice(data);
        t.write(data);
        if data.contains(&b'\n') {
            t.lose_connection();
        }
    }
    fn connection_lost(&mut self, reason: &ConnectionLost) {
        self.0.borrow_mut().lost = Some(reason.clone());
    }
}

fn echo_line_server(reactor: &Reactor, options: ServerOptions, server_side: &Shared) -> u16 {
    let s = Rc::clone(server_side);
    let port = reactor
        .listen_tcp(
            localhost(),
            options
                .build()
                .expect("acceptor")
                .wrap(factory_fn(move |_| EchoLine(Rc::clone(&s)))),
        )
        .expect("listen");
    port.local_addr().socket_addr().expect("addr").port()
}

/// Runs the reactor until `child` exits; its output.
fn finish(reactor: &Reactor, mut child: Child, what: &str) -> Output {
    let deadline = Instant::now() + PATIENCE;
    let mut exited = false;
    let _ = reactor.run_until(PATIENCE, || {
        exited = matches!(child.try_wait(), Ok(Some(_)));
        exited || Instant::now() > deadline
    });
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("output");
    assert!(
        exited,
        "{what} did not finish: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn s_client(port: u16, pki: &Pki, extra: &[&str]) -> Child {
    let mut child = tool("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "localhost", "-CAfile"])
        .arg(&pki.ca)
        .args(["-verify_return_error", "-brief", "-ign_eof"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"hello from openssl\n")
        .expect("write");
    child
}

#[test]
fn openssl_s_client_to_a_torsion_server() {
    let reactor = test_reactor();
    let pki = Pki::new("sclient");
    let server = pki.server("server", &["localhost"]);
    let options = || {
        ServerOptions::from_pem_files(&server.cert, &server.key)
            .expect("identity")
            .alpn(["h2", "http/1.1"])
    };
    let server_side = seen();
    let port = echo_line_server(&reactor, options(), &server_side);
    for (flag, version) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let child = s_client(port, &pki, &[flag, "-alpn", "http/1.1"]);
        let out = finish(&reactor, child, "s_client");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello from openssl\n",
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("Protocol version: {version}")),
            "{stderr}"
        );
        assert!(stderr.contains("Verification: OK"), "{stderr}");
        run_until(&reactor, "the server's close", || {
            server_side.borrow().lost.is_some()
        });
        let s = server_side.borrow();
        let info = s.info.as_ref().expect("info");
        assert_eq!(info.version_name(), version);
        assert_eq!(info.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(info.server_name(), Some("localhost"));
    }

    // Mutual TLS: s_client with a certificate the server's client CA signed.
    let clients = Pki::new("sclient-clients");
    let alice = clients.client("alice", "alice");
    let server_side = seen();
    let port = echo_line_server(
        &reactor,
        options().client_auth(ClientAuth::Required(
            TrustRoots::from_pem_file(&clients.ca).expect("CA"),
        )),
        &server_side,
    );
    let cert = alice.cert.to_str().expect("utf-8");
    let key = alice.key.to_str().expect("utf-8");
    let out = finish(
        &reactor,
        s_client(port, &pki, &["-cert", cert, "-key", key]),
        "s_client",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from openssl\n");
    run_until(&reactor, "the server's close", || {
        server_side.borrow().lost.is_some()
    });
    assert_eq!(
        server_side
            .borrow()
            .info
            .as_ref()
            .expect("info")
            .peer_certificates()
            .len(),
        1
    );
    // Without one: refused, and the server's protocol never sees the connection.
    let server_side2 = seen();
    let port = echo_line_server(
        &reactor,
        options().client_auth(ClientAuth::Required(
            TrustRoots::from_pem_file(&clients.ca).expect("CA"),
        )),
        &server_side2,
    );
    let out = finish(&reactor, s_client(port, &pki, &[]), "s_client");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!server_side2.borrow().made);
}

/// A free port on 127.0.0.1 for a server that cannot report the one it got.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Starts `openssl s_server -rev` (it answers each line reversed) and waits for `ACCEPT`.
fn s_server(pki: &Pki, args: &[&str]) -> (Child, u16) {
    let server = pki.server("s_server", &["localhost"]);
    let port = free_port();
    let mut child = tool("openssl")
        .args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-naccept",
            "1",
            "-rev",
        ])
        .arg("-cert")
        .arg(&server.cert)
        .arg("-key")
        .arg(&server.key)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_server");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("ACCEPT") => break,
            Some(Ok(_)) => {}
            _ => panic!("s_server did not start"),
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    (child, port)
}

#[test]
fn a_torsion_client_to_openssl_s_server() {
    let reactor = test_reactor();
    let pki = Pki::new("sserver");
    let trusting =
        || ClientOptions::new().trust_roots(TrustRoots::from_pem_file(&pki.ca).expect("CA"));
    for (flag, version) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let (child, port) = s_server(&pki, &[flag, "-alpn", "h2,http/1.1"]);
        let connector = trusting().alpn(["http/1.1"]).build().expect("connector");
        let client = seen();
        let mut rec = Recorder::new(&client, b"hello\n");
        rec.close_after = Some(6);
        let factory = connector
            .wrap("localhost", OneShot(RefCell::new(Some(rec))))
            .expect("name");
        let handshake = factory.next_handshake();
        reactor.connect_tcp(format!("127.0.0.1:{port}").parse().expect("addr"), factory);
        wait_for(&reactor, handshake).expect("handshake");
        run_until(&reactor, "the answer", || client.borrow().lost.is_some());
        let c = client.borrow();
        assert_eq!(c.data, b"olleh\n");
        let info = c.info.as_ref().expect("info");
        assert_eq!(info.version_name(), version);
        assert_eq!(info.alpn_protocol(), Some(&b"http/1.1"[..]));
        drop(c);
        finish(&reactor, child, "s_server");
    }

    // A client certificate, asked for and checked by s_server.
    let clients = Pki::new("sserver-clients");
    let alice = clients.client("alice", "alice");
    let ca = clients.ca.to_str().expect("utf-8").to_owned();
    let (child, port) = s_server(&pki, &["-Verify", "1", "-CAfile", &ca]);
    let connector = trusting()
        .identity(Identity::from_pem_files(&alice.cert, &alice.key).expect("alice"))
        .build()
        .expect("connector");
    let client = seen();
    let mut rec = Recorder::new(&client, b"mutual\n");
    rec.close_after = Some(7);
    let factory = connector
        .wrap("localhost", OneShot(RefCell::new(Some(rec))))
        .expect("name");
    reactor.connect_tcp(format!("127.0.0.1:{port}").parse().expect("addr"), factory);
    run_until(&reactor, "the answer", || client.borrow().lost.is_some());
    assert_eq!(client.borrow().data, b"lautum\n");
    finish(&reactor, child, "s_server");

    // A wrong host name, and an untrusted CA: refused before the protocol sees anything.
    for (name, roots) in [
        ("wrong.example", &pki),
        ("localhost", &Pki::new("stranger")),
    ] {
        let (mut child, port) = s_server(&pki, &[]);
        let connector = ClientOptions::new()
            .trust_roots(TrustRoots::from_pem_file(&roots.ca).expect("CA"))
            .build()
            .expect("connector");
        let client = seen();
        let factory = connector
            .wrap(
                name,
                OneShot(RefCell::new(Some(Recorder::new(&client, b"x\n")))),
            )
            .expect("name");
        let handshake = factory.next_handshake();
        reactor.connect_tcp(format!("127.0.0.1:{port}").parse().expect("addr"), factory);
        let err = wait_for(&reactor, handshake).expect_err("refused");
        assert_eq!(
            err.tls_failure().map(|f| f.kind()),
            Some(TlsFailureKind::Certificate),
            "{err}"
        );
        assert!(!client.borrow().made);
        let _ = child.kill();
        let _ = child.wait();
    }
}

const PY_CLIENT: &str = r#"
import json, socket, ssl, sys
port, ca, version, alpn, name = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
ctx.minimum_version = ctx.maximum_version = v
if alpn:
    ctx.set_alpn_protocols(alpn.split(","))
if len(sys.argv) > 7:
    ctx.load_cert_chain(sys.argv[6], sys.argv[7])
try:
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with ctx.wrap_socket(raw, server_hostname=name, suppress_ragged_eofs=False) as s:
            s.sendall(b"hello from python\n")
            got = b""
            while True:
                chunk = s.recv(65536)   # SSLEOFError if the server skips close_notify
                if not chunk:
                    break
                got += chunk
            print(json.dumps({"ok": True, "data": got.decode(), "version": s.version(),
                              "alpn": s.selected_alpn_protocol()}))
except ssl.SSLError as e:
    print(json.dumps({"ok": False, "error": type(e).__name__ + ": " + str(e)}))
"#;

fn python_client(
    port: u16,
    pki: &Pki,
    version: &str,
    alpn: &str,
    name: &str,
    cert: Option<(&str, &str)>,
) -> Child {
    let mut cmd = tool("python3");
    cmd.args(["-c", PY_CLIENT, &port.to_string()])
        .arg(&pki.ca)
        .args([version, alpn, name]);
    if let Some((c, k)) = cert {
        cmd.args([c, k]);
    }
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3")
}

#[test]
fn python_ssl_client_to_a_torsion_server() {
    let reactor = test_reactor();
    let pki = Pki::new("pyclient");
    let server = pki.server("server", &["localhost"]);
    let server_side = seen();
    let port = echo_line_server(
        &reactor,
        ServerOptions::from_pem_files(&server.cert, &server.key)
            .expect("identity")
            .alpn(["h2", "http/1.1"]),
        &server_side,
    );
    for version in ["1.3", "1.2"] {
        let out = finish(
            &reactor,
            python_client(port, &pki, version, "http/1.1", "localhost", None),
            "python",
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(r#""ok": true"#),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(r#""data": "hello from python\n""#), "{text}");
        assert!(
            text.contains(&format!(r#""version": "TLSv{version}""#)),
            "{text}"
        );
        assert!(text.contains(r#""alpn": "http/1.1""#), "{text}");
    }
    // Python checks the host name too.
    let out = finish(
        &reactor,
        python_client(port, &pki, "1.3", "", "wrong.example", None),
        "python",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SSLCertVerificationError"), "{text}");
}

const PY_SERVER: &str = r#"
import socket, ssl, sys
cert, key, version, require = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
ctx.minimum_version = ctx.maximum_version = v
ctx.set_alpn_protocols(["h2", "http/1.1"])
if require:
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(require)
with socket.create_server(("127.0.0.1", 0)) as listener:
    print(listener.getsockname()[1], flush=True)
    raw, _ = listener.accept()
    with ctx.wrap_socket(raw, server_side=True) as s:
        line = b""
        while not line.endswith(b"\n"):
            line += s.recv(1024)
        peer = "peer" if s.getpeercert() else "anonymous"
        s.sendall(line.upper() + peer.encode() + b" " + (s.selected_alpn_protocol() or "").encode())
        s.unwrap()  # close_notify
    print("done", flush=True)
"#;

fn python_server(pki: &Pki, version: &str, require: Option<&str>) -> (Child, u16) {
    let server = pki.server("pyserver", &["localhost"]);
    let mut child = tool("python3")
        .args(["-c", PY_SERVER])
        .arg(&server.cert)
        .arg(&server.key)
        .args([version, require.unwrap_or("")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let port = lines
        .next()
        .and_then(Result::ok)
        .and_then(|l| l.trim().parse().ok())
        .expect("the python server's port");
    std::thread::spawn(move || lines.for_each(drop));
    (child, port)
}

#[test]
fn a_torsion_client_to_a_python_ssl_server() {
    let reactor = test_reactor();
    let pki = Pki::new("pyserver");
    let clients = Pki::new("pyserver-clients");
    let alice = clients.client("alice", "alice");
    let ca = clients.ca.to_str().expect("utf-8").to_owned();
    for (version, require) in [
        ("1.3", None),
        ("1.2", None),
        ("1.3", Some(ca.as_str())),
        ("1.2", Some(ca.as_str())),
    ] {
        let (child, port) = python_server(&pki, version, require);
        let mut options = ClientOptions::new()
            .trust_roots(TrustRoots::from_pem_file(&pki.ca).expect("CA"))
            .alpn(["http/1.1"]);
        if require.is_some() {
            options =
                options.identity(Identity::from_pem_files(&alice.cert, &alice.key).expect("alice"));
        }
        let connector = options.build().expect("connector");
        let client = seen();
        let factory = connector
            .wrap(
                "localhost",
                OneShot(RefCell::new(Some(Recorder::new(&client, b"hello\n")))),
            )
            .expect("name");
        reactor.connect_tcp(format!("127.0.0.1:{port}").parse().expect("addr"), factory);
        run_until(&reactor, "the answer and the close", || {
            client.borrow().lost.is_some()
        });
        let c = client.borrow();
        let expected = format!(
            "HELLO\n{} http/1.1",
            if require.is_some() {
                "peer"
            } else {
                "anonymous"
            }
        );
        assert_eq!(String::from_utf8_lossy(&c.data), expected);
        assert!(c.eof, "python's close_notify arrived");
        assert!(
            c.lost.as_ref().is_some_and(ConnectionLost::is_clean),
            "{:?}",
            c.lost
        );
        assert_eq!(
            c.info.as_ref().map(|i| i.version_name()),
            Some(format!("TLSv{version}").as_str())
        );
        drop(c);
        finish(&reactor, child, "python server");
    }
}
