//! Feeds arbitrary bytes to `PrefixedDecoder` of each width, whole and in
//! pieces; the frames and the error must agree, and every frame must encode
//! back to the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torsion_protocols::{Bytes, BytesMut, PrefixWidth, PrefixedDecoder, PrefixedError};

fn run(width: PrefixWidth, max: usize, pieces: &[&[u8]]) -> (Vec<Bytes>, Option<PrefixedError>) {
    let mut dec = PrefixedDecoder::new(width).with_max_length(max);
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
    let [config, max_hi, max_lo, step, input @ ..] = data else {
        return;
    };
    let width = match config % 3 {
        0 => PrefixWidth::U8,
        1 => PrefixWidth::U16,
        _ => PrefixWidth::U32,
    };
    let max = usize::from(u16::from_be_bytes([*max_hi, *max_lo]));
    let step = usize::from(*step).max(1);
    let whole = run(width, max, &[input]);
    let pieces: Vec<&[u8]> = input.chunks(step).collect();
    assert_eq!(run(width, max, &pieces), whole);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run(width, max, &bytes), whole);

    let enc = PrefixedDecoder::new(width).with_max_length(max).encoder();
    let mut wire = BytesMut::new();
    for frame in &whole.0 {
        enc.encode(frame, &mut wire)
            .expect("a decoded frame must encode");
    }
    assert!(input.starts_with(&wire));
    if let Some(e) = &whole.1 {
        assert_eq!(e.offset(), wire.len() as u64);
        assert!(e.length() > e.max() as u64);
    }
});
