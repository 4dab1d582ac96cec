//! Feeds arbitrary bytes to `LineDecoder`, whole and in pieces, with mode
//! switches driven by the data; the events must agree and every decoded
//! line must be accepted back by the matching encoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torsion_protocols::{BytesMut, LineDecoder, LineEvent};

fn run(delim: &[u8], max: usize, strip_cr: bool, pieces: &[&[u8]]) -> (Vec<LineEvent>, usize) {
    let mut dec = LineDecoder::new()
        .with_delimiter(delim)
        .with_max_length(max)
        .with_strip_cr(strip_cr);
    let enc = dec.encoder();
    let mut out: Vec<LineEvent> = Vec::new();
    for piece in pieces {
        dec.push(piece);
        while let Some(event) = dec.next_event() {
            match &event {
                LineEvent::Line(line) => {
                    let mut wire = BytesMut::new();
                    enc.encode(line, &mut wire)
                        .expect("a decoded line must encode");
                    match line.first() {
                        Some(b'R') => dec.set_raw_mode_for(line.len()),
                        Some(b'S') => dec.set_raw_mode(),
                        _ => {}
                    }
                }
                LineEvent::TooLong(prefix) => assert_eq!(prefix.len(), max + 1),
                LineEvent::Raw(raw) => {
                    assert!(!raw.is_empty());
                    if let Some(at) = raw.iter().position(|&b| b == b'L') {
                        push_raw(&mut out, &raw[..=at]);
                        dec.set_line_mode_with(&raw[at + 1..]);
                    } else {
                        push_raw(&mut out, raw);
                    }
                    continue;
                }
            }
            out.push(event);
        }
    }
    (out, dec.buffered_len())
}

/// Raw data is compared as one run, however it was cut.
fn push_raw(out: &mut Vec<LineEvent>, raw: &[u8]) {
    if let Some(LineEvent::Raw(prev)) = out.last_mut() {
        let mut joined = BytesMut::from(&prev[..]);
        joined.extend_from_slice(raw);
        *prev = joined.freeze();
    } else {
        out.push(LineEvent::Raw(BytesMut::from(raw).freeze()));
    }
}

fuzz_target!(|data: &[u8]| {
    let [config, max, step, input @ ..] = data else {
        return;
    };
    let delim: &[u8] = match config % 4 {
        0 => b"\r\n",
        1 => b"\n",
        2 => b"aba",
        _ => b"--",
    };
    let strip_cr = config & 4 != 0;
    let max = usize::from(*max);
    let step = usize::from(*step).max(1);
    let whole = run(delim, max, strip_cr, &[input]);
    let pieces: Vec<&[u8]> = input.chunks(step).collect();
    assert_eq!(run(delim, max, strip_cr, &pieces), whole);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run(delim, max, strip_cr, &bytes), whole);
});
