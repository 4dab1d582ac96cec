//! Watching raw descriptors: `add_reader` / `add_writer` (Twisted's `IReactorFDSet`,
//! asyncio's `add_reader`).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::rc::Rc;

use super::{Interest, Readiness, Registration, Sharing, Source};
use crate::error::{Error, ErrorKind};
use crate::event_loop::{Inner, Reactor, callback};

type Callback = Box<dyn FnMut()>;

/// The watched descriptors, by number.
#[derive(Default)]
pub(crate) struct Watches {
    by_fd: HashMap<RawFd, Rc<Watch>>,
}

impl Watches {
    /// Forgets every watch (the reactor is closing); the sources go with their registrations.
    pub(crate) fn clear(&mut self) -> Vec<Rc<Watch>> {
        self.by_fd.drain().map(|(_, w)| w).collect()
    }
}

#[derive(Default)]
struct Slot {
    callback: RefCell<Option<Callback>>,
    /// Bumped whenever the callback is set or removed, so a callback that removes or
    /// replaces itself while running is not put back afterwards.
    epoch: Cell<u64>,
    /// The callback is running (out of its slot): removing it then still removes one.
    running: Cell<bool>,
}

/// What the registration owns: the descriptor's number and whatever keeps it open (the
/// values given to `add_reader`/`add_writer`, dropped after deregistering).
struct Owners {
    fd: RawFd,
    keep: RefCell<Vec<Box<dyn Any>>>,
}

impl AsRawFd for Owners {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

pub(crate) struct Watch {
    registration: RefCell<Option<Registration<Owners>>>,
    reader: Slot,
    writer: Slot,
}

impl Watch {
    fn interest(&self) -> Interest {
        // A running callback is out of its slot but still there.
        Interest {
            read: self.reader.callback.borrow().is_some() || self.reader.running.get(),
            write: self.writer.callback.borrow().is_some() || self.writer.running.get(),
        }
    }

    fn run(slot: &Slot) {
        let epoch = slot.epoch.get();
        let Some(mut cb) = slot.callback.borrow_mut().take() else {
            return;
        };
        slot.running.set(true);
        callback::contain("a descriptor callback", None, &mut cb);
        slot.running.set(false);
        if slot.epoch.get() == epoch {
            *slot.callback.borrow_mut() = Some(cb);
        }
    }

    fn slot(&self, dir: Direction) -> &Slot {
        match dir {
            Direction::Read => &self.reader,
            Direction::Write => &self.writer,
        }
    }
}

impl Source for Watch {
    fn ready(self: Rc<Self>, _inner: &Rc<Inner>, readiness: Readiness) {
        if readiness.readable {
            Watch::run(&self.reader);
        }
        if readiness.writable {
            Watch::run(&self.writer);
        }
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Read,
    Write,
}

impl Reactor {
    fn add_watch<S: AsFd + 'static>(
        &self,
        source: S,
        dir: Direction,
        callback: Callback,
    ) -> Result<(), Error> {
        let inner = self.inner_open()?;
        let fd = source.as_fd().as_raw_fd();
        let existing = inner.fd_watches.borrow().by_fd.get(&fd).cloned();
        let watch = match existing {
            Some(watch) => watch,
            None => {
                let watch = Rc::new(Watch {
                    registration: RefCell::new(None),
                    reader: Slot::default(),
                    writer: Slot::default(),
                });
                let owners = Owners {
                    fd,
                    keep: RefCell::new(Vec::new()),
                };
                let registration = Registration::new(
                    &inner,
                    owners,
                    Interest::NONE,
                    watch.clone(),
                    Sharing::Shared,
                )
                .map_err(|(e, _)| Error::io(format!("cannot watch fd {fd}"), e))?;
                *watch.registration.borrow_mut() = Some(registration);
                inner
                    .fd_watches
                    .borrow_mut()
                    .by_fd
                    .insert(fd, Rc::clone(&watch));
                watch
            }
        };
        let slot = watch.slot(dir);
        if slot.callback.borrow().is_some() {
            let what = match dir {
                Direction::Read => "reader",
                Direction::Write => "writer",
            };
            return Err(Error::new(
                ErrorKind::AlreadyWatched,
                format!("fd {fd} already has a {what}; remove it first"),
            ));
        }
        *slot.callback.borrow_mut() = Some(callback);
        slot.epoch.set(slot.epoch.get() + 1);
        if let Some(registration) = &*watch.registration.borrow() {
            registration.get().keep.borrow_mut().push(Box::new(source));
            registration.set_interest(watch.interest());
        }
        Ok(())
    }

    fn remove_watch(&self, fd: RawFd, dir: Direction) -> bool {
        let inner = &self.inner;
        let Some(watch) = inner.fd_watches.borrow().by_fd.get(&fd).cloned() else {
            return false;
        };
        let slot = watch.slot(dir);
        let old = slot.callback.borrow_mut().take();
        slot.epoch.set(slot.epoch.get() + 1);
        // Removed from inside itself, the callback is out of its slot: it is there all
        // the same (and is not put back).
        let running = slot.running.replace(false);
        let interest = watch.interest();
        if interest == Interest::NONE {
            inner.fd_watches.borrow_mut().by_fd.remove(&fd);
            // Deregisters, then drops what kept the descriptor open.
            let registration = watch.registration.borrow_mut().take();
            drop(registration);
        } else if let Some(registration) = &*watch.registration.borrow() {
            registration.set_interest(interest);
        }
        let had = old.is_some() || running;
        drop(old);
        had
    }

    /// Calls `callback` whenever `source`'s descriptor is readable (level-triggered: again on
    /// every iteration until the callback reads what is there, or the reader is removed).
    ///
    /// The reactor keeps `source` until the reader (and any writer) on that descriptor is
    /// removed, so an owned descriptor stays open exactly as long as it is watched. Pass
    /// `std::io::stdin()` to watch standard input, and remove it by its number, `0`. At most
    /// one reader per descriptor.
    ///
    /// Read with a buffer of at least 8 KiB when reading through `std::io::stdin()`: std's
    /// `Stdin` then reads straight from the descriptor instead of buffering ahead, and
    /// nothing it read sits where the reactor cannot see it.
    ///
    /// A regular file (standard input redirected from one) cannot be polled: it is always
    /// ready, so its reader is called on every iteration until it is removed. Remove it at
    /// end of file, as below.
    ///
    /// ```no_run
    /// use std::io::Read;
    /// use torsion_reactor::Reactor;
    ///
    /// let reactor = Reactor::current();
    /// reactor.add_reader(std::io::stdin(), || {
    ///     let mut buf = [0u8; 16 * 1024];
    ///     match std::io::stdin().lock().read(&mut buf) {
    ///         Ok(0) | Err(_) => {
    ///             let reactor = Reactor::current();
    ///             reactor.remove_reader(0); // standard input is descriptor 0
    ///             reactor.stop().unwrap();
    ///         }
    ///         Ok(n) => print!("{}", String::from_utf8_lossy(&buf[..n])),
    ///     }
    /// }).unwrap();
    /// reactor.run().unwrap();
    /// ```
    ///
    /// Error: [`ErrorKind::AlreadyWatched`] if the descriptor already has a reader;
    /// [`ErrorKind::ReactorClosed`] on a closed reactor.
    pub fn add_reader<S, F>(&self, source: S, callback: F) -> Result<(), Error>
    where
        S: AsFd + 'static,
        F: FnMut() + 'static,
    {
        self.add_watch(source, Direction::Read, Box::new(callback))
    }

    /// Calls `callback` whenever `source`'s descriptor is writable. See
    /// [`add_reader`](Reactor::add_reader).
    pub fn add_writer<S, F>(&self, source: S, callback: F) -> Result<(), Error>
    where
        S: AsFd + 'static,
        F: FnMut() + 'static,
    {
        self.add_watch(source, Direction::Write, Box::new(callback))
    }

    /// Stops watching `fd` for reading; returns whether a reader was there. When neither a
    /// reader nor a writer remains, the sources given to `add_reader`/`add_writer` are dropped.
    pub fn remove_reader(&self, fd: RawFd) -> bool {
        self.remove_watch(fd, Direction::Read)
    }

    /// Stops watching `fd` for writing; returns whether a writer was there.
    pub fn remove_writer(&self, fd: RawFd) -> bool {
        self.remove_watch(fd, Direction::Write)
    }
}
