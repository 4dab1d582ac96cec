//! A datagram port's send queue (datagrams written and not yet taken by the socket, each
//! with its destination) and the flow-control state of its watermarks. No socket here:
//! both are unit-tested on their own.
//!
//! Payloads are copied into one growing arena and split off as `Bytes`, so queueing a
//! small datagram costs a copy and no allocation of its own; the arena's memory comes back
//! once the datagrams sent from it are dropped.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use socket2::SockAddr;

/// Datagrams a queue holds at most, whatever their size: zero-length datagrams cost no
/// bytes, and must not grow memory without bound either.
pub(crate) const MAX_QUEUED_DATAGRAMS: usize = 1024;

/// The arena grows by at least this much at a time.
const ARENA_CHUNK: usize = 16 * 1024;

/// One datagram waiting to be sent.
pub(crate) struct Queued {
    pub(crate) data: Bytes,
    /// Where to: `None` on a connected port (the peer).
    pub(crate) to: Option<SockAddr>,
}

/// Why a datagram was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Full;

#[derive(Default)]
pub(crate) struct SendQueue {
    items: VecDeque<Queued>,
    bytes: usize,
    arena: BytesMut,
}

impl SendQueue {
    /// Payload bytes waiting.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Datagrams waiting.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether one more datagram of `len` bytes would pass `limit` bytes (or the datagram
    /// count bound).
    pub(crate) fn would_overflow(&self, len: usize, limit: usize) -> bool {
        self.items.len() >= MAX_QUEUED_DATAGRAMS
            || (!self.items.is_empty() && self.bytes + len > limit)
    }

    /// Appends a copy of `data` for `to`, unless that would pass `limit` bytes or the
    /// datagram bound. An empty queue always takes one datagram, however large, so a
    /// datagram above the limit can still be sent when nothing else waits.
    pub(crate) fn push(
        &mut self,
        data: &[u8],
        to: Option<SockAddr>,
        limit: usize,
    ) -> Result<(), Full> {
        if self.would_overflow(data.len(), limit) {
            return Err(Full);
        }
        let data = if data.is_empty() {
            Bytes::new()
        } else {
            if self.arena.capacity() - self.arena.len() < data.len() {
                self.arena.reserve(data.len().max(ARENA_CHUNK));
            }
            self.arena.extend_from_slice(data);
            self.arena.split().freeze()
        };
        self.bytes += data.len();
        self.items.push_back(Queued { data, to });
        Ok(())
    }

    /// The oldest `n` datagrams (fewer if fewer wait).
    pub(crate) fn front(&self, n: usize) -> impl Iterator<Item = &Queued> {
        self.items.iter().take(n)
    }

    /// The oldest datagram.
    pub(crate) fn first(&self) -> Option<&Queued> {
        self.items.front()
    }

    /// Drops the oldest `n` datagrams (they were sent, or failed).
    pub(crate) fn pop(&mut self, n: usize) {
        for _ in 0..n {
            match self.items.pop_front() {
                Some(q) => self.bytes -= q.data.len(),
                None => break,
            }
        }
        if self.items.is_empty() && self.arena.capacity() > 4 * ARENA_CHUNK {
            // A burst is over: do not keep its memory.
            self.arena = BytesMut::new();
        }
    }

    /// Drops everything (the port was aborted or closed).
    pub(crate) fn clear(&mut self) {
        *self = SendQueue::default();
    }
}

/// What the protocol is to be told about its send queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FlowNotice {
    pub(crate) pause: bool,
    pub(crate) resume: bool,
}

/// The send queue's marks and what the protocol was told about them: above `high` it
/// hears `pause_writing`, back at or below `low` it hears `resume_writing`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Flow {
    pub(crate) high: usize,
    pub(crate) low: usize,
    /// Above the high mark and not yet drained to the low one (what `is_writing_paused`
    /// reports).
    paused: bool,
    /// Someone saw `paused` through `is_writing_paused`: they get `pause_writing` and then
    /// `resume_writing` even if the queue drained before they could be told.
    observed: bool,
    /// What the protocol was last told: `pause_writing` (true) or `resume_writing`.
    told_paused: bool,
    /// A delivery is scheduled.
    scheduled: bool,
}

impl Flow {
    pub(crate) fn new(high: usize, low: usize) -> Flow {
        Flow {
            high,
            low: low.min(high),
            paused: false,
            observed: false,
            told_paused: false,
            scheduled: false,
        }
    }

    /// The queue now holds `queued` bytes: returns whether a delivery must be scheduled.
    pub(crate) fn changed(&mut self, queued: usize) -> bool {
        if !self.paused && queued > self.high {
            self.paused = true;
        } else if self.paused && queued <= self.low {
            self.paused = false;
        }
        let due = self.paused != self.told_paused || (self.observed && !self.told_paused);
        let schedule = due && !self.scheduled;
        if schedule {
            self.scheduled = true;
        }
        schedule
    }

    /// New marks (`low` clamped to `high`), then as [`changed`](Flow::changed).
    pub(crate) fn set_marks(&mut self, high: usize, low: usize, queued: usize) -> bool {
        self.high = high;
        self.low = low.min(high);
        self.changed(queued)
    }

    /// `is_writing_paused`: the state now; if paused, a `resume_writing` is sure to follow.
    pub(crate) fn observe(&mut self) -> bool {
        if self.paused {
            self.observed = true;
        }
        self.paused
    }

    /// The scheduled delivery runs: what to tell the protocol so that what it heard last
    /// matches the queue now, and an observed pause is always followed by a resume.
    pub(crate) fn take_notice(&mut self) -> FlowNotice {
        self.scheduled = false;
        let pause = !self.told_paused && (self.paused || self.observed);
        let resume = (pause || self.told_paused) && !self.paused;
        self.observed = false;
        self.told_paused = self.paused;
        FlowNotice { pause, resume }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to() -> Option<SockAddr> {
        Some(SockAddr::from(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            9,
        ))))
    }

    #[test]
    fn datagrams_keep_their_order_boundaries_and_destinations() {
        let mut q = SendQueue::default();
        q.push(b"one", to(), 100).unwrap();
        q.push(b"", None, 100).unwrap();
        q.push(b"three", to(), 100).unwrap();
        assert_eq!((q.len(), q.bytes()), (3, 8));
        let got: Vec<(&[u8], bool)> = q.front(10).map(|d| (&d.data[..], d.to.is_some())).collect();
        assert_eq!(
            got,
            [
                (&b"one"[..], true),
                (&b""[..], false),
                (&b"three"[..], true)
            ]
        );
        q.pop(2);
        assert_eq!(q.first().map(|d| &d.data[..]), Some(&b"three"[..]));
        assert_eq!((q.len(), q.bytes()), (1, 5));
    }

    #[test]
    fn the_limit_counts_bytes_and_datagrams_but_an_empty_queue_takes_one() {
        let mut q = SendQueue::default();
        q.push(&[0; 300], to(), 100)
            .expect("an empty queue takes a large datagram");
        assert_eq!(q.push(b"x", to(), 100), Err(Full));
        q.pop(1);
        q.push(&[0; 60], to(), 100).unwrap();
        q.push(&[0; 40], to(), 100).unwrap();
        assert_eq!(q.push(b"y", to(), 100), Err(Full), "exactly at the limit");
        q.clear();
        for _ in 0..MAX_QUEUED_DATAGRAMS {
            q.push(b"", None, 100).unwrap();
        }
        assert_eq!(
            q.push(b"", None, 100),
            Err(Full),
            "zero-length datagrams count too"
        );
    }

    #[test]
    fn flow_uses_hysteresis_between_the_marks() {
        let mut f = Flow::new(100, 10);
        assert!(!f.changed(100), "at the mark is not above it");
        assert!(f.changed(101));
        assert!(f.observe());
        assert!(!f.changed(50), "already scheduled");
        assert!(f.observe(), "still paused above the low mark");
        assert_eq!(
            f.take_notice(),
            FlowNotice {
                pause: true,
                resume: false
            }
        );
        assert!(f.changed(10));
        assert!(!f.observe());
        assert_eq!(
            f.take_notice(),
            FlowNotice {
                pause: false,
                resume: true
            }
        );
    }

    #[test]
    fn an_observed_pause_gets_its_resume_even_if_the_queue_drained_first() {
        let mut f = Flow::new(100, 10);
        assert!(f.changed(500));
        assert!(f.observe());
        assert!(!f.changed(0));
        assert_eq!(
            f.take_notice(),
            FlowNotice {
                pause: true,
                resume: true
            }
        );
        assert_eq!(f.take_notice(), FlowNotice::default());
    }
}
