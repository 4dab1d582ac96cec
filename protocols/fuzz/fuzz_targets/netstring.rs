//! Feeds arbitrary bytes to `NetstringDecoder`, whole and in pieces; the
//! payloads and the error must agree, and every payload must encode back to
//! the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torsion_protocols::{Bytes, BytesMut, NetstringDecoder, NetstringError};

fn run(max: usize, pieces: &[&[u8]]) -> (Vec<Bytes>, Option<NetstringError>) {
    let mut dec = NetstringDecoder::new().with_max_length(max);
    let mut frames = Vec::new();
    for piece in pieces {
        dec.push(piece);
        loop {
            match dec.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(dec.next_frame(), Err(e.clone()));
                    return (frames, Some(e));
                }
            }
        }
    }
    (frames, None)
}

fuzz_target!(|data: &[u8]| {
    let [max, step, input @ ..] = data else {
        return;
    };
    let max = usize::from(*max) * 4;
    let step = usize::from(*step).max(1);
    let whole = run(max, &[input]);
    let pieces: Vec<&[u8]> = input.chunks(step).collect();
    assert_eq!(run(max, &pieces), whole);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run(max, &bytes), whole);

    // The accepted prefix of the input is exactly the re-encoded payloads.
    let enc = NetstringDecoder::new().with_max_length(max).encoder();
    let mut wire = BytesMut::new();
    for frame in &whole.0 {
        enc.encode(frame, &mut wire)
            .expect("a decoded payload must encode");
    }
    assert!(input.starts_with(&wire));
    if let Some(e) = &whole.1 {
        assert!(e.offset() >= wire.len() as u64 && e.offset() < input.len() as u64);
    }
});
