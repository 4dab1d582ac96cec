//! Delimited lines: a sans-I/O [`LineDecoder`] with raw mode, and a
//! [`LineEncoder`].
//!
//! # The too-long rule
//!
//! A line is *too long* when its content, not counting the delimiter, is
//! longer than `max_length` bytes. A line of exactly `max_length` bytes is
//! accepted, and so is an empty line.
//!
//! The decoder reports a too-long line as soon as the bytes it has buffered
//! prove it, that is once `max_length + 1` bytes of the line are known not to
//! be the start of its delimiter. It does not wait for the delimiter, and it
//! never reports a line that may still turn out to fit: with `max_length` 5
//! and delimiter `\r\n`, the partial line `abcde\r` is waited on (the next
//! byte may be `\n`), while `abcdef` is too long at once.
//!
//! The [`LineEvent::TooLong`] event carries exactly the first
//! `max_length + 1` bytes of the offending line. Whether the bytes arrive in
//! one piece, one at a time, or split anywhere, the events are the same. A
//! decoder whose events are pulled after every push holds at most
//! `max_length` bytes plus a delimiter of any partial line, plus the latest
//! push: a peer cannot make it buffer an endless line.
//!
//! After `TooLong` the decoder *discards* the rest of the offending line, up
//! to and including its delimiter (which may arrive later), and then goes on
//! parsing lines. A protocol that wants to drop the connection (the default of
//! the protocol adapter, as in Twisted) simply stops; one that wants to skip
//! the line and carry on just keeps pulling events.
//! [`LineDecoder::clear_line_buffer`] and switching to raw mode end the
//! discarding early.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::EncodeError;
use crate::search::{Search, find};

/// The default line delimiter: `\r\n`.
pub const DEFAULT_DELIMITER: &[u8] = b"\r\n";

/// The default maximum line length, in bytes (Twisted's `MAX_LENGTH`).
pub const DEFAULT_MAX_LINE_LENGTH: usize = 16_384;

/// One thing the [`LineDecoder`] found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvent {
    /// A complete line, without its delimiter. May be empty.
    Line(Bytes),
    /// Bytes received in raw mode, exactly as they came; never empty. How the
    /// raw bytes are cut into events depends on how they arrived.
    Raw(Bytes),
    /// A line longer than `max_length`: carries its first `max_length + 1`
    /// bytes. The rest of that line, through its delimiter, is discarded.
    TooLong(Bytes),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Line,
    /// Raw until switched back.
    Raw,
    /// Raw for this many more bytes (never zero), then line mode.
    RawFor(usize),
}

/// Splits a byte stream into delimited lines, with a raw mode for binary
/// data in between (Twisted's `LineReceiver`, without the I/O).
///
/// Push received bytes with [`push`](Self::push), then pull
/// [`LineEvent`]s with [`next_event`](Self::next_event) until it returns
/// `None`. The mode may be switched between any two events: bytes already
/// buffered are then parsed in the new mode, so nothing is lost or seen
/// twice. See the [module documentation](self) for the too-long rule.
///
/// Parsing is linear in the number of bytes pushed, however they are split:
/// the decoder remembers where its delimiter search stopped, including a
/// delimiter cut in two by a read boundary. Each line is delivered as a
/// [`Bytes`] that shares the receive buffer rather than copying it.
///
/// # Example
///
/// An HTTP-like exchange: header lines, a blank line, then a body of known
/// length in raw mode, then lines again.
///
/// ```
/// use torsion_protocols::{Bytes, LineDecoder, LineEvent};
///
/// let mut dec = LineDecoder::new();
/// dec.push(b"PUT /x\r\nLength: 4\r\n\r\nab");
/// dec.push(b"cdQUIT\r\n");
///
/// let mut lines = Vec::new();
/// let mut body = Vec::new();
/// while let Some(event) = dec.next_event() {
///     match event {
///         LineEvent::Line(line) if line.is_empty() => dec.set_raw_mode_for(4),
///         LineEvent::Line(line) => lines.push(line),
///         LineEvent::Raw(bytes) => body.extend_from_slice(&bytes),
///         LineEvent::TooLong(_) => break, // a real protocol would hang up
///     }
/// }
/// assert_eq!(lines, ["PUT /x", "Length: 4", "QUIT"]);
/// assert_eq!(body, b"abcd");
/// ```
#[derive(Debug, Clone)]
pub struct LineDecoder {
    buf: BytesMut,
    delimiter: Box<[u8]>,
    max_length: usize,
    mode: Mode,
    /// In line mode, skipping the rest of a too-long line.
    discarding: bool,
    /// A `\r` right before the delimiter is part of the line ending.
    strip_cr: bool,
    /// No delimiter starts before this index of `buf`.
    scan_from: usize,
    /// Bytes looked at by delimiter searches, to test linearity.
    #[cfg(test)]
    work: u64,
}

impl Default for LineDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl LineDecoder {
    /// A decoder for `\r\n`-delimited lines of at most 16,384 bytes, in line
    /// mode.
    pub fn new() -> Self {
        LineDecoder {
            buf: BytesMut::new(),
            delimiter: DEFAULT_DELIMITER.into(),
            max_length: DEFAULT_MAX_LINE_LENGTH,
            mode: Mode::Line,
            discarding: false,
            strip_cr: false,
            scan_from: 0,
            #[cfg(test)]
            work: 0,
        }
    }

    /// Uses `delimiter` to end lines instead of `\r\n` (for example `b"\n"`).
    ///
    /// Meant for construction: changing the delimiter after bytes were pushed
    /// restarts the search over the buffered bytes.
    ///
    /// # Panics
    ///
    /// If `delimiter` is empty: a line needs something to end it.
    pub fn with_delimiter(mut self, delimiter: &[u8]) -> Self {
        assert!(
            !delimiter.is_empty(),
            "the line delimiter must not be empty"
        );
        self.delimiter = delimiter.into();
        self.scan_from = 0;
        self
    }

    /// Accepts lines of up to `max_length` bytes, not counting the delimiter,
    /// instead of 16,384. Zero allows only empty lines.
    pub fn with_max_length(mut self, max_length: usize) -> Self {
        self.max_length = max_length;
        self
    }

    /// With `true`, a `\r` right before the delimiter is also part of the
    /// line ending: it is not delivered, and it does not count toward
    /// `max_length`. With the delimiter `\n`, this reads lines ending in
    /// either `\n` or `\r\n`, as most text protocols and terminals send them.
    /// Only one `\r` is dropped: `a\r\r\n` is the line `a\r`.
    ///
    /// The too-long rule counts the line without that `\r`: a partial line of
    /// `max_length` bytes followed by `\r` is waited on (the delimiter may
    /// come next), while `max_length + 1` bytes that do not end in `\r` are
    /// too long at once.
    ///
    /// ```
    /// use torsion_protocols::{LineDecoder, LineEvent};
    ///
    /// let mut dec = LineDecoder::new().with_delimiter(b"\n").with_strip_cr(true);
    /// dec.push(b"unix\nwindows\r\n");
    /// assert_eq!(dec.next_event(), Some(LineEvent::Line("unix".into())));
    /// assert_eq!(dec.next_event(), Some(LineEvent::Line("windows".into())));
    /// ```
    pub fn with_strip_cr(mut self, strip_cr: bool) -> Self {
        self.strip_cr = strip_cr;
        self
    }

    /// Whether a `\r` before the delimiter is dropped (see
    /// [`with_strip_cr`](Self::with_strip_cr)).
    pub fn strip_cr(&self) -> bool {
        self.strip_cr
    }

    /// The line delimiter.
    pub fn delimiter(&self) -> &[u8] {
        &self.delimiter
    }

    /// The longest line accepted, not counting the delimiter.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// An encoder with the same delimiter and maximum length, for the lines
    /// this side sends.
    pub fn encoder(&self) -> LineEncoder {
        LineEncoder {
            delimiter: self.delimiter.clone(),
            max_length: self.max_length,
            strip_cr: self.strip_cr,
        }
    }

    /// Appends received bytes. Nothing is parsed until
    /// [`next_event`](Self::next_event) is called.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Number of bytes pushed and not yet returned in an event (or
    /// discarded).
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the decoder is in raw mode.
    pub fn is_raw_mode(&self) -> bool {
        self.mode != Mode::Line
    }

    /// Switches to raw mode: from the next call to
    /// [`next_event`](Self::next_event) on, every buffered and later byte is
    /// returned as [`LineEvent::Raw`], until [`set_line_mode`](Self::set_line_mode).
    ///
    /// Ends the discarding of a too-long line: its remaining bytes come out as
    /// raw data.
    pub fn set_raw_mode(&mut self) {
        self.mode = Mode::Raw;
        self.discarding = false;
    }

    /// Switches to raw mode for exactly the next `len` bytes, then back to
    /// line mode on its own: the way to read a body whose length a header
    /// gave. The `len` bytes may come out as several [`LineEvent::Raw`]
    /// events; the byte after them is parsed as the start of a line.
    /// A `len` of zero switches to line mode.
    ///
    /// Ends the discarding of a too-long line, like
    /// [`set_raw_mode`](Self::set_raw_mode).
    pub fn set_raw_mode_for(&mut self, len: usize) {
        self.mode = if len == 0 {
            Mode::Line
        } else {
            Mode::RawFor(len)
        };
        self.discarding = false;
    }

    /// Switches to line mode: buffered and later bytes are parsed as lines,
    /// starting with the first byte not yet returned.
    pub fn set_line_mode(&mut self) {
        self.mode = Mode::Line;
    }

    /// Switches to line mode and parses `extra` before the bytes already
    /// buffered (Twisted's `setLineMode(extra)`): for handing back the part of
    /// a [`LineEvent::Raw`] that the protocol did not consume.
    pub fn set_line_mode_with(&mut self, extra: &[u8]) {
        self.mode = Mode::Line;
        if !extra.is_empty() {
            let mut buf = BytesMut::with_capacity(extra.len() + self.buf.len());
            buf.extend_from_slice(extra);
            buf.extend_from_slice(&self.buf);
            self.buf = buf;
            self.scan_from = 0;
            self.discarding = false;
        }
    }

    /// Empties the buffer and returns what it held: the bytes pushed and not
    /// yet returned in an event. Also ends the discarding of a too-long line.
    /// The mode is unchanged.
    pub fn clear_line_buffer(&mut self) -> Bytes {
        self.scan_from = 0;
        self.discarding = false;
        self.buf.split().freeze()
    }

    /// Returns the next event, or `None` when more bytes are needed.
    pub fn next_event(&mut self) -> Option<LineEvent> {
        match self.mode {
            Mode::Line => self.next_line(),
            Mode::Raw => {
                if self.buf.is_empty() {
                    return None;
                }
                self.scan_from = 0;
                Some(LineEvent::Raw(self.buf.split().freeze()))
            }
            Mode::RawFor(remaining) => {
                if self.buf.is_empty() {
                    return None;
                }
                let take = remaining.min(self.buf.len());
                self.scan_from = 0;
                self.mode = if take == remaining {
                    Mode::Line
                } else {
                    Mode::RawFor(remaining - take)
                };
                Some(LineEvent::Raw(self.buf.split_to(take).freeze()))
            }
        }
    }

    fn search(&mut self, end: usize) -> Search {
        let mut work = 0;
        let found = find(&self.buf, &self.delimiter, self.scan_from, end, &mut work);
        #[cfg(test)]
        {
            self.work += work;
        }
        found
    }

    fn next_line(&mut self) -> Option<LineEvent> {
        if self.discarding {
            match self.search(usize::MAX) {
                Search::Found(at) => {
                    self.buf.advance(at + self.delimiter.len());
                    self.discarding = false;
                    self.scan_from = 0;
                }
                Search::Partial(at) => {
                    // Keep the possible start of the delimiter.
                    self.buf.advance(at);
                    self.scan_from = 0;
                    return None;
                }
                Search::NotFound(_) => {
                    self.buf.clear();
                    self.scan_from = 0;
                    return None;
                }
            }
        }
        // A delimiter starting at index `max_length` ends a line of exactly
        // `max_length` bytes (one later with a `\r` to strip); one starting
        // later ends a line that is too long, so the search need not look
        // further.
        let slack = usize::from(self.strip_cr);
        match self.search(self.max_length.saturating_add(1 + slack)) {
            Search::Found(at) => {
                let content = self.content_before(at);
                if content > self.max_length {
                    // Only with `strip_cr`: `max_length + 1` bytes, no `\r`.
                    let prefix = self.buf.split_to(self.max_length + 1).freeze();
                    self.buf.advance(at - prefix.len() + self.delimiter.len());
                    self.scan_from = 0;
                    return Some(LineEvent::TooLong(prefix));
                }
                let line = self.buf.split_to(content).freeze();
                self.buf.advance(at - content + self.delimiter.len());
                self.scan_from = 0;
                Some(LineEvent::Line(line))
            }
            Search::Partial(at) => {
                if self.content_before(at) > self.max_length {
                    return Some(self.too_long());
                }
                self.scan_from = at;
                None
            }
            Search::NotFound(end) => {
                if self.content_before(end) > self.max_length {
                    // `max_length + 1` bytes known not to be part of the
                    // line ending: the line is too long.
                    Some(self.too_long())
                } else {
                    self.scan_from = end;
                    None
                }
            }
        }
    }

    /// How many bytes of the line are known to be content when no delimiter
    /// starts before `end`: all of them, less a `\r` just before `end` that
    /// may belong to the line ending.
    fn content_before(&self, end: usize) -> usize {
        if self.strip_cr && end > 0 && self.buf.get(end - 1) == Some(&b'\r') {
            end - 1
        } else {
            end
        }
    }

    /// Reports the line as too long and starts discarding the rest of it.
    fn too_long(&mut self) -> LineEvent {
        let prefix = self.buf.split_to(self.max_length + 1).freeze();
        self.discarding = true;
        self.scan_from = 0;
        LineEvent::TooLong(prefix)
    }

    /// Bytes looked at by delimiter searches so far.
    #[cfg(test)]
    pub(crate) fn work(&self) -> u64 {
        self.work
    }
}

/// Writes lines followed by the delimiter (Twisted's `sendLine`), refusing
/// lines the peer could not read back as one line.
///
/// A line is refused if it is longer than `max_length` (a peer with the same
/// settings would reject it) or if it contains the delimiter, including a
/// delimiter that would only be formed together with the delimiter appended
/// after it (which can happen with delimiters like `aba`). Refusing such a
/// line, rather than sending it, keeps a peer from being told two lines where
/// one was meant: the classic header-injection hole.
///
/// # Example
///
/// ```
/// use torsion_protocols::{BytesMut, EncodeError, LineEncoder};
///
/// let enc = LineEncoder::new();
/// let mut out = BytesMut::new();
/// enc.encode(b"HELO example.org", &mut out).unwrap();
/// assert_eq!(&out[..], b"HELO example.org\r\n");
///
/// let err = enc.encode(b"RCPT\r\nDATA", &mut out).unwrap_err();
/// assert_eq!(err, EncodeError::ContainsDelimiter { offset: 4 });
/// assert_eq!(&out[..], b"HELO example.org\r\n"); // unchanged
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineEncoder {
    delimiter: Box<[u8]>,
    max_length: usize,
    strip_cr: bool,
}

impl Default for LineEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl LineEncoder {
    /// An encoder for `\r\n`-delimited lines of at most 16,384 bytes.
    pub fn new() -> Self {
        LineEncoder {
            delimiter: DEFAULT_DELIMITER.into(),
            max_length: DEFAULT_MAX_LINE_LENGTH,
            strip_cr: false,
        }
    }

    /// Ends lines with `delimiter` instead of `\r\n`.
    ///
    /// # Panics
    ///
    /// If `delimiter` is empty.
    pub fn with_delimiter(mut self, delimiter: &[u8]) -> Self {
        assert!(
            !delimiter.is_empty(),
            "the line delimiter must not be empty"
        );
        self.delimiter = delimiter.into();
        self
    }

    /// With `true`, ends every line with `\r` before the delimiter, for a
    /// peer whose decoder drops a `\r` before the delimiter
    /// ([`LineDecoder::with_strip_cr`]): with the delimiter `\n` the lines
    /// end in `\r\n`, and a line that itself ends in `\r` still reads back
    /// whole.
    ///
    /// ```
    /// use torsion_protocols::{BytesMut, LineEncoder};
    ///
    /// let enc = LineEncoder::new().with_delimiter(b"\n").with_strip_cr(true);
    /// let mut out = BytesMut::new();
    /// enc.encode(b"hello", &mut out).unwrap();
    /// assert_eq!(&out[..], b"hello\r\n");
    /// ```
    pub fn with_strip_cr(mut self, strip_cr: bool) -> Self {
        self.strip_cr = strip_cr;
        self
    }

    /// Whether lines end with `\r` before the delimiter (see
    /// [`with_strip_cr`](Self::with_strip_cr)).
    pub fn strip_cr(&self) -> bool {
        self.strip_cr
    }

    /// Sends lines of up to `max_length` bytes, not counting the delimiter,
    /// instead of 16,384.
    pub fn with_max_length(mut self, max_length: usize) -> Self {
        self.max_length = max_length;
        self
    }

    /// The line delimiter.
    pub fn delimiter(&self) -> &[u8] {
        &self.delimiter
    }

    /// The longest line sent, not counting the delimiter.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Appends `line` and the delimiter to `dst`.
    ///
    /// # Errors
    ///
    /// [`EncodeError::TooLong`] if `line` is longer than `max_length`, and
    /// [`EncodeError::ContainsDelimiter`] if the peer would find a delimiter
    /// before the end of `line`. On error `dst` is left as it was.
    pub fn encode(&self, line: &[u8], dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.check_length(line)?;
        let start = dst.len();
        let cr = usize::from(self.strip_cr);
        dst.reserve(line.len() + cr + self.delimiter.len());
        dst.extend_from_slice(line);
        if self.strip_cr {
            dst.extend_from_slice(b"\r");
        }
        dst.extend_from_slice(&self.delimiter);
        if let Err(err) = self.check_framing(&dst[start..], line.len() + cr) {
            dst.truncate(start);
            return Err(err);
        }
        Ok(())
    }

    /// Bytes [`encode`](Self::encode) appends for `line`.
    pub(crate) fn encoded_len(&self, line: &[u8]) -> usize {
        line.len() + usize::from(self.strip_cr) + self.delimiter.len()
    }

    /// [`encode`](Self::encode) into the start of `out` (at least
    /// [`encoded_len`](Self::encoded_len) bytes), without allocating; returns the length.
    pub(crate) fn encode_into(&self, line: &[u8], out: &mut [u8]) -> Result<usize, EncodeError> {
        self.check_length(line)?;
        let cr = usize::from(self.strip_cr);
        let n = self.encoded_len(line);
        out[..line.len()].copy_from_slice(line);
        if self.strip_cr {
            out[line.len()] = b'\r';
        }
        out[line.len() + cr..n].copy_from_slice(&self.delimiter);
        self.check_framing(&out[..n], line.len() + cr)?;
        Ok(n)
    }

    fn check_length(&self, line: &[u8]) -> Result<(), EncodeError> {
        if line.len() > self.max_length {
            return Err(EncodeError::TooLong {
                length: line.len(),
                max: self.max_length,
            });
        }
        Ok(())
    }

    /// The receiver splits at the leftmost delimiter: in `encoded` (a line, its `\r`, its
    /// delimiter) that must be the one appended at `content_len`.
    fn check_framing(&self, encoded: &[u8], content_len: usize) -> Result<(), EncodeError> {
        let mut work = 0;
        if let Search::Found(offset) = find(encoded, &self.delimiter, 0, content_len, &mut work) {
            return Err(EncodeError::ContainsDelimiter { offset });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_into_a_slice_is_encode() {
        let encoders = [
            LineEncoder::new(),
            LineEncoder::new().with_delimiter(b"\n").with_strip_cr(true),
            LineEncoder::new().with_delimiter(b"aab").with_max_length(6),
        ];
        let lines: [&[u8]; 7] = [
            b"",
            b"hello",
            b"a\r",
            b"x\r\ny",
            b"xa",
            b"xaab",
            b"toolong!",
        ];
        for enc in &encoders {
            for line in lines {
                let mut want = BytesMut::new();
                let expected = enc.encode(line, &mut want);
                let mut out = [0u8; 64];
                let got = enc.encode_into(line, &mut out);
                match (expected, got) {
                    (Ok(()), Ok(n)) => assert_eq!(&out[..n], &want[..]),
                    (Err(a), Err(b)) => assert_eq!(a, b),
                    (a, b) => panic!("{line:?}: encode {a:?}, encode_into {b:?}"),
                }
                assert!(enc.encoded_len(line) >= want.len());
            }
        }
    }

    fn line(s: &[u8]) -> LineEvent {
        LineEvent::Line(Bytes::copy_from_slice(s))
    }
    fn raw(s: &[u8]) -> LineEvent {
        LineEvent::Raw(Bytes::copy_from_slice(s))
    }
    fn too_long(s: &[u8]) -> LineEvent {
        LineEvent::TooLong(Bytes::copy_from_slice(s))
    }

    fn drain(dec: &mut LineDecoder, out: &mut Vec<LineEvent>) {
        while let Some(e) = dec.next_event() {
            out.push(e);
        }
    }

    /// Merges adjacent raw events: how raw bytes are cut depends on arrival.
    fn normalize(events: Vec<LineEvent>) -> Vec<LineEvent> {
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

    fn feed(make: &dyn Fn() -> LineDecoder, chunks: &[&[u8]]) -> Vec<LineEvent> {
        let mut dec = make();
        let mut out = Vec::new();
        for c in chunks {
            dec.push(c);
            drain(&mut dec, &mut out);
        }
        normalize(out)
    }

    /// Feeds `input` whole, byte by byte, and split at every one and every
    /// two points; all must agree. Returns the events.
    fn all_splits(make: &dyn Fn() -> LineDecoder, input: &[u8]) -> Vec<LineEvent> {
        let whole = feed(make, &[input]);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(feed(make, &bytes), whole, "byte by byte: {input:?}");
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(feed(make, &[a, b]), whole, "split at {i}: {input:?}");
            if input.len() <= 40 {
                for j in i..=input.len() {
                    let (b1, b2) = b.split_at(j - i);
                    assert_eq!(
                        feed(make, &[a, b1, b2]),
                        whole,
                        "split at {i},{j}: {input:?}"
                    );
                }
            }
        }
        whole
    }

    #[test]
    fn basic_lines_and_empty_lines() {
        let ev = all_splits(&LineDecoder::new, b"abc\r\n\r\nd\ne\r\n\r\r\n");
        assert_eq!(ev, [line(b"abc"), line(b""), line(b"d\ne"), line(b"\r")]);
    }

    #[test]
    fn partial_line_is_kept() {
        let mut dec = LineDecoder::new();
        dec.push(b"abc\r");
        assert_eq!(dec.next_event(), None);
        assert_eq!(dec.buffered_len(), 4);
        dec.push(b"\nx");
        assert_eq!(dec.next_event(), Some(line(b"abc")));
        assert_eq!(dec.next_event(), None);
        assert_eq!(&dec.clear_line_buffer()[..], b"x");
        assert_eq!(dec.buffered_len(), 0);
    }

    #[test]
    fn custom_delimiters() {
        let nl = || LineDecoder::new().with_delimiter(b"\n");
        assert_eq!(
            all_splits(&nl, b"a\r\nb\n\n"),
            [line(b"a\r"), line(b"b"), line(b"")]
        );
        // Self-overlapping delimiter: the leftmost occurrence wins.
        let aab = || LineDecoder::new().with_delimiter(b"aab");
        assert_eq!(all_splits(&aab, b"xaaabyaab"), [line(b"xa"), line(b"y")]);
        let aba = || LineDecoder::new().with_delimiter(b"aba");
        assert_eq!(all_splits(&aba, b"ababa"), [line(b"")]);
    }

    #[test]
    fn exactly_max_length_is_accepted() {
        let make = || LineDecoder::new().with_max_length(5);
        assert_eq!(all_splits(&make, b"abcde\r\n"), [line(b"abcde")]);
        // A partial line of max_length + 1 bytes whose last byte may start
        // the delimiter is waited on.
        let mut dec = make();
        dec.push(b"abcde\r");
        assert_eq!(dec.next_event(), None);
        dec.push(b"\n");
        assert_eq!(dec.next_event(), Some(line(b"abcde")));
    }

    #[test]
    fn one_past_max_length_is_too_long() {
        let make = || LineDecoder::new().with_max_length(5);
        assert_eq!(
            all_splits(&make, b"abcdef\r\nok\r\n"),
            [too_long(b"abcdef"), line(b"ok")]
        );
        // Detected before the delimiter arrives.
        let mut dec = make();
        dec.push(b"abcdef");
        assert_eq!(dec.next_event(), Some(too_long(b"abcdef")));
        assert_eq!(dec.next_event(), None);
        // A lone \r inside the content counts as content.
        assert_eq!(all_splits(&make, b"abcde\rX\r\n"), [too_long(b"abcde\r")]);
    }

    #[test]
    fn too_long_line_is_discarded_through_its_delimiter() {
        let make = || LineDecoder::new().with_max_length(3);
        let ev = all_splits(&make, b"0123456789\r\r\r\n\r\nabc\r\nabcd");
        assert_eq!(
            ev,
            [
                too_long(b"0123"),
                line(b""),
                line(b"abc"),
                too_long(b"abcd")
            ]
        );
        // Memory stays bounded while discarding.
        let mut dec = make();
        dec.push(b"xxxxxxxxxxxxxxxx");
        assert_eq!(dec.next_event(), Some(too_long(b"xxxx")));
        assert_eq!(dec.next_event(), None);
        assert_eq!(dec.buffered_len(), 0);
        dec.push(b"yyyy\r");
        assert_eq!(dec.next_event(), None);
        assert_eq!(dec.buffered_len(), 1);
        dec.push(b"\nz\r\n");
        assert_eq!(dec.next_event(), Some(line(b"z")));
    }

    #[test]
    fn lowering_max_length_mid_line_still_reports_max_plus_one_bytes() {
        let mut dec = LineDecoder::new();
        dec.push(b"abcdefgh");
        assert_eq!(dec.next_event(), None);
        let mut dec = dec.with_max_length(2);
        assert_eq!(dec.next_event(), Some(too_long(b"abc")));
        dec.push(b"\r\nok\r\n");
        assert_eq!(dec.next_event(), Some(line(b"ok")));
    }

    #[test]
    fn max_length_zero_allows_only_empty_lines() {
        let make = || LineDecoder::new().with_max_length(0);
        assert_eq!(
            all_splits(&make, b"\r\nx\r\n\r\n"),
            [line(b""), too_long(b"x"), line(b"")]
        );
    }

    #[test]
    fn clear_line_buffer_ends_discarding() {
        let mut dec = LineDecoder::new().with_max_length(2);
        dec.push(b"abcdef");
        assert_eq!(dec.next_event(), Some(too_long(b"abc")));
        assert_eq!(&dec.clear_line_buffer()[..], b"def");
        dec.push(b"gh\r\n");
        assert_eq!(dec.next_event(), Some(line(b"gh")));
    }

    /// Header lines until an empty line, then a raw body whose length the
    /// `len` header gave, then lines again; a line `raw` switches to raw
    /// mode for good.
    fn http_like(input: &[u8]) -> Vec<LineEvent> {
        let run = |chunks: &[&[u8]]| {
            let mut dec = LineDecoder::new();
            let mut out = Vec::new();
            let mut body_len = 0usize;
            for c in chunks {
                dec.push(c);
                while let Some(e) = dec.next_event() {
                    if let LineEvent::Line(l) = &e {
                        if let Some(n) = l.strip_prefix(b"len ") {
                            body_len = std::str::from_utf8(n).unwrap().parse().unwrap();
                        } else if l.is_empty() {
                            dec.set_raw_mode_for(body_len);
                        } else if &l[..] == b"raw" {
                            dec.set_raw_mode();
                        }
                    }
                    out.push(e);
                }
            }
            normalize(out)
        };
        let whole = run(&[input]);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&bytes), whole);
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(run(&[a, b]), whole, "split at {i}");
            for j in i..=input.len() {
                let (b1, b2) = b.split_at(j - i);
                assert_eq!(run(&[a, b1, b2]), whole, "split at {i},{j}");
            }
        }
        whole
    }

    #[test]
    fn header_then_body_then_lines() {
        let ev = http_like(b"GET\r\nlen 5\r\n\r\nab\r\ncQUIT\r\nlen 0\r\n\r\nend\r\nraw\r\nx\r\ny");
        assert_eq!(
            ev,
            [
                line(b"GET"),
                line(b"len 5"),
                line(b""),
                raw(b"ab\r\nc"),
                line(b"QUIT"),
                line(b"len 0"),
                line(b""),
                line(b"end"),
                line(b"raw"),
                raw(b"x\r\ny"),
            ]
        );
    }

    #[test]
    fn raw_mode_takes_the_buffered_rest() {
        let mut dec = LineDecoder::new();
        dec.push(b"HEAD\r\nbody\r\nmore");
        assert_eq!(dec.next_event(), Some(line(b"HEAD")));
        dec.set_raw_mode();
        assert!(dec.is_raw_mode());
        assert_eq!(dec.next_event(), Some(raw(b"body\r\nmore")));
        assert_eq!(dec.next_event(), None);
        dec.push(b"tail\r\n");
        dec.set_line_mode();
        assert!(!dec.is_raw_mode());
        assert_eq!(dec.next_event(), Some(line(b"tail")));
    }

    #[test]
    fn switching_back_without_pulling_loses_nothing() {
        let mut dec = LineDecoder::new();
        dec.push(b"ab");
        assert_eq!(dec.next_event(), None);
        dec.set_raw_mode();
        dec.push(b"c\r");
        dec.set_line_mode();
        dec.push(b"\n");
        assert_eq!(dec.next_event(), Some(line(b"abc")));
    }

    #[test]
    fn set_line_mode_with_puts_bytes_back_in_front() {
        let mut dec = LineDecoder::new();
        dec.set_raw_mode();
        dec.push(b"BODYrest\r");
        let Some(LineEvent::Raw(chunk)) = dec.next_event() else {
            panic!()
        };
        assert_eq!(&chunk[..], b"BODYrest\r");
        dec.push(b"\nnext\r\n");
        dec.set_line_mode_with(&chunk[4..]);
        assert_eq!(dec.next_event(), Some(line(b"rest")));
        assert_eq!(dec.next_event(), Some(line(b"next")));
        assert_eq!(dec.next_event(), None);
    }

    #[test]
    fn raw_mode_ends_discarding() {
        let mut dec = LineDecoder::new().with_max_length(1);
        dec.push(b"abcd");
        assert_eq!(dec.next_event(), Some(too_long(b"ab")));
        dec.set_raw_mode();
        assert_eq!(dec.next_event(), Some(raw(b"cd")));
    }

    #[test]
    fn raw_for_zero_is_line_mode() {
        let mut dec = LineDecoder::new();
        dec.set_raw_mode_for(0);
        assert!(!dec.is_raw_mode());
    }

    #[test]
    fn lines_share_the_buffer() {
        let mut dec = LineDecoder::new();
        dec.push(b"first\r\nsecond\r\n");
        let Some(LineEvent::Line(a)) = dec.next_event() else {
            panic!()
        };
        let Some(LineEvent::Line(b)) = dec.next_event() else {
            panic!()
        };
        // Both point into the same allocation: no copy was made.
        assert_eq!(a.as_ptr().wrapping_add(7), b.as_ptr());
    }

    /// Feeding a long line one byte at a time looks at each byte a bounded
    /// number of times, whatever the buffered length.
    #[test]
    fn byte_at_a_time_is_linear() {
        const LEN: usize = 1 << 20;
        for delimiter in [&b"\r\n"[..], b"\n", b"--boundary--"] {
            let mut dec = LineDecoder::new()
                .with_delimiter(delimiter)
                .with_max_length(LEN);
            for _ in 0..LEN {
                dec.push(b"a");
                assert_eq!(dec.next_event(), None);
            }
            for &b in delimiter {
                dec.push(&[b]);
            }
            let Some(LineEvent::Line(l)) = dec.next_event() else {
                panic!()
            };
            assert_eq!(l.len(), LEN);
            let total = (LEN + delimiter.len()) as u64;
            let bound = total * delimiter.len() as u64 + 64;
            assert!(dec.work() <= bound, "{} > {bound}", dec.work());
        }
        // A line that is mostly partial delimiters: each `\r` is a candidate
        // and is checked once or twice, not once per later byte.
        let mut dec = LineDecoder::new().with_max_length(LEN);
        for _ in 0..LEN / 2 {
            dec.push(b"\r");
            assert_eq!(dec.next_event(), None);
            dec.push(b"x");
            assert_eq!(dec.next_event(), None);
        }
        assert!(dec.work() <= 3 * LEN as u64, "{}", dec.work());
        // Discarding a too-long line is linear too.
        let mut dec = LineDecoder::new().with_max_length(10);
        for _ in 0..LEN {
            dec.push(b"a");
            let _ = dec.next_event();
        }
        assert!(dec.work() <= 2 * LEN as u64, "{}", dec.work());
    }

    #[test]
    fn encoder_writes_line_and_delimiter() {
        let enc = LineEncoder::new();
        let mut out = BytesMut::new();
        enc.encode(b"", &mut out).unwrap();
        enc.encode(b"a\rb\nc\r", &mut out).unwrap();
        assert_eq!(&out[..], b"\r\na\rb\nc\r\r\n");
        let mut dec = LineDecoder::new();
        dec.push(&out);
        assert_eq!(dec.next_event(), Some(line(b"")));
        assert_eq!(dec.next_event(), Some(line(b"a\rb\nc\r")));
    }

    #[test]
    fn encoder_refuses_embedded_delimiters() {
        let enc = LineEncoder::new();
        let mut out = BytesMut::from(&b"kept"[..]);
        assert_eq!(
            enc.encode(b"a\r\n", &mut out),
            Err(EncodeError::ContainsDelimiter { offset: 1 })
        );
        assert_eq!(&out[..], b"kept");
        // With `aba`, the line `ab` would be read as an empty line.
        let enc = LineEncoder::new().with_delimiter(b"aba");
        assert_eq!(
            enc.encode(b"ab", &mut out),
            Err(EncodeError::ContainsDelimiter { offset: 0 })
        );
        assert_eq!(
            enc.encode(b"xab", &mut out),
            Err(EncodeError::ContainsDelimiter { offset: 1 })
        );
        enc.encode(b"a", &mut out).unwrap();
        assert_eq!(&out[..], b"keptaaba");
    }

    #[test]
    fn encoder_checks_max_length() {
        let enc = LineDecoder::new().with_max_length(3).encoder();
        let mut out = BytesMut::new();
        enc.encode(b"abc", &mut out).unwrap();
        assert_eq!(
            enc.encode(b"abcd", &mut out),
            Err(EncodeError::TooLong { length: 4, max: 3 })
        );
        assert_eq!(&out[..], b"abc\r\n");
    }

    fn crlf_or_lf() -> LineDecoder {
        LineDecoder::new()
            .with_delimiter(b"\n")
            .with_strip_cr(true)
            .with_max_length(5)
    }

    #[test]
    fn strip_cr_reads_lf_and_crlf_endings() {
        let ev = all_splits(&crlf_or_lf, b"a\nb\r\n\r\n\n\r\r\nc\rd\n");
        assert_eq!(
            ev,
            [
                line(b"a"),
                line(b"b"),
                line(b""),
                line(b""),
                line(b"\r"),
                line(b"c\rd")
            ]
        );
    }

    #[test]
    fn strip_cr_too_long_rule() {
        let make = crlf_or_lf;
        // Exactly max_length, with either ending.
        assert_eq!(
            all_splits(&make, b"abcde\nabcde\r\n"),
            [line(b"abcde"), line(b"abcde")]
        );
        // One past, with either ending, complete or partial.
        assert_eq!(
            all_splits(&make, b"abcdef\nok\n"),
            [too_long(b"abcdef"), line(b"ok")]
        );
        assert_eq!(
            all_splits(&make, b"abcdef\r\nok\n"),
            [too_long(b"abcdef"), line(b"ok")]
        );
        assert_eq!(all_splits(&make, b"abcde\r\r\n"), [too_long(b"abcde\r")]);
        let mut dec = make();
        dec.push(b"abcde\r");
        assert_eq!(dec.next_event(), None, "the \\r may be part of the ending");
        dec.push(b"\r");
        assert_eq!(dec.next_event(), Some(too_long(b"abcde\r")));
        let mut dec = make();
        dec.push(b"abcdef");
        assert_eq!(dec.next_event(), Some(too_long(b"abcdef")));
        // With a two-byte delimiter too.
        let make = || LineDecoder::new().with_strip_cr(true).with_max_length(3);
        assert_eq!(
            all_splits(&make, b"abc\r\r\nab\r\r\nabcd\r\n"),
            [line(b"abc"), line(b"ab"), too_long(b"abcd")]
        );
    }

    #[test]
    fn strip_cr_encoder_round_trips() {
        let dec = crlf_or_lf();
        let enc = dec.encoder();
        let mut out = BytesMut::new();
        for l in [&b""[..], b"a", b"a\r", b"\r\r", b"abcd\r"] {
            enc.encode(l, &mut out).unwrap();
        }
        assert_eq!(&out[..], b"\r\na\r\na\r\r\n\r\r\r\nabcd\r\r\n");
        let ev = feed(&crlf_or_lf, &[&out]);
        assert_eq!(
            ev,
            [
                line(b""),
                line(b"a"),
                line(b"a\r"),
                line(b"\r\r"),
                line(b"abcd\r")
            ]
        );
        assert_eq!(
            enc.encode(b"a\nb", &mut out),
            Err(EncodeError::ContainsDelimiter { offset: 1 })
        );
    }

    #[test]
    #[should_panic(expected = "must not be empty")]
    fn empty_delimiter_is_refused() {
        let _ = LineDecoder::new().with_delimiter(b"");
    }
}
