//! [`Mailbox`]: what other threads hand the reactor thread.

use super::{AtomicBool, Mutex, Ordering, lock};

struct Inner<T> {
    items: Vec<T>,
    /// False once closed: later pushes are refused, not silently dropped.
    open: bool,
}

/// A queue any thread may push to, drained by one thread. `pending` says, without the
/// lock, whether anything was pushed since the last [`take`](Mailbox::take): it is set
/// after the push (so a reader that sees it finds the item) and cleared before the drain
/// (so an item pushed meanwhile sets it again and is not forgotten).
pub(crate) struct Mailbox<T> {
    inner: Mutex<Inner<T>>,
    pending: AtomicBool,
}

impl<T> Mailbox<T> {
    pub(crate) fn new() -> Mailbox<T> {
        Mailbox {
            inner: Mutex::new(Inner {
                items: Vec::new(),
                open: true,
            }),
            pending: AtomicBool::new(false),
        }
    }

    /// Adds `item`; gives it back if the mailbox is closed.
    pub(crate) fn push(&self, item: T) -> Result<(), T> {
        {
            let mut inner = lock(&self.inner);
            if !inner.open {
                return Err(item);
            }
            inner.items.push(item);
        }
        self.pending.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether anything was pushed since the last `take` (cheap; no lock).
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Appends everything pushed so far to `into`.
    pub(crate) fn take(&self, into: &mut Vec<T>) {
        // A compare-exchange rather than a swap: the same on the machine, and loom (0.7)
        // models it right, where a swap can let another thread's store slip between its
        // read and its write (loom issues #254 and #389).
        if self
            .pending
            .compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        into.append(&mut lock(&self.inner).items);
    }

    /// Refuses further pushes; returns what was there, for the caller to drop (outside the
    /// lock: dropping a job may run arbitrary code).
    pub(crate) fn close(&self) -> Vec<T> {
        let mut inner = lock(&self.inner);
        inner.open = false;
        std::mem::take(&mut inner.items)
    }
}
