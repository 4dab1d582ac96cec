//! The chat server example, run as a child process and driven over loopback TCP: every
//! behaviour its contract lists (names, messages, commands, leaving, the line limit, the
//! non-reader cut-off, slow senders, the per-peer connection limit), and that no client
//! can grow the server's memory by sending lines it does not read the answers to.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Server;

/// Generous: the machine may be busy.
const LONG: Duration = Duration::from_secs(30);

fn start() -> Server {
    Server::start("chat_server", &["tcp:port=0:interface=127.0.0.1"])
}

struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).expect("connects"))
    }

    fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(LONG)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    /// Connects and reads the greeting.
    fn greeted(addr: SocketAddr) -> Client {
        let mut c = Client::connect(addr);
        c.expect("What is your name?");
        c
    }

    /// Connects and takes `name`.
    fn named(addr: SocketAddr, name: &str) -> Client {
        let mut c = Client::greeted(addr);
        c.send(name);
        c.expect(&format!("Welcome, {name}!"));
        c
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("writes");
    }

    /// Sends `line` with a `\n` ending.
    fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes());
    }

    /// The next line the server sent, which must end in `\r\n`, without its ending.
    fn line(&mut self) -> String {
        let mut buf = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut buf)
            .expect("reads a line");
        assert!(n > 0, "the server closed the connection");
        let text = String::from_utf8(buf).expect("UTF-8 from the server");
        text.strip_suffix("\r\n")
            .unwrap_or_else(|| panic!("line {text:?} does not end in \\r\\n"))
            .to_string()
    }

    fn expect(&mut self, want: &str) {
        assert_eq!(self.line(), want);
    }

    /// The server closes the connection with nothing more to read.
    fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "unexpected bytes {rest:?}"),
            Err(e) => panic!("expected a clean close, got {e}"),
        }
    }
}

#[test]
fn greets_and_checks_names() {
    let server = start();
    let addr = server.socket_addr();
    let mut a = Client::greeted(addr);
    let too_long = "x".repeat(33);
    for bad in ["", "a b", "bob!", "é", "/who", too_long.as_str(), " bob"] {
        a.send(bad);
        a.expect("Invalid name, try again.");
    }
    let longest = "Az09_-".repeat(5) + "zz";
    assert_eq!(longest.len(), 32);
    a.send(&longest);
    a.expect(&format!("Welcome, {longest}!"));

    let mut b = Client::greeted(addr);
    b.send(&longest);
    b.expect("Name taken, try again.");
    // Names are case-sensitive, and a one-byte name is fine.
    b.send(&longest.to_uppercase());
    b.expect(&format!("Welcome, {}!", longest.to_uppercase()));
    a.expect(&format!("* {} has joined", longest.to_uppercase()));
    let mut c = Client::greeted(addr);
    c.send("q");
    c.expect("Welcome, q!");
}

#[test]
fn messages_go_to_everyone_else() {
    let server = start();
    let addr = server.socket_addr();
    let mut alice = Client::named(addr, "alice");
    let mut bob = Client::named(addr, "bob");
    alice.expect("* bob has joined");
    let mut carol = Client::named(addr, "carol");
    alice.expect("* carol has joined");
    bob.expect("* carol has joined");

    bob.send("hello, world");
    alice.expect("<bob> hello, world");
    carol.expect("<bob> hello, world");
    // A trailing `\r` is stripped; only one.
    bob.send_raw(b"crlf\r\n");
    alice.expect("<bob> crlf");
    carol.expect("<bob> crlf");
    bob.send_raw(b"two\r\r\n");
    alice.expect("<bob> two\r");
    carol.expect("<bob> two\r");
    // Several lines in one write, and a line split across writes.
    carol.send_raw(b"one\ntw");
    carol.send_raw(b"o\n");
    alice.expect("<carol> one");
    alice.expect("<carol> two");
    bob.expect("<carol> one");
    bob.expect("<carol> two");
    // The sender does not get its own messages: its next line is the answer to /who.
    bob.send("/who");
    bob.expect("* Online: alice, bob, carol");
    carol.send("/who");
    carol.expect("* Online: alice, bob, carol");
}

#[test]
fn who_lists_names_sorted_by_bytes() {
    let server = start();
    let addr = server.socket_addr();
    let mut users: Vec<Client> = ["b", "a_", "Z", "B", "a-", "9"]
        .iter()
        .map(|n| Client::named(addr, n))
        .collect();
    let last = users.last_mut().unwrap();
    last.send("/who");
    last.expect("* Online: 9, B, Z, a-, a_, b");
}

#[test]
fn nick_renames_with_the_same_rules() {
    let server = start();
    let addr = server.socket_addr();
    let mut alice = Client::named(addr, "alice");
    let mut bob = Client::named(addr, "bob");
    alice.expect("* bob has joined");

    bob.send("/nick not valid");
    bob.expect("Invalid name, try again.");
    bob.send("/nick ");
    bob.expect("Invalid name, try again.");
    bob.send("/nick alice");
    bob.expect("Name taken, try again.");
    bob.send("/nick robert");
    bob.expect("* You are now robert");
    alice.expect("* bob is now robert");
    bob.send("hi");
    alice.expect("<robert> hi");
    alice.send("/who");
    alice.expect("* Online: alice, robert");
    // The old name is free again.
    let mut other = Client::named(addr, "bob");
    alice.expect("* bob has joined");
    bob.expect("* bob has joined");
    other.send("/who");
    other.expect("* Online: alice, bob, robert");
}

#[test]
fn quit_says_bye_and_others_see_the_user_leave() {
    let server = start();
    let addr = server.socket_addr();
    let mut alice = Client::named(addr, "alice");
    let mut bob = Client::named(addr, "bob");
    alice.expect("* bob has joined");
    bob.send("/quit");
    bob.expect("Bye!");
    bob.expect_closed();
    alice.expect("* bob has left");
    alice.send("/who");
    alice.expect("* Online: alice");
}

#[test]
fn a_named_user_who_disconnects_is_announced_an_unnamed_one_is_not() {
    let server = start();
    let addr = server.socket_addr();
    let mut alice = Client::named(addr, "alice");
    let bob = Client::named(addr, "bob");
    alice.expect("* bob has joined");

    // Never named: leaves silently.
    let mut anon = Client::greeted(addr);
    anon.send("not a name");
    anon.expect("Invalid name, try again.");
    drop(anon);
    let carol = Client::named(addr, "carol");
    alice.expect("* carol has joined");

    drop(bob);
    alice.expect("* bob has left");
    drop(carol);
    alice.expect("* carol has left");
    alice.send("/who");
    alice.expect("* Online: alice");
}

#[test]
fn lines_up_to_4096_bytes_pass_longer_ones_close_the_connection() {
    let server = start();
    let addr = server.socket_addr();
    let mut alice = Client::named(addr, "alice");
    let mut bob = Client::named(addr, "bob");
    alice.expect("* bob has joined");

    let max = "m".repeat(4096);
    bob.send_raw(format!("{max}\n").as_bytes());
    alice.expect(&format!("<bob> {max}"));
    bob.send_raw(format!("{max}\r\n").as_bytes());
    alice.expect(&format!("<bob> {max}"));
    // A partial line of 4,096 bytes plus the `\r` of its ending is still waited on.
    bob.send_raw(format!("{max}\r").as_bytes());
    bob.send_raw(b"\n");
    alice.expect(&format!("<bob> {max}"));
    bob.send("/who");
    bob.expect("* Online: alice, bob");
    let mut trailing_cr = max.clone();
    trailing_cr.replace_range(4095.., "\r");
    bob.send_raw(format!("{trailing_cr}\r\n").as_bytes());
    alice.expect(&format!("<bob> {trailing_cr}"));

    // One byte more, complete: too long.
    bob.send_raw(format!("{max}x\n").as_bytes());
    bob.expect("Line too long.");
    bob.expect_closed();
    alice.expect("* bob has left");

    // A partial line that grows past the limit is too long at once.
    let mut carol = Client::named(addr, "carol");
    alice.expect("* carol has joined");
    carol.send_raw(max.as_bytes());
    carol.send_raw(b"x");
    carol.expect("Line too long.");
    carol.expect_closed();
    alice.expect("* carol has left");

    // 4,096 bytes and two `\r`: only one is an ending, so the line is 4,097 bytes.
    let mut dave = Client::named(addr, "dave");
    alice.expect("* dave has joined");
    dave.send_raw(format!("{max}\r\r").as_bytes());
    dave.expect("Line too long.");
    dave.expect_closed();
    alice.expect("* dave has left");

    // Before naming too: an unnamed connection closes silently.
    let mut anon = Client::greeted(addr);
    anon.send_raw(format!("{max}{max}\n").as_bytes());
    anon.expect("Line too long.");
    anon.expect_closed();
    alice.send("/who");
    alice.expect("* Online: alice");
}

#[test]
fn a_slow_sender_does_not_delay_anyone() {
    let server = start();
    let addr = server.socket_addr();
    let mut alice = Client::named(addr, "alice");
    let mut bob = Client::named(addr, "bob");
    alice.expect("* bob has joined");
    let mut slow = Client::named(addr, "slow");
    alice.expect("* slow has joined");
    bob.expect("* slow has joined");

    // The slow client is in the middle of a line, one byte per write; the others talk.
    for (i, byte) in b"a very slow line".iter().enumerate() {
        slow.send_raw(&[*byte]);
        alice.send(&format!("ping {i}"));
        bob.expect(&format!("<alice> ping {i}"));
    }
    slow.send_raw(b"\n");
    alice.expect("<slow> a very slow line");
    bob.expect("<slow> a very slow line");
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: i32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_user_who_stops_reading_is_disconnected_and_others_keep_receiving() {
    let server = start();
    let addr = server.socket_addr();
    let mut watcher = Client::named(addr, "watcher");

    // A small receive buffer, so the kernel cannot absorb what the server queues.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut sleeper = Client::from_stream(sock.into());
    sleeper.expect("What is your name?");
    sleeper.send("sleeper");
    sleeper.expect("Welcome, sleeper!");
    watcher.expect("* sleeper has joined");

    let mut flooder = Client::named(addr, "flooder");
    watcher.expect("* flooder has joined");
    sleeper.send("last words before sleeping");
    watcher.expect("<sleeper> last words before sleeping");

    // The flooder writes from a thread until told to stop; the watcher reads everything.
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flood = stop.clone();
    let mut flood_writer = flooder.writer.try_clone().unwrap();
    let flood = std::thread::spawn(move || {
        let line = format!("{}\n", "f".repeat(1000));
        let mut sent = 0usize;
        while !stop_flood.load(Ordering::SeqCst) && sent < 256 << 20 {
            if flood_writer.write_all(line.as_bytes()).is_err() {
                break;
            }
            sent += line.len();
        }
        sent
    });
    let flood_line = format!("<flooder> {}", "f".repeat(1000));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut max_rss = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "the non-reader was never dropped"
        );
        let line = watcher.line();
        if line == "* sleeper has left" {
            break;
        }
        assert_eq!(line, flood_line);
        max_rss = max_rss.max(rss_kib(server.pid()));
    }
    // The others still get everything after that.
    let mut more = 0;
    while more < 100 {
        assert_eq!(watcher.line(), flood_line);
        more += 1;
    }
    stop.store(true, Ordering::SeqCst);
    let sent = flood.join().unwrap();
    assert!(sent > 1 << 20, "only {sent} bytes were flooded");
    assert!(
        max_rss < 64 * 1024,
        "the server grew to {max_rss} KiB while a client did not read"
    );
    // The non-reader's connection is closed (aborted: it may see a reset).
    let closed_by = Instant::now() + LONG;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        assert!(
            Instant::now() < closed_by,
            "the non-reader is still connected"
        );
        match sleeper.reader.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    flooder.send("/quit");
}

#[test]
fn every_line_from_the_server_ends_in_crlf() {
    let server = start();
    let mut c = TcpStream::connect(server.socket_addr()).unwrap();
    c.set_read_timeout(Some(LONG)).unwrap();
    c.write_all(b"x\n/quit\n").unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"What is your name?\r\nWelcome, x!\r\nBye!\r\n");
}

#[test]
fn at_most_100_connections_per_peer_address() {
    let server = start();
    let addr = server.socket_addr();
    let mut open: Vec<Client> = (0..100).map(|_| Client::greeted(addr)).collect();
    let mut refused = Client::connect(addr);
    refused.expect_closed();
    // Another address is another peer.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut other = Client::from_stream(sock.into());
    other.expect("What is your name?");
    // A slot frees when a connection ends.
    let mut last = open.pop().unwrap();
    last.send("/quit");
    last.expect("Invalid name, try again.");
    drop(last);
    let deadline = Instant::now() + LONG;
    loop {
        let mut c = Client::connect(addr);
        let mut first = Vec::new();
        match c.reader.read_until(b'\n', &mut first) {
            Ok(n) if n > 0 => {
                assert_eq!(first, b"What is your name?\r\n");
                break;
            }
            // The server may not have seen the close yet: that one was refused.
            _ => assert!(Instant::now() < deadline, "no slot freed"),
        }
    }
    open[0].send("alice");
    open[0].expect("Welcome, alice!");
}

/// A client whose socket buffers are small, so the kernel cannot absorb what it does not
/// read, nor much of what it sends (loopback autotuning would take tens of MiB).
fn small_buffers(addr: SocketAddr) -> Client {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.set_send_buffer_size(32 * 1024).unwrap();
    sock.connect(&addr.into()).unwrap();
    Client::from_stream(sock.into())
}

/// Sends `line` `count` times from a thread, counting the bytes the kernel took; the
/// writes block while the server does not read them.
fn flood(c: &Client, line: &str, count: usize) -> (std::thread::JoinHandle<()>, Arc<AtomicUsize>) {
    let mut w = c.writer.try_clone().unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let chunk: Vec<u8> = line.repeat(1000).into_bytes();
    let handle = std::thread::spawn(move || {
        for _ in 0..count / 1000 {
            w.write_all(&chunk).expect("the flood is written");
            counter.fetch_add(chunk.len(), Ordering::SeqCst);
        }
    });
    (handle, sent)
}

/// Round trips of `good` (a `/who` answered with `who`) until the flood has made no
/// progress over 20 of them in a row (the server stopped reading the flooder: every round
/// trip is a turn of the server's loop in which it would have read it) or is all sent.
/// Returns the most RSS seen, in KiB.
fn until_held_back(
    server: &Server,
    good: &mut Client,
    who: &str,
    sent: &AtomicUsize,
    total: usize,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut most = 0;
    let mut still = 0;
    let mut last = usize::MAX;
    while still < 20 {
        assert!(
            Instant::now() < deadline,
            "the flood never stopped or ended"
        );
        good.send("/who");
        good.expect(who);
        most = most.max(rss_kib(server.pid()));
        let now = sent.load(Ordering::SeqCst);
        if now == total {
            break;
        }
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    most
}

/// Reads `count` copies of `line` (with `\r\n`) in big reads, checking every byte.
fn read_copies(c: &mut Client, line: &str, count: usize) {
    let want = format!("{line}\r\n").into_bytes();
    let total = want.len() * count;
    let mut buf = vec![0u8; 256 * 1024];
    let mut at = 0;
    while at < total {
        let n = c
            .reader
            .read(&mut buf[..(total - at).min(256 * 1024)])
            .expect("reads the replies");
        assert!(n > 0, "closed after {} of {count} replies", at / want.len());
        for (i, &b) in buf[..n].iter().enumerate() {
            let pos = (at + i) % want.len();
            assert_eq!(b, want[pos], "byte {} of the replies", at + i);
        }
        at += n;
    }
}

#[test]
fn a_client_that_sends_two_million_lines_without_reading_cannot_grow_the_server() {
    const LINES: usize = 2_000_000;
    let server = start();
    let addr = server.socket_addr();
    let mut good = Client::named(addr, "good");
    good.send("/who");
    good.expect("* Online: good");
    let before = rss_kib(server.pid());

    // Never gives a name, never reads: each `!` is answered `Invalid name, try again.`
    let mut offender = small_buffers(addr);
    let (writer, sent) = flood(&offender, "!\n", LINES);
    let most = until_held_back(&server, &mut good, "* Online: good", &sent, LINES * 2);
    let growth = most.saturating_sub(before);
    eprintln!(
        "RSS {before} KiB before, at most {most} KiB while {} of {} bytes were sent",
        sent.load(Ordering::SeqCst),
        LINES * 2
    );
    assert!(
        growth < 32 * 1024,
        "the server grew by {growth} KiB for a client that does not read"
    );
    assert!(
        sent.load(Ordering::SeqCst) < LINES * 2,
        "the whole flood went in: the server never stopped reading it"
    );

    // Now it reads: every line was kept and is answered, in order, and nothing more.
    offender.expect("What is your name?");
    read_copies(&mut offender, "Invalid name, try again.", LINES);
    writer.join().unwrap();
    offender.send("/quit");
    offender.expect("Invalid name, try again.");
    good.send("/who");
    good.expect("* Online: good");
}

#[test]
fn a_named_client_that_sends_100_000_who_without_reading_cannot_grow_the_server() {
    const LINES: usize = 100_000;
    let server = start();
    let addr = server.socket_addr();
    // Thirty users with long names make `/who` answers of about 1 KiB.
    let mut others: Vec<Client> = (0..30)
        .map(|i| Client::named(addr, &format!("user{i:02}_{}", "x".repeat(25))))
        .collect();
    let mut names: Vec<String> = (0..30)
        .map(|i| format!("user{i:02}_{}", "x".repeat(25)))
        .collect();
    let mut good = others.pop().unwrap();
    let mut offender = small_buffers(addr);
    offender.expect("What is your name?");
    offender.send("offender");
    offender.expect("Welcome, offender!");
    names.push("offender".into());
    names.sort();
    let who = format!("* Online: {}", names.join(", "));
    assert!(who.len() > 1000);
    good.expect("* offender has joined");
    good.send("/who");
    good.expect(&who);
    let before = rss_kib(server.pid());

    let (writer, sent) = flood(&offender, "/who\n", LINES);
    let most = until_held_back(&server, &mut good, &who, &sent, LINES * 5);
    let growth = most.saturating_sub(before);
    eprintln!(
        "RSS {before} KiB before, at most {most} KiB while {} of {} bytes were sent",
        sent.load(Ordering::SeqCst),
        LINES * 5
    );
    assert!(
        growth < 32 * 1024,
        "the server grew by {growth} KiB for a client that does not read"
    );
    assert!(
        sent.load(Ordering::SeqCst) < LINES * 5,
        "the whole flood went in: the server never stopped reading it"
    );

    // Now it reads: 100,000 answers, in order; it is still connected and named.
    read_copies(&mut offender, &who, LINES);
    writer.join().unwrap();
    offender.send("hello");
    good.expect("<offender> hello");
    drop(others);
}
