//! The read buffer of an async stream, with no socket in it: what arrived and was not read
//! yet, whether the connection should be read now (the bound on memory), and how far the
//! peer's side has got. Unit-tested on its own.
//!
//! Reading pauses when the buffer holds `max(limit, want)` bytes, where `want` is what the
//! read in progress needs to complete (a line of up to `max` bytes, `n` bytes for
//! `read_exact`): a task that stops reading stops the peer (its kernel buffers fill, TCP
//! flow control does the rest). It resumes once the task has read the buffer down to half
//! the limit, or at once when the read in progress needs more than is buffered. One socket
//! read can overshoot the mark by at most the reactor's read buffer (64 KiB).

use bytes::{Bytes, BytesMut};

use crate::net::protocol::ConnectionLost;

/// What to do with the connection's reading after a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Keep,
    Pause,
    Resume,
}

/// How far the peer's side has got.
#[derive(Clone, Debug)]
pub(crate) enum End {
    Open,
    /// The peer half-closed: nothing more will come.
    Eof,
    /// The connection is gone.
    Lost(ConnectionLost),
}

#[derive(Debug)]
pub(crate) struct ReadBuffer {
    data: BytesMut,
    limit: usize,
    /// Bytes the read in progress needs buffered to complete (0: none in progress).
    want: usize,
    /// Reading is paused (by us).
    paused: bool,
    pub(crate) end: End,
}

impl ReadBuffer {
    pub(crate) fn new(limit: usize) -> ReadBuffer {
        ReadBuffer {
            data: BytesMut::new(),
            limit: limit.max(1),
            want: 0,
            paused: false,
            end: End::Open,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.data.len()
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.data
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.paused
    }

    /// Whether nothing more will arrive.
    pub(crate) fn is_ended(&self) -> bool {
        !matches!(self.end, End::Open)
    }

    /// Bytes arrived.
    pub(crate) fn push(&mut self, data: &[u8]) -> Flow {
        self.data.extend_from_slice(data);
        self.flow()
    }

    /// The first `n` bytes (at most what is buffered), taken out.
    pub(crate) fn take(&mut self, n: usize) -> (Bytes, Flow) {
        let n = n.min(self.data.len());
        let taken = self.data.split_to(n).freeze();
        (taken, self.flow())
    }

    /// Copies into `out` as much as fits, taking it out.
    pub(crate) fn take_into(&mut self, out: &mut [u8]) -> (usize, Flow) {
        let n = out.len().min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        let _ = self.data.split_to(n);
        (n, self.flow())
    }

    pub(crate) fn set_limit(&mut self, limit: usize) -> Flow {
        self.limit = limit.max(1);
        self.flow()
    }

    /// The read in progress needs `want` bytes (0: it is over).
    pub(crate) fn set_want(&mut self, want: usize) -> Flow {
        self.want = want;
        self.flow()
    }

    /// Whether to pause or resume reading now (hysteresis: pause at the mark, resume at
    /// half the limit, or when the read in progress needs more than is here).
    pub(crate) fn flow(&mut self) -> Flow {
        if self.is_ended() {
            return Flow::Keep;
        }
        let mark = self.limit.max(self.want);
        let len = self.data.len();
        if !self.paused && len >= mark {
            self.paused = true;
            return Flow::Pause;
        }
        if self.paused && len < mark && (len <= self.limit / 2 || self.want > len) {
            self.paused = false;
            return Flow::Resume;
        }
        Flow::Keep
    }
}

/// Where `delim` first occurs in `hay`, searching from `from` (a delimiter may straddle the
/// point where the last search stopped).
pub(crate) fn find(hay: &[u8], delim: &[u8], from: usize) -> Option<usize> {
    if delim.is_empty() {
        return Some(0);
    }
    let start = from.saturating_sub(delim.len() - 1);
    if delim.len() == 1 {
        return hay[start.min(hay.len())..]
            .iter()
            .position(|&b| b == delim[0])
            .map(|i| i + start);
    }
    hay.get(start..)?
        .windows(delim.len())
        .position(|w| w == delim)
        .map(|i| i + start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_at_the_limit_and_resumes_at_half() {
        let mut b = ReadBuffer::new(100);
        assert_eq!(b.push(&[0; 99]), Flow::Keep);
        assert_eq!(b.push(&[0; 1]), Flow::Pause);
        assert_eq!(b.push(&[0; 10]), Flow::Keep, "already paused");
        assert_eq!(b.take(59).1, Flow::Keep, "51 left: above half");
        assert_eq!(b.take(1).1, Flow::Resume, "50 left: half the limit");
        assert_eq!(b.take(50).1, Flow::Keep);
    }

    #[test]
    fn a_read_that_needs_more_than_the_limit_resumes_reading() {
        let mut b = ReadBuffer::new(100);
        assert_eq!(b.push(&[0; 100]), Flow::Pause);
        // A line of up to 300 bytes is being read: it needs more than the limit.
        assert_eq!(b.set_want(300), Flow::Resume);
        assert_eq!(b.push(&[0; 150]), Flow::Keep);
        assert_eq!(b.push(&[0; 50]), Flow::Pause, "the read's own bound");
        assert_eq!(b.set_want(0), Flow::Keep, "300 held: far above the limit");
        assert_eq!(b.take(250).1, Flow::Resume);
    }

    #[test]
    fn nothing_changes_once_the_peer_is_done() {
        let mut b = ReadBuffer::new(10);
        b.end = End::Eof;
        assert_eq!(b.push(&[0; 20]), Flow::Keep);
        assert_eq!(b.take(20).1, Flow::Keep);
    }

    #[test]
    fn take_into_copies_what_fits() {
        let mut b = ReadBuffer::new(10);
        let _ = b.push(b"hello world");
        let mut out = [0u8; 5];
        assert_eq!(b.take_into(&mut out).0, 5);
        assert_eq!(&out, b"hello");
        assert_eq!(b.bytes(), b" world");
    }

    #[test]
    fn find_sees_a_delimiter_across_the_last_search_point() {
        assert_eq!(find(b"ab\r\ncd", b"\r\n", 0), Some(2));
        assert_eq!(find(b"ab\r\ncd", b"\r\n", 3), Some(2), "started inside it");
        assert_eq!(find(b"abc", b"\n", 0), None);
        assert_eq!(find(b"abc\n", b"\n", 2), Some(3));
        assert_eq!(find(b"abc", b"\n", 10), None);
        assert_eq!(find(b"", b"\r\n", 0), None);
    }
}
