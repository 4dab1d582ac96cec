//! The part of a reactor other threads can reach: [`Remote`] (calls from other threads),
//! the queue of woken tasks (a task's waker may be called from any thread), and whether the
//! reactor is being run, for the threads blocked in a call into it
//! (`Remote::blocking_call_from_thread`, in `defer/blocking.rs`).

use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;

use crate::error::{Error, ErrorKind};
use crate::io::poller::Poller;
use crate::keyed::Key;
use crate::sync::Mailbox;

type RemoteJob = Box<dyn FnOnce() + Send>;

/// A call another thread is blocked in: told when the reactor stops running before the
/// call could complete.
pub(crate) trait Abort: Send + Sync {
    fn abort(&self, why: Error);
}

#[derive(Default)]
struct Serving {
    /// `run()` or `run_until()` calls in progress (0 or 1: they do not nest).
    depth: usize,
    /// Blocking calls waiting for the reactor.
    calls: Vec<Arc<dyn Abort>>,
}

/// What other threads share with the reactor: its queue of calls, its queue of woken
/// tasks, the blocking calls waiting for it, and the poller to wake (the queues'
/// synchronisation is in [`Mailbox`], checked by loom).
pub(crate) struct RemoteShared {
    jobs: Mailbox<RemoteJob>,
    serving: Mutex<Serving>,
    /// The reactor's own thread.
    owner: ThreadId,
    /// Tasks woken since the last task phase (keys into the reactor's task table).
    woken: Mailbox<Key>,
    poller: Arc<Poller>,
}

impl RemoteShared {
    pub(crate) fn new(poller: Arc<Poller>) -> Arc<RemoteShared> {
        Arc::new(RemoteShared {
            jobs: Mailbox::new(),
            serving: Mutex::new(Serving::default()),
            owner: std::thread::current().id(),
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

    fn serving(&self) -> MutexGuard<'_, Serving> {
        // Push/remove/take only: a poisoned lock still holds a consistent list.
        self.serving.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `run()` or `run_until()` starts: blocking calls from other threads are accepted.
    pub(crate) fn serving_begin(&self) {
        self.serving().depth += 1;
    }

    /// `run()` or `run_until()` returns: the blocking calls still waiting fail (the
    /// reactor may never run again to complete them).
    pub(crate) fn serving_end(&self) {
        let calls = {
            let mut serving = self.serving();
            serving.depth = serving.depth.saturating_sub(1);
            if serving.depth > 0 {
                return;
            }
            std::mem::take(&mut serving.calls)
        };
        for call in calls {
            call.abort(Error::new(
                ErrorKind::NotRunning,
                "the reactor stopped running before the blocking call completed",
            ));
        }
    }

    /// Registers a blocking call; `false` if the reactor is not being run.
    pub(crate) fn register_call(&self, call: Arc<dyn Abort>) -> bool {
        let mut serving = self.serving();
        if serving.depth == 0 {
            return false;
        }
        serving.calls.push(call);
        true
    }

    /// The call completed (or gave up).
    pub(crate) fn unregister_call(&self, call: &Arc<dyn Abort>) {
        self.serving().calls.retain(|c| !Arc::ptr_eq(c, call));
    }

    /// The reactor's own thread.
    pub(crate) fn owner(&self) -> ThreadId {
        self.owner
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
