//! The protocol adapters (`Lines`, `Netstrings`, `PrefixedStrings`) driven with
//! `StringTransport` (whole, byte by byte, split at every point) and over real loopback
//! sockets.

mod common;

use common::{PATIENCE as LONG, listen, reactor};

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::mpsc;

use torsion_protocols::{
    EncodeError, FramingError, LineControl, LineReceiver, LineSender, Lines, NetstringErrorKind,
    Netstrings, PrefixedStrings, SendError, StringReceiver, StringSender,
};
use torsion_reactor::testing::{StringTransport, capture_logs};
use torsion_reactor::{ConnectionLost, Protocol, Reactor, factory_fn};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Made,
    Line(Vec<u8>),
    Raw(Vec<u8>),
    TooLong(Vec<u8>),
    Lost,
}

/// Records events; lines drive mode switches:
/// `RAW n` → raw mode for n bytes, `RAW` → raw mode until a `L` byte in the raw data
/// (the rest is handed back with `set_line_mode_with`), `CLEAR` → clear the buffer,
/// `QUIT` → lose the connection, `SKIP` → keep going after too-long lines.
#[derive(Default)]
struct Script {
    events: Vec<Ev>,
    skip_too_long: bool,
    cleared: Vec<Vec<u8>>,
}

impl LineReceiver for Script {
    fn connection_made(&mut self, _: &mut LineControl<'_>) {
        self.events.push(Ev::Made);
    }

    fn line_received(&mut self, lines: &mut LineControl<'_>, line: &[u8]) {
        self.events.push(Ev::Line(line.to_vec()));
        if let Some(n) = line.strip_prefix(b"RAW ") {
            let n = std::str::from_utf8(n).ok().and_then(|n| n.parse().ok());
            lines.set_raw_mode_for(n.unwrap_or(0));
        } else if line == b"RAW" {
            lines.set_raw_mode();
        } else if line == b"CLEAR" {
            self.cleared.push(lines.clear_line_buffer().to_vec());
        } else if line == b"QUIT" {
            lines.transport().lose_connection();
        } else if line == b"SKIP" {
            self.skip_too_long = true;
        }
    }

    fn raw_data_received(&mut self, lines: &mut LineControl<'_>, data: &[u8]) {
        let (mine, rest) = match data.iter().position(|&b| b == b'L') {
            Some(at) if lines.is_raw_mode() => (&data[..=at], Some(&data[at + 1..])),
            _ => (data, None),
        };
        match self.events.last_mut() {
            Some(Ev::Raw(prev)) => prev.extend_from_slice(mine),
            _ => self.events.push(Ev::Raw(mine.to_vec())),
        }
        if let Some(rest) = rest {
            lines.set_line_mode_with(rest);
        }
    }

    fn line_length_exceeded(&mut self, lines: &mut LineControl<'_>, prefix: &[u8]) {
        self.events.push(Ev::TooLong(prefix.to_vec()));
        if !self.skip_too_long {
            lines.transport().lose_connection();
        }
    }

    fn connection_lost(&mut self, _: &ConnectionLost) {
        self.events.push(Ev::Lost);
    }
}

type Outcome = (Vec<Ev>, Vec<Vec<u8>>, bool);

fn run_lines(make: &dyn Fn() -> Lines<Script>, chunks: &[&[u8]]) -> Outcome {
    let t = StringTransport::new();
    let mut p = make();
    p.connection_made(&t.transport());
    for c in chunks {
        p.data_received(&t.transport(), c);
    }
    let closed = t.lose_connection_called();
    let r = p.into_receiver();
    (r.events, r.cleared, closed)
}

/// Whole, byte by byte, and split at every point (and every two points for short
/// inputs): all the same. `CLEAR` takes what is buffered, which depends on the split,
/// so inputs using it are checked whole and byte by byte only by the callers.
fn all_splits(make: &dyn Fn() -> Lines<Script>, input: &[u8]) -> Outcome {
    let whole = run_lines(make, &[input]);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run_lines(make, &bytes), whole, "byte by byte");
    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        assert_eq!(run_lines(make, &[a, b]), whole, "split at {i}");
        if input.len() <= 64 {
            for j in i..=input.len() {
                let (b1, b2) = b.split_at(j - i);
                assert_eq!(run_lines(make, &[a, b1, b2]), whole, "split at {i},{j}");
            }
        }
    }
    whole
}

fn line(s: &[u8]) -> Ev {
    Ev::Line(s.to_vec())
}

#[test]
fn lines_are_the_same_however_the_bytes_arrive() {
    let make = || Lines::new(Script::default());
    let (ev, _, closed) = all_splits(&make, b"one\r\n\r\ntwo\nstill two\r\nthree\r\npartial");
    assert_eq!(
        ev,
        [
            Ev::Made,
            line(b"one"),
            line(b""),
            line(b"two\nstill two"),
            line(b"three")
        ]
    );
    assert!(!closed);
}

#[test]
fn max_length_edges_through_the_adapter() {
    let make = || Lines::new(Script::default()).with_max_length(4);
    let (ev, _, closed) = all_splits(&make, b"abcd\r\n\r\nabcde\r\nnever\r\n");
    assert_eq!(
        ev,
        [
            Ev::Made,
            line(b"abcd"),
            line(b""),
            Ev::TooLong(b"abcde".to_vec())
        ]
    );
    assert!(closed, "the default closes the connection");
    // A partial line that grows past the limit is reported at once.
    let (ev, _, closed) = run_lines(&make, &[b"abcdefgh"]);
    assert_eq!(ev, [Ev::Made, Ev::TooLong(b"abcde".to_vec())]);
    assert!(closed);
    // A receiver that keeps going skips the rest of that line.
    let (ev, _, closed) = all_splits(&make, b"SKIP\r\nabcdefgh\r\nok\r\n");
    assert_eq!(
        ev,
        [
            Ev::Made,
            line(b"SKIP"),
            Ev::TooLong(b"abcde".to_vec()),
            line(b"ok")
        ]
    );
    assert!(!closed);
}

#[test]
fn raw_mode_switches_apply_to_the_very_next_byte() {
    let make = || Lines::new(Script::default());
    let input =
        b"HEAD\r\nRAW 5\r\nab\r\ncTAIL\r\nRAW 0\r\nx\r\nRAW\r\nraw\r\nbytesLnext\r\nRAW\r\nLa\r\n";
    let (ev, _, _) = all_splits(&make, input);
    assert_eq!(
        ev,
        [
            Ev::Made,
            line(b"HEAD"),
            line(b"RAW 5"),
            Ev::Raw(b"ab\r\nc".to_vec()),
            line(b"TAIL"),
            line(b"RAW 0"),
            line(b"x"),
            line(b"RAW"),
            Ev::Raw(b"raw\r\nbytesL".to_vec()),
            line(b"next"),
            line(b"RAW"),
            Ev::Raw(b"L".to_vec()),
            line(b"a"),
        ]
    );
}

#[test]
fn clear_line_buffer_takes_what_was_not_delivered() {
    let make = || Lines::new(Script::default());
    let (ev, cleared, _) = run_lines(&make, &[b"a\r\nCLEAR\r\nb\r\nc", b"d\r\ne\r\n"]);
    assert_eq!(
        ev,
        [Ev::Made, line(b"a"), line(b"CLEAR"), line(b"d"), line(b"e")]
    );
    assert_eq!(cleared, [b"b\r\nc".to_vec()]);
    let bytes: Vec<&[u8]> = b"a\r\nCLEAR\r\nb\r\n".chunks(1).collect();
    let (ev, cleared, _) = run_lines(&make, &bytes);
    assert_eq!(
        ev,
        [Ev::Made, line(b"a"), line(b"CLEAR"), line(b"b")],
        "byte by byte, nothing was buffered yet"
    );
    assert_eq!(cleared, [Vec::<u8>::new()]);
}

#[test]
fn delivery_stops_once_the_connection_is_closing() {
    let make = || Lines::new(Script::default());
    let (ev, _, closed) = all_splits(&make, b"first\r\nQUIT\r\nnot seen\r\n");
    assert_eq!(ev, [Ev::Made, line(b"first"), line(b"QUIT")]);
    assert!(closed);
}

#[test]
fn strip_cr_and_custom_delimiters() {
    let make = || {
        Lines::new(Script::default())
            .with_delimiter(b"\n")
            .with_strip_cr(true)
            .with_max_length(3)
    };
    let (ev, _, closed) = all_splits(&make, b"ab\r\nabc\nabc\r\nab\r\r\nabcd");
    assert_eq!(
        ev,
        [
            Ev::Made,
            line(b"ab"),
            line(b"abc"),
            line(b"abc"),
            line(b"ab\r"),
            Ev::TooLong(b"abcd".to_vec())
        ]
    );
    assert!(closed);
}

struct Sender {
    kept: Rc<RefCell<Option<LineSender>>>,
}

impl LineReceiver for Sender {
    fn connection_made(&mut self, lines: &mut LineControl<'_>) {
        lines.try_send_line(b"hello").unwrap();
        *self.kept.borrow_mut() = Some(lines.sender());
    }
    fn line_received(&mut self, lines: &mut LineControl<'_>, line: &[u8]) {
        match lines.try_send_line(line) {
            Ok(()) => {}
            Err(SendError::Encode(e)) => {
                lines
                    .transport()
                    .write(format!("refused: {e:?}\n").as_bytes());
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn send_line_frames_and_refuses_what_the_peer_would_misread() {
    let kept = Rc::new(RefCell::new(None));
    let t = StringTransport::new();
    let mut p = Lines::new(Sender { kept: kept.clone() })
        .with_delimiter(b"\n")
        .with_max_length(5);
    p.connection_made(&t.transport());
    assert_eq!(t.take_written(), b"hello\n");
    p.data_received(&t.transport(), b"abcde\n");
    assert_eq!(t.take_written(), b"abcde\n");
    let sender = kept.borrow().clone().unwrap();
    sender.try_send_line(b"later").unwrap();
    assert_eq!(t.take_written(), b"later\n");
    assert!(matches!(
        sender.try_send_line(b"a\nb"),
        Err(SendError::Encode(EncodeError::ContainsDelimiter {
            offset: 1
        }))
    ));
    assert!(matches!(
        sender.try_send_line(b"toolong"),
        Err(SendError::Encode(EncodeError::TooLong {
            length: 7,
            max: 5
        }))
    ));
    assert_eq!(t.take_written(), b"");
    // The plain call refuses the same, and says why in the log, naming the peer.
    let logs = capture_logs();
    sender.send_line(b"toolong");
    assert_eq!(t.take_written(), b"");
    let said = logs.lines_with("not sending a line to");
    assert!(
        said.iter().any(|l| l.contains("7") && l.contains("5")),
        "{said:?}"
    );
    t.transport().lose_connection();
    assert!(matches!(
        sender.try_send_line(b"x"),
        Err(SendError::Transport(_))
    ));
    // Ignored once the connection is closing, as writes are: nothing logged for it.
    let before = logs.lines_with("not sending").len();
    sender.send_line(b"x");
    assert_eq!(logs.lines_with("not sending").len(), before);

    // A separate encoder for what is sent: longer lines, `\r\n` endings.
    let t = StringTransport::new();
    let kept = Rc::new(RefCell::new(None));
    let mut p = Lines::new(Sender { kept })
        .with_delimiter(b"\n")
        .with_max_length(5)
        .with_encoder(
            torsion_protocols::LineEncoder::new()
                .with_delimiter(b"\n")
                .with_strip_cr(true)
                .with_max_length(100),
        )
        .with_max_length(2);
    p.connection_made(&t.transport());
    p.data_received(&t.transport(), b"ab\n");
    assert_eq!(t.take_written(), b"hello\r\nab\r\n");
}

// --- netstrings and length prefixes -------------------------------------------------

#[derive(Default)]
struct Strings {
    got: Vec<Vec<u8>>,
    errors: Vec<FramingError>,
    echo: bool,
}

impl StringReceiver for Strings {
    fn string_received(&mut self, strings: &StringSender, s: &[u8]) {
        self.got.push(s.to_vec());
        if self.echo {
            strings.try_send_string(s).unwrap();
        }
    }
    fn framing_error(&mut self, strings: &StringSender, error: &FramingError) {
        self.errors.push(error.clone());
        strings.transport().write(b"bye");
    }
}

type StringsOutcome = (Vec<Vec<u8>>, Vec<FramingError>, bool, Vec<u8>);

fn run_strings<P: Protocol>(
    make: &dyn Fn() -> P,
    unwrap: &dyn Fn(P) -> Strings,
    chunks: &[&[u8]],
) -> StringsOutcome {
    let t = StringTransport::new();
    let mut p = make();
    p.connection_made(&t.transport());
    for c in chunks {
        p.data_received(&t.transport(), c);
    }
    let closed = t.lose_connection_called();
    let r = unwrap(p);
    (r.got, r.errors, closed, t.written())
}

fn strings_all_splits<P: Protocol>(
    make: &dyn Fn() -> P,
    unwrap: &dyn Fn(P) -> Strings,
    input: &[u8],
) -> StringsOutcome {
    let whole = run_strings(make, unwrap, &[input]);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run_strings(make, unwrap, &bytes), whole, "byte by byte");
    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        assert_eq!(run_strings(make, unwrap, &[a, b]), whole, "split at {i}");
    }
    whole
}

fn v(list: &[&[u8]]) -> Vec<Vec<u8>> {
    list.iter().map(|s| s.to_vec()).collect()
}

#[test]
fn netstrings_whole_or_in_pieces() {
    let make = || Netstrings::new(Strings::default()).with_max_length(5);
    let unwrap = |p: Netstrings<Strings>| p.into_receiver();
    let (got, errors, closed, _) = strings_all_splits(&make, &unwrap, b"3:abc,0:,5:hello,");
    assert_eq!(got, v(&[b"abc", b"", b"hello"]));
    assert!(errors.is_empty());
    assert!(!closed);
}

#[test]
fn malformed_netstrings_close_the_connection_with_a_reason() {
    let make = || Netstrings::new(Strings::default()).with_max_length(5);
    let unwrap = |p: Netstrings<Strings>| p.into_receiver();
    let cases: [(&[u8], NetstringErrorKind); 5] = [
        (
            b"1:a,6:",
            NetstringErrorKind::TooLong {
                at_least: 6,
                max: 5,
            },
        ),
        (
            b"1:a,3:abcd,",
            NetstringErrorKind::MissingComma { found: b'd' },
        ),
        (b"1:a,03:abc,", NetstringErrorKind::LeadingZero),
        (b"1:a,:,", NetstringErrorKind::EmptyLength),
        (
            b"1:a,x",
            NetstringErrorKind::InvalidLengthByte { byte: b'x' },
        ),
    ];
    for (input, kind) in cases {
        let (got, errors, closed, written) = strings_all_splits(&make, &unwrap, input);
        assert_eq!(got, v(&[b"a"]), "{input:?}");
        assert_eq!(errors.len(), 1, "{input:?}");
        match &errors[0] {
            FramingError::Netstring(e) => assert_eq!(e.kind(), kind),
            other => panic!("{other:?}"),
        }
        assert!(closed);
        assert_eq!(written, b"bye", "the hook ran once, before the close");
    }
    // Nothing after the error is delivered, even if the transport is driven on.
    let (got, errors, _, _) = run_strings(&make, &unwrap, &[b"x", b"1:a,", b"1:b,"]);
    assert!(got.is_empty());
    assert_eq!(errors.len(), 1);
}

#[test]
fn netstring_send_refuses_oversize_strings() {
    let t = StringTransport::new();
    let mut p = Netstrings::new(Strings {
        echo: true,
        ..Strings::default()
    })
    .with_max_length(3);
    p.connection_made(&t.transport());
    p.data_received(&t.transport(), b"3:abc,");
    assert_eq!(t.take_written(), b"3:abc,");
    let sender = StringSender::netstrings(
        t.transport(),
        torsion_protocols::NetstringEncoder::new().with_max_length(3),
    );
    assert!(matches!(
        sender.try_send_string(b"abcd"),
        Err(SendError::Encode(EncodeError::TooLong {
            length: 4,
            max: 3
        }))
    ));
    assert_eq!(t.written(), b"");
}

#[test]
fn prefixed_strings_of_every_width() {
    let unwrap = |p: PrefixedStrings<Strings>| p.into_receiver();
    let make8 = || PrefixedStrings::int8(Strings::default());
    let (got, errors, closed, _) = strings_all_splits(&make8, &unwrap, b"\x03abc\x00\xffxx");
    assert_eq!(got, v(&[b"abc", b""]));
    assert!(errors.is_empty() && !closed);
    let make16 = || PrefixedStrings::int16(Strings::default()).with_max_length(4);
    let (got, errors, closed, written) =
        strings_all_splits(&make16, &unwrap, b"\x00\x04abcd\x00\x00\x00\x05abcde");
    assert_eq!(got, v(&[b"abcd", b""]));
    assert!(closed);
    assert_eq!(written, b"bye");
    match &errors[..] {
        [FramingError::Prefixed(e)] => assert_eq!((e.length(), e.max()), (5, 4)),
        other => panic!("{other:?}"),
    }
    let make32 = || PrefixedStrings::int32(Strings::default());
    let (got, errors, closed, _) =
        strings_all_splits(&make32, &unwrap, b"\x00\x00\x00\x02hi\x00\x01\x86\x9f");
    assert_eq!(got, v(&[b"hi"]));
    assert!(
        errors.is_empty() && !closed,
        "99,999 is the default maximum"
    );
    let (_, errors, closed, _) = run_strings(&make32, &unwrap, &[b"\x00\x01\x86\xa0"]);
    assert_eq!(errors.len(), 1, "100,000 is one too many");
    assert!(closed);
}

#[test]
fn prefixed_send_checks_the_limit_of_each_width() {
    for (width, limit) in [
        (torsion_protocols::PrefixWidth::U8, 255usize),
        (torsion_protocols::PrefixWidth::U16, 65_535),
        (torsion_protocols::PrefixWidth::U32, 1 << 20),
    ] {
        let t = StringTransport::new();
        let kept: Rc<RefCell<Option<StringSender>>> = Rc::default();
        struct Keep(Rc<RefCell<Option<StringSender>>>);
        impl StringReceiver for Keep {
            fn connection_made(&mut self, strings: &StringSender) {
                *self.0.borrow_mut() = Some(strings.clone());
            }
            fn string_received(&mut self, _: &StringSender, _: &[u8]) {}
        }
        let mut p = PrefixedStrings::new(width, Keep(kept.clone())).with_max_length(1 << 20);
        p.connection_made(&t.transport());
        let sender = kept.borrow().clone().unwrap();
        sender.try_send_string(&vec![7; limit]).unwrap();
        assert_eq!(t.take_written().len(), width.size() + limit);
        assert!(
            matches!(
                sender.try_send_string(&vec![7; limit + 1]),
                Err(SendError::Encode(EncodeError::TooLong { .. }))
            ),
            "{width:?}"
        );
        assert!(t.written().is_empty());
    }
}

// --- over real sockets --------------------------------------------------------------

/// Runs a client in a thread: sends `input` in `pieces`-byte writes, half-closes, and
/// reads until the server closes. Runs the reactor until the client is done.
fn talk(r: &Reactor, addr: SocketAddr, input: Vec<u8>, pieces: usize) -> Vec<u8> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(LONG)).unwrap();
        c.set_nodelay(true).unwrap();
        let reader = {
            let mut c = c.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let _ = c.read_to_end(&mut out);
                out
            })
        };
        for piece in input.chunks(pieces.max(1)) {
            if c.write_all(piece).is_err() {
                break;
            }
        }
        let _ = c.shutdown(std::net::Shutdown::Write);
        let _ = tx.send(reader.join().unwrap());
    });
    let mut result = None;
    r.run_until(LONG, || {
        if let Ok(out) = rx.try_recv() {
            result = Some(out);
        }
        result.is_some()
    })
    .unwrap();
    result.unwrap()
}

/// Upper-cases lines; `BODY n` reads n raw bytes and answers with their length.
struct Upper;

impl LineReceiver for Upper {
    fn line_received(&mut self, lines: &mut LineControl<'_>, line: &[u8]) {
        if let Some(n) = line.strip_prefix(b"BODY ") {
            let n = std::str::from_utf8(n).ok().and_then(|n| n.parse().ok());
            lines.set_raw_mode_for(n.unwrap_or(0));
        } else {
            lines.send_line(&line.to_ascii_uppercase());
        }
    }
    fn raw_data_received(&mut self, lines: &mut LineControl<'_>, data: &[u8]) {
        lines.send_line(format!("raw {}", data.len()).as_bytes());
    }
}

#[test]
fn lines_over_loopback() {
    let r = reactor();
    let (port, addr) = listen(&r, factory_fn(|_| Lines::new(Upper)));
    for pieces in [1, 7, 1 << 20] {
        let out = talk(
            &r,
            addr,
            b"hello\r\nBODY 3\r\nxyzworld\r\n".to_vec(),
            pieces,
        );
        let text = String::from_utf8(out).unwrap();
        // The raw body may arrive in several reads; its lengths add up to 3.
        let mut raw = 0;
        let mut lines = Vec::new();
        for l in text.split_terminator("\r\n") {
            match l.strip_prefix("raw ") {
                Some(n) => raw += n.parse::<usize>().unwrap(),
                None => lines.push(l.to_string()),
            }
        }
        assert_eq!(lines, ["HELLO", "WORLD"], "pieces of {pieces}");
        assert_eq!(raw, 3);
    }
    port.stop_listening();
}

struct Echo;

impl StringReceiver for Echo {
    fn string_received(&mut self, strings: &StringSender, s: &[u8]) {
        strings.send_string(s);
    }
}

#[test]
fn netstrings_over_loopback() {
    let r = reactor();
    let (port, addr) = listen(&r, factory_fn(|_| Netstrings::new(Echo)));
    let input = b"5:hello,0:,11:hello world,".to_vec();
    assert_eq!(talk(&r, addr, input.clone(), 1), input);
    // Malformed: what came before is answered, then the server closes.
    let out = talk(&r, addr, b"1:a,3:abcd,1:b,".to_vec(), 1 << 20);
    assert_eq!(out, b"1:a,");
    port.stop_listening();
}

#[test]
fn int32_strings_over_loopback() {
    let r = reactor();
    let (port, addr) = listen(&r, factory_fn(|_| PrefixedStrings::int32(Echo)));
    let mut input = Vec::new();
    for len in [0usize, 1, 1000, 99_999] {
        input.extend_from_slice(&(len as u32).to_be_bytes());
        input.extend(std::iter::repeat_n(b'z', len));
    }
    assert_eq!(talk(&r, addr, input.clone(), 4093), input);
    // Oversize: closed without an answer.
    assert_eq!(talk(&r, addr, 100_000u32.to_be_bytes().to_vec(), 1), b"");
    port.stop_listening();
}
