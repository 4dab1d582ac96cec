//! Timers: a binary heap of deadlines over a slab of callbacks, shared by the reactor and
//! [`Clock`](crate::Clock), and the [`DelayedCall`] handle that cancels or moves one.
//!
//! Cancelling removes the slab entry at once (dropping the closure); its heap item becomes a
//! tombstone, skipped when popped and swept out when tombstones dominate the heap.

use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind};
pub(crate) use crate::event_loop::callback::Job;
use crate::keyed::{Key, Keyed};

struct Entry {
    /// Changes on every reset; a heap item is live only if its `seq` matches.
    seq: u64,
    deadline: Instant,
    job: Job,
}

#[derive(PartialEq, Eq)]
struct HeapItem {
    deadline: Instant,
    seq: u64,
    key: Key,
}

impl Ord for HeapItem {
    // Reversed so `BinaryHeap` (a max-heap) pops the earliest deadline, then the lowest seq.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

impl PartialOrd for HeapItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Tombstones tolerated before a sweep is considered (Twisted's threshold).
const COMPACT_MIN: usize = 50;

#[derive(Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<HeapItem>,
    entries: Keyed<Entry>,
    tombstones: usize,
    next_seq: u64,
}

impl TimerQueue {
    fn insert(&mut self, deadline: Instant, job: Job) -> Key {
        let seq = self.next_seq;
        self.next_seq += 1;
        let key = self.entries.insert(Entry { seq, deadline, job });
        self.heap.push(HeapItem { deadline, seq, key });
        key
    }

    fn get(&self, key: Key) -> Option<&Entry> {
        self.entries.get(key)
    }

    fn cancel(&mut self, key: Key) -> bool {
        // Dropping the entry drops the closure now, not when its deadline comes.
        let Some(entry) = self.entries.remove(key) else {
            return false;
        };
        drop(entry);
        self.tombstone();
        true
    }

    fn reschedule(&mut self, key: Key, deadline: Instant) -> bool {
        let seq = self.next_seq;
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        self.next_seq += 1;
        entry.seq = seq;
        entry.deadline = deadline;
        self.heap.push(HeapItem { deadline, seq, key });
        self.tombstone();
        true
    }

    fn tombstone(&mut self) {
        if self.entries.is_empty() {
            // Nothing live: every heap item is a tombstone, no need to look them up.
            self.heap.clear();
            self.tombstones = 0;
            return;
        }
        self.tombstones += 1;
        if self.tombstones > COMPACT_MIN && self.tombstones > self.heap.len() / 2 {
            let entries = &self.entries;
            self.heap
                .retain(|item| entries.get(item.key).is_some_and(|e| e.seq == item.seq));
            self.tombstones = 0;
        }
    }

    fn is_live(&self, item: &HeapItem) -> bool {
        self.entries
            .get(item.key)
            .is_some_and(|entry| entry.seq == item.seq)
    }

    /// The earliest live deadline, dropping tombstones found on top.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(top) = self.heap.peek() {
            if self.is_live(top) {
                return Some(top.deadline);
            }
            self.heap.pop();
            self.tombstones = self.tombstones.saturating_sub(1);
        }
        None
    }

    /// Removes and returns the earliest timer due at or before `now`.
    #[cfg(test)]
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Job> {
        self.pop_due_at(now).map(|(_, job)| job)
    }

    /// Removes the earliest timer due at or before `now`, and returns it with its deadline.
    pub(crate) fn pop_due_at(&mut self, now: Instant) -> Option<(Instant, Job)> {
        let deadline = self.next_deadline()?;
        if deadline > now {
            return None;
        }
        let item = self.heap.pop()?;
        let entry = self.entries.remove(item.key)?;
        Some((deadline, entry.job))
    }

    /// Takes every timer out (the reactor is closing).
    fn take_all(&mut self) -> Keyed<Entry> {
        self.heap.clear();
        self.tombstones = 0;
        std::mem::take(&mut self.entries)
    }

    /// Number of pending (not cancelled, not run) timers.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub(crate) fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

/// Where "now" comes from: the OS's monotonic clock, or a test [`Clock`](crate::Clock)'s.
pub(crate) enum TimeSource {
    Real,
    Manual(Cell<Instant>),
}

/// A timer queue and its time source; [`DelayedCall`]s point here.
pub(crate) struct Timers {
    pub(crate) queue: RefCell<TimerQueue>,
    pub(crate) time: TimeSource,
}

impl Timers {
    pub(crate) fn new(time: TimeSource) -> Rc<Timers> {
        Rc::new(Timers {
            queue: RefCell::new(TimerQueue::default()),
            time,
        })
    }

    pub(crate) fn now(&self) -> Instant {
        match &self.time {
            TimeSource::Real => Instant::now(),
            TimeSource::Manual(now) => now.get(),
        }
    }

    pub(crate) fn schedule(self: &Rc<Self>, deadline: Instant, job: Job) -> DelayedCall {
        let key = self.queue.borrow_mut().insert(deadline, job);
        DelayedCall {
            timers: Rc::clone(self),
            key,
            cancelled: Cell::new(false),
        }
    }

    /// Drops every pending timer's closure (outside the borrow: closures run user `Drop`s).
    pub(crate) fn clear(&self) {
        let entries = self.queue.borrow_mut().take_all();
        drop(entries);
    }
}

/// `now + delay`, saturating at a deadline so far away it never comes (about a century):
/// `call_later(Duration::MAX, f)` is a timer that never fires, not a panic.
pub(crate) fn deadline_after(now: Instant, delay: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(delay.min(FAR))
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

/// Converts a delay in seconds (as read from a config file or a command line) into a
/// [`Duration`], rejecting negative, NaN and infinite values with a typed error.
///
/// ```
/// use torsion_reactor::delay_from_secs;
/// assert_eq!(delay_from_secs(1.5).unwrap().as_millis(), 1500);
/// assert!(delay_from_secs(-1.0).is_err());
/// assert!(delay_from_secs(f64::NAN).is_err());
/// ```
pub fn delay_from_secs(seconds: f64) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(seconds).map_err(|_| {
        Error::new(
            ErrorKind::InvalidDelay,
            format!("invalid delay {seconds} s: a delay must be a finite, non-negative number of seconds"),
        )
    })
}

/// A handle to a scheduled call, returned by `call_later`/`call_at` on the reactor or a
/// [`Clock`](crate::Clock): cancel it, move it, or ask whether it is still pending.
///
/// Dropping the handle does not cancel the call. Cancelling or moving a call that already ran
/// or was cancelled is an error ([`ErrorKind::AlreadyCalled`] / [`ErrorKind::AlreadyCancelled`]).
///
/// ```
/// use std::time::Duration;
/// use torsion_reactor::Clock;
///
/// let clock = Clock::new();
/// let call = clock.call_later(Duration::from_secs(5), || println!("never"));
/// assert!(call.active());
/// call.cancel().unwrap();
/// assert!(!call.active());
/// assert!(call.cancel().is_err()); // already cancelled
/// ```
pub struct DelayedCall {
    timers: Rc<Timers>,
    key: Key,
    cancelled: Cell<bool>,
}

impl DelayedCall {
    fn ended_error(&self, action: &str) -> Error {
        if self.cancelled.get() {
            Error::new(
                ErrorKind::AlreadyCancelled,
                format!("cannot {action} a delayed call that was already cancelled"),
            )
        } else {
            Error::new(
                ErrorKind::AlreadyCalled,
                format!("cannot {action} a delayed call that already ran"),
            )
        }
    }

    /// Whether the call is still pending: not run and not cancelled.
    pub fn active(&self) -> bool {
        self.timers.queue.borrow().get(self.key).is_some()
    }

    /// When the call is due, or `None` once it ran or was cancelled.
    pub fn time(&self) -> Option<Instant> {
        self.timers.queue.borrow().get(self.key).map(|e| e.deadline)
    }

    /// Cancels the call; its closure is dropped at once.
    pub fn cancel(&self) -> Result<(), Error> {
        if self.timers.queue.borrow_mut().cancel(self.key) {
            self.cancelled.set(true);
            Ok(())
        } else {
            Err(self.ended_error("cancel"))
        }
    }

    /// Moves the call to `delay` from now.
    pub fn reset(&self, delay: Duration) -> Result<(), Error> {
        let deadline = deadline_after(self.timers.now(), delay);
        if self
            .timers
            .queue
            .borrow_mut()
            .reschedule(self.key, deadline)
        {
            Ok(())
        } else {
            Err(self.ended_error("reset"))
        }
    }

    /// Postpones the call by `extra` beyond its current deadline.
    pub fn delay(&self, extra: Duration) -> Result<(), Error> {
        let Some(current) = self.time() else {
            return Err(self.ended_error("delay"));
        };
        let deadline = deadline_after(current, extra);
        self.timers
            .queue
            .borrow_mut()
            .reschedule(self.key, deadline);
        Ok(())
    }
}

impl fmt::Debug for DelayedCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelayedCall")
            .field("active", &self.active())
            .field("time", &self.time())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::Location;

    fn job(log: &Rc<RefCell<Vec<u32>>>, n: u32) -> Job {
        let log = log.clone();
        Job {
            f: Box::new(move || log.borrow_mut().push(n)),
            origin: Location::caller(),
        }
    }

    #[test]
    fn pops_in_deadline_then_insertion_order() {
        let mut q = TimerQueue::default();
        let log = Rc::new(RefCell::new(Vec::new()));
        let t0 = Instant::now();
        q.insert(t0 + Duration::from_millis(20), job(&log, 1));
        q.insert(t0 + Duration::from_millis(10), job(&log, 2));
        q.insert(t0 + Duration::from_millis(20), job(&log, 3));
        q.insert(t0 + Duration::from_millis(10), job(&log, 4));
        assert!(q.pop_due(t0).is_none());
        while let Some(j) = q.pop_due(t0 + Duration::from_millis(20)) {
            (j.f)();
        }
        assert_eq!(*log.borrow(), vec![2, 4, 1, 3]);
    }

    #[test]
    fn cancel_drops_closure_at_once_and_compacts() {
        let mut q = TimerQueue::default();
        let t0 = Instant::now();
        let marker = Rc::new(());
        let mut keys = Vec::new();
        for i in 0..1000u64 {
            let m = marker.clone();
            keys.push(q.insert(
                t0 + Duration::from_secs(i),
                Job {
                    f: Box::new(move || drop(m)),
                    origin: Location::caller(),
                },
            ));
        }
        assert_eq!(Rc::strong_count(&marker), 1001);
        for &key in &keys[..900] {
            assert!(q.cancel(key));
        }
        assert_eq!(Rc::strong_count(&marker), 101, "closures dropped on cancel");
        assert!(
            q.heap_len() < 1000,
            "heap compacted, {} items left",
            q.heap_len()
        );
        assert_eq!(q.len(), 100);
        assert!(!q.cancel(keys[0]), "second cancel fails");
    }
}
