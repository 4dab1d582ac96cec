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
//! A registration is level-triggered unless its owner asks for edges
//! ([`Registration::new_edge`]: stream connections, which read until the kernel has
//! nothing more). Interest changes are recorded and applied once,
//! just before the next wait, and only if they differ from what the kernel has: a write
//! queue that fills and drains within one iteration costs no `epoll_ctl` at all.
//!
//! Epoll reports hang-ups and errors even to a registration that wants nothing. A
//! level-triggered one would report them on every wait (a paused connection whose peer
//! left would spin the loop), so it is taken out of the poller while it wants nothing. An
//! edge-triggered one stays in with an empty interest set and hears a failure once: a
//! connection whose reading is paused, with nothing to write, still learns that its peer
//! reset (see `Poller::keeps_idle`).
//!
//! A descriptor the poller refuses because it is always ready (epoll says `EPERM` for a
//! regular file, and for `/dev/null`: standard input redirected from a file) is watched by
//! emulation instead: while it wants anything, the loop does not block, and after each
//! wait it is reported ready for what it wants (what Twisted's epoll reactor does for
//! files). Reading a file never blocks for long, and a connection reads a bounded amount
//! per event, so a large file is read a slice per iteration without stalling the loop.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::{Rc, Weak};
use std::sync::Arc;

use super::poller::{Poller, Trigger};
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
    /// The peer closed or the socket failed (see `poller::Ready::closed`).
    pub(crate) closed: bool,
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
    /// Whether this is an open connection accepted by the port counting with `port` (such
    /// a port winds down its connections by finding them among the reactor's sources).
    fn accepted_by(&self, _port: &crate::net::accepted::Accepted) -> bool {
        false
    }
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
    /// The poller has the descriptor (an idle edge-triggered one stays, wanting nothing).
    in_poller: bool,
    dirty: bool,
    /// The poller refused the descriptor as always ready: readiness is emulated.
    emulated: bool,
    trigger: Trigger,
    source: Rc<dyn Source>,
}

/// Whether the poller refused a descriptor because it is always ready (a regular file).
fn always_ready(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::EPERM)
}

/// The watched descriptors of one reactor, keyed by token (a [`Key`] packed in a `usize`).
pub(crate) struct Registry {
    pub(crate) poller: Arc<Poller>,
    entries: RefCell<Keyed<Entry>>,
    dirty: RefCell<Vec<Key>>,
    /// The entries whose readiness is emulated (few: standard input from a file).
    emulated: RefCell<Vec<Key>>,
}

impl Registry {
    pub(crate) fn new(poller: Arc<Poller>) -> Registry {
        Registry {
            poller,
            entries: RefCell::new(Keyed::default()),
            dirty: RefCell::new(Vec::new()),
            emulated: RefCell::new(Vec::new()),
        }
    }

    /// Records the interest `key` wants; applied before the next wait if it changed.
    fn set_interest(&self, key: Key, interest: Interest) {
        let mut entries = self.entries.borrow_mut();
        let Some(entry) = entries.get_mut(key) else {
            return;
        };
        entry.wanted = interest;
        if entry.wanted != entry.registered {
            self.mark_dirty(entry, key);
        }
    }

    /// Queues `entry` for `flush_interest` (once).
    fn mark_dirty(&self, entry: &mut Entry, key: Key) {
        if !entry.dirty {
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
            let belongs_in = want != Interest::NONE || self.poller.keeps_idle(entry.trigger);
            if (want == have && entry.in_poller == belongs_in) || entry.emulated {
                entry.registered = want;
                continue;
            }
            let token = key.to_usize();
            let adding = !entry.in_poller;
            let result = if adding {
                // SAFETY: an entry's descriptor is owned by its `Registration`, which
                // removes the entry before the descriptor closes.
                unsafe {
                    self.poller
                        .add(entry.fd, token, want.read, want.write, entry.trigger)
                }
            } else if !belongs_in {
                self.poller.delete(entry.fd)
            } else {
                self.poller
                    .modify(entry.fd, token, want.read, want.write, entry.trigger)
            };
            match result {
                Ok(()) => {
                    entry.registered = want;
                    entry.in_poller = belongs_in;
                }
                Err(err) if adding && always_ready(&err) => {
                    entry.emulated = true;
                    entry.registered = want;
                    self.emulated.borrow_mut().push(key);
                }
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
        if entry.emulated {
            self.emulated.borrow_mut().retain(|&k| k != key);
            return Some(entry.source);
        }
        if entry.in_poller && !(closing && self.poller.forget_on_close()) {
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

    /// Whether an emulated registration wants something now: then the loop must not block.
    pub(crate) fn has_emulated_ready(&self) -> bool {
        let emulated = self.emulated.borrow();
        if emulated.is_empty() {
            return false;
        }
        let entries = self.entries.borrow();
        emulated
            .iter()
            .any(|&key| entries.get(key).is_some_and(|e| e.wanted != Interest::NONE))
    }

    /// The emulated registrations that want something, as (token, what they want): each is
    /// ready for it.
    pub(crate) fn emulated_ready(&self) -> Vec<(usize, Interest)> {
        let emulated = self.emulated.borrow();
        let entries = self.entries.borrow();
        emulated
            .iter()
            .filter_map(|&key| {
                let e = entries.get(key)?;
                (e.wanted != Interest::NONE).then_some((key.to_usize(), e.wanted))
            })
            .collect()
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
        self.emulated.borrow_mut().clear();
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
        Registration::with_trigger(inner, io, interest, source, sharing, Trigger::Level)
    }

    /// Like [`new`](Registration::new), edge-triggered where the backend can: readiness is
    /// reported when it begins, so the source must read until a short read or
    /// `WouldBlock`, or come back to the descriptor on its own (a paused connection does
    /// when it resumes). Readiness already there when the interest is (re)set is reported.
    pub(crate) fn new_edge(
        inner: &Rc<Inner>,
        io: T,
        interest: Interest,
        source: Rc<dyn Source>,
        sharing: Sharing,
    ) -> Result<Registration<T>, (io::Error, T)> {
        Registration::with_trigger(inner, io, interest, source, sharing, Trigger::Edge)
    }

    fn with_trigger(
        inner: &Rc<Inner>,
        io: T,
        interest: Interest,
        source: Rc<dyn Source>,
        sharing: Sharing,
        trigger: Trigger,
    ) -> Result<Registration<T>, (io::Error, T)> {
        let registry = &inner.registry;
        let fd = io.as_raw_fd();
        let key = registry.entries.borrow_mut().insert(Entry {
            fd,
            wanted: interest,
            registered: interest,
            in_poller: interest != Interest::NONE,
            dirty: false,
            emulated: false,
            trigger,
            source,
        });
        if interest == Interest::NONE && registry.poller.keeps_idle(trigger) {
            // Into the poller before the next wait (with whatever interest it wants by
            // then), so that even a connection paused from its first callback hears a reset.
            if let Some(entry) = registry.entries.borrow_mut().get_mut(key) {
                registry.mark_dirty(entry, key);
            }
        } else if interest != Interest::NONE {
            // SAFETY: `io` owns `fd` and moves into the registration, whose `Drop` removes
            // the entry (and the descriptor from the poller) before `io` is dropped.
            let added = unsafe {
                registry
                    .poller
                    .add(fd, key.to_usize(), interest.read, interest.write, trigger)
            };
            match added {
                Ok(()) => {}
                Err(err) if always_ready(&err) => {
                    if let Some(entry) = registry.entries.borrow_mut().get_mut(key) {
                        entry.emulated = true;
                        entry.in_poller = false;
                    }
                    registry.emulated.borrow_mut().push(key);
                }
                Err(err) => {
                    let source = registry.entries.borrow_mut().remove(key);
                    drop(source);
                    return Err((err, io));
                }
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
