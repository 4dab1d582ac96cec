//! The datagram examples (`udp_echo`, `udp_client`, `multicast`) run as child processes over
//! loopback and Unix datagram sockets: the command-line contract, whole datagrams, lost
//! replies, and the stale-socket rule of `unixgram:`.

mod common;

use std::io::{BufRead, Write};
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Server, example, wait_timeout};

const LONG: Duration = Duration::from_secs(30);
const LOCAL: &str = "udp:port=0:interface=127.0.0.1";

fn temp_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("torsion-ex-{}-{name}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(path.with_extension("sock.lock"));
    path
}

/// Runs `udp_client` with `args`, feeding it `input`, and waits for it (at most `LONG`).
fn client(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(example("udp_client"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("udp_client starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(input).expect("writes the input");
    drop(stdin);
    let status = wait_timeout(&mut child, LONG);
    if status.is_none() {
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("the output");
    assert!(status.is_some(), "udp_client did not exit: {output:?}");
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn stop(mut server: Server) -> String {
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(LONG).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    let mut rest = String::new();
    while server.stdout.read_line(&mut rest).unwrap_or(0) > 0 {}
    assert_eq!(rest, "", "nothing on stdout after the listening line");
    server.stderr()
}

#[test]
fn udp_echo_answers_whole_datagrams_and_stops_on_sigterm() {
    let server = Server::start("udp_echo", &[LOCAL]);
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(LONG)).unwrap();
    let mut buf = vec![0u8; 70_000];
    for n in [0usize, 1, 1200, 65_507] {
        let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        peer.send_to(&data, server.socket_addr()).unwrap();
        let (len, from) = peer.recv_from(&mut buf).expect("an echo");
        assert_eq!((len, from), (n, server.socket_addr()));
        assert!(buf[..len] == data[..], "the {n}-byte echo is whole");
    }
    let stderr = stop(server);
    assert_eq!(stderr, "");
}

#[test]
fn udp_echo_follows_the_command_line_contract() {
    for (args, code, needle) in [
        (
            vec!["udp:port=80:interfce=1"],
            2,
            "unknown parameter \"interfce\"",
        ),
        (vec!["tcp:8000"], 2, "tcp is a stream endpoint type"),
        (vec!["udp:1", "extra"], 2, "expected at most one argument"),
    ] {
        let out = Command::new(example("udp_echo"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        assert_eq!(text(&out.stdout), "", "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(err.starts_with("udp_echo: "), "{err}");
    }
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = Command::new(example("udp_echo"))
        .arg(format!("udp:port={}:interface=127.0.0.1", addr.port()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("udp_echo: cannot listen on UDP {addr}: address already in use\n"),
        "one line naming the address and the cause"
    );
}

#[test]
fn udp_client_sends_each_line_and_prints_each_reply() {
    let server = Server::start("udp_echo", &[LOCAL]);
    let endpoint = format!("udp:host=127.0.0.1:port={}", server.socket_addr().port());
    let out = client(&[&endpoint], b"hello\n\nworld\nno newline at the end");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n\nworld\nno newline at the end\n");
    assert_eq!(text(&out.stderr), "");
    // Positional host and port too.
    let endpoint = format!("udp:127.0.0.1:{}", server.socket_addr().port());
    let lines: String = (0..200).map(|i| format!("line {i}\n")).collect();
    let out = client(&[&endpoint], lines.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), lines);
    stop(server);
}

#[test]
fn udp_client_reports_a_lost_reply_after_its_timeout() {
    // A server that reads and never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let endpoint = format!(
        "udp:host=127.0.0.1:port={}",
        silent.local_addr().unwrap().port()
    );
    let out = client(&[&endpoint, "--timeout", "0.3"], b"one\ntwo\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "udp_client: no reply to 2 datagram(s) within 300ms\n"
    );
    let mut buf = [0u8; 16];
    silent.set_read_timeout(Some(LONG)).unwrap();
    let (n, _) = silent.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"one", "the datagrams were sent");
}

#[test]
fn udp_client_stops_when_nobody_listens_and_on_bad_arguments() {
    let gone = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let endpoint = format!("udp:host=127.0.0.1:port={}", gone.port());
    let out = client(&[&endpoint], b"anyone?\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("{gone}: connection refused")),
        "{}",
        text(&out.stderr)
    );
    let out = client(&["udp:host=127.0.0.1:port=0"], b"");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = client(&["tcp:127.0.0.1:80"], b"");
    assert_eq!(out.status.code(), Some(2));
    let out = client(&[], b"");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn udp_echo_and_udp_client_over_a_unix_datagram_socket() {
    let path = temp_path("echo");
    let description = format!("unixgram:{}", path.display());
    let server = Server::start("udp_echo", &[&description]);
    assert_eq!(server.addr, path.display().to_string());
    let lock = PathBuf::from(format!("{}.lock", path.display()));
    assert!(lock.exists(), "the lock file");
    let out = client(&[&description], b"over\nunix\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "over\nunix\n");
    // A foreign peer with a name of its own gets answers too.
    let own = temp_path("peer");
    let peer = UnixDatagram::bind(&own).unwrap();
    peer.set_read_timeout(Some(LONG)).unwrap();
    peer.send_to(b"ping", &path).unwrap();
    let mut buf = [0u8; 16];
    let n = peer.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");
    let _ = std::fs::remove_file(&own);
    stop(server);
    assert!(!path.exists(), "the socket is removed");
    assert!(!lock.exists(), "and its lock file");
}

#[test]
fn a_stale_unix_datagram_socket_is_replaced_and_a_live_one_never_stolen() {
    let path = temp_path("stale");
    // A dead process's socket and lock file.
    drop(UnixDatagram::bind(&path).unwrap());
    std::fs::write(format!("{}.lock", path.display()), "999999999\n").unwrap();
    let description = format!("unixgram:{}", path.display());
    let server = Server::start("udp_echo", &[&description]);
    // A second server on the same path is refused: the first is alive.
    let out = Command::new(example("udp_echo"))
        .arg(&description)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the socket is in use by process"),
        "{}",
        text(&out.stderr)
    );
    let out = client(&[&description], b"still mine\n");
    assert_eq!(text(&out.stdout), "still mine\n");
    stop(server);
}

#[test]
fn multicast_listener_and_sender_on_the_loopback_interface() {
    let mut listener = Server::start("multicast", &["listen", "239.255.0.77:0"]);
    let port = listener.socket_addr().port();
    let group = format!("239.255.0.77:{port}");
    let out = Command::new(example("multicast"))
        .args(["send", &group, "hello", "group"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut lines = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        listener
            .stdout
            .read_line(&mut line)
            .expect("a datagram line");
        lines.push(line);
    }
    assert!(lines[0].ends_with(": hello\n"), "{lines:?}");
    assert!(lines[1].ends_with(": group\n"), "{lines:?}");
    listener.signal(libc::SIGTERM);
    assert_eq!(listener.wait_exit(LONG).and_then(|s| s.code()), Some(0));
    let out = Command::new(example("multicast"))
        .args(["listen", "239.255.0.77:0", "--interface", "nosuch0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("nosuch0"),
        "{}",
        text(&out.stderr)
    );
}
