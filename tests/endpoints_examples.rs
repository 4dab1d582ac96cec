//! The example server and client with endpoint descriptions other than plain TCP: a Unix
//! socket, a host name, and the client's one-line errors naming the host and port.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Server, example, wait_timeout};

const LONG: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `echo_client ENDPOINT` with `input` on stdin; gives (exit code, stdout, stderr).
fn echo_client(endpoint: &str, input: &[u8]) -> (Option<i32>, Vec<u8>, String) {
    let mut child = Command::new(example("echo_client"))
        .arg(endpoint)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    // The client may exit before reading its input (when it cannot connect).
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    feeder.join().unwrap();
    let status = wait_timeout(&mut child, LONG).expect("exits");
    (status.code(), out, err)
}

#[test]
fn echo_over_a_unix_socket_endpoint() {
    let path = std::env::temp_dir().join(format!("torsion-echo-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let description = format!("unix:{}:mode=600", path.display());
    let server = Server::start("echo_server", &[&description]);
    assert_eq!(server.addr, path.display().to_string());
    let input: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (code, out, err) = echo_client(&format!("unix:{}", path.display()), &input);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out == input,
        "echoed {} of {} bytes",
        out.len(),
        input.len()
    );
    drop(server);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(format!("{}.lock", path.display()));
}

#[test]
fn echo_client_resolves_host_names() {
    let server = Server::start("echo_server", &["tcp:port=0:interface=127.0.0.1"]);
    let port = server.socket_addr().port();
    let (code, out, err) = echo_client(&format!("tcp:host=localhost:port={port}"), b"by name\n");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"by name\n");
}

#[test]
fn echo_client_errors_are_one_line_naming_the_host_and_port() {
    let port = free_port();
    let (code, out, err) = echo_client(&format!("tcp:localhost:{port}"), b"");
    assert_eq!(code, Some(1));
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("cannot connect to localhost:{port}"))
            && err.contains("connection refused"),
        "{err}"
    );

    let (code, _, err) = echo_client("tcp:nosuch.invalid:80:timeout=20", b"");
    assert_eq!(code, Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot connect to nosuch.invalid:80"), "{err}");

    let (code, _, err) = echo_client("tcp:localhost:80:port=80", b"");
    assert_eq!(code, Some(2), "port given twice: {err}");
}
