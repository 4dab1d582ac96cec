//! The part of a reactor other threads can reach: [`Remote`] (calls from other threads)
//! and the queue of woken tasks (a task's waker may be called from any thread).

use std::sync::Arc;

use crate::error::{Error, ErrorKind};
use crate::io::poller::Poller;
use crate::keyed::Key;
use crate::sync::Mailbox;

type RemoteJob = Box<dyn FnOnce() + Send>;

/// What other threads share with the reactor: its queue of calls, its queue of woken
/// tasks, and the poller to wake (the synchronisation is in [`Mailbox`], checked by loom).
pub(crate) struct RemoteShared {
    jobs: Mailbox<RemoteJob>,
    /// Tasks woken since the last task phase (keys into the reactor's task table).
    woken: Mailbox<Key>,
    poller: Arc<Poller>,
}

impl RemoteShared {
    pub(crate) fn new(poller: Arc<Poller>) -> Arc<RemoteShared> {
        Arc::new(RemoteShared {
            jobs: Mailbox::new(),
            woken: Mailbox::new(),
            poller,
        })
    }

    /// Whether anything is queued (cheap; no lock).
    pub(crate) fn has_pending(&self) -> bool {
        self.jobs.has_pending()
    }

    /// Takes everything queued so far.
    pub(crate) fn take(&self, into: &mut Vec<RemoteJob>) {
        self.jobs.take(into);
    }

    /// Refuses further calls and drops what was queued (the reactor is closed or dropped).
    pub(crate) fn close(&self) {
        let jobs = self.jobs.close();
        drop(jobs);
    }

    /// Queues a woken task; from another thread, also wakes the poller.
    pub(crate) fn wake_task(&self, key: Key, from_other_thread: bool) {
        // The woken-task mailbox is never closed: a wake after the reactor is gone is
        // queued and dropped with it.
        let _ = self.woken.push(key);
        if from_other_thread {
            self.wake();
        }
    }

    /// Whether a task was woken since the last [`take_woken`](RemoteShared::take_woken).
    pub(crate) fn has_woken(&self) -> bool {
        self.woken.has_pending()
    }

    /// Takes the tasks woken so far.
    pub(crate) fn take_woken(&self, into: &mut Vec<Key>) {
        self.woken.take(into);
    }

    pub(crate) fn wake(&self) {
        if let Err(err) = self.poller.notify() {
            log::warn!("cannot wake the reactor: {err}");
        }
    }
}

/// A `Send + Sync + Clone` handle that runs closures on the reactor's thread.
///
/// Everything queued is run, in order, at the start of a reactor iteration; if the reactor is
/// waiting for I/O it is woken. Calls made before `run()` or while the reactor is stopped stay
/// queued until it runs again. Only once the reactor itself is dropped (its thread ended) are
/// calls refused, with [`ErrorKind::ReactorGone`].
///
/// ```
/// use torsion_reactor::Reactor;
///
/// let reactor = Reactor::current();
/// let remote = reactor.remote();
/// std::thread::spawn(move || {
///     remote.call_from_thread(|| Reactor::current().stop().unwrap()).unwrap();
/// });
/// reactor.run().unwrap(); // returns once the other thread's call has run
/// ```
#[derive(Clone)]
pub struct Remote {
    pub(crate) shared: Arc<RemoteShared>,
}

impl Remote {
    /// Queues `f` to run on the reactor's thread and wakes the reactor.
    pub fn call_from_thread<F: FnOnce() + Send + 'static>(&self, f: F) -> Result<(), Error> {
        if let Err(refused) = self.shared.jobs.push(Box::new(f)) {
            drop(refused);
            return Err(Error::new(
                ErrorKind::ReactorGone,
                "call_from_thread: the reactor's thread has ended; the call was not queued",
            ));
        }
        self.shared.wake();
        Ok(())
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Remote")
    }
}
