//! Reaping children, and what happens to them when the reactor stops.
//!
//! Each child is watched through a pidfd where the kernel has one (Linux 5.3; checked at
//! run time): a descriptor that becomes readable when the child ends, registered with the
//! poller like any other. Elsewhere (or with [`ChildWatcher::Sigchld`]) SIGCHLD, through
//! the reactor's signal pipes, triggers a `waitpid(pid, WNOHANG)` for each child this
//! reactor started and has not reaped: never `waitpid(-1)`, so children started by
//! other code (`std::process::Command`, another reactor) are never stolen. Either way a
//! child is reaped as soon as it ends, so no zombie survives its `process_exited`.
//!
//! The table of running children is the reactor's: it keeps a child's state alive until
//! it is reaped (whether or not the application kept its [`Process`](super::Process)
//! handle), and it is what the shutdown waits for and then kills.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use libc::pid_t;

use super::ProcState;
use super::options::OnReactorStop;
use super::sys;
use crate::event_loop::signals::Subscriber;
use crate::event_loop::{Inner, Reactor};
use crate::io::Wind;

/// How long the shutdown (or `close`) waits for killed children to be reaped.
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(1);

/// How a reactor learns that its children ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChildWatcher {
    /// A pidfd per child where the kernel has them (Linux 5.3 and later), else SIGCHLD.
    /// The default.
    #[default]
    Auto,
    /// SIGCHLD and `waitpid(pid, WNOHANG)` for each child (what `Auto` falls back to;
    /// for kernels or sandboxes without pidfds, and to test that path).
    Sigchld,
}

/// A reactor's running children, by pid.
#[derive(Default)]
pub(crate) struct Children {
    running: RefCell<BTreeMap<pid_t, Rc<ProcState>>>,
    /// Children watched through SIGCHLD (those without a pidfd).
    by_signal: Cell<usize>,
    watcher: Cell<ChildWatcher>,
}

impl Children {
    pub(crate) fn watcher(&self) -> ChildWatcher {
        self.watcher.get()
    }

    /// Starts watching SIGCHLD for a child about to be started without a pidfd (before
    /// it starts, so that its end cannot be missed).
    pub(crate) fn watch_sigchld(&self, inner: &Rc<Inner>) -> Result<(), crate::Error> {
        inner
            .signals
            .subscribe(inner, libc::SIGCHLD, Subscriber::Reap)?;
        self.by_signal.set(self.by_signal.get() + 1);
        Ok(())
    }

    /// One child watched through SIGCHLD is gone (reaped, or never started).
    pub(crate) fn unwatch_sigchld(&self, inner: &Inner) {
        let left = self.by_signal.get().saturating_sub(1);
        self.by_signal.set(left);
        if left == 0 {
            inner.signals.unsubscribe(libc::SIGCHLD, Subscriber::Reap);
        }
    }

    pub(crate) fn add(&self, state: Rc<ProcState>) {
        self.running.borrow_mut().insert(state.pid, state);
    }

    pub(crate) fn forget(&self, pid: pid_t) {
        let state = self.running.borrow_mut().remove(&pid);
        drop(state);
    }

    /// SIGCHLD arrived: reap whichever of our children watched that way have ended.
    pub(crate) fn reap_after_sigchld(&self, _inner: &Rc<Inner>) {
        let watched: Vec<Rc<ProcState>> = self
            .running
            .borrow()
            .values()
            .filter(|s| !s.has_pidfd())
            .cloned()
            .collect();
        for state in watched {
            state.try_reap();
        }
    }

    /// Children the shutdown waits for (all but those to be left running).
    pub(crate) fn waiting(&self) -> usize {
        self.running
            .borrow()
            .values()
            .filter(|s| s.on_stop != OnReactorStop::Leave)
            .count()
    }

    /// At the start of a shutdown, `SIGTERM` to the children that asked for it; at its
    /// end (or when the reactor closes), `SIGKILL` to those still running, logged.
    pub(crate) fn wind_down(&self, how: Wind) {
        let running: Vec<Rc<ProcState>> = self.running.borrow().values().cloned().collect();
        for state in running {
            match (how, state.on_stop) {
                (_, OnReactorStop::Leave) => {}
                (Wind::Graceful, OnReactorStop::Terminate) => {
                    log::info!(
                        "stopping: sending SIGTERM to child {} ({})",
                        state.pid,
                        state.program
                    );
                    let _ = sys::kill(state.pid, libc::SIGTERM);
                }
                (Wind::Graceful, OnReactorStop::Kill) => {}
                (Wind::Abort, _) => {
                    log::warn!(
                        "child {} ({}) still running after the shutdown grace period; killing it",
                        state.pid,
                        state.program
                    );
                    let _ = sys::kill(state.pid, libc::SIGKILL);
                }
            }
        }
    }

    /// Forgets every child (the reactor is closing).
    pub(crate) fn clear(&self) {
        let running = std::mem::take(&mut *self.running.borrow_mut());
        for state in running.values() {
            state.forget_watch();
        }
        drop(running);
    }
}

impl Reactor {
    /// How this reactor learns that its children ended (default [`ChildWatcher::Auto`]:
    /// pidfds where the kernel has them). Applies to children started afterwards.
    pub fn set_child_watcher(&self, watcher: ChildWatcher) {
        self.inner.children.watcher.set(watcher);
    }

    /// Number of children started on this reactor that have not been reaped yet
    /// (diagnostics and leak tests).
    pub fn running_children(&self) -> usize {
        self.inner.children.running.borrow().len()
    }
}
