//! The `tcp_proxy` example, run as a child process in front of the `echo_server` example:
//! its command-line contract, large transfers both ways, back-pressure with bounded memory,
//! half-close, an unreachable upstream, and a graceful stop on SIGTERM.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{
    Server, example, flood_until_pushed_back, pattern, read_back_pattern, rss_kib, sigterm_mid_echo,
};

const LONG: Duration = Duration::from_secs(30);
const LOCAL: &str = "tcp:port=0:interface=127.0.0.1";

fn upstream_of(server: &Server) -> String {
    format!("tcp:host=127.0.0.1:port={}", server.socket_addr().port())
}

/// An echo server and the proxy in front of it.
fn echo_behind_proxy(proxy_env: &[(&str, &str)]) -> (Server, Server) {
    let echo = Server::start("echo_server", &[LOCAL]);
    let mut cmd = Command::new(example("tcp_proxy"));
    cmd.args([LOCAL, &upstream_of(&echo)]);
    for (k, v) in proxy_env {
        cmd.env(k, v);
    }
    let proxy = Server::start_with(&mut cmd);
    (echo, proxy)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connects to the proxy");
    stream.set_read_timeout(Some(LONG)).unwrap();
    stream.set_write_timeout(Some(LONG)).unwrap();
    stream
}

fn stops_cleanly_on_sigterm(mut server: Server) {
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(LONG).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "stderr: {}", server.stderr());
}

#[test]
fn forwards_several_megabytes_both_ways_and_passes_on_the_half_close() {
    let (echo, proxy) = echo_behind_proxy(&[]);
    // Three clients at once, each with its own stream.
    let clients: Vec<_> = (0..3)
        .map(|n| {
            let addr = proxy.socket_addr();
            std::thread::spawn(move || {
                let data = pattern(n * 1000, 4 << 20);
                let mut c = connect(addr);
                let mut w = c.try_clone().unwrap();
                let d = data.clone();
                let writer = std::thread::spawn(move || {
                    w.write_all(&d).unwrap();
                    w.shutdown(Shutdown::Write).unwrap();
                });
                // The echo server closes after the half-close reaches it through the
                // proxy, and that close comes back through the proxy: read to the end.
                let mut got = Vec::new();
                c.read_to_end(&mut got).unwrap();
                writer.join().unwrap();
                got == data
            })
        })
        .collect();
    for c in clients {
        assert!(c.join().unwrap(), "a stream came back altered");
    }
    stops_cleanly_on_sigterm(proxy);
    stops_cleanly_on_sigterm(echo);
}

#[test]
fn a_client_that_does_not_read_is_paused_and_cannot_grow_the_proxy() {
    let (_echo, proxy) = echo_behind_proxy(&[("RUST_LOG", "debug")]);
    let c = connect(proxy.socket_addr());
    let before = rss_kib(proxy.pid());
    // Send without reading the echoes. The proxy logs (at debug level) when it pauses
    // reading from the client; once it has, write until every buffer on the way is full.
    let sent = flood_until_pushed_back(&proxy, &c, "pausing reading from", LONG);
    let after = rss_kib(proxy.pid());
    assert!(sent > 1 << 20, "sent only {sent} bytes");
    assert!(
        after < before + 4 * 1024,
        "the proxy's RSS grew from {before} KiB to {after} KiB after {sent} bytes"
    );
    // Now read: every byte comes back, in order.
    read_back_pattern(&c, sent, LONG);
    stops_cleanly_on_sigterm(proxy);
}

#[test]
fn an_unreachable_upstream_closes_the_client_with_a_logged_reason() {
    let unused = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = unused.local_addr().unwrap().port();
    drop(unused);
    let mut proxy = Server::start(
        "tcp_proxy",
        &[LOCAL, &format!("tcp:host=127.0.0.1:port={port}")],
    );
    let mut c = connect(proxy.socket_addr());
    let local = c.local_addr().unwrap();
    let mut got = Vec::new();
    let end = c.read_to_end(&mut got);
    assert!(
        matches!(&end, Ok(0)) || matches!(&end, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "the proxy closes the connection: {end:?}"
    );
    assert!(got.is_empty());
    assert!(
        proxy.wait_for_stderr(&format!("closing the connection from {local}"), LONG),
        "the proxy says why it closed the connection"
    );
    proxy.signal(libc::SIGTERM);
    assert_eq!(proxy.wait_exit(LONG).and_then(|s| s.code()), Some(0));
    let stderr = proxy.stderr();
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")),
        "the reason names upstream: {stderr}"
    );
}

#[test]
fn sigterm_drains_a_transfer_in_flight_and_exits_0() {
    let (echo, mut proxy) = echo_behind_proxy(&[]);
    let c = connect(proxy.socket_addr());
    let data = pattern(0, 2 << 20);
    // Read a little, then ask the proxy to stop while most of the echo is still to come.
    let got = sigterm_mid_echo(&proxy, &c, data.len());
    let status = proxy.wait_exit(LONG).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "stderr: {}", proxy.stderr());
    // What came back before the stop is a prefix of what was sent, in order.
    assert!(got[..] == data[..got.len()]);
    stops_cleanly_on_sigterm(echo);
}

#[test]
fn bad_arguments_exit_2_and_a_listen_failure_exits_1() {
    let run = |args: &[&str]| {
        Command::new(example("tcp_proxy"))
            .args(args)
            .output()
            .expect("runs")
    };
    let upstream = "tcp:host=127.0.0.1:port=9";
    for args in [
        &[][..],
        &[LOCAL],
        &[LOCAL, upstream, "extra"],
        &["nonsense:1", upstream],
        &[LOCAL, "tcp:host=127.0.0.1"], // no port
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: no `listening on` line");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("tcp_proxy: "), "{args:?}: {stderr}");
    }
    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("LISTEN_ENDPOINT UPSTREAM_ENDPOINT"));

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = run(&[&format!("tcp:port={port}:interface=127.0.0.1"), upstream]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&port.to_string()),
        "names the port: {stderr}"
    );
}

/// With `--send-proxy` or `--send-proxy-v2`, a server behind the proxy listening on
/// `haproxy:` sees each client's own address, not the proxy's.
#[test]
fn with_send_proxy_the_server_behind_sees_the_client() {
    for flag in ["--send-proxy", "--send-proxy-v2"] {
        let echo = Server::start_with(
            Command::new(example("echo_server"))
                .arg("haproxy:tcp:port=0:interface=127.0.0.1")
                .env("RUST_LOG", "info"),
        );
        let proxy = Server::start_with(Command::new(example("tcp_proxy")).args([
            LOCAL,
            &upstream_of(&echo),
            flag,
        ]));
        let mut c = connect(proxy.socket_addr());
        let me = c.local_addr().expect("the client's address");
        c.write_all(b"who am I?").unwrap();
        let mut back = [0u8; 9];
        c.read_exact(&mut back).expect("the echo through the proxy");
        assert_eq!(&back, b"who am I?");
        let line = format!("connection from {me}");
        if !echo.wait_for_stderr(&line, LONG) {
            let mut echo = echo;
            panic!(
                "{flag}: the server logs the client ({line}); it said:\n{}",
                echo.stderr()
            );
        }
        drop(c);
        stops_cleanly_on_sigterm(proxy);
        stops_cleanly_on_sigterm(echo);
    }
}

#[test]
fn an_unknown_option_is_a_usage_error() {
    let out = Command::new(example("tcp_proxy"))
        .args([LOCAL, "tcp:host=127.0.0.1:port=9", "--send-proxy-v3"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
}
