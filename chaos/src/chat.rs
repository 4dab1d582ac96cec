//! Clients of the chat server (examples/chat_server.rs). Well-behaved talkers register,
//! send numbered messages and check that every other talker's messages reach them whole
//! and in order, with no gap; they time `/who`. Others send garbage, over-long lines,
//! invalid names, rapid `/nick`s, never read, flood the room, reset, vanish and storm.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use crate::rng::Rng;
use crate::run::{Run, STALL, pause, receive_some, reset, send_some, served};

const BEHAVIOURS: &[(&str, u64)] = &[
    ("talker", 30),
    ("invalid-names", 6),
    ("rapid-nick", 6),
    ("pause", 4),
    ("garbage", 8),
    ("long-line", 6),
    ("never-read", 8),
    ("flood", 4),
    ("half-close", 4),
    ("reset-mid-write", 8),
    ("connect-and-vanish", 8),
    ("reconnect-storm", 4),
];

/// Bytes the server may hold for one client: its 1 MiB not-reading limit, plus the line
/// that crossed it (4 KiB and a name), plus the line being read (4 KiB) and one read
/// (64 KiB) held back while it is paused.
pub const PER_CONNECTION_BOUND: u64 = 1024 * 1024 + 2 * 4200 + 64 * 1024;

pub fn client(run: &Run, id: u64) {
    let mut rng = Rng::new(run.seed, id);
    let weights = run.weights(BEHAVIOURS);
    let mut session = 0;
    while !run.over() {
        session += 1;
        let (name, _) = BEHAVIOURS[rng.pick(&weights)];
        run.count(name);
        let me = format!("{}{id}x{session}", &name[..1]);
        match name {
            "talker" => talker(run, id, &mut rng, &me, false),
            "pause" => talker(run, id, &mut rng, &me, true),
            "invalid-names" => invalid_names(run, id, &me),
            "rapid-nick" => rapid_nick(run, id, &mut rng, &me),
            "garbage" => garbage(run, id, &mut rng),
            "long-line" => long_line(run, id, &mut rng),
            "never-read" => never_read(run, id, &mut rng, &me),
            "flood" => flood(run, id, &mut rng, &me),
            "half-close" => half_close(run, id, &me),
            "reset-mid-write" => reset_mid_write(run, id, &mut rng),
            "connect-and-vanish" => vanish(run, id, &mut rng),
            _ => storm(run, id, &mut rng),
        }
    }
}

/// A connection whose lines arrive on a channel (read by a thread, so the client always
/// reads promptly, as a well-behaved one does).
struct Lines {
    stream: TcpStream,
    lines: Receiver<Option<Vec<u8>>>,
    /// Last message number seen from each talker.
    seen: HashMap<Vec<u8>, u64>,
}

enum Got {
    Line(Vec<u8>),
    Eof,
    Stalled,
}

impl Lines {
    fn open(run: &Run, id: u64) -> Option<Lines> {
        let stream = served(run, id, run.connect(id))?;
        let reading = stream.try_clone().ok()?;
        let _ = reading.set_read_timeout(None);
        let (tx, rx) = channel();
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut r = BufReader::new(reading);
                loop {
                    let mut line = Vec::new();
                    match r.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => {
                            let _ = tx.send(None);
                            return;
                        }
                        Ok(_) => {
                            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                                line.pop();
                            }
                            if tx.send(Some(line)).is_err() {
                                return;
                            }
                        }
                    }
                }
            })
            .ok()?;
        Some(Lines {
            stream,
            lines: rx,
            seen: HashMap::new(),
        })
    }

    fn send(&mut self, run: &Run, line: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(line)?;
        self.stream.write_all(b"\n")?;
        run.sent(line.len() + 1);
        Ok(())
    }

    /// The next line, checking every talker's message numbers as they pass.
    fn next(&mut self, run: &Run, id: u64, wait: Duration) -> Got {
        match self.lines.recv_timeout(wait) {
            Ok(Some(line)) => {
                run.received(line.len() + 2);
                self.check_order(run, id, &line);
                Got::Line(line)
            }
            Ok(None) | Err(RecvTimeoutError::Disconnected) => Got::Eof,
            Err(RecvTimeoutError::Timeout) => Got::Stalled,
        }
    }

    /// `<tNAME> m SEQ ...` from a talker: SEQ must follow the last one seen from it.
    fn check_order(&mut self, run: &Run, id: u64, line: &[u8]) {
        let Some(rest) = line.strip_prefix(b"<") else {
            return;
        };
        let Some(end) = rest.iter().position(|b| *b == b'>') else {
            return;
        };
        let (name, text) = (&rest[..end], &rest[end + 1..]);
        if !(name.starts_with(b"t") || name.starts_with(b"p")) {
            return;
        }
        let Some(seq) = text
            .strip_prefix(b" m ")
            .and_then(|t| t.split(|b| *b == b' ').next())
            .and_then(|n| std::str::from_utf8(n).ok()?.parse::<u64>().ok())
        else {
            return;
        };
        if let Some(last) = self.seen.insert(name.to_vec(), seq) {
            if seq != last + 1 {
                run.fail(
                    id,
                    format!(
                        "message {seq} from {} came after message {last}: lost or reordered",
                        String::from_utf8_lossy(name)
                    ),
                );
            }
        }
    }

    /// Reads until a line `want` accepts; `None` (with a failure recorded when `strict`) if
    /// the connection ends or stalls first.
    fn expect(
        &mut self,
        run: &Run,
        id: u64,
        what: &str,
        strict: bool,
        want: impl Fn(&[u8]) -> bool,
    ) -> Option<Vec<u8>> {
        let deadline = Instant::now() + STALL;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(run, id, left) {
                Got::Line(line) if want(&line) => return Some(line),
                Got::Line(_) => {}
                Got::Eof => {
                    if strict {
                        run.fail(id, format!("the connection ended while waiting for {what}"));
                    }
                    return None;
                }
                Got::Stalled => {
                    if strict {
                        run.fail(id, format!("no {what} within {STALL:?}"));
                    }
                    return None;
                }
            }
        }
    }

    /// Registers as `me`: the prompt, the name, the welcome.
    fn register(&mut self, run: &Run, id: u64, me: &str, strict: bool) -> bool {
        if self
            .expect(run, id, "the name prompt", strict, |l| {
                l == b"What is your name?"
            })
            .is_none()
        {
            return false;
        }
        if let Err(e) = self.send(run, me.as_bytes()) {
            if strict {
                run.fail(id, format!("sending a name: {e}"));
            }
            return false;
        }
        let welcome = format!("Welcome, {me}!");
        self.expect(run, id, "the welcome", strict, |l| l == welcome.as_bytes())
            .is_some()
    }

    /// `/quit`, then "Bye!" and end of file.
    fn quit(mut self, run: &Run, id: u64, strict: bool) {
        if self.send(run, b"/quit").is_err() {
            if strict {
                run.fail(id, "sending /quit failed".into());
            }
            return;
        }
        if self
            .expect(run, id, "Bye!", strict, |l| l == b"Bye!")
            .is_some()
        {
            let deadline = Instant::now() + STALL;
            loop {
                match self.next(run, id, deadline.saturating_duration_since(Instant::now())) {
                    Got::Eof => return,
                    Got::Line(_) => {}
                    Got::Stalled => {
                        if strict {
                            run.fail(id, "the server did not close after Bye!".into());
                        }
                        return;
                    }
                }
            }
        }
    }
}

/// Printable ASCII, `lo..=hi` characters.
fn printable(rng: &mut Rng, lo: u64, hi: u64) -> String {
    let len = rng.range(lo, hi);
    (0..len)
        .map(|_| (b' ' + (rng.next() % 94) as u8) as char)
        .collect()
}

/// Registers, sends numbered messages (checking everyone else's order as they pass),
/// times `/who`, quits. With `pausing`, also stops reading for seconds now and then (it
/// may then be disconnected as not reading, which is the server's right).
fn talker(run: &Run, id: u64, rng: &mut Rng, me: &str, pausing: bool) {
    let strict = !pausing;
    let Some(mut c) = Lines::open(run, id) else {
        return;
    };
    if !c.register(run, id, me, strict) {
        return;
    }
    for seq in 0..rng.range(5, 40) {
        if run.over() {
            break;
        }
        let text = printable(rng, 1, 200);
        if let Err(e) = c.send(run, format!("m {seq} {text}").as_bytes()) {
            if strict {
                run.fail(id, format!("sending message {seq}: {e}"));
            }
            return;
        }
        if rng.chance(20) {
            let t0 = Instant::now();
            if c.send(run, b"/who").is_err() {
                return;
            }
            let mine = me.as_bytes().to_vec();
            let who = c.expect(run, id, "the /who reply", strict, |l| {
                l.starts_with(b"* Online: ") && l.windows(mine.len()).any(|w| w == mine)
            });
            if who.is_none() {
                return;
            }
            run.latency(t0.elapsed());
        }
        if pausing && rng.chance(10) {
            pause(run, rng.range(500, 3000));
        }
        // Read what has come meanwhile.
        while let Got::Line(_) = c.next(run, id, Duration::ZERO) {}
    }
    c.quit(run, id, strict);
}

/// Every kind of bad name is refused with the same answer; then a good one is welcome.
fn invalid_names(run: &Run, id: u64, me: &str) {
    let Some(mut c) = Lines::open(run, id) else {
        return;
    };
    if c.expect(run, id, "the name prompt", true, |l| {
        l == b"What is your name?"
    })
    .is_none()
    {
        return;
    }
    let too_long = "n".repeat(33);
    for bad in [
        "",
        "two words",
        too_long.as_str(),
        "caf\u{e9}",
        "/who",
        "a\tb",
    ] {
        if c.send(run, bad.as_bytes()).is_err() {
            return run.fail(id, "sending an invalid name failed".into());
        }
        let refused = c.expect(run, id, "the invalid-name answer", true, |l| {
            l == b"Invalid name, try again."
        });
        if refused.is_none() {
            return;
        }
    }
    if c.send(run, me.as_bytes()).is_err() {
        return;
    }
    let welcome = format!("Welcome, {me}!");
    if c.expect(run, id, "the welcome", true, |l| l == welcome.as_bytes())
        .is_some()
    {
        c.quit(run, id, true);
    }
}

/// Many `/nick`s without waiting; each answer must come, in order.
fn rapid_nick(run: &Run, id: u64, rng: &mut Rng, me: &str) {
    let Some(mut c) = Lines::open(run, id) else {
        return;
    };
    if !c.register(run, id, me, true) {
        return;
    }
    let n = rng.range(5, 40);
    let mut burst = Vec::new();
    for k in 0..n {
        burst.extend_from_slice(format!("/nick {me}n{k}\n").as_bytes());
    }
    if c.stream.write_all(&burst).is_err() {
        return run.fail(id, "sending /nick burst failed".into());
    }
    run.sent(burst.len());
    for k in 0..n {
        let want = format!("* You are now {me}n{k}");
        if c.expect(
            run,
            id,
            &format!("the answer to /nick number {k}"),
            true,
            |l| l == want.as_bytes(),
        )
        .is_none()
        {
            return;
        }
    }
    c.quit(run, id, true);
}

fn garbage(run: &Run, id: u64, rng: &mut Rng) {
    let Ok(s) = run.connect(id) else { return };
    let mut data = rng.bytes_between(1, 8 * 1024);
    for b in data.iter_mut() {
        if rng.chance(2) {
            *b = b'\n';
        }
    }
    send_some(run, &s, &data);
    if rng.chance(50) {
        pause(run, rng.range(10, 300));
        let mut got = Vec::new();
        let _ = receive_some(run, &s, &mut got);
    }
    if rng.chance(50) {
        reset(s);
    }
}

fn long_line(run: &Run, id: u64, rng: &mut Rng) {
    let Ok(s) = run.connect(id) else { return };
    let line = vec![b'a' + (rng.next() % 26) as u8; rng.range(4097, 64 * 1024) as usize];
    send_some(run, &s, &line);
    pause(run, rng.range(10, 300));
    let mut got = Vec::new();
    let _ = receive_some(run, &s, &mut got);
}

/// Registers, then sends lines and `/who`s without ever reading.
fn never_read(run: &Run, id: u64, rng: &mut Rng, me: &str) {
    let Ok(mut s) = run.connect(id) else { return };
    if s.write_all(format!("{me}\n").as_bytes()).is_err() {
        return;
    }
    let until = Instant::now() + Duration::from_millis(rng.range(200, 2000));
    while Instant::now() < until && !run.over() {
        let line = if rng.chance(50) {
            "/who\n".to_string()
        } else {
            format!("{}\n", printable(rng, 100, 100))
        };
        if send_some(run, &s, line.as_bytes()) == 0 {
            pause(run, 50);
        }
    }
    if rng.chance(50) {
        reset(s);
    }
}

/// Registers and sends lines to the room as fast as it can for a moment, never reading.
fn flood(run: &Run, id: u64, rng: &mut Rng, me: &str) {
    let Ok(mut s) = run.connect(id) else { return };
    if s.write_all(format!("{me}\n").as_bytes()).is_err() {
        return;
    }
    let mut block = Vec::new();
    for _ in 0..200 {
        block.extend_from_slice(printable(rng, 1, 100).as_bytes());
        block.push(b'\n');
    }
    let until = Instant::now() + Duration::from_millis(rng.range(100, 500));
    while Instant::now() < until && !run.over() {
        if send_some(run, &s, &block) == 0 {
            pause(run, 20);
        }
    }
    if rng.chance(50) {
        reset(s);
    }
}

/// Registers, says something, half-closes: the server ends the conversation.
fn half_close(run: &Run, id: u64, me: &str) {
    let Ok(mut s) = run.connect(id) else { return };
    let _ = s.write_all(format!("{me}\nhello from a half-closed client\n").as_bytes());
    let _ = s.shutdown(Shutdown::Write);
    let mut got = Vec::new();
    let deadline = Instant::now() + STALL;
    while Instant::now() < deadline {
        match receive_some(run, &s, &mut got) {
            Ok(false) | Err(_) => return,
            Ok(true) => pause(run, 20),
        }
    }
}

fn reset_mid_write(run: &Run, id: u64, rng: &mut Rng) {
    let Ok(s) = run.connect(id) else { return };
    let mut data = Vec::new();
    for k in 0..rng.range(1, 2000) {
        data.extend_from_slice(format!("line {k}\n").as_bytes());
    }
    send_some(run, &s, &data);
    reset(s);
}

fn vanish(run: &Run, id: u64, rng: &mut Rng) {
    let Ok(mut s) = run.connect(id) else { return };
    if rng.chance(30) {
        let _ = s.write_all(b"someone\n");
    }
    if rng.chance(50) {
        reset(s);
    }
}

fn storm(run: &Run, id: u64, rng: &mut Rng) {
    for _ in 0..rng.range(5, 40) {
        if run.over() {
            return;
        }
        let Ok(mut s) = run.connect(id) else { continue };
        if rng.chance(50) {
            let _ = s.write_all(b"/who\n");
        }
        if rng.chance(50) {
            reset(s);
        }
    }
}
