//! Length-prefixed frames: a big-endian unsigned 8, 16 or 32-bit length,
//! then that many bytes (Twisted's `Int8StringReceiver`,
//! `Int16StringReceiver` and `Int32StringReceiver`).
//!
//! Both sides check `max_length`: the [`PrefixedDecoder`] rejects a prefix
//! declaring more, before buffering any of the body, and the
//! [`PrefixedEncoder`] refuses to send more (Twisted only checks what it
//! receives, so its `Int32StringReceiver` sends frames its own receiver
//! rejects). The range of the prefix is a hard limit as well: `max_length` is
//! capped at 255 for 8-bit prefixes and 65,535 for 16-bit ones, so an
//! encoder can never write a prefix that wrapped around.
//!
//! After an error the decoder stays failed: it returns the same error from
//! then on and drops whatever is pushed.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{EncodeError, PrefixedError};

/// The default maximum frame length, in bytes (Twisted's `MAX_LENGTH`),
/// before capping to the prefix's range.
pub const DEFAULT_MAX_PREFIXED_LENGTH: usize = 99_999;

/// The size of a length prefix. All are big-endian (network byte order) and
/// unsigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrefixWidth {
    /// One byte: frames of up to 255 bytes.
    U8,
    /// Two bytes: frames of up to 65,535 bytes.
    U16,
    /// Four bytes: frames of up to 4,294,967,295 bytes (on 64-bit targets).
    U32,
}

impl PrefixWidth {
    /// The number of bytes the prefix takes: 1, 2 or 4.
    pub const fn size(self) -> usize {
        match self {
            PrefixWidth::U8 => 1,
            PrefixWidth::U16 => 2,
            PrefixWidth::U32 => 4,
        }
    }

    /// The largest frame length the prefix can express (capped at
    /// `usize::MAX` on targets where `u32` does not fit).
    pub const fn limit(self) -> usize {
        let max = match self {
            PrefixWidth::U8 => u8::MAX as u64,
            PrefixWidth::U16 => u16::MAX as u64,
            PrefixWidth::U32 => u32::MAX as u64,
        };
        if max > usize::MAX as u64 {
            usize::MAX
        } else {
            max as usize
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Header,
    Body { len: usize },
    Failed(PrefixedError),
}

/// Splits a byte stream of length-prefixed frames into frames, without I/O.
///
/// Push received bytes with [`push`](Self::push), then call
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)` (more bytes
/// needed) or an error (the peer declared a frame longer than `max_length`;
/// close the connection). Frames are [`Bytes`] sharing the receive buffer.
///
/// # Example
///
/// ```
/// use torsion_protocols::PrefixedDecoder;
///
/// let mut dec = PrefixedDecoder::int16().with_max_length(4);
/// dec.push(b"\x00\x03abc\x00\x00\x00");
/// assert_eq!(dec.next_frame().unwrap().unwrap(), "abc");
/// assert_eq!(dec.next_frame().unwrap().unwrap(), ""); // an empty frame
/// assert_eq!(dec.next_frame(), Ok(None)); // half a prefix so far
///
/// dec.push(b"\x05hello");
/// let err = dec.next_frame().unwrap_err();
/// assert_eq!((err.length(), err.max(), err.offset()), (5, 4, 7));
/// ```
#[derive(Debug, Clone)]
pub struct PrefixedDecoder {
    buf: BytesMut,
    width: PrefixWidth,
    max_length: usize,
    state: State,
    /// Stream position of `buf[0]`.
    offset: u64,
}

impl PrefixedDecoder {
    /// A decoder for `width` prefixes accepting frames of up to 99,999
    /// bytes, or the prefix's limit if that is lower.
    pub fn new(width: PrefixWidth) -> Self {
        PrefixedDecoder {
            buf: BytesMut::new(),
            width,
            max_length: DEFAULT_MAX_PREFIXED_LENGTH.min(width.limit()),
            state: State::Header,
            offset: 0,
        }
    }

    /// A decoder for 8-bit prefixes (`Int8StringReceiver`), frames of up to
    /// 255 bytes.
    pub fn int8() -> Self {
        Self::new(PrefixWidth::U8)
    }

    /// A decoder for 16-bit prefixes (`Int16StringReceiver`), frames of up to
    /// 65,535 bytes.
    pub fn int16() -> Self {
        Self::new(PrefixWidth::U16)
    }

    /// A decoder for 32-bit prefixes (`Int32StringReceiver`), frames of up to
    /// 99,999 bytes.
    pub fn int32() -> Self {
        Self::new(PrefixWidth::U32)
    }

    /// Accepts frames of up to `max_length` bytes, capped at the prefix's
    /// [limit](PrefixWidth::limit).
    pub fn with_max_length(mut self, max_length: usize) -> Self {
        self.max_length = max_length.min(self.width.limit());
        self
    }

    /// The prefix width.
    pub fn width(&self) -> PrefixWidth {
        self.width
    }

    /// The longest frame accepted.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// An encoder with the same width and maximum length.
    pub fn encoder(&self) -> PrefixedEncoder {
        PrefixedEncoder {
            width: self.width,
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
    pub fn error(&self) -> Option<&PrefixedError> {
        match &self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Returns the next frame, or `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    ///
    /// A [`PrefixedError`] when a prefix declares a frame longer than
    /// `max_length`. The decoder then stays failed and returns the same error
    /// on every later call.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, PrefixedError> {
        loop {
            match self.state {
                State::Failed(ref e) => return Err(e.clone()),
                State::Header => {
                    let size = self.width.size();
                    if self.buf.len() < size {
                        return Ok(None);
                    }
                    let length = self.buf[..size]
                        .iter()
                        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
                    let fits = usize::try_from(length)
                        .ok()
                        .filter(|&n| n <= self.max_length);
                    let Some(len) = fits else {
                        self.state = State::Failed(PrefixedError {
                            length,
                            max: self.max_length,
                            offset: self.offset,
                        });
                        self.buf = BytesMut::new();
                        continue;
                    };
                    self.buf.advance(size);
                    self.offset += size as u64;
                    self.state = State::Body { len };
                }
                State::Body { len } => {
                    if self.buf.len() < len {
                        crate::netstring::reserve_for(&mut self.buf, len);
                        return Ok(None);
                    }
                    let frame = self.buf.split_to(len).freeze();
                    self.offset += len as u64;
                    self.state = State::Header;
                    return Ok(Some(frame));
                }
            }
        }
    }
}

/// Writes length-prefixed frames, refusing frames longer than `max_length`
/// (never more than the prefix can express), so the stream is never corrupt.
///
/// # Example
///
/// ```
/// use torsion_protocols::{BytesMut, EncodeError, PrefixedEncoder};
///
/// let enc = PrefixedEncoder::int8();
/// let mut out = BytesMut::new();
/// enc.encode(b"hi", &mut out).unwrap();
/// assert_eq!(&out[..], b"\x02hi");
/// assert_eq!(
///     enc.encode(&[0; 256], &mut out),
///     Err(EncodeError::TooLong { length: 256, max: 255 })
/// );
/// assert_eq!(&out[..], b"\x02hi"); // unchanged
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixedEncoder {
    width: PrefixWidth,
    max_length: usize,
}

impl PrefixedEncoder {
    /// An encoder for `width` prefixes sending frames of up to 99,999 bytes,
    /// or the prefix's limit if that is lower.
    pub fn new(width: PrefixWidth) -> Self {
        PrefixedEncoder {
            width,
            max_length: DEFAULT_MAX_PREFIXED_LENGTH.min(width.limit()),
        }
    }

    /// An encoder for 8-bit prefixes, frames of up to 255 bytes.
    pub fn int8() -> Self {
        Self::new(PrefixWidth::U8)
    }

    /// An encoder for 16-bit prefixes, frames of up to 65,535 bytes.
    pub fn int16() -> Self {
        Self::new(PrefixWidth::U16)
    }

    /// An encoder for 32-bit prefixes, frames of up to 99,999 bytes.
    pub fn int32() -> Self {
        Self::new(PrefixWidth::U32)
    }

    /// Sends frames of up to `max_length` bytes, capped at the prefix's
    /// [limit](PrefixWidth::limit).
    pub fn with_max_length(mut self, max_length: usize) -> Self {
        self.max_length = max_length.min(self.width.limit());
        self
    }

    /// The prefix width.
    pub fn width(&self) -> PrefixWidth {
        self.width
    }

    /// The longest frame sent.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Appends the length prefix and `frame` to `dst`.
    ///
    /// # Errors
    ///
    /// [`EncodeError::TooLong`] if `frame` is longer than `max_length`; `dst`
    /// is then left as it was.
    pub fn encode(&self, frame: &[u8], dst: &mut BytesMut) -> Result<(), EncodeError> {
        if frame.len() > self.max_length {
            return Err(EncodeError::TooLong {
                length: frame.len(),
                max: self.max_length,
            });
        }
        let size = self.width.size();
        // max_length <= limit, so the length fits in `size` bytes.
        let prefix = (frame.len() as u64).to_be_bytes();
        dst.reserve(size + frame.len());
        dst.extend_from_slice(&prefix[prefix.len() - size..]);
        dst.extend_from_slice(frame);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outcome = (Vec<Bytes>, Option<PrefixedError>);

    fn feed(make: &dyn Fn() -> PrefixedDecoder, chunks: &[&[u8]]) -> Outcome {
        let mut dec = make();
        let mut frames = Vec::new();
        for c in chunks {
            dec.push(c);
            loop {
                match dec.next_frame() {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) => break,
                    Err(e) => {
                        dec.push(b"\0\0\0\0");
                        assert_eq!(dec.next_frame(), Err(e.clone()));
                        assert_eq!(dec.error(), Some(&e));
                        assert_eq!(dec.buffered_len(), 0);
                        return (frames, Some(e));
                    }
                }
            }
        }
        (frames, None)
    }

    fn all_splits(make: &dyn Fn() -> PrefixedDecoder, input: &[u8]) -> Outcome {
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

    fn err(length: u64, max: usize, offset: u64) -> Option<PrefixedError> {
        Some(PrefixedError {
            length,
            max,
            offset,
        })
    }

    #[test]
    fn widths() {
        assert_eq!(PrefixWidth::U8.size(), 1);
        assert_eq!(PrefixWidth::U16.size(), 2);
        assert_eq!(PrefixWidth::U32.size(), 4);
        assert_eq!(PrefixWidth::U8.limit(), 255);
        assert_eq!(PrefixWidth::U16.limit(), 65_535);
        assert_eq!(PrefixWidth::U32.limit() as u64, u64::from(u32::MAX));
        assert_eq!(PrefixedDecoder::int8().max_length(), 255);
        assert_eq!(PrefixedDecoder::int16().max_length(), 65_535);
        assert_eq!(PrefixedDecoder::int32().max_length(), 99_999);
        assert_eq!(
            PrefixedDecoder::int8().with_max_length(1000).max_length(),
            255
        );
        assert_eq!(
            PrefixedEncoder::int16()
                .with_max_length(1 << 20)
                .max_length(),
            65_535
        );
        assert_eq!(
            PrefixedEncoder::int32()
                .with_max_length(1 << 20)
                .max_length(),
            1 << 20
        );
    }

    #[test]
    fn frames_of_each_width() {
        let out = all_splits(&PrefixedDecoder::int8, b"\x03abc\x00\x01z");
        assert_eq!(out, (frames(&[b"abc", b"", b"z"]), None));
        let out = all_splits(&PrefixedDecoder::int16, b"\x00\x03abc\x00\x00\x00\x01z");
        assert_eq!(out, (frames(&[b"abc", b"", b"z"]), None));
        let out = all_splits(&PrefixedDecoder::int32, b"\0\0\0\x03abc\0\0\0\0\0\0\0\x01z");
        assert_eq!(out, (frames(&[b"abc", b"", b"z"]), None));
        // Incomplete prefix or body: waiting, not an error.
        assert_eq!(
            all_splits(&PrefixedDecoder::int32, b"\0\0\0\x05abc"),
            (vec![], None)
        );
        assert_eq!(
            all_splits(&PrefixedDecoder::int32, b"\0\0\0"),
            (vec![], None)
        );
    }

    #[test]
    fn max_length_edges() {
        let make = || PrefixedDecoder::int16().with_max_length(3);
        assert_eq!(all_splits(&make, b"\x00\x03abc"), (frames(&[b"abc"]), None));
        // One past the maximum: rejected from the prefix, body never needed.
        assert_eq!(
            all_splits(&make, b"\x00\x03abc\x00\x04"),
            (frames(&[b"abc"]), err(4, 3, 5))
        );
        let make = || PrefixedDecoder::int8().with_max_length(0);
        assert_eq!(
            all_splits(&make, b"\x00\x00\x01"),
            (frames(&[b"", b""]), err(1, 0, 2))
        );
        // The whole range of the prefix is usable when allowed.
        let mut dec = PrefixedDecoder::int8();
        let mut input = vec![255u8];
        input.extend_from_slice(&[7; 255]);
        dec.push(&input);
        assert_eq!(dec.next_frame().unwrap().unwrap().len(), 255);
        // Twisted's default for 32-bit prefixes.
        let mut dec = PrefixedDecoder::int32();
        dec.push(&100_000u32.to_be_bytes());
        assert_eq!(
            dec.next_frame(),
            Err(PrefixedError {
                length: 100_000,
                max: 99_999,
                offset: 0
            })
        );
        let mut dec = PrefixedDecoder::int32().with_max_length(usize::MAX);
        dec.push(&u32::MAX.to_be_bytes());
        assert_eq!(dec.next_frame(), Ok(None));
    }

    #[test]
    fn error_reads_as_a_sentence() {
        let mut dec = PrefixedDecoder::int32();
        dec.push(b"\xff\xff\xff\xff");
        let e = dec.next_frame().unwrap_err();
        assert_eq!(
            e.to_string(),
            "the length prefix at byte 0 of the stream declares a frame of 4294967295 bytes, \
             more than the maximum of 99999 (raise max_length if the peer legitimately sends such frames)"
        );
    }

    #[test]
    fn encoder_round_trips_and_checks_lengths() {
        for width in [PrefixWidth::U8, PrefixWidth::U16, PrefixWidth::U32] {
            let dec = PrefixedDecoder::new(width).with_max_length(300);
            let enc = dec.encoder();
            let max = enc.max_length();
            let mut out = BytesMut::new();
            let big = vec![9u8; max];
            let payloads: [&[u8]; 3] = [b"", b"abc", &big];
            for p in payloads {
                enc.encode(p, &mut out).unwrap();
            }
            let before = out.clone();
            assert_eq!(
                enc.encode(&vec![0; max + 1], &mut out),
                Err(EncodeError::TooLong {
                    length: max + 1,
                    max
                })
            );
            assert_eq!(out, before);
            let mut dec = dec;
            dec.push(&out);
            for p in payloads {
                assert_eq!(&dec.next_frame().unwrap().unwrap()[..], p);
            }
            assert_eq!(dec.next_frame(), Ok(None));
        }
        let mut out = BytesMut::new();
        PrefixedEncoder::int16()
            .encode(&[1; 258], &mut out)
            .unwrap();
        assert_eq!(&out[..2], b"\x01\x02");
        let mut out = BytesMut::new();
        let enc = PrefixedEncoder::int32().with_max_length(70_000);
        enc.encode(&[1; 65_536], &mut out).unwrap();
        assert_eq!(&out[..4], b"\x00\x01\x00\x00");
    }
}
