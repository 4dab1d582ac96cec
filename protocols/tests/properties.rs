//! Property tests for the framing layer: decoding never depends on how the
//! input is split, matches a simple reference model, never panics, and
//! undoes encoding.

use proptest::prelude::*;
use torsion_protocols::{
    Bytes, BytesMut, EncodeError, LineDecoder, LineEncoder, LineEvent, NetstringDecoder,
    NetstringEncoder, NetstringError, PrefixWidth, PrefixedDecoder, PrefixedEncoder, PrefixedError,
};

/// Cases per property: 256, or `PROPTEST_CASES` for a longer bounded run (CI:
/// `PROPTEST_CASES=2000 cargo test -p torsion-protocols --test properties`).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Splits `input` at the given points (taken modulo its length).
fn chunks<'a>(input: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for c in cuts {
        out.push(&input[start..c]);
        start = c;
    }
    out.push(&input[start..]);
    out
}

fn merge_raw(events: Vec<LineEvent>) -> Vec<LineEvent> {
    let mut out: Vec<LineEvent> = Vec::new();
    for e in events {
        if let LineEvent::Raw(b) = &e {
            if let Some(LineEvent::Raw(prev)) = out.last_mut() {
                let mut joined = BytesMut::from(&prev[..]);
                joined.extend_from_slice(b);
                *prev = joined.freeze();
                continue;
            }
        }
        out.push(e);
    }
    out
}

fn decode_lines(make: impl Fn() -> LineDecoder, pieces: &[&[u8]]) -> Vec<LineEvent> {
    let mut dec = make();
    let mut out = Vec::new();
    for p in pieces {
        dec.push(p);
        while let Some(e) = dec.next_event() {
            out.push(e);
        }
    }
    out
}

/// The line rules written as plainly as possible, over the whole input.
/// With `strip_cr`, a `\r` right before a delimiter belongs to the ending.
fn line_model(input: &[u8], delim: &[u8], max: usize, strip_cr: bool) -> Vec<LineEvent> {
    let full_at = |rest: &[u8]| rest.windows(delim.len()).position(|w| w == delim);
    let cr_before = |rest: &[u8], p: usize| usize::from(strip_cr && p > 0 && rest[p - 1] == b'\r');
    let mut out = Vec::new();
    let mut rest = input;
    loop {
        match full_at(rest) {
            Some(p) => {
                let content = p - cr_before(rest, p);
                let event = if content <= max {
                    LineEvent::Line(Bytes::copy_from_slice(&rest[..content]))
                } else {
                    LineEvent::TooLong(Bytes::copy_from_slice(&rest[..max + 1]))
                };
                out.push(event);
                rest = &rest[p + delim.len()..];
            }
            None => {
                // The line is at least as long as the first index from which
                // the rest may still be the start of a delimiter.
                let start = (0..rest.len())
                    .find(|&k| delim.starts_with(&rest[k..]))
                    .unwrap_or(rest.len());
                let known = start - cr_before(rest, start);
                if known > max {
                    out.push(LineEvent::TooLong(Bytes::copy_from_slice(&rest[..max + 1])));
                }
                return out;
            }
        }
    }
}

fn delimiter() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"aab".to_vec()),
        Just(b"aba".to_vec()),
        proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'\n')], 1..4),
    ]
}

fn small_alphabet(len: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![Just(b'a'), Just(b'b'), Just(b'x'), Just(b'\r'), Just(b'\n')],
        0..len,
    )
}

fn run_netstring(
    make: impl Fn() -> NetstringDecoder,
    pieces: &[&[u8]],
) -> (Vec<Bytes>, Option<NetstringError>) {
    let mut dec = make();
    let mut frames = Vec::new();
    for p in pieces {
        dec.push(p);
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

fn run_prefixed(
    make: impl Fn() -> PrefixedDecoder,
    pieces: &[&[u8]],
) -> (Vec<Bytes>, Option<PrefixedError>) {
    let mut dec = make();
    let mut frames = Vec::new();
    for p in pieces {
        dec.push(p);
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

fn width() -> impl Strategy<Value = PrefixWidth> {
    prop_oneof![
        Just(PrefixWidth::U8),
        Just(PrefixWidth::U16),
        Just(PrefixWidth::U32)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn lines_match_the_model_however_split(
        delim in delimiter(),
        input in small_alphabet(120),
        max in 0usize..16,
        strip_cr in any::<bool>(),
        points in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let make = || LineDecoder::new()
            .with_delimiter(&delim)
            .with_max_length(max)
            .with_strip_cr(strip_cr);
        let expected = line_model(&input, &delim, max, strip_cr);
        prop_assert_eq!(decode_lines(make, &[&input]), expected.clone());
        prop_assert_eq!(decode_lines(make, &chunks(&input, &points)), expected.clone());
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(decode_lines(make, &bytes), expected);
    }

    #[test]
    fn mode_switching_never_loses_or_repeats_a_byte(
        input in proptest::collection::vec(
            prop_oneof![Just(b'a'), Just(b'R'), Just(b'S'), Just(b'L'), Just(b'\r'), Just(b'\n')],
            0..120,
        ),
        nl in any::<bool>(),
        max in 0usize..12,
        points in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        // A line starting with R switches to raw mode for as many bytes as
        // the line is long, one starting with S to raw mode for good; in raw
        // mode, the byte L switches back to line mode right after it.
        let delim: &[u8] = if nl { b"\n" } else { b"\r\n" };
        let run = |pieces: &[&[u8]]| {
            let mut dec = LineDecoder::new().with_delimiter(delim).with_max_length(max);
            let mut out = Vec::new();
            for p in pieces {
                dec.push(p);
                while let Some(e) = dec.next_event() {
                    match &e {
                        LineEvent::Line(l) if l.first() == Some(&b'R') => dec.set_raw_mode_for(l.len()),
                        LineEvent::Line(l) if l.first() == Some(&b'S') => dec.set_raw_mode(),
                        LineEvent::Raw(r) => {
                            assert!(!r.is_empty());
                            if let Some(at) = r.iter().position(|&b| b == b'L') {
                                out.push(LineEvent::Raw(r.slice(..=at)));
                                dec.set_line_mode_with(&r[at + 1..]);
                                continue;
                            }
                        }
                        _ => {}
                    }
                    out.push(e);
                }
            }
            (merge_raw(out), dec.buffered_len())
        };
        let whole = run(&[&input]);
        prop_assert_eq!(run(&chunks(&input, &points)), whole.clone());
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(run(&bytes), whole.clone());
        // Without overlong lines nothing is dropped: every byte comes out
        // once, in a line, a delimiter or raw data, or is still buffered.
        let (events, left) = whole;
        if !events.iter().any(|e| matches!(e, LineEvent::TooLong(_))) {
            let delivered: usize = events.iter().map(|e| match e {
                LineEvent::Line(l) => l.len() + delim.len(),
                LineEvent::Raw(r) => r.len(),
                LineEvent::TooLong(_) => unreachable!(),
            }).sum();
            prop_assert_eq!(delivered + left, input.len());
        }
    }

    #[test]
    fn line_encoding_round_trips(
        delim in delimiter(),
        lines in proptest::collection::vec(small_alphabet(12), 0..10),
        strip_cr in any::<bool>(),
        points in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let enc = LineEncoder::new()
            .with_delimiter(&delim)
            .with_max_length(8)
            .with_strip_cr(strip_cr);
        let mut wire = BytesMut::new();
        let mut sent = Vec::new();
        for line in &lines {
            let before = wire.len();
            match enc.encode(line, &mut wire) {
                Ok(()) => sent.push(LineEvent::Line(Bytes::copy_from_slice(line))),
                Err(EncodeError::TooLong { length, max }) => {
                    prop_assert_eq!((length, max), (line.len(), 8));
                    prop_assert!(line.len() > 8);
                    prop_assert_eq!(wire.len(), before);
                }
                Err(EncodeError::ContainsDelimiter { offset }) => {
                    // Refused exactly when the peer would cut the line short.
                    let mut framed = line.clone();
                    if strip_cr {
                        framed.push(b'\r');
                    }
                    framed.extend_from_slice(&delim);
                    let first = framed.windows(delim.len()).position(|w| w == &delim[..]);
                    prop_assert_eq!(first, Some(offset));
                    prop_assert!(offset < line.len() + usize::from(strip_cr));
                    prop_assert_eq!(wire.len(), before);
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }
        let make = || LineDecoder::new()
            .with_delimiter(&delim)
            .with_max_length(8)
            .with_strip_cr(strip_cr);
        prop_assert_eq!(decode_lines(make, &chunks(&wire, &points)), sent);
    }

    #[test]
    fn netstring_encoding_round_trips(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
        max in 0usize..32,
        points in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let enc = NetstringEncoder::new().with_max_length(max);
        let mut wire = BytesMut::new();
        let mut sent = Vec::new();
        for p in &payloads {
            match enc.encode(p, &mut wire) {
                Ok(()) => sent.push(Bytes::copy_from_slice(p)),
                Err(e) => prop_assert_eq!(e, EncodeError::TooLong { length: p.len(), max }),
            }
        }
        let make = || NetstringDecoder::new().with_max_length(max);
        prop_assert_eq!(run_netstring(make, &chunks(&wire, &points)), (sent, None));
    }

    #[test]
    fn prefixed_encoding_round_trips(
        width in width(),
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..6),
        max in 0usize..400,
        points in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let enc = PrefixedEncoder::new(width).with_max_length(max);
        let max = enc.max_length();
        prop_assert_eq!(max, max.min(width.limit()));
        let mut wire = BytesMut::new();
        let mut sent = Vec::new();
        for p in &payloads {
            match enc.encode(p, &mut wire) {
                Ok(()) => sent.push(Bytes::copy_from_slice(p)),
                Err(e) => prop_assert_eq!(e, EncodeError::TooLong { length: p.len(), max }),
            }
        }
        let make = || PrefixedDecoder::new(width).with_max_length(max);
        prop_assert_eq!(run_prefixed(make, &chunks(&wire, &points)), (sent, None));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_ignore_splits(
        input in proptest::collection::vec(any::<u8>(), 0..200),
        max in 0usize..300,
        points in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let pieces = chunks(&input, &points);

        let line = || LineDecoder::new().with_max_length(max);
        prop_assert_eq!(decode_lines(line, &pieces), decode_lines(line, &[&input]));

        let ns = || NetstringDecoder::new().with_max_length(max);
        prop_assert_eq!(run_netstring(ns, &pieces), run_netstring(ns, &[&input]));

        for w in [PrefixWidth::U8, PrefixWidth::U16, PrefixWidth::U32] {
            let pf = || PrefixedDecoder::new(w).with_max_length(max);
            prop_assert_eq!(run_prefixed(pf, &pieces), run_prefixed(pf, &[&input]));
        }
    }

    #[test]
    fn netstring_like_noise_never_panics(
        input in proptest::collection::vec(
            prop_oneof![Just(b'0'), Just(b'1'), Just(b'9'), Just(b':'), Just(b','), any::<u8>()],
            0..80,
        ),
        max in 0usize..20,
        points in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let ns = || NetstringDecoder::new().with_max_length(max);
        let whole = run_netstring(ns, &[&input]);
        prop_assert_eq!(run_netstring(ns, &chunks(&input, &points)), whole.clone());
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(run_netstring(ns, &bytes), whole.clone());
        if let (_, Some(e)) = &whole {
            prop_assert!(e.offset() < input.len() as u64);
            prop_assert!(!e.to_string().is_empty());
        }
    }
}
