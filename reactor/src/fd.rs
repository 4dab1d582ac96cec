//! Watching raw descriptors: `add_reader` / `add_writer` (Twisted's `IReactorFDSet`).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::rc::Rc;

use crate::callback::guard;
use crate::error::{Error, ErrorKind};
use crate::poll::{Interest, Readiness, Source, Token};
use crate::reactor::{Inner, Reactor};

type Callback = Box<dyn FnMut()>;

#[derive(Default)]
pub(crate) struct Watches {
    by_fd: HashMap<RawFd, Rc<Watch>>,
}

#[derive(Default)]
struct Slot {
    callback: RefCell<Option<Callback>>,
    /// Bumped whenever the callback is set or removed, so a callback that removes or
    /// replaces itself while running is not put back afterwards.
    epoch: Cell<u64>,
}

struct Watch {
    token: Cell<Option<Token>>,
    reader: Slot,
    writer: Slot,
    /// What keeps the descriptor open while it is watched (dropped after deregistering).
    owners: RefCell<Vec<Box<dyn Any>>>,
}

impl Watch {
    fn interest(&self) -> Interest {
        Interest {
            read: self.reader.callback.borrow().is_some(),
            write: self.writer.callback.borrow().is_some(),
        }
    }

    fn run(slot: &Slot) {
        let epoch = slot.epoch.get();
        let Some(mut cb) = slot.callback.borrow_mut().take() else {
            return;
        };
        if let Err(msg) = guard(&mut cb) {
            log::error!("a descriptor callback panicked: {msg}; the reactor goes on");
        }
        if slot.epoch.get() == epoch {
            *slot.callback.borrow_mut() = Some(cb);
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
        let fd = source.as_fd().as_raw_fd();
        let inner = &self.inner;
        let existing = inner.fd_watches.borrow().by_fd.get(&fd).cloned();
        let watch = match existing {
            Some(watch) => watch,
            None => {
                let watch = Rc::new(Watch {
                    token: Cell::new(None),
                    reader: Slot::default(),
                    writer: Slot::default(),
                    owners: RefCell::new(Vec::new()),
                });
                // SAFETY: `source` (which owns or borrows-for-'static the fd) is kept in
                // `owners` until the watch is deregistered in `remove_watch`.
                let registered = unsafe {
                    inner.registry.register(fd, Interest::NONE, |token| {
                        watch.token.set(Some(token));
                        Rc::clone(&watch)
                    })
                };
                registered.map_err(|e| Error::io(format!("cannot watch fd {fd}"), e))?;
                inner
                    .fd_watches
                    .borrow_mut()
                    .by_fd
                    .insert(fd, Rc::clone(&watch));
                watch
            }
        };
        let slot = match dir {
            Direction::Read => &watch.reader,
            Direction::Write => &watch.writer,
        };
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
        watch.owners.borrow_mut().push(Box::new(source));
        if let Some(token) = watch.token.get() {
            inner.registry.set_interest(token, watch.interest());
        }
        Ok(())
    }

    fn remove_watch(&self, fd: RawFd, dir: Direction) -> bool {
        let inner = &self.inner;
        let Some(watch) = inner.fd_watches.borrow().by_fd.get(&fd).cloned() else {
            return false;
        };
        let slot = match dir {
            Direction::Read => &watch.reader,
            Direction::Write => &watch.writer,
        };
        let old = slot.callback.borrow_mut().take();
        slot.epoch.set(slot.epoch.get() + 1);
        let interest = watch.interest();
        if let Some(token) = watch.token.get() {
            if interest == Interest::NONE {
                let source = inner.registry.deregister(token);
                inner.fd_watches.borrow_mut().by_fd.remove(&fd);
                let owners = std::mem::take(&mut *watch.owners.borrow_mut());
                drop(source);
                drop(owners);
            } else {
                inner.registry.set_interest(token, interest);
            }
        }
        let had = old.is_some();
        drop(old);
        had
    }

    /// Calls `callback` whenever `source`'s descriptor is readable (level-triggered: again on
    /// every iteration until the callback reads what is there, or the reader is removed).
    ///
    /// The reactor keeps `source` until the reader (and any writer) on that descriptor is
    /// removed, so an owned descriptor stays open exactly as long as it is watched. Pass
    /// `std::io::stdin()` to watch standard input. At most one reader per descriptor.
    ///
    /// ```no_run
    /// use std::io::Read;
    /// use torsion_reactor::Reactor;
    ///
    /// let reactor = Reactor::current();
    /// reactor.add_reader(std::io::stdin(), || {
    ///     let mut buf = [0u8; 4096];
    ///     match std::io::stdin().lock().read(&mut buf) {
    ///         Ok(0) | Err(_) => Reactor::current().stop().unwrap(),
    ///         Ok(n) => print!("{}", String::from_utf8_lossy(&buf[..n])),
    ///     }
    /// }).unwrap();
    /// reactor.run().unwrap();
    /// ```
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
