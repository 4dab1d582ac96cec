//! The twist example, run as a child process: one service on several endpoints, a copy of
//! the clients' bytes to an upstream kept up by a client service, the command-line
//! contract, and SIGTERM stopping the service tree (servers drained, exit 0).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{example, wait_timeout};

const LONG: Duration = Duration::from_secs(30);
const LOCAL: &str = "tcp:port=0:interface=127.0.0.1";

struct Twist {
    child: Child,
    addrs: Vec<SocketAddr>,
}

impl Drop for Twist {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `twist ARGS` and reads `lines` `listening on ADDRESS` lines.
fn start(args: &[&str], lines: usize) -> Twist {
    let mut child = Command::new(example("twist"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the example starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut addrs = Vec::new();
    for _ in 0..lines {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        addrs.push(addr.parse().unwrap());
    }
    Twist { child, addrs }
}

fn echo_once(addr: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(LONG)).unwrap();
    c.write_all(msg).unwrap();
    let mut got = vec![0; msg.len()];
    c.read_exact(&mut got).unwrap();
    got
}

fn sigterm(child: &Child) {
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
}

#[test]
fn serves_one_service_on_every_listen_endpoint() {
    let mut t = start(&["echo", "--listen", LOCAL, "--listen", LOCAL], 2);
    assert_ne!(t.addrs[0], t.addrs[1]);
    for addr in t.addrs.clone() {
        assert_eq!(echo_once(addr, b"hello"), b"hello");
    }
    sigterm(&t.child);
    let status = wait_timeout(&mut t.child, LONG).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigterm_drains_open_connections_through_the_service_tree() {
    let mut t = start(&["chargen", "--listen", LOCAL], 1);
    // A chargen client that is connected when SIGTERM comes: the server drains it (what is
    // buffered is flushed, then a clean close), and exits 0.
    let mut c = TcpStream::connect(t.addrs[0]).unwrap();
    c.set_read_timeout(Some(LONG)).unwrap();
    let mut first = [0u8; 100];
    c.read_exact(&mut first).unwrap();
    sigterm(&t.child);
    let mut rest = Vec::new();
    c.read_to_end(&mut rest)
        .expect("the connection ends with a clean close, not a reset");
    let status = wait_timeout(&mut t.child, LONG).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
    assert!(
        TcpStream::connect(t.addrs[0]).is_err(),
        "nothing listens any more"
    );
}

#[test]
fn copies_what_clients_send_to_the_upstream() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let up = format!("tcp:127.0.0.1:{}", upstream.local_addr().unwrap().port());
    let mut t = start(&["echo", "--listen", LOCAL, "--upstream", &up], 1);
    let (mut copy, _) = upstream.accept().expect("the client service connects");
    copy.set_read_timeout(Some(LONG)).unwrap();
    // The upstream connection may come up just after the listening line: send until the
    // copy arrives (each send is echoed, so the service is up).
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    let mut sent = 0;
    while !String::from_utf8_lossy(&got).contains("ping") {
        assert!(sent < 50, "no copy reached the upstream");
        assert_eq!(echo_once(t.addrs[0], b"ping"), b"ping");
        sent += 1;
        copy.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if let Ok(n) = copy.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    // SIGTERM: the servers stop first, then the upstream connection closes cleanly.
    sigterm(&t.child);
    copy.set_read_timeout(Some(LONG)).unwrap();
    let mut rest = Vec::new();
    copy.read_to_end(&mut rest).expect("a clean close upstream");
    let status = wait_timeout(&mut t.child, LONG).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn bad_arguments_exit_2_and_listen_failures_exit_1() {
    for args in [
        &["echo"][..],
        &["--listen", LOCAL][..],
        &["nosuch", "--listen", LOCAL][..],
        &["echo", "--listen", "tcp:notaport"][..],
        &["echo", "--listen", LOCAL, "--upstream", "tcp:nohost"][..],
        &["echo", "--listen", LOCAL, "--drain", "soon"][..],
        &["echo", "--bogus"][..],
    ] {
        let out = Command::new(example("twist")).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("twist: "),
            "one message naming the problem: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let busy = format!("tcp:{port}:interface=127.0.0.1");
    let out = Command::new(example("twist"))
        .args(["echo", "--listen", LOCAL, "--listen", &busy])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.trim_end().ends_with(&format!(
            "cannot listen on 127.0.0.1:{port}: address already in use"
        )),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "no listening line when the tree fails to start"
    );
}
