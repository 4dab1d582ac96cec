//! Delimiter search shared by the line decoder and the line encoder.
//!
//! The search is resumable: the caller passes the index where the previous
//! search stopped, so feeding a long line in small pieces never rescans bytes
//! already known not to start a delimiter.

/// What a delimiter search found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Search {
    /// A complete delimiter starts at this index (the leftmost one).
    Found(usize),
    /// No complete delimiter starts before this index, and the bytes from this
    /// index to the end of the buffer are a proper prefix of the delimiter: a
    /// later push may complete it, so the next search must resume here.
    Partial(usize),
    /// No delimiter starts, or can start, at any index in `from..end` (the
    /// value is `end`): the next search may resume there.
    NotFound(usize),
}

/// Finds the leftmost index `i` in `from..end` where `delimiter` starts in
/// `hay`, or where `hay[i..]` is a proper prefix of `delimiter`.
///
/// `end` is clamped to `hay.len()`; only start positions below it are
/// examined, although checking a candidate may read past it. `work` is
/// increased by the number of bytes looked at, so tests can check that
/// parsing stays linear.
pub(crate) fn find(
    hay: &[u8],
    delimiter: &[u8],
    from: usize,
    end: usize,
    work: &mut u64,
) -> Search {
    let end = end.min(hay.len());
    let Some((&first, _)) = delimiter.split_first() else {
        // An empty delimiter is rejected when configured; treat it as
        // matching at once so that nothing here can loop.
        return Search::Found(from.min(hay.len()));
    };
    let mut pos = from;
    while pos < end {
        let Some(off) = find_byte(first, &hay[pos..end]) else {
            *work += (end - pos) as u64;
            return Search::NotFound(end);
        };
        let cand = pos + off;
        *work += (off + 1) as u64;
        let rest = &hay[cand..];
        if rest.len() >= delimiter.len() {
            *work += delimiter.len() as u64 - 1;
            if rest[..delimiter.len()] == *delimiter {
                return Search::Found(cand);
            }
        } else {
            *work += rest.len() as u64 - 1;
            if delimiter.starts_with(rest) {
                return Search::Partial(cand);
            }
        }
        pos = cand + 1;
    }
    Search::NotFound(end.max(from))
}

/// Returns the index of the first `needle` byte in `hay`.
///
/// Looks at sixteen bytes per step with the word-at-a-time "has zero byte"
/// trick, in safe code: XOR with the needle turns matches into zero bytes,
/// and in little-endian order the lowest flagged byte is the first match
/// (borrows only ever flag bytes after a real zero, never before one).
pub(crate) fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(needle);
    let zero_bytes = |word: u64| {
        let x = word ^ pattern;
        x.wrapping_sub(LO) & !x & HI
    };
    let mut chunks = hay.chunks_exact(16);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        lo.copy_from_slice(&chunk[..8]);
        hi.copy_from_slice(&chunk[8..]);
        let a = zero_bytes(u64::from_le_bytes(lo));
        let b = zero_bytes(u64::from_le_bytes(hi));
        if a | b != 0 {
            return Some(if a != 0 {
                base + (a.trailing_zeros() / 8) as usize
            } else {
                base + 8 + (b.trailing_zeros() / 8) as usize
            });
        }
        base += 16;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|i| base + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_find(hay: &[u8], d: &[u8], from: usize, end: usize) -> Search {
        let end = end.min(hay.len());
        for i in from..end {
            let rest = &hay[i..];
            if rest.len() >= d.len() {
                if rest[..d.len()] == *d {
                    return Search::Found(i);
                }
            } else if d.starts_with(rest) {
                return Search::Partial(i);
            }
        }
        Search::NotFound(end.max(from))
    }

    #[test]
    fn find_byte_matches_position_everywhere() {
        let mut hay = vec![0xaau8; 70];
        assert_eq!(find_byte(b'\n', &hay), None);
        for i in 0..hay.len() {
            hay[i] = b'\n';
            for start in 0..=i {
                assert_eq!(find_byte(b'\n', &hay[start..]), Some(i - start));
            }
            hay[i] = 0xaa;
        }
        // Bytes that differ from the needle only in the high bit, and the
        // values around it, must not be mistaken for it.
        let tricky: Vec<u8> = (0..=255u8).filter(|&b| b != 0x0a).collect();
        assert_eq!(find_byte(0x0a, &tricky), None);
        for needle in [0u8, 1, 0x7f, 0x80, 0xff] {
            let hay: Vec<u8> = (0..=255u8).rev().collect();
            assert_eq!(find_byte(needle, &hay), Some(255 - needle as usize));
        }
    }

    #[test]
    fn find_agrees_with_naive_search() {
        let delims: [&[u8]; 5] = [b"\r\n", b"\n", b"aab", b"aba", b"abc"];
        let alphabet = b"abc\r\n";
        // All strings over the alphabet up to length 6.
        let mut hays: Vec<Vec<u8>> = vec![vec![]];
        let mut frontier: Vec<Vec<u8>> = vec![vec![]];
        for _ in 0..6 {
            let mut next = Vec::new();
            for h in &frontier {
                for &c in alphabet {
                    let mut h2 = h.clone();
                    h2.push(c);
                    next.push(h2);
                }
            }
            hays.extend(next.iter().cloned());
            frontier = next;
        }
        for d in delims {
            for h in &hays {
                for from in 0..=h.len() {
                    for end in [from, from + 1, h.len(), usize::MAX] {
                        let mut work = 0;
                        assert_eq!(
                            find(h, d, from, end, &mut work),
                            naive_find(h, d, from, end),
                            "hay {h:?} delim {d:?} from {from} end {end}"
                        );
                    }
                }
            }
        }
    }
}
