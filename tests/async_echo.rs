//! The async echo server and client examples, run as child processes over loopback: the
//! same contract and behaviour as echo_server and echo_client, and memory that stays
//! bounded against a client that floods it.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{
    Server, check_client_echoes_stdin, check_client_reports_bad_endpoints_and_refusals, eventually,
    example, flood_until_pushed_back, pattern, read_back_pattern, rss_kib,
};

const LONG: Duration = Duration::from_secs(30);
const LOCAL: &str = "tcp:port=0:interface=127.0.0.1";

#[test]
fn echoes_everything_then_closes_after_the_client_half_closes() {
    let server = Server::start("async_echo", &[LOCAL]);
    let mut c = TcpStream::connect(server.socket_addr()).unwrap();
    c.set_read_timeout(Some(LONG)).unwrap();
    let data = pattern(0, 3_000_000);
    let mut w = c.try_clone().unwrap();
    let d = data.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(&d).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap(); // ends with the server's close
    writer.join().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data);
}

#[test]
fn a_client_that_floods_without_reading_cannot_grow_the_server() {
    let server = Server::start_with(
        Command::new(example("async_echo"))
            .arg(LOCAL)
            .env("RUST_LOG", "debug"),
    );
    let c = TcpStream::connect(server.socket_addr()).unwrap();
    let before = rss_kib(server.pid());
    // The stream logs (at debug level) when its read buffer is full and it pauses reading;
    // once it has, write until every buffer on the way is full.
    let sent = flood_until_pushed_back(&server, &c, "pausing reading", LONG);
    let after = rss_kib(server.pid());
    assert!(sent > 1024 * 1024, "sent only {sent} bytes");
    // The server holds at most its read limit and its write buffer's high mark (64 KiB
    // each) plus a socket read: far below the bytes sent.
    assert!(
        after < before + 4 * 1024,
        "server RSS grew from {before} KiB to {after} KiB after {sent} bytes"
    );
    // Reading resumes the flow: every byte comes back, in order.
    read_back_pattern(&c, sent, LONG);
}

#[test]
fn sigterm_stops_it_gracefully_and_no_descriptor_outlives_its_connection() {
    let mut server = Server::start("async_echo", &[LOCAL]);
    let base = server.open_fds();
    let clients: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(server.socket_addr()).unwrap())
        .collect();
    assert!(eventually(LONG, || server.open_fds() >= base + 50));
    drop(clients);
    assert!(
        eventually(LONG, || server.open_fds() == base),
        "{} open, {base} before",
        server.open_fds()
    );
    let mut c = TcpStream::connect(server.socket_addr()).unwrap();
    c.set_read_timeout(Some(LONG)).unwrap();
    c.write_all(b"still here").unwrap();
    let mut buf = [0u8; 10];
    c.read_exact(&mut buf).unwrap();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(LONG).expect("exits");
    assert_eq!(status.code(), Some(0));
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty(), "closed after the echo");
}

#[test]
fn a_malformed_endpoint_exits_2_and_a_port_in_use_exits_1() {
    let out = Command::new(example("async_echo"))
        .arg("tcp:port=99999")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("99999") && err.contains("port"), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = Command::new(example("async_echo"))
        .arg(format!("tcp:port={}:interface=127.0.0.1", addr.port()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&addr.to_string()) && err.contains("address already in use"),
        "{err}"
    );
}

#[test]
fn it_serves_unix_sockets_too() {
    let path = std::env::temp_dir().join(format!("torsion-async-echo-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let server = Server::start(
        "async_echo",
        &[&format!("unix:{}:lockfile=0", path.display())],
    );
    let mut c = std::os::unix::net::UnixStream::connect(&path).unwrap();
    c.set_read_timeout(Some(LONG)).unwrap();
    c.write_all(b"over a unix socket").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"over a unix socket");
    drop(server);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn the_async_client_sends_stdin_and_prints_the_echo() {
    check_client_echoes_stdin("async_echo", "async_echo_client");
}

#[test]
fn the_async_client_reports_bad_endpoints_and_refused_connections() {
    check_client_reports_bad_endpoints_and_refusals("async_echo_client");
}
