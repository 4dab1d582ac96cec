//! The examples over TLS, as a user runs them: `echo_server` and `chat_server` with `ssl:`
//! endpoints (driven by `openssl s_client` and Python's `ssl`), `echo_client` with a `tls:`
//! endpoint, a graceful stop that sends `close_notify`, and `endpoint_check` reporting bad
//! certificate files.

mod common;

#[path = "../tls/tests/support/pki.rs"]
mod pki;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, example, wait_timeout};
use pki::Pki;

const LONG: Duration = Duration::from_secs(30);

fn ssl_endpoint(pki: &Pki) -> String {
    let s = pki.server("server", &["localhost", "127.0.0.1"]);
    format!(
        "ssl:port=0:interface=127.0.0.1:privateKey={}:certKey={}",
        s.key.display(),
        s.cert.display()
    )
}

fn port_of(server: &Server) -> u16 {
    server.socket_addr().port()
}

#[test]
fn echo_server_serves_openssl_s_client_over_ssl() {
    let pki = Pki::new("ex-sclient");
    let server = Server::start("echo_server", &[&ssl_endpoint(&pki)]);
    let mut client = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", port_of(&server)),
        ])
        .args([
            "-servername",
            "localhost",
            "-verify_return_error",
            "-quiet",
            "-CAfile",
        ])
        .arg(&pki.ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed (.ci/run installs it)");
    client
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"hello over ssl\n")
        .expect("write");
    // Read the echo, then stop the client (it would wait for more input).
    let mut stdout = client.stdout.take().expect("stdout");
    let mut got = Vec::new();
    let deadline = Instant::now() + LONG;
    let mut buf = [0u8; 256];
    while got.len() < 15 && Instant::now() < deadline {
        match stdout.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let _ = client.kill();
    let _ = client.wait();
    assert_eq!(String::from_utf8_lossy(&got), "hello over ssl\n");
}

#[test]
fn echo_client_over_tls_to_echo_server_over_ssl() {
    let pki = Pki::new("ex-echo");
    let server = Server::start("echo_server", &[&ssl_endpoint(&pki)]);
    let description = format!(
        "tls:localhost:{}:trustRoots={}",
        port_of(&server),
        pki.ca.display()
    );
    let mut client = Command::new(example("echo_client"))
        .arg(&description)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("echo_client starts");
    let input: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut stdin = client.stdin.take().expect("stdin");
    let data = input.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let mut out = Vec::new();
    client
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut out)
        .expect("read");
    writer.join().expect("writer").expect("write");
    let status = wait_timeout(&mut client, LONG).expect("echo_client exits");
    let mut err = String::new();
    let _ = client
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    assert!(status.success(), "{status}: {err}");
    assert!(
        out == input,
        "{} bytes back of {}; {err}",
        out.len(),
        input.len()
    );
    assert!(!err.contains("WARN"), "a clean close under TLS: {err}");

    // A wrong trust root: the connect fails, naming the cause; exit 1.
    let other = Pki::new("ex-echo-other");
    let description = format!(
        "tls:localhost:{}:trustRoots={}",
        port_of(&server),
        other.ca.display()
    );
    let out = Command::new(example("echo_client"))
        .arg(&description)
        .stdin(Stdio::null())
        .output()
        .expect("echo_client runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("TLS failed"), "{err}");
}

const PY_CHAT: &str = r#"
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
with socket.create_connection(("127.0.0.1", port)) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        f = s.makefile("rwb", buffering=0)
        print(f.readline().decode().strip())
        f.write(b"alice\n")
        print(f.readline().decode().strip())
"#;

#[test]
fn chat_server_over_ssl_with_python() {
    let pki = Pki::new("ex-chat");
    let server = Server::start("chat_server", &[&ssl_endpoint(&pki)]);
    let out = Command::new("python3")
        .args(["-c", PY_CHAT, &port_of(&server).to_string()])
        .arg(&pki.ca)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text,
        "What is your name?\nWelcome, alice!\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const PY_WAIT_CLOSE: &str = r#"
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
with socket.create_connection(("127.0.0.1", port)) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as s:
        s.sendall(b"ping\n")
        got = b""
        while len(got) < 5:
            got += s.recv(100)
        print("echoed", flush=True)
        try:
            rest = s.recv(100)   # blocks until the server stops
            print("close_notify" if rest == b"" else "data", flush=True)
        except ssl.SSLEOFError:
            print("no close_notify", flush=True)
"#;

#[test]
fn a_graceful_stop_sends_close_notify() {
    let pki = Pki::new("ex-stop");
    let mut server = Server::start("echo_server", &[&ssl_endpoint(&pki)]);
    let mut client = Command::new("python3")
        .args(["-c", PY_WAIT_CLOSE, &port_of(&server).to_string()])
        .arg(&pki.ca)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut stdout = std::io::BufReader::new(client.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).expect("read");
    assert_eq!(line, "echoed\n");
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(LONG).expect("the server stops");
    assert!(status.success(), "{status}");
    line.clear();
    std::io::BufRead::read_line(&mut stdout, &mut line).expect("read");
    assert_eq!(line, "close_notify\n");
    let _ = wait_timeout(&mut client, LONG);
}

#[test]
fn endpoint_check_reports_certificate_files() {
    let pki = Pki::new("ex-check");
    let good = pki.server("good", &["localhost"]);
    let other = pki.server("other", &["localhost"]);
    let ok = Command::new(example("endpoint_check"))
        .args([
            "server",
            &format!(
                "ssl:443:privateKey={}:certKey={}",
                good.key.display(),
                good.cert.display()
            ),
        ])
        .output()
        .expect("runs");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("ssl server"));
    let bad = Command::new(example("endpoint_check"))
        .args([
            "server",
            &format!(
                "ssl:443:privateKey={}:certKey={}",
                other.key.display(),
                good.cert.display()
            ),
        ])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{err}");
    assert!(
        err.contains("does not match") && err.contains("other.key"),
        "{err}"
    );
}
