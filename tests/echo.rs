//! The echo server and client examples, run as child processes over loopback.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    Server, check_client_echoes_stdin, check_client_reports_bad_endpoints_and_refusals, eventually,
    example, flood_until_pushed_back, pattern, read_back_pattern, rss_kib, sigterm_mid_echo,
};

const LONG: Duration = Duration::from_secs(30);
const LOCAL: &str = "tcp:port=0:interface=127.0.0.1";

/// Clock ticks per second, the unit of /proc's CPU times (`getconf CLK_TCK`).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system; no memory is involved.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    assert!(hz > 0, "sysconf(_SC_CLK_TCK) failed");
    hz as f64
}

fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn echoes_and_closes_after_the_client_half_closes() {
    let server = Server::start("echo_server", &[LOCAL]);
    let mut c = TcpStream::connect(server.socket_addr()).unwrap();
    c.set_read_timeout(Some(LONG)).unwrap();
    let data = pattern(0, 300_000);
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
fn a_client_that_does_not_read_is_paused_and_cannot_grow_the_server() {
    let server = Server::start_with(
        Command::new(example("echo_server"))
            .arg(LOCAL)
            .env("RUST_LOG", "debug"),
    );
    let c = TcpStream::connect(server.socket_addr()).unwrap();
    let before = rss_kib(server.pid());
    // Send without reading. The server announces (on stderr, at debug level) when it pauses
    // reading this client; once it has, write until every buffer on the way is full.
    let sent = flood_until_pushed_back(&server, &c, "pausing reading", LONG);
    let after = rss_kib(server.pid());
    assert!(sent > 1024 * 1024, "sent only {sent} bytes");
    assert!(
        after < before + 4 * 1024,
        "server RSS grew from {before} KiB to {after} KiB after {sent} bytes"
    );
    // Now read: every byte comes back, in order, and the flow resumes.
    read_back_pattern(&c, sent, LONG);
}

#[test]
fn sigterm_flushes_what_is_buffered_for_clients_that_read() {
    let mut server = Server::start("echo_server", &[LOCAL]);
    let c = TcpStream::connect(server.socket_addr()).unwrap();
    c.set_read_timeout(Some(LONG)).unwrap();
    let data = pattern(0, 4 * 1024 * 1024);
    // Read a little, then ask the server to stop while most of the echo is still to come.
    let got = sigterm_mid_echo(&server, &c, data.len());
    let status = server.wait_exit(LONG).expect("exits");
    assert_eq!(status.code(), Some(0));
    // Everything the server had read before stopping came back, in order.
    assert!(got.len() >= 1024);
    assert!(got[..] == data[..got.len()]);
}

#[test]
fn sigterm_with_a_client_that_never_reads_still_exits_within_the_grace_period() {
    let mut server = Server::start("echo_server", &[LOCAL]);
    let c = TcpStream::connect(server.socket_addr()).unwrap();
    c.set_nonblocking(true).unwrap();
    let mut sent = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        if let Ok(n) = (&c).write(&[1u8; 65536]) {
            sent += n;
        }
    }
    assert!(sent > 0);
    let t0 = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(LONG).expect("exits");
    assert_eq!(status.code(), Some(0));
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
fn a_malformed_endpoint_exits_2_naming_the_bad_part() {
    let out = Command::new(example("echo_server"))
        .arg("tcp:port=99999")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("99999") && err.contains("port"), "{err}");
}

#[test]
fn a_port_in_use_exits_1_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = Command::new(example("echo_server"))
        .arg(format!("tcp:port={}:interface=127.0.0.1", addr.port()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&addr.to_string()) && err.contains("address already in use"),
        "{err}"
    );
}

#[test]
fn no_descriptor_outlives_its_connection() {
    let server = Server::start("echo_server", &[LOCAL]);
    let base = server.open_fds();
    let clients: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(server.socket_addr()).unwrap())
        .collect();
    assert!(eventually(LONG, || server.open_fds() >= base + 100));
    drop(clients);
    assert!(
        eventually(LONG, || server.open_fds() == base),
        "{} open, {base} before",
        server.open_fds()
    );
}

#[test]
fn out_of_descriptors_backs_off_without_spinning_and_recovers() {
    let mut cmd = Command::new(example("echo_server"));
    cmd.arg(LOCAL).env("RUST_LOG", "warn");
    // SAFETY: setrlimit is async-signal-safe; it only lowers this child's own limit.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 24,
                rlim_max: 24,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut server = Server::start_with(&mut cmd);
    // More clients than the server has descriptors for.
    let clients: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(server.socket_addr()).unwrap())
        .collect();
    // Wait until the server is out of descriptors (its count stops at the limit).
    assert!(eventually(LONG, || server.open_fds() >= 23));
    let t0 = cpu_ticks(server.pid());
    let wall = Instant::now();
    std::thread::sleep(Duration::from_secs(1)); // measuring CPU over a second, not waiting for an event
    let used = cpu_ticks(server.pid()) - t0;
    assert!(
        (used as f64) < 0.2 * ticks_per_second() * wall.elapsed().as_secs_f64(),
        "server used {used} ticks in {:?} while out of descriptors",
        wall.elapsed()
    );
    // Free descriptors: the server resumes accepting and serves everyone.
    drop(clients);
    let mut c = TcpStream::connect(server.socket_addr()).unwrap();
    c.set_read_timeout(Some(LONG)).unwrap();
    c.write_all(b"after").unwrap();
    let mut buf = [0u8; 5];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"after");
    drop(c);
    server.signal(libc::SIGTERM);
    server.wait_exit(LONG).expect("exits");
    let stderr = server.stderr();
    let warnings = stderr.matches("cannot accept connections").count();
    assert_eq!(warnings, 1, "logged once: {stderr}");
}

#[test]
fn echo_client_sends_stdin_and_prints_the_echo() {
    check_client_echoes_stdin("echo_server", "echo_client");
}

#[test]
fn echo_client_reports_bad_endpoints_and_refused_connections() {
    check_client_reports_bad_endpoints_and_refusals("echo_client");
}

#[test]
fn several_threads_share_the_port_and_all_stop_on_sigterm() {
    let mut server = Server::start("echo_server", &[LOCAL, "--threads", "3"]);
    let clients: Vec<TcpStream> = (0..30)
        .map(|_| TcpStream::connect(server.socket_addr()).unwrap())
        .collect();
    for (i, c) in clients.iter().enumerate() {
        let msg = format!("hello from {i}");
        (&*c).write_all(msg.as_bytes()).unwrap();
        c.set_read_timeout(Some(LONG)).unwrap();
        let mut buf = vec![0u8; msg.len()];
        (&*c).read_exact(&mut buf).unwrap();
        assert_eq!(buf, msg.as_bytes());
    }
    // The threads (and their listening sockets) show up in /proc.
    let tasks = std::fs::read_dir(format!("/proc/{}/task", server.pid()))
        .unwrap()
        .count();
    assert!(tasks >= 3, "{tasks} threads");
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(LONG).expect("exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn threads_needs_a_tcp_endpoint_and_a_number() {
    let out = Command::new(example("echo_server"))
        .args([LOCAL, "--threads", "zero"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let sock = std::env::temp_dir().join(format!("torsion-threads-{}.sock", std::process::id()));
    let out = Command::new(example("echo_server"))
        .args([&format!("unix:{}", sock.display()), "--threads", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcp"));
}
