//! The reactor's table of watched descriptors, and [`Registration`]: the one type through
//! which anything (a connection, a listener, a connect in progress, a raw descriptor, the
//! signal pipe, a datagram port, a pipe) is watched.
//!
//! A `Registration<T>` owns its descriptor `T` and its entry here, the way async-io's
//! `Async<T>` does: registering is safe, and dropping it deregisters and then closes, so
//! no caller has to remember "delete from the poller before close". The entry holds the
//! [`Source`] the loop hands readiness to, so the reactor keeps a watched object alive
//! until its registration goes.
//!
//! Every registration is level-triggered. Interest changes are recorded and applied once,
//! just before the next wait, and only if they differ from what the kernel has: a write
//! queue that fills and drains within one iteration costs no `epoll_ctl` at all. A
//! registration that wants nothing is taken out of the poller altogether, because epoll
//! reports hang-ups and errors even to an empty interest set, and level-triggered, that
//! would wake the loop forever for a connection whose reading is paused.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::{Rc, Weak};
use std::sync::Arc;

use super::poller::Poller;
use crate::event_loop::Inner;
use crate::keyed::{Key, Keyed};

/// Which readiness a registration wants to hear about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Interest {
    pub(crate) read: bool,
    pub(crate) write: bool,
}

impl Interest {
    pub(crate) const READ: Interest = Interest {
        read: true,
        write: false,
    };
    pub(crate) const WRITE: Interest = Interest {
        read: false,
        write: true,
    };
    pub(crate) const NONE: Interest = Interest {
        read: false,
        write: false,
    };
}

/// What the poller reported for one registration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Readiness {
    pub(crate) readable: bool,
    pub(crate) writable: bool,
}

/// How a source should wind down when the reactor stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wind {
    /// Stop accepting; flush and close connections.
    Graceful,
    /// Close everything now.
    Abort,
}

/// Whoever owns a registered descriptor. The loop calls `ready` with no reactor borrow held.
pub(crate) trait Source {
    fn ready(self: Rc<Self>, inner: &Rc<Inner>, readiness: Readiness);
    fn wind_down(self: Rc<Self>, _inner: &Rc<Inner>, _how: Wind) {}
    /// The poller refused a change of interest (`epoll_ctl`: out of memory, or the user's
    /// watch limit): the source is not watched as it asked, and must not wait for events
    /// that will never come. A connection fails with the error; the default logs it.
    fn watch_failed(self: Rc<Self>, _inner: &Rc<Inner>, err: io::Error) {
        log::error!("the poller refused to watch a descriptor: {err}");
    }
}

struct Entry {
    fd: RawFd,
    wanted: Interest,
    registered: Interest,
    dirty: bool,
    source: Rc<dyn Source>,
}

/// The watched descriptors of one reactor, keyed by token (a [`Key`] packed in a `usize`).
pub(crate) struct Registry {
    pub(crate) poller: Arc<Poller>,
    entries: RefCell<Keyed<Entry>>,
    dirty: RefCell<Vec<Key>>,
}

impl Registry {
    pub(crate) fn new(poller: Arc<Poller>) -> Registry {
        Registry {
            poller,
            entries: RefCell::new(Keyed::default()),
            dirty: RefCell::new(Vec::new()),
        }
    }

    /// Records the interest `key` wants; applied before the next wait if it changed.
    fn set_interest(&self, key: Key, interest: Interest) {
        let mut entries = self.entries.borrow_mut();
        let Some(entry) = entries.get_mut(key) else {
            return;
        };
        entry.wanted = interest;
        if !entry.dirty && entry.wanted != entry.registered {
            entry.dirty = true;
            self.dirty.borrow_mut().push(key);
        }
    }

    /// Applies recorded interest changes: one `epoll_ctl` per registration that really
    /// changed. A source whose change the poller refused is told (`Source::watch_failed`).
    pub(crate) fn flush_interest(&self, inner: &Rc<Inner>) {
        let mut dirty = std::mem::take(&mut *self.dirty.borrow_mut());
        if dirty.is_empty() {
            return;
        }
        let mut failed = Vec::new();
        let mut entries = self.entries.borrow_mut();
        for &key in &dirty {
            let Some(entry) = entries.get_mut(key) else {
                continue;
            };
            entry.dirty = false;
            let (want, have) = (entry.wanted, entry.registered);
            if want == have {
                continue;
            }
            let token = key.to_usize();
            let result = if have == Interest::NONE {
                // SAFETY: an entry's descriptor is owned by its `Registration`, which
                // removes the entry before the descriptor closes.
                unsafe { self.poller.add(entry.fd, token, want.read, want.write) }
            } else if want == Interest::NONE {
                self.poller.delete(entry.fd)
            } else {
                self.poller.modify(entry.fd, token, want.read, want.write)
            };
            match result {
                Ok(()) => entry.registered = want,
                Err(err) => failed.push((Rc::clone(&entry.source), err)),
            }
        }
        drop(entries);
        for (source, err) in failed {
            source.watch_failed(inner, err);
        }
        // Give the allocation back for the next round.
        dirty.clear();
        let mut mine = self.dirty.borrow_mut();
        if mine.is_empty() {
            *mine = dirty;
        }
    }

    /// Removes `key`'s entry (and its descriptor from the poller, unless `closing` and the
    /// poller forgets closed descriptors by itself). Returns the source, for the caller to
    /// drop outside any borrow.
    fn remove(&self, key: Key, closing: bool) -> Option<Rc<dyn Source>> {
        let entry = self.entries.borrow_mut().remove(key)?;
        super::fault::deregistered(key.to_usize());
        if entry.registered != Interest::NONE && !(closing && self.poller.forget_on_close()) {
            if let Err(err) = self.poller.delete(entry.fd) {
                log::debug!("cannot remove fd {} from the poller: {err}", entry.fd);
            }
        }
        Some(entry.source)
    }

    /// The source registered under the token an event carried, if it is still that one.
    pub(crate) fn source_for_token(&self, token: usize) -> Option<Rc<dyn Source>> {
        self.entries
            .borrow()
            .get(Key::from_usize(token))
            .map(|e| Rc::clone(&e.source))
    }

    /// Every registered source (for winding down at shutdown).
    pub(crate) fn all_sources(&self) -> Vec<Rc<dyn Source>> {
        self.entries
            .borrow()
            .values()
            .map(|e| Rc::clone(&e.source))
            .collect()
    }

    /// Forgets every entry (the reactor is closing): the sources are returned, to be dropped
    /// (or closed) by the caller with no borrow held.
    pub(crate) fn take_all(&self) -> Vec<Rc<dyn Source>> {
        let entries = std::mem::take(&mut *self.entries.borrow_mut());
        self.dirty.borrow_mut().clear();
        entries.values().map(|e| Rc::clone(&e.source)).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.borrow().len()
    }
}

/// Whether a registered descriptor is shared with anything outside its `Registration`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sharing {
    /// A socket the reactor created or accepted and nothing else holds: closing it removes it
    /// from epoll by itself, so the `EPOLL_CTL_DEL` before close is skipped.
    Exclusive,
    /// A descriptor a user handed in (it may have duplicates): always deleted first.
    Shared,
}

/// A descriptor `T` watched by a reactor: owns both, and on drop deregisters, then closes.
pub(crate) struct Registration<T: AsRawFd> {
    /// `None` only after [`into_inner`](Registration::into_inner) took it.
    io: Option<T>,
    key: Key,
    inner: Weak<Inner>,
    sharing: Sharing,
}

impl<T: AsRawFd> Registration<T> {
    /// Watches `io` for `interest` and hands its readiness to `source`. On failure the
    /// descriptor comes back with the error.
    pub(crate) fn new(
        inner: &Rc<Inner>,
        io: T,
        interest: Interest,
        source: Rc<dyn Source>,
        sharing: Sharing,
    ) -> Result<Registration<T>, (io::Error, T)> {
        let registry = &inner.registry;
        let fd = io.as_raw_fd();
        let key = registry.entries.borrow_mut().insert(Entry {
            fd,
            wanted: interest,
            registered: interest,
            dirty: false,
            source,
        });
        if interest != Interest::NONE {
            // SAFETY: `io` owns `fd` and moves into the registration, whose `Drop` removes
            // the entry (and the descriptor from the poller) before `io` is dropped.
            let added = unsafe {
                registry
                    .poller
                    .add(fd, key.to_usize(), interest.read, interest.write)
            };
            if let Err(err) = added {
                let source = registry.entries.borrow_mut().remove(key);
                drop(source);
                return Err((err, io));
            }
        }
        Ok(Registration {
            io: Some(io),
            key,
            inner: Rc::downgrade(inner),
            sharing,
        })
    }

    /// The descriptor.
    pub(crate) fn get(&self) -> &T {
        self.io
            .as_ref()
            .expect("a registration holds its descriptor until dropped")
    }

    /// Changes what the descriptor is watched for (applied before the next wait).
    pub(crate) fn set_interest(&self, interest: Interest) {
        if let Some(inner) = self.inner.upgrade() {
            inner.registry.set_interest(self.key, interest);
        }
    }

    /// Stops watching and gives the descriptor back (a finished connect attempt hands its
    /// socket to the connection).
    pub(crate) fn into_inner(mut self) -> T {
        self.deregister(false);
        self.io
            .take()
            .expect("a registration holds its descriptor until dropped")
    }

    fn deregister(&mut self, closing: bool) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let closing = closing && self.sharing == Sharing::Exclusive;
        let source = inner.registry.remove(self.key, closing);
        drop(source);
    }
}

impl<T: AsRawFd> Drop for Registration<T> {
    fn drop(&mut self) {
        if self.io.is_some() {
            self.deregister(true);
        }
        // `io` is dropped (closed) after this, with the poller no longer watching it.
    }
}
