//! The services example, run as a child process: every service checked over TCP, and the
//! command-line contract.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{example, wait_timeout};

const LONG: Duration = Duration::from_secs(30);
const LOCAL: &str = "tcp:port=0:interface=127.0.0.1";

struct Services {
    child: Child,
    addrs: HashMap<String, SocketAddr>,
}

impl Drop for Services {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `services` with every service on a free local port and reads the
/// `listening on NAME ADDRESS` lines.
fn start(names: &[&str]) -> Services {
    let args: Vec<String> = names.iter().map(|n| format!("{n}={LOCAL}")).collect();
    let mut child = Command::new(example("services"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the example starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut addrs = HashMap::new();
    for name in names {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let rest = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        let (got, addr) = rest.split_once(' ').unwrap();
        assert_eq!(got, *name, "one line per argument, in order");
        addrs.insert(got.to_string(), addr.parse().unwrap());
    }
    Services { child, addrs }
}

fn connect(s: &Services, name: &str) -> TcpStream {
    let c = TcpStream::connect(s.addrs[name]).unwrap();
    c.set_read_timeout(Some(LONG)).unwrap();
    c
}

fn read_all(c: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    c.read_to_end(&mut out).expect("a clean close");
    out
}

#[test]
fn every_service_over_tcp() {
    let s = start(&["echo", "discard", "chargen", "daytime", "time", "qotd"]);

    // Echo: every byte back; after a half-close, the rest and then a close.
    let mut c = connect(&s, "echo");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let mut w = c.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(&sent).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    assert_eq!(read_all(&mut c), data);
    writer.join().unwrap();

    // Discard: nothing comes back; a half-close closes.
    let mut c = connect(&s, "discard");
    c.write_all(&[b'x'; 100_000]).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut c), b"");

    // Chargen: the RFC 864 lines, on and on.
    let mut c = connect(&s, "chargen");
    let mut buf = vec![0u8; 74 * 300];
    c.read_exact(&mut buf).unwrap();
    for (n, line) in buf.chunks(74).enumerate() {
        let expected: Vec<u8> = (0..72)
            .map(|i| b' ' + ((n + i) % 95) as u8)
            .chain(*b"\r\n")
            .collect();
        assert_eq!(line, expected, "line {n}");
    }
    drop(c);

    // Daytime: one line of text, then a close.
    let before = SystemTime::now();
    let text = String::from_utf8(read_all(&mut connect(&s, "daytime"))).unwrap();
    let line = text.strip_suffix("\r\n").expect("one line ending in CRLF");
    assert!(!line.contains('\n'));
    assert!(line.ends_with("-UTC"), "{line}");
    let year =
        (before.duration_since(UNIX_EPOCH).unwrap().as_secs() / 31_556_952 + 1970).to_string();
    assert!(line.contains(&year) || line.contains(&(year.parse::<u32>().unwrap() + 1).to_string()));

    // Time: four bytes, seconds since 1900, then a close.
    let out = read_all(&mut connect(&s, "time"));
    assert_eq!(out.len(), 4);
    let told = u32::from_be_bytes([out[0], out[1], out[2], out[3]]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expected = ((now + 2_208_988_800) % (1 << 32)) as u32;
    assert!(
        expected.wrapping_sub(told) <= 60,
        "told {told}, expected about {expected}"
    );

    // Qotd: a short text, then a close.
    let quote = read_all(&mut connect(&s, "qotd"));
    assert!(quote.ends_with(b"\r\n") && quote.len() > 2 && quote.len() < 512);
    assert!(quote.is_ascii());
}

#[test]
fn a_service_may_be_served_on_several_endpoints() {
    let args = [
        format!("echo={LOCAL}"),
        format!("qotd={LOCAL}"),
        format!("echo={LOCAL}"),
    ];
    let mut child = Command::new(example("services"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let lines: Vec<String> = stdout.lines().take(3).map(Result::unwrap).collect();
    let names: Vec<&str> = lines
        .iter()
        .map(|l| {
            l.strip_prefix("listening on ")
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(names, ["echo", "qotd", "echo"]);
    for l in [&lines[0], &lines[2]] {
        let addr: SocketAddr = l.rsplit(' ').next().unwrap().parse().unwrap();
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(LONG)).unwrap();
        c.write_all(b"ping").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_all(&mut c), b"ping");
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `services` with `args`; returns its exit code and stderr.
fn run_failing(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(example("services"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut child, LONG).expect("exits by itself");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, "", "nothing on stdout");
    (status.code(), err)
}

#[test]
fn bad_arguments_exit_2_with_one_line_saying_what_is_wrong() {
    for (args, says) in [
        (&[][..], "name at least one service"),
        (&["echo"][..], "is not NAME=ENDPOINT"),
        (&["ehco=tcp:0"][..], "unknown service \"ehco\""),
        (&["echo=tcp:0", "time=bogus:1"][..], "time: "),
    ] {
        let (code, err) = run_failing(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(
            err.lines().next().map(|l| l.contains(says)),
            Some(true),
            "{err}"
        );
    }
}

#[test]
fn a_listen_failure_exits_1_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let arg = format!("qotd=tcp:port={port}:interface=127.0.0.1");
    let (code, err) = run_failing(&["echo=tcp:port=0:interface=127.0.0.1", &arg]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn sigterm_stops_it_gracefully() {
    let mut s = start(&["chargen"]);
    let _reading = connect(&s, "chargen");
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + LONG;
    let status = wait_timeout(&mut s.child, deadline - Instant::now()).expect("exits");
    assert_eq!(status.code(), Some(0));
}
