//! Registrations with the OS poller: token packing, lazy interest changes, and the
//! `Source` trait through which the loop hands readiness to whoever owns a descriptor.
//!
//! Every registration is level-triggered. Interest changes are recorded and applied once,
//! just before the next wait, and only if they differ from what the kernel has: a write
//! queue that fills and drains within one iteration costs no `epoll_ctl` at all. A
//! registration that wants nothing is taken out of the poller altogether, because epoll
//! reports hang-ups and errors even to an empty interest set, and level-triggered, that
//! would wake the loop forever for a connection whose reading is paused.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;

use slab::Slab;

use crate::poller::Poller;

use crate::reactor::Inner;

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
}

/// Slab index in the low 32 bits, the slot's generation in the next 31: an event for a slot
/// that was freed and reused in the same batch no longer matches and is dropped.
/// (`usize::MAX` is the poller's own notify key, never produced here.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token(usize);

impl Token {
    fn new(index: usize, generation: u32) -> Token {
        Token(((generation as usize & 0x7fff_ffff) << 32) | index)
    }
    fn index(self) -> usize {
        self.0 & 0xffff_ffff
    }
    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

struct Registration {
    generation: u32,
    fd: RawFd,
    wanted: Interest,
    registered: Interest,
    dirty: bool,
    source: Rc<dyn Source>,
}

pub(crate) struct Registry {
    pub(crate) poller: Arc<Poller>,
    slab: RefCell<Slab<Registration>>,
    dirty: RefCell<Vec<Token>>,
    next_generation: Cell<u32>,
}

impl Registry {
    pub(crate) fn new(poller: Arc<Poller>) -> Registry {
        Registry {
            poller,
            slab: RefCell::new(Slab::new()),
            dirty: RefCell::new(Vec::new()),
            next_generation: Cell::new(0),
        }
    }

    /// Registers `fd` with the poller under a new token and stores the source `make` builds
    /// for that token.
    ///
    /// # Safety
    /// `fd` must stay open until [`Registry::deregister`] is called with the returned token
    /// (polling's I/O-safety contract: the poller must not watch a closed or reused number).
    pub(crate) unsafe fn register<S: Source + 'static>(
        &self,
        fd: RawFd,
        interest: Interest,
        make: impl FnOnce(Token) -> Rc<S>,
    ) -> io::Result<Rc<S>> {
        let generation = self.next_generation.get().wrapping_add(1) & 0x7fff_ffff;
        self.next_generation.set(generation);
        let index = self.slab.borrow().vacant_key();
        let token = Token::new(index, generation);
        if interest != Interest::NONE {
            // SAFETY: the caller guarantees `fd` is open until deregistered.
            unsafe {
                self.poller
                    .add(fd, token.0, interest.read, interest.write)?
            };
        }
        let source = make(token);
        let dyn_source: Rc<dyn Source> = source.clone();
        let key = self.slab.borrow_mut().insert(Registration {
            generation,
            fd,
            wanted: interest,
            registered: interest,
            dirty: false,
            source: dyn_source,
        });
        debug_assert_eq!(key, index);
        Ok(source)
    }

    /// Records the interest `token` wants; applied before the next wait if it changed.
    pub(crate) fn set_interest(&self, token: Token, interest: Interest) {
        let mut slab = self.slab.borrow_mut();
        let Some(reg) = slab
            .get_mut(token.index())
            .filter(|r| r.generation == token.generation())
        else {
            return;
        };
        reg.wanted = interest;
        if !reg.dirty && reg.wanted != reg.registered {
            reg.dirty = true;
            self.dirty.borrow_mut().push(token);
        }
    }

    /// Applies recorded interest changes: one `epoll_ctl` per registration that really changed.
    pub(crate) fn flush_interest(&self) {
        let dirty = std::mem::take(&mut *self.dirty.borrow_mut());
        if dirty.is_empty() {
            return;
        }
        let mut slab = self.slab.borrow_mut();
        for &token in &dirty {
            let Some(reg) = slab
                .get_mut(token.index())
                .filter(|r| r.generation == token.generation())
            else {
                continue;
            };
            reg.dirty = false;
            let (want, have) = (reg.wanted, reg.registered);
            if want == have {
                continue;
            }
            let result = if have == Interest::NONE {
                // SAFETY: a registered fd is open until `deregister` removes it from the slab.
                unsafe { self.poller.add(reg.fd, token.0, want.read, want.write) }
            } else if want == Interest::NONE {
                self.poller.delete(reg.fd)
            } else {
                self.poller.modify(reg.fd, token.0, want.read, want.write)
            };
            match result {
                Ok(()) => reg.registered = want,
                Err(err) => log::warn!("cannot change interest for fd {}: {err}", reg.fd),
            }
        }
        drop(slab);
        // Give the allocation back for the next round.
        let mut d = dirty;
        d.clear();
        let mut mine = self.dirty.borrow_mut();
        if mine.is_empty() {
            *mine = d;
        }
    }

    /// Removes `token` from the poller and the slab. Returns the source so the caller drops it
    /// outside any borrow. Must be called before the descriptor is closed.
    pub(crate) fn deregister(&self, token: Token) -> Option<Rc<dyn Source>> {
        self.remove(token, false)
    }

    /// Like [`deregister`](Registry::deregister), for a descriptor the caller closes right
    /// after and shares with nothing: where closing removes it from the poller by itself
    /// (epoll), the `EPOLL_CTL_DEL` system call is skipped.
    pub(crate) fn deregister_for_close(&self, token: Token) -> Option<Rc<dyn Source>> {
        self.remove(token, self.poller.forget_on_close())
    }

    fn remove(&self, token: Token, closing: bool) -> Option<Rc<dyn Source>> {
        let mut slab = self.slab.borrow_mut();
        let matches = slab
            .get(token.index())
            .is_some_and(|r| r.generation == token.generation());
        if !matches {
            return None;
        }
        let reg = slab.remove(token.index());
        drop(slab);
        if reg.registered != Interest::NONE && !closing {
            if let Err(err) = self.poller.delete(reg.fd) {
                log::debug!("cannot remove fd {} from the poller: {err}", reg.fd);
            }
        }
        Some(reg.source)
    }

    /// The source registered under the key an event carried, if it is still that source.
    pub(crate) fn source_for_key(&self, key: usize) -> Option<Rc<dyn Source>> {
        let token = Token(key);
        let slab = self.slab.borrow();
        slab.get(token.index())
            .filter(|r| r.generation == token.generation())
            .map(|r| Rc::clone(&r.source))
    }

    /// Every registered source (for winding down at shutdown).
    pub(crate) fn all_sources(&self) -> Vec<Rc<dyn Source>> {
        self.slab
            .borrow()
            .iter()
            .map(|(_, r)| Rc::clone(&r.source))
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.slab.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::Token;

    #[test]
    fn token_round_trips_and_never_collides_with_notify_key() {
        let t = Token::new(0xffff_ffff, u32::MAX);
        assert_ne!(t.0, usize::MAX);
        assert_eq!(t.index(), 0xffff_ffff);
        assert_eq!(t.generation(), 0x7fff_ffff);
        let t = Token::new(7, 3);
        assert_eq!((t.index(), t.generation()), (7, 3));
    }
}
