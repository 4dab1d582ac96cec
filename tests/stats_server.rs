//! The `stats_server` example: an echo server whose `--stats` endpoint answers each
//! connection with the reactor's counters as `name value` lines, whose `--log-stats`
//! option logs a summary every interval, and that exits 2 on a bad argument and 0 on
//! SIGTERM.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{Server, example};

const LOCAL: &str = "tcp:port=0:interface=127.0.0.1";
const LONG: Duration = Duration::from_secs(20);

/// One snapshot from the stats endpoint, as a map.
fn scrape(addr: &str) -> HashMap<String, String> {
    let mut c = TcpStream::connect(addr).expect("the stats endpoint accepts");
    c.set_read_timeout(Some(LONG)).unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text)
        .expect("one snapshot, then the server closes");
    text.lines()
        .map(|line| {
            let (name, value) = line.split_once(' ').expect("`name value` lines");
            (name.to_string(), value.to_string())
        })
        .collect()
}

fn count(page: &HashMap<String, String>, name: &str) -> u64 {
    page.get(name)
        .unwrap_or_else(|| panic!("{name} in {page:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is a number in {page:?}"))
}

#[test]
fn the_stats_endpoint_shows_what_the_echo_server_did() {
    let mut server = Server::start("stats_server", &[LOCAL, "--stats", LOCAL]);
    let mut line = String::new();
    server
        .stdout
        .read_line(&mut line)
        .expect("a second line on stdout");
    let stats_addr = line
        .trim()
        .strip_prefix("stats on ")
        .unwrap_or_else(|| panic!("`stats on ADDRESS`, not {line:?}"))
        .to_string();

    let first = scrape(&stats_addr);
    // One echo of 3,000 bytes, closed cleanly by the client.
    let mut c = TcpStream::connect(server.socket_addr()).expect("connects");
    c.set_read_timeout(Some(LONG)).unwrap();
    c.write_all(&[b'x'; 3000]).unwrap();
    let mut echo = vec![0; 3000];
    c.read_exact(&mut echo).expect("the echo");
    c.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest)
        .expect("the server closes after the echo");
    drop(c);

    // The server counts a close before the peer can see it (it closes, then the peer
    // reads the end of file), but scrape again if the echo's close is not there yet.
    let mut last = scrape(&stats_addr);
    let mut later = 1; // scrapes after the first
    while count(&last, "connections_open") > 1 && later < 200 {
        std::thread::sleep(Duration::from_millis(10)); // a poll of another process
        last = scrape(&stats_addr);
        later += 1;
    }
    // Each page counts its own scrape's accept; the echo's connection and the earlier
    // scrapes are closed cleanly, and only this scrape is open.
    assert_eq!(
        count(&last, "accepted") - count(&first, "accepted"),
        1 + later,
        "{last:?}"
    );
    assert_eq!(
        count(&last, "closed_clean") - count(&first, "closed_clean"),
        1 + later,
        "{last:?}"
    );
    assert_eq!(
        count(&last, "connections_open"),
        1,
        "the scrape itself: {last:?}"
    );
    let bytes_in = count(&last, "bytes_read") - count(&first, "bytes_read");
    assert_eq!(bytes_in, 3000, "{last:?}");
    // The echo's bytes and the first page went out.
    assert!(count(&last, "bytes_written") - count(&first, "bytes_written") >= 3000);
    assert!(count(&last, "iterations") > count(&first, "iterations"));
    assert!(last.contains_key("polling_seconds") && last.contains_key("timer_lag_max_seconds"));

    server.signal(libc::SIGTERM);
    let status = server.wait_exit(LONG).expect("exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn log_stats_logs_a_summary_every_interval() {
    let mut cmd = Command::new(example("stats_server"));
    cmd.args([LOCAL, "--log-stats", "1"])
        .env("RUST_LOG", "info");
    let mut server = Server::start_with(&mut cmd);
    let mut c = TcpStream::connect(server.socket_addr()).expect("connects");
    c.write_all(b"hello").unwrap();
    let mut echo = [0; 5];
    c.read_exact(&mut echo).unwrap();
    assert!(
        server.wait_for_stderr("bytes in", LONG),
        "a summary line is logged within the interval"
    );
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(LONG).and_then(|s| s.code()), Some(0));
    let log = server.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("loop: "))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("1 connections open, 1 accepted"), "{line}");
    assert!(line.contains("5 bytes in, 5 bytes out"), "{line}");
    assert!(line.contains("utilisation"), "{line}");
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["--log-stats", "soon"][..],
        &["--slow-ms"][..],
        &[LOCAL, "--stats", "nonsense:1"][..],
        &[LOCAL, "extra"][..],
    ] {
        let out = Command::new(example("stats_server"))
            .args(args)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?} says why");
    }
}
