//! [`Remote`]: the one handle to a reactor that may cross threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::poller::Poller;

use crate::error::{Error, ErrorKind};

type RemoteJob = Box<dyn FnOnce() + Send>;

struct Queue {
    jobs: Vec<RemoteJob>,
    /// False once the reactor is gone: later calls are refused, not silently dropped.
    open: bool,
}

pub(crate) struct RemoteShared {
    queue: Mutex<Queue>,
    pending: AtomicBool,
    poller: Arc<Poller>,
}

impl RemoteShared {
    pub(crate) fn new(poller: Arc<Poller>) -> Arc<RemoteShared> {
        Arc::new(RemoteShared {
            queue: Mutex::new(Queue {
                jobs: Vec::new(),
                open: true,
            }),
            pending: AtomicBool::new(false),
            poller,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock cannot leave the queue inconsistent (push/take only).
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether anything is queued (cheap; no lock).
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Takes everything queued so far.
    pub(crate) fn take(&self, into: &mut Vec<RemoteJob>) {
        if !self.pending.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut q = self.lock();
        into.append(&mut q.jobs);
    }

    /// Refuses further calls and drops what was queued (the reactor is being dropped).
    pub(crate) fn close(&self) {
        let jobs = {
            let mut q = self.lock();
            q.open = false;
            std::mem::take(&mut q.jobs)
        };
        drop(jobs);
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
        {
            let mut q = self.shared.lock();
            if !q.open {
                return Err(Error::new(
                    ErrorKind::ReactorGone,
                    "call_from_thread: the reactor's thread has ended; the call was not queued",
                ));
            }
            q.jobs.push(Box::new(f));
        }
        self.shared.pending.store(true, Ordering::Release);
        self.shared.wake();
        Ok(())
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Remote")
    }
}
