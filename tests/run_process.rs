//! `run_process` run as a real child process, running real programs: its output lines,
//! the child's status and its own exit status, standard input passed through, signals
//! passed on, and programs that cannot be started.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{example, wait_timeout};

fn run(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(example("run_process"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run_process starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn lines(o: &Output) -> Vec<String> {
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn each_stream_is_printed_in_order_then_the_exit_status() {
    let o = run(
        &[
            "--",
            "sh",
            "-c",
            "echo one; echo uh-oh >&2; echo two; echo again >&2; printf 'no newline'; exit 5",
        ],
        b"",
    );
    let lines = lines(&o);
    let out: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("out: "))
        .map(String::as_str)
        .collect();
    let err: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("err: "))
        .map(String::as_str)
        .collect();
    assert_eq!(out, ["out: one", "out: two", "out: no newline"]);
    assert_eq!(err, ["err: uh-oh", "err: again"]);
    assert_eq!(lines.last().map(String::as_str), Some("exit 5"));
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert_eq!(o.status.code(), Some(5));
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_child_killed_by_a_signal_is_reported_by_name_and_128_plus_its_number() {
    let o = run(&["--", "sh", "-c", "echo before; kill -KILL $$"], b"");
    assert_eq!(lines(&o), ["out: before", "signal SIGKILL"]);
    assert_eq!(o.status.code(), Some(128 + 9));
}

#[test]
fn its_standard_input_is_the_childs() {
    let o = run(&["--", "cat"], b"first\nsecond");
    assert_eq!(lines(&o), ["out: first", "out: second", "exit 0"]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn lots_of_output_arrives_whole_and_in_order() {
    let o = run(&["--", "seq", "1", "50000"], b"");
    let lines = lines(&o);
    assert_eq!(lines.len(), 50001);
    for (i, line) in lines[..50000].iter().enumerate() {
        assert_eq!(*line, format!("out: {}", i + 1));
    }
    assert_eq!(lines[50000], "exit 0");
}

#[test]
fn a_program_that_cannot_be_started_is_one_line_on_stderr_and_127() {
    let o = run(&["--", "/torsion/no/such-program", "arg"], b"");
    assert_eq!(o.status.code(), Some(127));
    assert!(o.stdout.is_empty());
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(
        err.contains("\"/torsion/no/such-program\"") && err.contains("no such file or directory"),
        "{err:?}"
    );
    let o = run(&["--", "/"], b"");
    assert_eq!(o.status.code(), Some(127));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("permission denied"),
        "a directory cannot be executed"
    );
}

#[test]
fn a_missing_program_is_a_usage_error() {
    let o = run(&[], b"");
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["--"], b"");
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn signals_sent_to_it_are_passed_on_to_the_child() {
    let mut child = Command::new(example("run_process"))
        .args(["--", "sh", "-c", "echo ready; exec sleep 30"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "out: ready\n");
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = wait_timeout(&mut child, Duration::from_secs(20)).expect("exits");
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "signal SIGTERM\n");
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
}
