//! The byte pattern every connection sends, so every echoed byte can be checked.
//!
//! Byte `p` of connection `c`'s stream is `TABLE[(p + c * STEP) mod PERIOD]`, where `TABLE` is
//! pseudo-random and `PERIOD` is prime: the pattern varies with the position and with the
//! connection, so a lost, duplicated, reordered or cross-connection byte run is caught (it
//! would have to be shifted by an exact multiple of `PERIOD` to pass). The table is stored with
//! `MAX_CHUNK` extra bytes so that any run of up to `MAX_CHUNK` bytes is one contiguous slice:
//! checking is a `memcmp`, cheap enough for gigabytes per second.

use std::sync::OnceLock;

/// Longest slice `slice` hands out (reads and writes are split to this size).
pub const MAX_CHUNK: usize = 64 * 1024;
const PERIOD: u64 = 65_537; // prime
const STEP: u64 = 7_919; // prime, so connections start at different phases

fn table() -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut t = Vec::with_capacity(PERIOD as usize + MAX_CHUNK);
        for _ in 0..PERIOD {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            t.push((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8);
        }
        let head: Vec<u8> = t[..MAX_CHUNK].to_vec();
        t.extend_from_slice(&head);
        t
    })
}

/// The `n` bytes (n <= MAX_CHUNK) of connection `conn`'s stream starting at offset `pos`.
pub fn slice(conn: u64, pos: u64, n: usize) -> &'static [u8] {
    assert!(
        n <= MAX_CHUNK,
        "pattern slice of {n} bytes is longer than {MAX_CHUNK}"
    );
    let start = ((pos % PERIOD + (conn % PERIOD) * STEP % PERIOD) % PERIOD) as usize;
    &table()[start..start + n]
}

/// Checks that `data` is what connection `conn` sent at stream offset `pos`.
pub fn verify(conn: u64, pos: u64, data: &[u8]) -> Result<(), String> {
    let mut off = 0;
    while off < data.len() {
        let n = (data.len() - off).min(MAX_CHUNK);
        let want = slice(conn, pos + off as u64, n);
        let got = &data[off..off + n];
        if want != got {
            let i = want.iter().zip(got).position(|(a, b)| a != b).unwrap_or(0);
            return Err(format!(
                "connection {conn}: echoed byte at stream offset {} is {:#04x}, expected {:#04x}",
                pos + (off + i) as u64,
                got[i],
                want[i]
            ));
        }
        off += n;
    }
    Ok(())
}

/// Printable bytes (`!`..`~`) for line streams, one per position of the period.
fn printable() -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    TABLE.get_or_init(|| table().iter().map(|&b| b'!' + b % 94).collect())
}

/// Appends `n` bytes of connection `conn`'s *line* stream from offset `pos` to `out`: lines
/// of `size` bytes, each `size - 1` printable bytes and a `\n` (so every line differs by
/// position and connection, and a server that answers each line with itself answers with
/// exactly this stream).
pub fn lines(conn: u64, pos: u64, n: usize, size: usize, out: &mut Vec<u8>) {
    let t = printable();
    let base = (conn % PERIOD) * STEP % PERIOD;
    out.reserve(n);
    for p in pos..pos + n as u64 {
        if p % size as u64 == size as u64 - 1 {
            out.push(b'\n');
        } else {
            out.push(t[((p % PERIOD + base) % PERIOD) as usize]);
        }
    }
}

/// Checks that `data` is what connection `conn`'s line stream holds at offset `pos`.
pub fn verify_lines(
    conn: u64,
    pos: u64,
    data: &[u8],
    size: usize,
    scratch: &mut Vec<u8>,
) -> Result<(), String> {
    scratch.clear();
    lines(conn, pos, data.len(), size, scratch);
    if scratch[..] != *data {
        let i = scratch.iter().zip(data).position(|(a, b)| a != b).unwrap_or(0);
        return Err(format!(
            "connection {conn}: answered byte at stream offset {} is {:#04x}, expected {:#04x}",
            pos + i as u64,
            data[i],
            scratch[i]
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varies_by_connection_and_position() {
        assert_ne!(slice(0, 0, 64), slice(1, 0, 64));
        assert_ne!(slice(0, 0, 64), slice(0, 64, 64));
        assert_eq!(&slice(3, 100, 64)[10..], slice(3, 110, 54));
        // wraps around the period seamlessly
        let a = slice(0, PERIOD - 10, 20);
        assert_eq!(&a[10..], slice(0, 0, 10));
    }

    #[test]
    fn line_streams_are_printable_lines() {
        let mut a = Vec::new();
        lines(3, 0, 96, 32, &mut a);
        assert_eq!(a.iter().filter(|&&b| b == b'\n').count(), 3);
        assert_eq!(a[31], b'\n');
        assert!(a.iter().all(|&b| b == b'\n' || (b'!'..=b'~').contains(&b)));
        let mut b = Vec::new();
        lines(3, 40, 56, 32, &mut b);
        assert_eq!(&a[40..], &b[..]);
        let mut s = Vec::new();
        assert!(verify_lines(3, 40, &b, 32, &mut s).is_ok());
        assert!(verify_lines(4, 40, &b, 32, &mut s).is_err());
    }

    #[test]
    fn verify_catches_a_shift() {
        assert!(verify(5, 1000, slice(5, 1000, 5000)).is_ok());
        assert!(verify(5, 1000, slice(5, 1001, 5000)).is_err());
        assert!(verify(5, 1000, slice(6, 1000, 5000)).is_err());
        let big: Vec<u8> = (0..3u64)
            .flat_map(|k| slice(9, k * MAX_CHUNK as u64, MAX_CHUNK).to_vec())
            .collect();
        assert!(verify(9, 0, &big).is_ok());
    }
}
