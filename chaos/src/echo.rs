//! Clients of an echo server. Well-behaved ones check that every byte comes back, in
//! order, and time their round trips; hostile ones never read, reset mid-write, vanish,
//! flood and storm, and check nothing but that the well-behaved ones go on being served.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Instant;

use crate::rng::Rng;
use crate::run::{
    Behaviour, Run, behave, check, pause, receive, receive_some, reset, send, send_some, served,
};

/// The behaviours and their weights (well-behaved first).
const BEHAVIOURS: &[Behaviour] = &[
    ("echo", 30, echo),
    ("half-close", 8, half_close),
    ("one-byte-reads", 4, one_byte_reads),
    ("pause", 6, pausing),
    ("flood", 6, flood),
    ("never-read", 8, never_read),
    ("reset-mid-write", 10, reset_mid_write),
    ("connect-and-vanish", 10, vanish),
    ("reconnect-storm", 6, storm),
];

/// Bytes the server may hold for one connection: the write buffer's high mark (64 KiB)
/// plus a loop iteration's read budget (256 KiB), what a connection feeding another may
/// read before the pause is heard: the bound DESIGN.md gives for memory per connection.
/// (An echo connection holds less: it reads nothing more once its own answers cross.)
pub const PER_CONNECTION_BOUND: u64 = 64 * 1024 + 4 * 64 * 1024;

/// One client: behaviours at random until the run ends.
pub fn client(run: &Run, id: u64) {
    behave(run, id, BEHAVIOURS);
}

/// Connects a client that must be served; a refusal is a failure.
fn connect_served(run: &Run, id: u64) -> Option<std::net::TcpStream> {
    served(run, id, run.connect(id))
}

/// Several messages of random sizes, each read back whole and timed; then a clean close.
fn echo(run: &Run, id: u64, rng: &mut Rng) {
    let Some(mut s) = connect_served(run, id) else {
        return;
    };
    for _ in 0..rng.range(1, 20) {
        if run.over() {
            break;
        }
        let msg = rng.bytes_between(1, 64 * 1024);
        let t0 = Instant::now();
        let got = send(run, &mut s, &msg).and_then(|()| receive(run, &mut s, msg.len()));
        match got {
            Ok(got) => {
                run.latency(t0.elapsed());
                if !check(run, id, "echo", &msg, &got) {
                    return;
                }
            }
            Err(e) => return run.fail(id, format!("echo of {} bytes: {e}", msg.len())),
        }
    }
}

/// Sends, half-closes, and must get everything back, then end of file.
fn half_close(run: &Run, id: u64, rng: &mut Rng) {
    let Some(mut s) = connect_served(run, id) else {
        return;
    };
    let msg = rng.bytes_between(0, 60 * 1024);
    if let Err(e) = send(run, &mut s, &msg).and_then(|()| s.shutdown(Shutdown::Write)) {
        return run.fail(id, format!("half-close: sending: {e}"));
    }
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => {
            run.received(got.len());
            check(run, id, "echo before end of file", &msg, &got);
        }
        Err(e) => run.fail(id, format!("half-close: reading to end of file: {e}")),
    }
}

/// Reads its echo one byte per read.
fn one_byte_reads(run: &Run, id: u64, rng: &mut Rng) {
    let Some(mut s) = connect_served(run, id) else {
        return;
    };
    let msg = rng.bytes_between(1, 8 * 1024);
    if let Err(e) = send(run, &mut s, &msg) {
        return run.fail(id, format!("one-byte reads: sending: {e}"));
    }
    let mut got = Vec::with_capacity(msg.len());
    let mut byte = [0u8; 1];
    while got.len() < msg.len() {
        match s.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            Ok(_) => break,
            Err(e) => return run.fail(id, format!("one-byte reads: {e}")),
        }
    }
    run.received(got.len());
    check(run, id, "echo read a byte at a time", &msg, &got);
}

/// Sends, stops reading for seconds, then must find its whole echo.
fn pausing(run: &Run, id: u64, rng: &mut Rng) {
    let Some(mut s) = connect_served(run, id) else {
        return;
    };
    let msg = rng.bytes_between(1, 32 * 1024);
    if let Err(e) = send(run, &mut s, &msg) {
        return run.fail(id, format!("pause: sending: {e}"));
    }
    pause(run, rng.range(500, 3000));
    match receive(run, &mut s, msg.len()) {
        Ok(got) => {
            check(run, id, "echo after a pause", &msg, &got);
        }
        Err(e) => run.fail(id, format!("pause: reading after the pause: {e}")),
    }
}

/// Writes as fast as the socket takes for a while, reading as it goes; what came back
/// must be a prefix of what was sent.
fn flood(run: &Run, id: u64, rng: &mut Rng) {
    let Some(s) = connect_served(run, id) else {
        return;
    };
    let data = rng.bytes(4 * 1024 * 1024);
    let until = Instant::now() + std::time::Duration::from_millis(rng.range(200, 1500));
    let (mut sent, mut got) = (0, Vec::new());
    while Instant::now() < until && sent < data.len() && !run.over() {
        sent += send_some(run, &s, &data[sent..(sent + 64 * 1024).min(data.len())]);
        match receive_some(run, &s, &mut got) {
            Ok(true) => {}
            Ok(false) => return run.fail(id, "flood: the server closed the connection".into()),
            Err(e) => return run.fail(id, format!("flood: {e}")),
        }
    }
    if !data[..sent].starts_with(&got) {
        check(
            run,
            id,
            "flood's echo (a prefix)",
            &data[..got.len().min(sent)],
            &got,
        );
    }
    if rng.chance(50) {
        reset(s);
    }
}

/// Sends and never reads: the server must stop reading it (back-pressure), not buffer.
fn never_read(run: &Run, id: u64, rng: &mut Rng) {
    let Ok(s) = run.connect(id) else { return };
    let data = rng.bytes(1024 * 1024);
    let until = Instant::now() + std::time::Duration::from_millis(rng.range(200, 2000));
    let mut sent = 0;
    while Instant::now() < until && !run.over() {
        let n = send_some(run, &s, &data[sent % data.len()..]);
        sent += n;
        if n == 0 {
            pause(run, 50); // the server stopped reading us: good
        }
    }
    if rng.chance(50) {
        reset(s);
    }
}

/// Writes a lot, then resets the connection while the server is still echoing.
fn reset_mid_write(run: &Run, id: u64, rng: &mut Rng) {
    let Ok(s) = run.connect(id) else { return };
    let data = rng.bytes_between(1, 512 * 1024);
    send_some(run, &s, &data);
    if rng.chance(50) {
        let mut got = Vec::new();
        let _ = receive_some(run, &s, &mut got);
    }
    reset(s);
}

/// Connects and goes away at once, sometimes with a reset, sometimes after a byte.
fn vanish(run: &Run, id: u64, rng: &mut Rng) {
    let Ok(mut s) = run.connect(id) else { return };
    if rng.chance(30) {
        let _ = s.write_all(b"x");
    }
    if rng.chance(50) {
        reset(s);
    }
}

/// Many connections in a row, each closed at once.
fn storm(run: &Run, id: u64, rng: &mut Rng) {
    for _ in 0..rng.range(5, 40) {
        if run.over() {
            return;
        }
        let Ok(mut s) = run.connect(id) else { continue };
        if rng.chance(50) {
            let _ = s.write_all(&rng.bytes(100));
        }
        if rng.chance(50) {
            reset(s);
        }
    }
}
