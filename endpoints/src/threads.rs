//! [`listen_on_threads`]: one TCP endpoint served by N reactors, one per thread, with a
//! factory built on each thread by one builder.
//!
//! A reactor belongs to one thread and factories are `!Send` (they hold `Rc`s, `Cell`s),
//! so each thread builds its own factory from a `Fn() -> F + Send + Sync` builder. The
//! calling thread's reactor accepts; every connection goes to the reactor serving the
//! fewest (see [`Reactor::listen_tcp_balanced`]), so the load stays even at any number of
//! connections, which `SO_REUSEPORT`'s address hash does not promise.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use torsion_reactor::{
    Address, Error, ErrorKind, Factory, Handoff, ListeningPort, Reactor, Remote,
};

use crate::endpoint::server_from_string;
use crate::types::tcp::TcpServer;

/// The port served by [`listen_on_threads`]: the listening port on the calling thread's
/// reactor, and the worker threads.
///
/// The workers stop when the calling thread's reactor shuts down (its `run()` ends: on
/// SIGINT or SIGTERM, or `stop()`), each winding down its own connections gracefully;
/// [`join`](ThreadedPort::join) then waits for them.
pub struct ThreadedPort {
    port: ListeningPort,
    handoffs: Vec<Handoff>,
    workers: Workers,
}

/// The worker threads, and whether they were asked to stop (once only: a second `stop()`
/// during a reactor's shutdown would cut its grace period short).
struct Workers {
    threads: Vec<JoinHandle<()>>,
    remotes: Vec<Remote>,
    stop_sent: Arc<AtomicBool>,
}

impl Workers {
    fn stop(remotes: &[Remote], stop_sent: &AtomicBool) {
        if stop_sent.swap(true, Ordering::AcqRel) {
            return;
        }
        for remote in remotes {
            // Fails only if that reactor is already gone.
            let _ = remote.call_from_thread(|| {
                let _ = Reactor::current().stop();
            });
        }
    }

    fn stop_and_join(self) {
        Workers::stop(&self.remotes, &self.stop_sent);
        for thread in self.threads {
            if thread.join().is_err() {
                log::error!("a reactor thread of a threaded port panicked");
            }
        }
    }
}

impl std::fmt::Debug for ThreadedPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadedPort")
            .field("port", &self.port)
            .field("loads", &self.loads())
            .finish()
    }
}

impl ThreadedPort {
    /// The address the port is bound to (with the real port number when port 0 was asked).
    pub fn local_addr(&self) -> Address {
        self.port.local_addr()
    }

    /// The listening port (on the calling thread's reactor).
    pub fn port(&self) -> &ListeningPort {
        &self.port
    }

    /// How many connections each reactor serves now, the calling thread's first.
    pub fn loads(&self) -> Vec<usize> {
        self.handoffs.iter().map(Handoff::load).collect()
    }

    /// Stops the workers (each winds down gracefully) and waits for them; call it after
    /// the calling thread's reactor stopped (its shutdown already asked them to stop).
    pub fn join(self) {
        self.workers.stop_and_join();
    }
}

/// Serves the TCP endpoint `description` with `threads` reactors: this thread's `reactor`
/// (which accepts) and `threads - 1` new threads, each running its own reactor with a
/// factory made by `build` on that thread. Each connection goes to the reactor serving the
/// fewest connections at the time it is accepted. Run `reactor` afterwards (the workers run
/// on their own); when it shuts down, so do they, and [`ThreadedPort::join`] waits for them.
///
/// With `reuseport=1` in the description, each reactor listens on its own `SO_REUSEPORT`
/// socket instead and the kernel picks one for each connection by a hash of its addresses
/// (no hand-off, but uneven at tens of connections): for comparison, or for a kernel that
/// steers connections itself.
///
/// The workers do not handle signals themselves: SIGINT and SIGTERM stop `reactor`, whose
/// shutdown stops them.
///
/// Errors: an [`ErrorKind::InvalidInput`] error for a malformed description, one that is
/// not `tcp` or `tcp6`, or `threads` of 0; otherwise the listen error (`cannot listen on
/// 127.0.0.1:8000: address already in use`) or a worker's failure to start.
///
/// ```
/// use torsion_endpoints::listen_on_threads;
/// use torsion_reactor::{Protocol, Reactor, Transport, factory_fn};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, t: &Transport, data: &[u8]) {
///         t.write(data);
///     }
/// }
///
/// let reactor = Reactor::current();
/// let port = listen_on_threads(&reactor, "tcp:0:interface=127.0.0.1", 2, || {
///     factory_fn(|_| Echo)
/// })
/// .unwrap();
/// println!("listening on {}", port.local_addr());
/// # reactor.call_soon(|| Reactor::current().stop().unwrap());
/// # reactor.set_handle_signals(false);
/// reactor.run().unwrap(); // until SIGINT or SIGTERM
/// port.join();
/// ```
pub fn listen_on_threads<F, B>(
    reactor: &Reactor,
    description: &str,
    threads: usize,
    build: B,
) -> Result<ThreadedPort, Error>
where
    F: Factory,
    B: Fn() -> F + Send + Sync + 'static,
{
    if threads == 0 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "listen_on_threads needs at least one thread",
        ));
    }
    let endpoint = server_from_string(reactor, description)?;
    let Some(tcp) = endpoint.spec().downcast_ref::<TcpServer>().cloned() else {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{description:?}: serving on several threads needs a tcp or tcp6 endpoint, not {}",
                endpoint.spec().type_name()
            ),
        ));
    };
    let build = Arc::new(build);
    let mut handoffs = vec![reactor.handoff(build())?];
    // SO_REUSEPORT: every reactor listens for itself, this one first (to learn the port).
    let mut own_port = None;
    let mut worker_spec = None;
    if tcp.reuseport {
        let port = tcp.listen_balanced(reactor, &handoffs)?;
        let mut spec = tcp.clone();
        if let Some(bound) = port.local_addr().socket_addr() {
            spec.port = bound.port();
        }
        worker_spec = Some(spec);
        own_port = Some(port);
    }
    let mut workers = Vec::new();
    let (ready_tx, ready_rx) = mpsc::channel();
    for i in 1..threads {
        let build = Arc::clone(&build);
        let ready = ready_tx.clone();
        let spec = worker_spec.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("torsion-reactor-{i}"))
            .spawn(move || {
                let reactor = Reactor::current();
                reactor.set_handle_signals(false);
                let started = reactor.handoff(build()).and_then(|handoff| {
                    if let Some(spec) = spec {
                        spec.listen_balanced(&reactor, std::slice::from_ref(&handoff))?;
                    }
                    Ok(handoff)
                });
                match started {
                    Ok(handoff) => {
                        let _ = ready.send(Ok((handoff, reactor.remote())));
                        if let Err(err) = reactor.run() {
                            log::error!("reactor thread {i}: {err}");
                        }
                    }
                    Err(err) => {
                        let _ = ready.send(Err(err));
                    }
                }
            });
        match spawned {
            Ok(handle) => workers.push(handle),
            Err(e) => return Err(Error::io("cannot start a reactor thread", e)),
        }
    }
    drop(ready_tx);
    let mut remotes = Vec::new();
    let mut failure = None;
    for _ in 1..threads {
        match ready_rx.recv() {
            Ok(Ok((handoff, remote))) => {
                handoffs.push(handoff);
                remotes.push(remote);
            }
            Ok(Err(err)) => failure = Some(err),
            Err(_) => {
                failure = Some(Error::new(
                    ErrorKind::Io,
                    "a reactor thread ended before it could serve",
                ))
            }
        }
    }
    let workers = Workers {
        threads: workers,
        remotes,
        stop_sent: Arc::new(AtomicBool::new(false)),
    };
    let listened = match (failure, own_port) {
        (Some(err), own) => {
            if let Some(port) = own {
                port.stop_listening();
            }
            Err(err)
        }
        (None, Some(port)) => Ok(port),
        (None, None) => tcp.listen_balanced(reactor, &handoffs),
    };
    let port = match listened {
        Ok(port) => port,
        Err(err) => {
            workers.stop_and_join();
            return Err(err);
        }
    };
    // This reactor's shutdown stops the workers (each winds down on its own).
    let (remotes, stop_sent) = (workers.remotes.clone(), Arc::clone(&workers.stop_sent));
    reactor.add_system_event_trigger(
        torsion_reactor::Phase::Before,
        torsion_reactor::SystemEvent::Shutdown,
        move || Workers::stop(&remotes, &stop_sent),
    );
    Ok(ThreadedPort {
        port,
        handoffs,
        workers,
    })
}
