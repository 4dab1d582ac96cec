//! Standard I/O as one transport, half-closed: the protocol closes its output and keeps
//! reading its input to the end. The program under test is this test binary itself, run
//! as a child with its standard input and output on pipes: a test cannot hand its own
//! standard descriptors to a reactor.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use torsion_reactor::testing::PATIENCE;
use torsion_reactor::{ConnectionLost, Protocol, Reactor, Transport};

const CHILD: &str = "TORSION_STDIO_HALF_CLOSE_CHILD";

/// Answers the first chunk, closes its output, then counts its input to the end and says
/// how much on stderr.
struct HalfCloser {
    answered: bool,
    read: usize,
}

impl Protocol for HalfCloser {
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        self.read += data.len();
        if !std::mem::replace(&mut self.answered, true) {
            t.write(b"got it\n");
            t.lose_write_connection().expect("standard output closes");
        }
    }
    fn eof_received(&mut self, _t: &Transport) -> bool {
        eprintln!("read {} bytes", self.read);
        false
    }
    fn connection_lost(&mut self, reason: &ConnectionLost) {
        eprintln!("lost: {reason}");
        let _ = Reactor::current().stop();
    }
}

#[test]
fn child_half_closes_standard_output() {
    if std::env::var_os(CHILD).is_none() {
        return; // run by the test below, in its own process
    }
    let reactor = Reactor::new().expect("a reactor");
    reactor.install();
    reactor
        .standard_io(HalfCloser {
            answered: false,
            read: 0,
        })
        .expect("standard I/O");
    reactor.run().expect("runs until the input ends");
}

#[test]
fn closing_standard_output_keeps_standard_input_open() {
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args([
            "child_half_closes_standard_output",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the child runs");
    let mut stdin = child.stdin.take().expect("its input");
    let mut stdout = child.stdout.take().expect("its output");
    stdin.write_all(b"first\n").expect("writes");
    // Its output ends (the end of file comes while its input is still open)...
    let mut out = Vec::new();
    stdout
        .read_to_end(&mut out)
        .expect("reads its output to the end");
    let out = String::from_utf8_lossy(&out);
    // (libtest prints its own lines on the child's stdout too; ours is among them, and the
    // end of file is the child closing descriptor 1.)
    assert!(out.contains("got it\n"), "{out}");
    // ...and it still reads: everything written after counts.
    let more = vec![b'm'; 100_000];
    stdin.write_all(&more).expect("its input is still read");
    drop(stdin);
    // Its exit, with a deadline (a thread waits, this one waits for the thread).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let ended = rx.recv_timeout(PATIENCE).expect("the child ends in time");
    let ended = ended.expect("its exit status");
    let (status, err) = (
        ended.status,
        String::from_utf8_lossy(&ended.stderr).into_owned(),
    );
    assert!(status.success(), "{err}");
    assert!(
        err.contains(&format!("read {} bytes", 6 + more.len())),
        "{err}"
    );
}
