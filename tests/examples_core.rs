//! The reactor's seed programs run as child processes and exit by themselves.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Server, example, wait_timeout};

fn run(name: &str, input: Option<&[u8]>) -> (i32, String) {
    let mut child = Command::new(example(name))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    if let Some(data) = input {
        stdin.write_all(data).unwrap();
    }
    drop(stdin);
    let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("exits by itself");
    let out = child.wait_with_output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn hello_prints_and_exits() {
    let (code, out) = run("hello", None);
    assert_eq!(code, 0);
    assert_eq!(out, "Hello World\n");
}

#[test]
fn timers_fire_in_order_and_skip_the_cancelled_call() {
    let (code, out) = run("timers", None);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "cancelled a call; still active: false");
    assert!(lines[1].starts_with("call_soon ran first"));
    assert_eq!(lines[2], "call_later(100 ms) fired at t>=100 ms: true");
    assert_eq!(lines[3], "call_later(200 ms) fired at t>=200 ms: true");
    assert_eq!(lines[4], "call_later(300 ms) fired at t>=300 ms: true");
    assert!(lines[5].starts_with("stopping at t="));
    assert_eq!(lines.len(), 6);
    assert!(!out.contains("never prints"));
}

#[test]
fn stdin_prints_each_line_and_ends_on_eof() {
    let (code, out) = run("stdin", Some(b"first\nsecond\nno newline"));
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().filter(|l| *l != "timer event").collect();
    assert_eq!(
        lines,
        [
            "line: first",
            "line: second",
            "line: no newline",
            "end of input"
        ]
    );
}

#[test]
fn sigterm_stops_a_server_gracefully_with_exit_status_0() {
    let mut server = Server::start("echo_server", &["tcp:port=0:interface=127.0.0.1"]);
    let _client = std::net::TcpStream::connect(server.socket_addr()).unwrap();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigint_stops_a_server_too() {
    let mut server = Server::start("chat_server", &["tcp:port=0:interface=127.0.0.1"]);
    server.signal(libc::SIGINT);
    let status = server.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(status.code(), Some(0));
}
