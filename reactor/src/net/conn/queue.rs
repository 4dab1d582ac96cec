//! A connection's write queue: bytes written and not yet taken by the socket, in order.
//!
//! Small writes are copied into one growing tail buffer, so that a burst of them (sixteen
//! pipelined replies, a line written as prefix + text + newline) goes out as one slice of
//! one `send`; large ones are kept as their own chunks, without copying when they arrive
//! as `Bytes`. The tail's allocation is released once the queue empties, so an idle
//! connection holds no buffer.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// Writes up to this size are copied into the tail; larger ones stay separate chunks.
pub(crate) const COPY_MAX: usize = 4096;
/// Slices handed to one `writev`.
pub(crate) const MAX_IOVECS: usize = 64;

#[derive(Default)]
pub(crate) struct WriteQueue {
    /// Sealed chunks, oldest first; they all come before `tail`.
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
}

impl WriteQueue {
    /// Bytes waiting.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a copy of `data`.
    pub(crate) fn push_slice(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if data.len() <= COPY_MAX {
            self.tail.extend_from_slice(data);
        } else {
            self.seal();
            self.chunks.push_back(Bytes::copy_from_slice(data));
        }
        self.len += data.len();
    }

    /// Appends `data`, copying it only if it is small.
    pub(crate) fn push_bytes(&mut self, data: Bytes) {
        if data.len() <= COPY_MAX {
            self.push_slice(&data);
            return;
        }
        self.seal();
        self.len += data.len();
        self.chunks.push_back(data);
    }

    /// Moves the tail into the chunks, so that what comes next goes after it.
    fn seal(&mut self) {
        if !self.tail.is_empty() {
            let tail = std::mem::take(&mut self.tail).freeze();
            self.chunks.push_back(tail);
        }
    }

    /// Fills `slices` with the queue's contents, oldest first, up to [`MAX_IOVECS`].
    pub(crate) fn slices<'a>(&'a self, slices: &mut Vec<IoSlice<'a>>) {
        for chunk in self.chunks.iter().take(MAX_IOVECS) {
            slices.push(IoSlice::new(chunk));
        }
        if !self.tail.is_empty() && slices.len() < MAX_IOVECS {
            slices.push(IoSlice::new(&self.tail));
        }
    }

    /// Drops the first `n` bytes (they were sent).
    pub(crate) fn consume(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if n >= front.len() {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                return;
            }
        }
        if n > 0 {
            self.tail.advance(n.min(self.tail.len()));
        }
        if self.len == 0 {
            // Nothing left: give the tail's memory back.
            self.tail = BytesMut::new();
        }
    }

    /// Drops everything (the connection was aborted or failed).
    pub(crate) fn clear(&mut self) {
        *self = WriteQueue::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(q: &WriteQueue) -> Vec<u8> {
        let mut slices = Vec::new();
        q.slices(&mut slices);
        slices.iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn small_writes_share_one_slice_and_order_is_kept() {
        let mut q = WriteQueue::default();
        q.push_slice(b"ab");
        q.push_bytes(Bytes::from_static(b"cd"));
        q.push_slice(b"ef");
        let mut slices = Vec::new();
        q.slices(&mut slices);
        assert_eq!(slices.len(), 1);
        drop(slices);
        let big = vec![7u8; COPY_MAX + 1];
        q.push_bytes(Bytes::from(big.clone()));
        q.push_slice(b"gh");
        let mut want = b"abcdef".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"gh");
        assert_eq!(contents(&q), want);
        assert_eq!(q.len(), want.len());
    }

    #[test]
    fn consume_across_chunks_and_tail_then_release_the_tail() {
        let mut q = WriteQueue::default();
        q.push_slice(b"hello");
        q.push_bytes(Bytes::from(vec![1u8; COPY_MAX + 10]));
        q.push_slice(b"world");
        q.consume(3);
        assert_eq!(&contents(&q)[..2], b"lo");
        q.consume(2 + COPY_MAX + 10 + 1);
        assert_eq!(contents(&q), b"orld");
        q.consume(4);
        assert!(q.is_empty());
        assert_eq!(q.tail.capacity(), 0, "an empty queue holds no memory");
    }
}
