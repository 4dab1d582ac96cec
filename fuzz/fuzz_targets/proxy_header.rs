//! PROXY protocol headers, as a load balancer (or anyone who can reach a `haproxy:` port)
//! sends them: no input makes the parser panic or read past what it was given; bytes fed
//! one at a time give the same answer as all at once; a header that parses encodes to
//! bytes that parse back to the same header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torsion_endpoints::haproxy::{HeaderReader, parse_header};

fuzz_target!(|data: &[u8]| {
    let whole = parse_header(data, 4096);
    if let Ok(Some((_, used))) = &whole {
        assert!(*used <= data.len(), "a header never takes more than it was given");
    }
    // The same bytes in pieces: the same header, the same place where it ends.
    let mut reader = HeaderReader::with_max_len(4096);
    let mut pieces = None;
    for (at, byte) in data.iter().enumerate() {
        match reader.feed(std::slice::from_ref(byte)) {
            Ok(Some((header, used))) => {
                pieces = Some(Ok((header, at + used)));
                break;
            }
            Ok(None) => {}
            Err(err) => {
                pieces = Some(Err(err.kind()));
                break;
            }
        }
    }
    match (&whole, &pieces) {
        (Ok(Some((a, used))), Some(Ok((b, end)))) => {
            assert_eq!(a, b, "in pieces, the same header");
            assert_eq!(used, end, "in pieces, the header ends at the same byte");
            // What parses encodes, and reads back the same.
            if let Ok(bytes) = a.encode() {
                match parse_header(&bytes, 4096) {
                    Ok(Some((again, n))) => {
                        assert_eq!(&again, a, "encoded and parsed back");
                        assert_eq!(n, bytes.len());
                    }
                    other => panic!("an encoded header does not parse back: {other:?}"),
                }
            }
        }
        (Err(a), Some(Err(b))) => assert_eq!(a.kind(), *b, "in pieces, the same error"),
        (Ok(None), None) => {}
        (a, b) => panic!("whole: {a:?}, in pieces: {b:?}"),
    }
});
