//! Handing accepted TCP connections from one reactor to others: [`Handoff`], a reactor's
//! inbox that other threads may send connections to, and the balanced listener that sends
//! each connection it accepts to the least loaded of them.
//!
//! One reactor per core keeps every connection on one thread, with no locks on the hot
//! path; what it gives up is work stealing. With `SO_REUSEPORT` the kernel spreads
//! connections among the reactors by a hash of their addresses, which at tens of
//! connections is uneven (measured here: 41/28, 24/30 and 63/20 CPU ticks between two
//! reactors serving 50 identical connections), and the busier reactor sets the pace. So
//! one reactor accepts and hands every connection to the reactor that has the fewest open
//! (itself included: then no thread is crossed). The hand-off costs a queue push under a
//! mutex and, when the target is not already being woken, one byte on a socket pair: per
//! connection, never per message.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use super::conn::Conn;
use super::factory::{BoxedFactory, Factory};
use super::listen::Route;
use super::protocol::Address;
use crate::error::Error;
use crate::event_loop::callback::{Caught, CaughtKind, report};
use crate::event_loop::{Inner, Reactor};
use crate::io::{Interest, Readiness, Registration, Sharing, Source, Wind};

/// A reactor's inbox for TCP connections accepted on another thread: made on the reactor
/// that will serve them ([`Reactor::handoff`]), with the factory that builds their
/// protocols there; cloned and sent to the thread that accepts (it is `Send + Sync`), and
/// given to [`Reactor::listen_tcp_balanced`].
///
/// It counts the connections its reactor serves (queued or open), which is what the
/// balanced listener compares.
#[derive(Clone)]
pub struct Handoff {
    shared: Arc<Shared>,
}

struct Shared {
    owner: ThreadId,
    /// Connections sent and not yet taken by the owner.
    queue: Mutex<Vec<(TcpStream, SocketAddr)>>,
    /// Write end of the owner's wake-up pair.
    wake: UnixStream,
    /// A wake-up byte is on its way: later senders need not write another.
    signalled: AtomicBool,
    /// Connections queued or open on the owner.
    load: AtomicUsize,
    /// The owner stopped serving (its reactor stopped or closed): sending fails.
    closed: AtomicBool,
}

impl Handoff {
    /// Connections its reactor serves now (queued or open).
    pub fn load(&self) -> usize {
        self.shared.load.load(Ordering::Relaxed)
    }

    /// Whether its reactor still takes connections.
    pub fn is_open(&self) -> bool {
        !self.shared.closed.load(Ordering::Acquire)
    }

    /// Sends one connection to the owner; gives it back if the owner stopped serving.
    fn send(&self, stream: TcpStream, peer: SocketAddr) -> Result<(), TcpStream> {
        let shared = &self.shared;
        {
            let mut queue = match shared.queue.lock() {
                Ok(q) => q,
                Err(poisoned) => poisoned.into_inner(),
            };
            // Checked under the lock: the owner sets it under the same lock before it
            // drops what is queued, so nothing is left behind in a closed inbox.
            if shared.closed.load(Ordering::Acquire) {
                return Err(stream);
            }
            queue.push((stream, peer));
            shared.load.fetch_add(1, Ordering::Relaxed);
        }
        if !shared.signalled.swap(true, Ordering::SeqCst) {
            // Non-blocking: a full pipe already holds a wake-up.
            let _ = (&shared.wake).write(&[1]);
        }
        Ok(())
    }
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff")
            .field("load", &self.load())
            .field("open", &self.is_open())
            .finish()
    }
}

/// The owner's side: the read end of the wake-up pair, watched by its reactor, and the
/// factory that serves the connections.
struct Inbox {
    shared: Arc<Shared>,
    factory: BoxedFactory,
    reactor: Weak<Inner>,
    wake: RefCell<Option<Registration<UnixStream>>>,
    started: Cell<bool>,
}

thread_local! {
    /// This thread's inboxes, so that a balanced listener on the same thread serves its
    /// own share directly instead of through the queue.
    static INBOXES: RefCell<Vec<Weak<Inbox>>> = const { RefCell::new(Vec::new()) };
}

impl Inbox {
    /// Serves one connection on this reactor.
    fn serve(self: &Rc<Self>, inner: &Rc<Inner>, stream: TcpStream, peer: SocketAddr) {
        let peer = Address::Tcp(peer);
        let Some(protocol) = self.factory.build(&peer) else {
            log::debug!("factory refused the connection from {peer}");
            self.shared.load.fetch_sub(1, Ordering::Relaxed);
            return;
        };
        let local = stream
            .local_addr()
            .map(Address::Tcp)
            .unwrap_or_else(|_| Address::Other("(unknown)".into()));
        let shared = Arc::clone(&self.shared);
        let done = Box::new(move |_: &super::protocol::ConnectionLost| {
            shared.load.fetch_sub(1, Ordering::Relaxed);
        });
        if let Err(err) = Conn::start(
            inner,
            stream,
            protocol,
            peer,
            Rc::new(local.clone()),
            Some(super::conn::OnLost::Call(done)),
        ) {
            self.shared.load.fetch_sub(1, Ordering::Relaxed);
            report(Caught::new(
                CaughtKind::IoError,
                format!("serving a connection handed over to {local}"),
                err.to_string(),
            ));
        }
    }

    /// Takes what other threads queued and serves it.
    fn drain(self: &Rc<Self>, inner: &Rc<Inner>) {
        // Read the wake-up bytes, then clear the flag, then take the queue: a sender that
        // finds the flag clear writes a byte we have not read yet (so we run again), and
        // one that found it set queued before we take. (Clearing before reading could
        // swallow a sender's byte and leave the flag set with no byte on its way.)
        if let Some(wake) = &*self.wake.borrow() {
            let mut buf = [0u8; 64];
            while matches!(wake.get().read(&mut buf), Ok(n) if n > 0) {}
        }
        self.shared.signalled.store(false, Ordering::SeqCst);
        let taken = {
            let mut queue = match self.shared.queue.lock() {
                Ok(q) => q,
                Err(poisoned) => poisoned.into_inner(),
            };
            std::mem::take(&mut *queue)
        };
        for (stream, peer) in taken {
            self.serve(inner, stream, peer);
        }
    }

    /// Stops taking connections: closes the inbox (what is queued is closed) and tells the
    /// factory it stopped.
    fn close(&self) {
        let queued = {
            let mut queue = match self.shared.queue.lock() {
                Ok(q) => q,
                Err(poisoned) => poisoned.into_inner(),
            };
            self.shared.closed.store(true, Ordering::Release);
            std::mem::take(&mut *queue)
        };
        self.shared.load.fetch_sub(
            queued.len().min(self.shared.load.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        drop(queued);
        drop(self.wake.borrow_mut().take());
        if self.started.replace(false) {
            let factory = self.factory.clone();
            match self.reactor.upgrade() {
                Some(inner) if !inner.is_closed() => {
                    inner.reactor().call_soon(move || factory.stopped())
                }
                _ => factory.stopped(),
            }
        }
    }
}

impl Source for Inbox {
    fn ready(self: Rc<Self>, inner: &Rc<Inner>, _readiness: Readiness) {
        self.drain(inner);
    }

    fn wind_down(self: Rc<Self>, _inner: &Rc<Inner>, _how: Wind) {
        self.close();
    }
}

impl Reactor {
    /// An inbox through which other threads hand this reactor TCP connections to serve
    /// with `factory` (see [`listen_tcp_balanced`](Reactor::listen_tcp_balanced)). The
    /// factory hears `start_factory` from this reactor's loop, and `stop_factory` when the
    /// reactor stops (then the inbox closes: connections sent to it later are closed).
    ///
    /// Errors: [`ErrorKind::ReactorClosed`](crate::ErrorKind); an I/O error if the OS
    /// refuses the wake-up socket pair (out of descriptors).
    pub fn handoff<F: Factory>(&self, factory: F) -> Result<Handoff, Error> {
        let inner = self.inner_open()?;
        let fail = |e| Error::io("cannot create a hand-off inbox", e);
        let (read, write) = UnixStream::pair().map_err(fail)?;
        read.set_nonblocking(true).map_err(fail)?;
        write.set_nonblocking(true).map_err(fail)?;
        let shared = Arc::new(Shared {
            owner: std::thread::current().id(),
            queue: Mutex::new(Vec::new()),
            wake: write,
            signalled: AtomicBool::new(false),
            load: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        });
        let inbox = Rc::new(Inbox {
            shared: Arc::clone(&shared),
            factory: BoxedFactory::new(factory),
            reactor: Rc::downgrade(&inner),
            wake: RefCell::new(None),
            started: Cell::new(false),
        });
        let registration = Registration::new(
            &inner,
            read,
            Interest::READ,
            inbox.clone(),
            Sharing::Exclusive,
        )
        .map_err(|(e, _)| fail(e))?;
        *inbox.wake.borrow_mut() = Some(registration);
        INBOXES.with(|all| {
            let mut all = all.borrow_mut();
            all.retain(|w| w.strong_count() > 0);
            all.push(Rc::downgrade(&inbox));
        });
        // The factory hears `start_factory` from the loop, as a listener's does.
        let me = Rc::clone(&inbox);
        self.call_soon(move || {
            if me.shared.closed.load(Ordering::Acquire) {
                return;
            }
            me.factory.started();
            me.started.set(true);
        });
        Ok(Handoff { shared })
    }

    /// Listens for TCP connections on `addr` and hands each one to the least loaded of
    /// `targets` (the one serving the fewest connections; ties go round in turn): one
    /// reactor accepts for several, each running on its own thread. A target made on this
    /// reactor serves its share directly. A target that stopped is skipped; with none
    /// left, connections are closed as they come.
    ///
    /// Errors: as [`listen_tcp_with`](Reactor::listen_tcp_with); an
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind) error if `targets` is empty.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion_reactor::{Protocol, Reactor, TcpListenOptions, Transport, factory_fn};
    ///
    /// struct Echo;
    /// impl Protocol for Echo {
    ///     fn data_received(&mut self, t: &Transport, data: &[u8]) {
    ///         t.write(data);
    ///     }
    /// }
    ///
    /// let reactor = Reactor::current();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let worker = std::thread::spawn(move || {
    ///     let reactor = Reactor::current();
    ///     tx.send((reactor.handoff(factory_fn(|_| Echo)).unwrap(), reactor.remote()))
    ///         .unwrap();
    ///     reactor.run_until(Duration::from_secs(1), || false).ok();
    /// });
    /// let (theirs, remote) = rx.recv().unwrap();
    /// let mine = reactor.handoff(factory_fn(|_| Echo)).unwrap();
    /// let port = reactor
    ///     .listen_tcp_balanced(
    ///         "127.0.0.1:0".parse().unwrap(),
    ///         &[mine, theirs],
    ///         &TcpListenOptions::default(),
    ///     )
    ///     .unwrap();
    /// println!("listening on {}", port.local_addr());
    /// port.stop_listening();
    /// drop(remote);
    /// worker.join().unwrap();
    /// ```
    pub fn listen_tcp_balanced(
        &self,
        addr: SocketAddr,
        targets: &[Handoff],
        options: &super::tcp::TcpListenOptions,
    ) -> Result<super::listen::ListeningPort, Error> {
        if targets.is_empty() {
            return Err(Error::new(
                crate::ErrorKind::InvalidInput,
                format!("cannot listen on {addr}: a balanced listener needs at least one target"),
            ));
        }
        let here = std::thread::current().id();
        let local: Vec<Option<Weak<Inbox>>> = targets
            .iter()
            .map(|t| {
                if t.shared.owner != here {
                    return None;
                }
                INBOXES.with(|all| {
                    all.borrow()
                        .iter()
                        .find(|w| {
                            w.upgrade()
                                .is_some_and(|i| Arc::ptr_eq(&i.shared, &t.shared))
                        })
                        .cloned()
                })
            })
            .collect();
        let route = Balanced {
            targets: targets.to_vec(),
            local,
            next: Cell::new(0),
        };
        self.listen_tcp_route(addr, Rc::new(route), options)
    }
}

/// A balanced listener's route: each accepted connection to the least loaded target.
struct Balanced {
    targets: Vec<Handoff>,
    /// For targets on this thread, their inbox (served directly).
    local: Vec<Option<Weak<Inbox>>>,
    /// Where the search for the least loaded starts (ties go round in turn).
    next: Cell<usize>,
}

impl Balanced {
    fn pick(&self) -> Option<usize> {
        let n = self.targets.len();
        let start = self.next.get();
        self.next.set((start + 1) % n);
        (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| self.targets[i].is_open())
            .min_by_key(|&i| self.targets[i].load())
    }
}

impl Route<TcpStream> for Balanced {
    fn started(&self) {}

    fn stopped(&self) {}

    /// Handed over: another reactor counts it (this port's `track` does not).
    fn accepted(
        &self,
        inner: &Rc<Inner>,
        stream: TcpStream,
        peer: Address,
        _local: &Rc<Address>,
        _track: &Rc<super::accepted::Accepted>,
    ) {
        let Address::Tcp(peer) = peer else {
            return; // a TCP listener only accepts TCP peers
        };
        let mut stream = stream;
        // A target that closed meanwhile gives the connection back: try the others.
        for _ in 0..self.targets.len() {
            let Some(i) = self.pick() else { break };
            // An inbox of this very reactor serves at once (one on another reactor of
            // this thread goes through its queue, like any other).
            let here = self.local[i]
                .as_ref()
                .and_then(Weak::upgrade)
                .filter(|inbox| std::ptr::eq(inbox.reactor.as_ptr(), Rc::as_ptr(inner)));
            if let Some(inbox) = here {
                if inbox.shared.closed.load(Ordering::Acquire) {
                    continue;
                }
                inbox.shared.load.fetch_add(1, Ordering::Relaxed);
                inbox.serve(inner, stream, peer);
                return;
            }
            match self.targets[i].send(stream, peer) {
                Ok(()) => return,
                Err(back) => stream = back,
            }
        }
        log::warn!("no reactor takes connections any more: closing the connection from {peer}");
        drop(stream);
    }
}
