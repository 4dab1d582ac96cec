//! The reactor's run queues: `call_soon` callbacks, fired Deferreds, and connections with
//! gathered writes. (Cross-thread calls and task wake-ups are queued in
//! [`RemoteShared`](super::remote), the part of the reactor other threads can reach.)

use std::cell::RefCell;
use std::collections::VecDeque;
use std::panic::Location;
use std::rc::Rc;

use crate::time::timer::Job;

/// A fired Deferred whose callbacks are due (see `defer/deferred`).
pub(crate) trait Run {
    fn run(self: Rc<Self>);
    /// Where the Deferred was created (for the slow-callback warning).
    fn created_at(&self) -> &'static Location<'static>;
}

/// A connection with writes gathered while user code ran, to send before the loop waits.
pub(crate) trait Flush {
    fn flush_gathered(self: Rc<Self>);
}

#[derive(Default)]
pub(crate) struct RunQueues {
    ready: RefCell<VecDeque<Job>>,
    deferreds: RefCell<VecDeque<Rc<dyn Run>>>,
    flush: RefCell<Vec<Rc<dyn Flush>>>,
}

impl RunQueues {
    pub(crate) fn push_ready(&self, job: Job) {
        self.ready.borrow_mut().push_back(job);
    }

    pub(crate) fn ready_len(&self) -> usize {
        self.ready.borrow().len()
    }

    pub(crate) fn pop_ready(&self) -> Option<Job> {
        self.ready.borrow_mut().pop_front()
    }

    pub(crate) fn push_deferred(&self, item: Rc<dyn Run>) {
        self.deferreds.borrow_mut().push_back(item);
    }

    pub(crate) fn pop_deferred(&self) -> Option<Rc<dyn Run>> {
        self.deferreds.borrow_mut().pop_front()
    }

    pub(crate) fn push_flush(&self, conn: Rc<dyn Flush>) {
        self.flush.borrow_mut().push(conn);
    }

    pub(crate) fn take_flush(&self) -> Vec<Rc<dyn Flush>> {
        std::mem::take(&mut *self.flush.borrow_mut())
    }

    /// Whether callbacks, Deferreds or gathered writes are waiting.
    pub(crate) fn has_work(&self) -> bool {
        !self.ready.borrow().is_empty()
            || !self.deferreds.borrow().is_empty()
            || !self.flush.borrow().is_empty()
    }

    /// Drops everything queued (the reactor is closing), outside the borrows.
    pub(crate) fn clear(&self) {
        let ready = std::mem::take(&mut *self.ready.borrow_mut());
        let deferreds = std::mem::take(&mut *self.deferreds.borrow_mut());
        let flush = std::mem::take(&mut *self.flush.borrow_mut());
        drop((ready, deferreds, flush));
    }
}
