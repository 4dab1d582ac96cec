//! Netstrings (`LEN:DATA,`): a sans-I/O [`NetstringDecoder`] and a
//! [`NetstringEncoder`].
//!
//! # Strictness
//!
//! The decoder follows D. J. Bernstein's netstring definition to the letter
//! and rejects everything else, as Twisted's `NetstringReceiver` does:
//!
//! - the length is one or more ASCII digits, then `:`; an empty length (`:`),
//!   a sign, a space or any other byte is an error;
//! - no leading zeros: `0:,` is the empty string, `03:abc,` is an error;
//! - the payload is followed by exactly `,`; any other byte is an error;
//! - a length above `max_length` (99,999 by default, as in Twisted) is an
//!   error as soon as the digits read so far exceed it, so neither an
//!   endless run of digits nor a huge payload is ever buffered.
//!
//! Every error is detected at the first byte that proves it, so it is the
//! same however the bytes are split. After an error the decoder stays failed:
//! it returns the same error from then on and drops whatever is pushed, since
//! the rest of the stream cannot be framed. The protocol adapter closes the
//! connection.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{EncodeError, NetstringError, NetstringErrorKind};

/// The default maximum netstring payload length, in bytes (Twisted's
/// `MAX_LENGTH`).
pub const DEFAULT_MAX_NETSTRING_LENGTH: usize = 99_999;

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading the length prefix: its value so far and how many digits.
    Length {
        value: usize,
        digits: usize,
    },
    /// Waiting for `len` payload bytes and the comma.
    Payload {
        len: usize,
    },
    Failed(NetstringError),
}

/// Splits a byte stream of netstrings into payloads (Twisted's
/// `NetstringReceiver`, without the I/O). See the [module
/// documentation](self) for what is accepted.
///
/// Push received bytes with [`push`](Self::push), then call
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)` (more bytes
/// needed) or an error (the stream is broken; close the connection).
/// Payloads are [`Bytes`] sharing the receive buffer.
///
/// # Example
///
/// ```
/// use torsion_protocols::{NetstringDecoder, NetstringErrorKind};
///
/// let mut dec = NetstringDecoder::new();
/// dec.push(b"5:hello,0:,3:ab");
/// assert_eq!(dec.next_frame().unwrap().unwrap(), "hello");
/// assert_eq!(dec.next_frame().unwrap().unwrap(), "");
/// assert_eq!(dec.next_frame(), Ok(None)); // waiting for "c,"
///
/// dec.push(b"c;");
/// let err = dec.next_frame().unwrap_err();
/// assert_eq!(err.kind(), NetstringErrorKind::MissingComma { found: b';' });
/// assert_eq!(err.offset(), 16); // the `;`
/// ```
#[derive(Debug, Clone)]
pub struct NetstringDecoder {
    buf: BytesMut,
    max_length: usize,
    state: State,
    /// Stream position of `buf[0]`.
    offset: u64,
}

impl Default for NetstringDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl NetstringDecoder {
    /// A decoder accepting payloads of up to 99,999 bytes.
    pub fn new() -> Self {
        NetstringDecoder {
            buf: BytesMut::new(),
            max_length: DEFAULT_MAX_NETSTRING_LENGTH,
            state: State::Length {
                value: 0,
                digits: 0,
            },
            offset: 0,
        }
    }

    /// Accepts payloads of up to `max_length` bytes instead of 99,999.
    pub fn with_max_length(mut self, max_length: usize) -> Self {
        self.max_length = max_length;
        self
    }

    /// The longest payload accepted.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// An encoder with the same maximum length.
    pub fn encoder(&self) -> NetstringEncoder {
        NetstringEncoder {
            max_length: self.max_length,
        }
    }

    /// Appends received bytes. Nothing is parsed until
    /// [`next_frame`](Self::next_frame) is called. Once the decoder has
    /// failed, pushed bytes are dropped.
    pub fn push(&mut self, data: &[u8]) {
        if !matches!(self.state, State::Failed(_)) {
            self.buf.extend_from_slice(data);
        }
    }

    /// Number of bytes pushed and not yet consumed.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// The error the decoder failed with, if it has.
    pub fn error(&self) -> Option<&NetstringError> {
        match &self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Returns the next payload, or `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    ///
    /// A [`NetstringError`] when the stream is malformed or declares a payload
    /// longer than `max_length`. The decoder then stays failed and returns the
    /// same error on every later call.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, NetstringError> {
        loop {
            match self.state {
                State::Failed(ref e) => return Err(e.clone()),
                State::Length { value, digits } => {
                    if !self.read_length(value, digits) {
                        return Ok(None);
                    }
                }
                State::Payload { len } => {
                    if self.buf.len() <= len {
                        reserve_for(&mut self.buf, len + 1);
                        return Ok(None);
                    }
                    let found = self.buf[len];
                    if found != b',' {
                        self.fail(NetstringErrorKind::MissingComma { found }, len);
                        continue;
                    }
                    let payload = self.buf.split_to(len).freeze();
                    self.buf.advance(1);
                    self.offset += len as u64 + 1;
                    self.state = State::Length {
                        value: 0,
                        digits: 0,
                    };
                    return Ok(Some(payload));
                }
            }
        }
    }

    /// Parses length bytes from the buffer; returns whether the state changed
    /// (to `Payload` or `Failed`).
    fn read_length(&mut self, mut value: usize, mut digits: usize) -> bool {
        for i in 0..self.buf.len() {
            let byte = self.buf[i];
            let error = match byte {
                b'0'..=b'9' if digits == 1 && value == 0 => Some(NetstringErrorKind::LeadingZero),
                b'0'..=b'9' => {
                    let next = value
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(usize::from(byte - b'0')));
                    match next {
                        Some(v) if v <= self.max_length => {
                            value = v;
                            digits += 1;
                            None
                        }
                        _ => Some(NetstringErrorKind::TooLong {
                            at_least: next.unwrap_or(usize::MAX),
                            max: self.max_length,
                        }),
                    }
                }
                b':' if digits == 0 => Some(NetstringErrorKind::EmptyLength),
                b':' => {
                    self.buf.advance(i + 1);
                    self.offset += i as u64 + 1;
                    self.state = State::Payload { len: value };
                    return true;
                }
                _ => Some(NetstringErrorKind::InvalidLengthByte { byte }),
            };
            if let Some(kind) = error {
                self.fail(kind, i);
                return true;
            }
        }
        // All buffered bytes were digits: consume them, keep the value.
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        self.state = State::Length { value, digits };
        false
    }

    fn fail(&mut self, kind: NetstringErrorKind, at: usize) {
        self.state = State::Failed(NetstringError {
            kind,
            offset: self.offset + at as u64,
        });
        self.buf = BytesMut::new();
    }
}

/// The most a decoder reserves ahead of the bytes it was sent.
const MAX_EAGER_RESERVE: usize = 64 * 1024;

/// Makes room in `buf` for a frame of `total` bytes, so that it is not
/// reallocated on every push; but at most 64 KiB ahead of what arrived, so
/// that a peer declaring a large frame does not get it allocated for free.
pub(crate) fn reserve_for(buf: &mut BytesMut, total: usize) {
    let missing = total.saturating_sub(buf.len()).min(MAX_EAGER_RESERVE);
    buf.reserve(missing);
}

/// Writes netstrings (Twisted's `NetstringReceiver.sendString`), refusing
/// payloads longer than `max_length`, which a peer with the same settings
/// would reject.
///
/// # Example
///
/// ```
/// use torsion_protocols::{BytesMut, EncodeError, NetstringEncoder};
///
/// let enc = NetstringEncoder::new().with_max_length(5);
/// let mut out = BytesMut::new();
/// enc.encode(b"hello", &mut out).unwrap();
/// enc.encode(b"", &mut out).unwrap();
/// assert_eq!(&out[..], b"5:hello,0:,");
/// assert_eq!(
///     enc.encode(b"hello!", &mut out),
///     Err(EncodeError::TooLong { length: 6, max: 5 })
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetstringEncoder {
    max_length: usize,
}

impl Default for NetstringEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl NetstringEncoder {
    /// An encoder for payloads of up to 99,999 bytes.
    pub fn new() -> Self {
        NetstringEncoder {
            max_length: DEFAULT_MAX_NETSTRING_LENGTH,
        }
    }

    /// Sends payloads of up to `max_length` bytes instead of 99,999.
    pub fn with_max_length(mut self, max_length: usize) -> Self {
        self.max_length = max_length;
        self
    }

    /// The longest payload sent.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Appends `payload` as a netstring to `dst`.
    ///
    /// # Errors
    ///
    /// [`EncodeError::TooLong`] if `payload` is longer than `max_length`;
    /// `dst` is then left as it was.
    pub fn encode(&self, payload: &[u8], dst: &mut BytesMut) -> Result<(), EncodeError> {
        if payload.len() > self.max_length {
            return Err(EncodeError::TooLong {
                length: payload.len(),
                max: self.max_length,
            });
        }
        // Decimal digits of the length, most significant first.
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut n = payload.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        dst.reserve(digits.len() - at + payload.len() + 2);
        dst.extend_from_slice(&digits[at..]);
        dst.extend_from_slice(b":");
        dst.extend_from_slice(payload);
        dst.extend_from_slice(b",");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outcome = (Vec<Bytes>, Option<NetstringError>);

    fn feed(make: &dyn Fn() -> NetstringDecoder, chunks: &[&[u8]]) -> Outcome {
        let mut dec = make();
        let mut frames = Vec::new();
        for c in chunks {
            dec.push(c);
            loop {
                match dec.next_frame() {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) => break,
                    Err(e) => {
                        // Sticky, and later bytes change nothing.
                        assert_eq!(dec.next_frame(), Err(e.clone()));
                        dec.push(b"1:a,");
                        assert_eq!(dec.next_frame(), Err(e.clone()));
                        assert_eq!(dec.error(), Some(&e));
                        return (frames, Some(e));
                    }
                }
            }
        }
        (frames, None)
    }

    fn all_splits(make: &dyn Fn() -> NetstringDecoder, input: &[u8]) -> Outcome {
        let whole = feed(make, &[input]);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(feed(make, &bytes), whole, "byte by byte: {input:?}");
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(feed(make, &[a, b]), whole, "split at {i}");
            for j in i..=input.len() {
                let (b1, b2) = b.split_at(j - i);
                assert_eq!(feed(make, &[a, b1, b2]), whole, "split at {i},{j}");
            }
        }
        whole
    }

    fn frames(list: &[&[u8]]) -> Vec<Bytes> {
        list.iter().map(|f| Bytes::copy_from_slice(f)).collect()
    }

    fn err(kind: NetstringErrorKind, offset: u64) -> Option<NetstringError> {
        Some(NetstringError { kind, offset })
    }

    #[test]
    fn valid_netstrings() {
        let out = all_splits(&NetstringDecoder::new, b"3:abc,0:,12:hello world!,1:,,");
        assert_eq!(out, (frames(&[b"abc", b"", b"hello world!", b","]), None));
    }

    #[test]
    fn max_length_edges() {
        let make = || NetstringDecoder::new().with_max_length(3);
        assert_eq!(all_splits(&make, b"3:abc,"), (frames(&[b"abc"]), None));
        let too_long = NetstringErrorKind::TooLong {
            at_least: 4,
            max: 3,
        };
        assert_eq!(
            all_splits(&make, b"3:abc,4:abcd,"),
            (frames(&[b"abc"]), err(too_long, 6))
        );
        // Detected from the digits, before the colon.
        let make = || NetstringDecoder::new().with_max_length(99);
        let too_long = NetstringErrorKind::TooLong {
            at_least: 100,
            max: 99,
        };
        assert_eq!(all_splits(&make, b"100"), (vec![], err(too_long, 2)));
        let make = || NetstringDecoder::new().with_max_length(0);
        assert_eq!(all_splits(&make, b"0:,0:,"), (frames(&[b"", b""]), None));
    }

    #[test]
    fn default_max_length_is_twisteds() {
        let mut dec = NetstringDecoder::new();
        dec.push(b"99999:");
        assert_eq!(dec.next_frame(), Ok(None));
        let mut dec = NetstringDecoder::new();
        dec.push(b"100000:");
        let e = dec.next_frame().unwrap_err();
        assert_eq!(
            e.kind(),
            NetstringErrorKind::TooLong {
                at_least: 100_000,
                max: 99_999
            }
        );
        assert_eq!(e.offset(), 5);
    }

    #[test]
    fn huge_lengths_do_not_overflow() {
        let make = || NetstringDecoder::new().with_max_length(usize::MAX);
        let (f, e) = all_splits(&make, b"99999999999999999999999999:");
        assert!(f.is_empty());
        let e = e.unwrap();
        assert_eq!(
            e.kind(),
            NetstringErrorKind::TooLong {
                at_least: usize::MAX,
                max: usize::MAX
            }
        );
        // The first digit that overflows a usize is the error.
        assert_eq!(e.offset(), u64::from(usize::MAX.ilog10()));
    }

    #[test]
    fn a_large_declared_length_is_not_allocated_up_front() {
        let mut dec = NetstringDecoder::new().with_max_length(usize::MAX);
        dec.push(b"1000000000:abc");
        assert_eq!(dec.next_frame(), Ok(None));
        assert!(
            dec.buf.capacity() <= 2 * MAX_EAGER_RESERVE,
            "{}",
            dec.buf.capacity()
        );
        // Small payloads get all their room at once.
        let mut dec = NetstringDecoder::new();
        dec.push(b"5000:a");
        assert_eq!(dec.next_frame(), Ok(None));
        assert!(dec.buf.capacity() > 5000);
    }

    #[test]
    fn malformed_prefixes() {
        use NetstringErrorKind::*;
        let d = &NetstringDecoder::new;
        assert_eq!(all_splits(d, b"03:abc,"), (vec![], err(LeadingZero, 1)));
        assert_eq!(all_splits(d, b"00:,"), (vec![], err(LeadingZero, 1)));
        assert_eq!(all_splits(d, b":abc,"), (vec![], err(EmptyLength, 0)));
        assert_eq!(
            all_splits(d, b"abc"),
            (vec![], err(InvalidLengthByte { byte: b'a' }, 0))
        );
        assert_eq!(
            all_splits(d, b"-1:a,"),
            (vec![], err(InvalidLengthByte { byte: b'-' }, 0))
        );
        assert_eq!(
            all_splits(d, b" 1:a,"),
            (vec![], err(InvalidLengthByte { byte: b' ' }, 0))
        );
        assert_eq!(
            all_splits(d, b"1 :a,"),
            (vec![], err(InvalidLengthByte { byte: b' ' }, 1))
        );
        assert_eq!(
            all_splits(d, b"+1:a,"),
            (vec![], err(InvalidLengthByte { byte: b'+' }, 0))
        );
        assert_eq!(
            all_splits(d, b"1:a,\r\n1:b,"),
            (frames(&[b"a"]), err(InvalidLengthByte { byte: b'\r' }, 4))
        );
    }

    #[test]
    fn missing_comma() {
        use NetstringErrorKind::*;
        let d = &NetstringDecoder::new;
        assert_eq!(
            all_splits(d, b"3:abc;"),
            (vec![], err(MissingComma { found: b';' }, 5))
        );
        assert_eq!(
            all_splits(d, b"3:abcd,"),
            (vec![], err(MissingComma { found: b'd' }, 5))
        );
        assert_eq!(
            all_splits(d, b"0::"),
            (vec![], err(MissingComma { found: b':' }, 2))
        );
        // Short payload: still waiting, no error yet.
        assert_eq!(all_splits(d, b"3:ab"), (vec![], None));
    }

    #[test]
    fn errors_read_as_sentences() {
        let mut dec = NetstringDecoder::new();
        dec.push(b"3:abc;");
        let e = dec.next_frame().unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed netstring at byte 5 of the stream: expected ',' after the payload, \
             found byte 0x3b (';') (the payload is longer than its length prefix says)"
        );
        let mut dec = NetstringDecoder::new();
        dec.push(b"\x00");
        let e = dec.next_frame().unwrap_err();
        assert!(e.to_string().ends_with("found byte 0x00"), "{e}");
    }

    #[test]
    fn encoder_round_trips() {
        let enc = NetstringEncoder::new();
        let mut out = BytesMut::new();
        let payloads: [&[u8]; 4] = [b"", b"a", &[b','; 10], &[7u8; 1234]];
        for p in payloads {
            enc.encode(p, &mut out).unwrap();
        }
        assert!(out.starts_with(b"0:,1:a,10:,,,,,,,,,,,1234:"));
        let mut dec = NetstringDecoder::new();
        dec.push(&out);
        for p in payloads {
            assert_eq!(&dec.next_frame().unwrap().unwrap()[..], p);
        }
        assert_eq!(dec.next_frame(), Ok(None));
        assert_eq!(dec.buffered_len(), 0);
    }

    #[test]
    fn encoder_refuses_oversize_payloads() {
        let enc = NetstringDecoder::new().with_max_length(2).encoder();
        let mut out = BytesMut::from(&b"x"[..]);
        assert_eq!(
            enc.encode(b"abc", &mut out),
            Err(EncodeError::TooLong { length: 3, max: 2 })
        );
        assert_eq!(&out[..], b"x");
    }
}
