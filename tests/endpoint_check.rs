//! Runs the `endpoint_check` example binary and checks its exit codes and output.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

/// The example binary (built first if stale: see `common::example`).
fn binary() -> PathBuf {
    common::example("endpoint_check")
}

fn run(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .output()
        .expect("endpoint_check runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("UTF-8 stderr")
}

#[test]
fn valid_server_prints_what_it_means() {
    let o = run(&["server", r"tcp6:8080:16:\:\:1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "tcp6 server\n  port = 8080\n  interface = ::1\n  backlog = 16\n  \
         reuseport = false\n  ipv6only = none\n"
    );
}

#[test]
fn unix_mode_reads_in_octal() {
    let o = run(&["server", "unix:/run/chat.sock:mode=660"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("  mode = 0o660\n"), "{}", stdout(&o));
    let o = run(&["server", "unixgram:/run/log.sock:mode=620"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("  mode = 0o620\n"), "{}", stdout(&o));
}

#[test]
fn datagram_descriptions_are_checked_as_strictly() {
    let o = run(&["server", "udp:53"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o),
        "udp server\n  port = 53\n  interface = 0.0.0.0\n  reuseport = false\n"
    );
    let o = run(&["server", "udp:53:backlog=5"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown parameter \"backlog\" for a udp server"),
        "{}",
        stderr(&o)
    );
    let o = run(&["client", "udp:example.org:0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("port 0 is not a destination"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn stdio_server_has_no_parameters() {
    let o = run(&["server", "stdio:"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "stdio server\n");
    let o = run(&["server", "stdio:port=1", "--json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).contains("unknown parameter"), "{}", stdout(&o));
}

#[test]
fn invalid_description_exits_2_with_the_error_on_stderr() {
    let o = run(&["server", "tcp:port=80:interfce=x"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).contains(
            "in \"tcp:port=80:interfce=x\": unknown parameter \"interfce\" for a tcp server"
        ),
        "{}",
        stderr(&o)
    );
}

#[test]
fn json_for_each_type() {
    let cases = [
        (
            vec!["server", "tcp:8000", "--json"],
            r#"{"ok":true,"kind":"server","type":"tcp","params":{"port":8000,"interface":"0.0.0.0","backlog":1024,"reuseport":false}}"#,
        ),
        (
            vec!["--json", "server", "tcp6:80:ipv6only=0"],
            r#"{"ok":true,"kind":"server","type":"tcp6","params":{"port":80,"interface":"::","backlog":1024,"reuseport":false,"ipv6only":false}}"#,
        ),
        (
            vec![
                "server",
                r#"unix:/tmp/a\:b "q"\\.sock:mode=640:lockfile=0"#,
                "--json",
            ],
            r#"{"ok":true,"kind":"server","type":"unix","params":{"address":"/tmp/a:b \"q\"\\.sock","mode":416,"backlog":1024,"lockfile":false}}"#,
        ),
        (
            vec!["server", "systemd:domain=INET6:index=1", "--json"],
            r#"{"ok":true,"kind":"server","type":"systemd","params":{"domain":"INET6","index":1}}"#,
        ),
        (
            vec!["server", "systemd:domain=UNIX:name=ctl", "--json"],
            r#"{"ok":true,"kind":"server","type":"systemd","params":{"domain":"UNIX","name":"ctl"}}"#,
        ),
        (
            vec!["client", "tcp:host=example.org:443:timeout=1.5", "--json"],
            r#"{"ok":true,"kind":"client","type":"tcp","params":{"host":"example.org","port":443,"timeout":1.5,"bindAddress":null}}"#,
        ),
        (
            vec![
                "client",
                r"tcp6:\:\:1:80:bindAddress=[\:\:1]\:5000",
                "--json",
            ],
            r#"{"ok":true,"kind":"client","type":"tcp6","params":{"host":"::1","port":80,"timeout":30,"bindAddress":"[::1]:5000"}}"#,
        ),
        (
            vec!["server", "unix:/tmp/tab\there\u{1}\u{7f}ü", "--json"],
            "{\"ok\":true,\"kind\":\"server\",\"type\":\"unix\",\"params\":{\"address\":\"/tmp/tab\\there\\u0001\u{7f}ü\",\"mode\":438,\"backlog\":1024,\"lockfile\":true}}",
        ),
        (
            vec!["client", "unix:/run/chat.sock", "--json"],
            r#"{"ok":true,"kind":"client","type":"unix","params":{"path":"/run/chat.sock","timeout":30,"lockfile":false}}"#,
        ),
        (
            vec![
                "server",
                "udp:5353:interface=127.0.0.1:reuseport=1",
                "--json",
            ],
            r#"{"ok":true,"kind":"server","type":"udp","params":{"port":5353,"interface":"127.0.0.1","reuseport":true}}"#,
        ),
        (
            vec!["server", "udp6:53:ipv6only=0", "--json"],
            r#"{"ok":true,"kind":"server","type":"udp6","params":{"port":53,"interface":"::","reuseport":false,"ipv6only":false}}"#,
        ),
        (
            vec!["server", "unixgram:@metrics", "--json"],
            r#"{"ok":true,"kind":"server","type":"unixgram","params":{"address":"@metrics","mode":438,"lockfile":true}}"#,
        ),
        (
            vec!["client", "udp:host=127.0.0.1:port=8000", "--json"],
            r#"{"ok":true,"kind":"client","type":"udp","params":{"host":"127.0.0.1","port":8000,"timeout":30,"bindAddress":null}}"#,
        ),
        (
            vec!["client", "unixgram:/run/log.sock", "--json"],
            r#"{"ok":true,"kind":"client","type":"unixgram","params":{"path":"/run/log.sock"}}"#,
        ),
    ];
    for (args, expected) in cases {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), format!("{expected}\n"), "{args:?}");
    }
}

#[test]
fn json_errors_go_to_stdout_escaped() {
    let o = run(&["client", "tcp:\"h\":80:timeout=x\ty", "--json"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stdout(&o),
        "{\"ok\":false,\"error\":\"in \\\"tcp:\\\"h\\\":80:timeout=x\\\\ty\\\": invalid host \
         \\\"\\\"h\\\"\\\" (positional 1): not a host name or IP address (it contains '\\\"'); expected a name \
         such as example.org or an address such as 192.0.2.1\"}\n"
    );
    let o = run(&["server", "onion:80", "--json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).starts_with("{\"ok\":false,\"error\":\"in \\\"onion:80\\\": server endpoint type \\\"onion\\\" is not supported yet"));
    // A certificate file that is not there: named, in the JSON.
    let o = run(&[
        "server",
        "tls:443:privateKey=/nonexistent/key.pem",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stdout(&o).contains(
            "cannot read the certificate file /nonexistent/key.pem: no such file or directory"
        ),
        "{}",
        stdout(&o)
    );
}

#[test]
fn bad_usage_exits_2_with_a_usage_line() {
    for args in [
        vec![],
        vec!["server"],
        vec!["listener", "tcp:80"],
        vec!["server", "tcp:80", "extra"],
        vec!["server", "tcp:80", "--yaml"],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains("usage: endpoint_check server|client DESCRIPTION [--json]"));
        assert_eq!(stdout(&o), "", "{args:?}");
    }
    let o = run(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("usage: "));
}
