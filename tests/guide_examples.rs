//! The programs the guide opens its chapters with (`examples/` files shown whole in
//! `docs/`, checked identical by `tests/guide.rs`), run as child processes over loopback
//! and used the way the chapters tell a reader to use them.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Server, example};

const LONG: Duration = Duration::from_secs(30);
const LOCAL: &str = "tcp:port=0:interface=127.0.0.1";

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connects");
    stream.set_read_timeout(Some(LONG)).unwrap();
    stream
}

/// Sends `data`, half-closes, and reads until the server closes.
fn exchange(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    try_exchange(addr, data).expect("the exchange completes")
}

/// `exchange`, for a connection the server may refuse (close or reset).
fn try_exchange(addr: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = connect(addr);
    let mut writer = stream.try_clone()?;
    let data = data.to_vec();
    let sending = std::thread::spawn(move || -> std::io::Result<()> {
        writer.write_all(&data)?;
        writer.shutdown(Shutdown::Write)
    });
    let mut got = Vec::new();
    let read = stream.read_to_end(&mut got);
    let sent = sending.join().expect("the sending thread");
    read?;
    sent?;
    Ok(got)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn stops_cleanly_on_sigterm(mut server: Server) {
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(LONG).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "stderr: {}", server.stderr());
}

#[test]
fn first_server_echoes_and_stops_on_sigterm() {
    let server = Server::start("first_server", &[LOCAL]);
    let data = pattern(1 << 20);
    assert!(exchange(server.socket_addr(), &data) == data);
    stops_cleanly_on_sigterm(server);
}

#[test]
fn first_server_serves_a_unix_socket_and_removes_it() {
    let dir = std::env::temp_dir().join(format!("guide-first-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");
    let server = Server::start("first_server", &[&format!("unix:{}", path.display())]);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).expect("connects");
    stream.set_read_timeout(Some(LONG)).unwrap();
    stream.write_all(b"over unix\n").unwrap();
    let mut got = [0; 10];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"over unix\n");
    stops_cleanly_on_sigterm(server);
    assert!(
        !path.exists(),
        "the socket file is removed on a graceful stop"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn first_server_errors_are_one_line_with_the_documented_status() {
    let bad = Command::new(example("first_server"))
        .arg("tcp:80x")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let message = String::from_utf8_lossy(&bad.stderr);
    assert!(message.contains("invalid port \"80x\""), "{message}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let busy = Command::new(example("first_server"))
        .arg(format!("tcp:{port}:interface=127.0.0.1"))
        .output()
        .unwrap();
    assert_eq!(busy.status.code(), Some(1));
    let message = String::from_utf8_lossy(&busy.stderr);
    assert!(
        message.contains(&format!(
            "cannot listen on 127.0.0.1:{port}: address already in use"
        )),
        "{message}"
    );
}

struct LineClient {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl LineClient {
    fn connect(addr: SocketAddr) -> LineClient {
        let stream = connect(addr);
        LineClient {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("reads a line");
        assert!(line.ends_with("\r\n"), "{line:?}");
        line.trim_end().to_string()
    }
}

#[test]
fn mini_chat_names_relays_and_announces() {
    let server = Server::start("mini_chat", &[LOCAL]);
    let addr = server.socket_addr();
    let mut alice = LineClient::connect(addr);
    assert_eq!(alice.line(), "What is your name?");
    alice.send("alice");
    assert_eq!(alice.line(), "Welcome, alice!");

    let mut bob = LineClient::connect(addr);
    assert_eq!(bob.line(), "What is your name?");
    bob.send("alice");
    assert_eq!(bob.line(), "That name is taken, try another.");
    bob.send("bob");
    assert_eq!(bob.line(), "Welcome, bob!");
    assert_eq!(alice.line(), "* bob has joined");

    alice.send("hi bob");
    assert_eq!(bob.line(), "<alice> hi bob");
    bob.writer.write_all(b"hello alice\r\n").unwrap(); // telnet's line ending
    assert_eq!(alice.line(), "<bob> hello alice");

    drop(bob);
    assert_eq!(alice.line(), "* bob has left");
    stops_cleanly_on_sigterm(server);
}

fn ask(args: &[&str]) -> Output {
    Command::new(example("ask"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ask runs")
}

#[test]
fn ask_prints_the_answer_and_reports_failures() {
    let server = Server::start("first_server", &[LOCAL]);
    let port = server.socket_addr().port();
    let endpoint = format!("tcp:host=127.0.0.1:port={port}");
    let answered = ask(&[&endpoint, "anyone there?"]);
    assert_eq!(answered.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&answered.stdout), "anyone there?\n");

    let by_name = ask(&[&format!("tcp:host=localhost:port={port}"), "by name"]);
    assert_eq!(String::from_utf8_lossy(&by_name.stdout), "by name\n");

    stops_cleanly_on_sigterm(server);
    let refused = ask(&[&endpoint, "anyone there?"]);
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{message}"
    );

    let usage = ask(&["tcp:localhost", "x"]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("missing required parameter"));
}

/// The peak resident memory of a process, in KiB (`VmHWM`).
fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// A file removed when dropped, even when the test fails.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn stream_file_sends_the_whole_file_without_holding_it_in_memory() {
    let size = 48 << 20;
    let file =
        TempFile(std::env::temp_dir().join(format!("guide-stream-{}.bin", std::process::id())));
    let contents = pattern(size);
    std::fs::write(&file.0, &contents).unwrap();
    let server = Server::start("stream_file", &[file.0.to_str().unwrap(), LOCAL]);
    let before = peak_rss_kib(server.pid());
    for _ in 0..2 {
        let mut stream = connect(server.socket_addr());
        let mut got = Vec::with_capacity(size);
        stream.read_to_end(&mut got).unwrap();
        assert!(got == contents, "the file came through whole");
    }
    let grown = peak_rss_kib(server.pid()) - before;
    // Without flow control the server would queue the whole file (48 MiB) per client.
    assert!(
        grown < 8 * 1024,
        "the server's peak memory grew by {grown} KiB"
    );
    stops_cleanly_on_sigterm(server);
}

#[test]
fn stream_file_needs_a_readable_file() {
    let missing = Command::new(example("stream_file"))
        .arg("/nonexistent/guide-file")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let usage = Command::new(example("stream_file")).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn kv_server_stores_binary_values_and_answers_in_order() {
    let server = Server::start("kv_server", &[LOCAL]);
    let value: Vec<u8> = (0..=255u8).cycle().take(100_000).collect(); // "\r\n" included
    let mut request = format!("SET blob {}\r\n", value.len()).into_bytes();
    request.extend_from_slice(&value);
    // In the same packet as the value: commands after it are lines again.
    request.extend_from_slice(b"GET blob\r\nGET nothing\nSET empty 0\nGET empty\nBOGUS\nQUIT\n");
    let answer = exchange(server.socket_addr(), &request);
    let mut expected = format!("STORED\r\nVALUE {}\r\n", value.len()).into_bytes();
    expected.extend_from_slice(&value);
    expected.extend_from_slice(
        b"\r\nNOT FOUND\r\nSTORED\r\nVALUE 0\r\n\r\nERROR unknown command\r\nBYE\r\n",
    );
    assert!(answer == expected, "{:?}", String::from_utf8_lossy(&answer));

    // Values are shared by every connection; a value may arrive a byte at a time.
    let mut c = LineClient::connect(server.socket_addr());
    c.send("SET k 3");
    for byte in b"a\nb" {
        c.writer.write_all(&[*byte]).unwrap();
    }
    assert_eq!(c.line(), "STORED");
    let other = exchange(server.socket_addr(), b"GET k\nSET huge 99999999\n");
    assert_eq!(
        other,
        b"VALUE 3\r\na\nb\r\nERROR the length must be 0 to 1048576\r\n"
    );
    stops_cleanly_on_sigterm(server);
}

#[test]
fn guarded_echo_limits_each_address_to_ten_connections() {
    let server = Server::start("guarded_echo", &[LOCAL]);
    let addr = server.socket_addr();
    let mut held: Vec<TcpStream> = (0..10).map(|_| connect(addr)).collect();
    for (i, c) in held.iter_mut().enumerate() {
        let line = format!("connection {i}\n");
        c.write_all(line.as_bytes()).unwrap();
        let mut echo = vec![0; line.len()];
        c.read_exact(&mut echo).expect("each of the ten is served");
        assert_eq!(echo, line.as_bytes());
    }
    // The eleventh from the same address is closed at once, before any byte.
    let mut refused = connect(addr);
    let mut got = Vec::new();
    let _ = refused.write_all(b"let me in\n");
    let _ = refused.read_to_end(&mut got);
    assert!(got.is_empty(), "{got:?}");
    // A place frees when a connection ends.
    drop(held.pop());
    let mut again = Vec::new();
    let deadline = std::time::Instant::now() + LONG;
    while again.is_empty() {
        assert!(std::time::Instant::now() < deadline, "no place freed");
        // Refused (closed or reset) until the server has seen the other one go.
        again = try_exchange(addr, b"hello again\n").unwrap_or_default();
    }
    assert_eq!(again, b"hello again\n");
    stops_cleanly_on_sigterm(server);
}
