//! The reactor's thread pool: [`Reactor::call_in_thread`] and [`Reactor::defer_to_thread`].
//!
//! A bounded pool of worker threads, started lazily (a worker is started when a job is
//! queued, no worker is idle and the pool is below its size) and stopped when the reactor
//! shuts down (a `Shutdown`/`After` trigger) or is dropped: workers finish the queued jobs,
//! then exit, and are joined. The next job starts the pool again. Results come back to the
//! reactor thread through [`Remote::call_from_thread`](crate::Remote::call_from_thread).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::Location;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;

use slab::Slab;

use crate::defer::deferred::{Deferred, Resolver};
use crate::error::{Error, ErrorKind};
use crate::event_loop::callback::guard;
use crate::event_loop::{Phase, Reactor, SystemEvent};
use crate::sync::PoolQueue;

/// Default number of worker threads (see [`Reactor::set_thread_pool_size`]).
pub const DEFAULT_THREAD_POOL_SIZE: usize = 4;

type PoolJob = Box<dyn FnOnce() + Send>;

/// The pool (a field of the reactor).
pub(crate) struct ThreadPool {
    /// The handoff to the workers (its synchronisation is checked by loom).
    shared: Arc<PoolQueue<PoolJob>>,
    workers: RefCell<Vec<JoinHandle<()>>>,
    size: Cell<usize>,
    trigger_added: Cell<bool>,
    started: Cell<usize>,
    /// Resolvers of `defer_to_thread` Deferreds waiting for their result (`Resolver<T>`
    /// as `Any`; the job that completes one knows its `T`).
    waiting: RefCell<Slab<Box<dyn Any>>>,
}

impl Default for ThreadPool {
    fn default() -> Self {
        ThreadPool {
            shared: Arc::new(PoolQueue::new()),
            workers: RefCell::new(Vec::new()),
            size: Cell::new(DEFAULT_THREAD_POOL_SIZE),
            trigger_added: Cell::new(false),
            started: Cell::new(0),
            waiting: RefCell::new(Slab::new()),
        }
    }
}

fn worker(shared: Arc<PoolQueue<PoolJob>>) {
    while let Some(job) = shared.next() {
        if let Err(msg) = guard(job) {
            log::error!("a call_in_thread job panicked: {msg}; the worker goes on");
        }
    }
}

impl ThreadPool {
    fn submit(&self, job: PoolJob) -> Result<(), Error> {
        let start_worker = self.shared.push(job) && self.workers.borrow().len() < self.size.get();
        if start_worker {
            let shared = Arc::clone(&self.shared);
            let n = self.started.get();
            let spawned = std::thread::Builder::new()
                .name(format!("torsion-pool-{n}"))
                .spawn(move || worker(shared));
            match spawned {
                Ok(handle) => {
                    self.started.set(n + 1);
                    self.workers.borrow_mut().push(handle);
                }
                Err(err) if self.workers.borrow().is_empty() => {
                    // No worker will ever take the job: take it back and say so.
                    let job = self.shared.pop_last();
                    drop(job);
                    return Err(Error::io("cannot start a thread-pool worker", err));
                }
                Err(err) => log::warn!(
                    "cannot start another thread-pool worker ({err}); the running ones take the job"
                ),
            }
        }
        Ok(())
    }

    /// Lets the workers finish the queued jobs, then joins them. The pool starts again
    /// with the next job.
    pub(crate) fn shut_down(&self) {
        let workers = std::mem::take(&mut *self.workers.borrow_mut());
        if workers.is_empty() {
            return;
        }
        self.shared.set_stopping(true);
        for handle in workers {
            if handle.join().is_err() {
                log::error!("a thread-pool worker panicked outside its jobs");
            }
        }
        self.shared.set_stopping(false);
    }

    fn threads(&self) -> usize {
        self.workers.borrow().len()
    }
}

fn complete<T: 'static>(key: usize, out: Result<T, Error>) {
    let Some(reactor) = Reactor::current_if_alive() else {
        return;
    };
    let waiting = reactor.inner.threads.waiting.borrow_mut().try_remove(key);
    if let Some(any) = waiting {
        if let Ok(resolver) = any.downcast::<Resolver<T>>() {
            resolver.resolve_quiet(out);
        }
    }
}

impl Reactor {
    fn thread_pool(&self) -> &Rc<ThreadPool> {
        let pool = &self.inner.threads;
        if !pool.trigger_added.replace(true) {
            let p = Rc::clone(pool);
            self.add_system_event_trigger(Phase::After, SystemEvent::Shutdown, move || {
                p.shut_down()
            });
        }
        pool
    }

    /// Sets the most worker threads the pool may run (default
    /// [`DEFAULT_THREAD_POOL_SIZE`]). Lowering it does not stop running workers; they
    /// go at the next shutdown.
    ///
    /// Error: [`ErrorKind::InvalidInput`] for zero.
    pub fn set_thread_pool_size(&self, size: usize) -> Result<(), Error> {
        if size == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "the thread pool needs at least one thread",
            ));
        }
        self.inner.threads.size.set(size);
        Ok(())
    }

    /// Number of worker threads running now (they start lazily, with the first jobs).
    pub fn thread_pool_threads(&self) -> usize {
        self.inner.threads.threads()
    }

    /// Runs `f` on a worker thread of the reactor's pool (Twisted's `callInThread`). Jobs
    /// start in the order they were queued. A panic in `f` is logged and the worker goes
    /// on. `f` must not touch reactor handles (they are `!Send`); to report back use a
    /// [`Remote`](crate::Remote), or [`defer_to_thread`](Reactor::defer_to_thread).
    ///
    /// Error: an [`ErrorKind::Io`] error if no worker thread could be started.
    pub fn call_in_thread<F: FnOnce() + Send + 'static>(&self, f: F) -> Result<(), Error> {
        self.thread_pool().submit(Box::new(f))
    }

    /// Runs `f` on a worker thread and returns a [`Deferred`] that fires with its return
    /// value on the reactor's thread (Twisted's `deferToThread`). A panic in `f` fails the
    /// Deferred with [`ErrorKind::Panicked`]. Cancelling the Deferred does not stop `f`
    /// (threads cannot be interrupted); its result is then dropped.
    ///
    /// Jobs that block waiting for each other can wedge a bounded pool; keep them
    /// independent. Shutting the reactor down waits for the queued jobs to finish.
    ///
    /// ```
    /// use torsion_reactor::Reactor;
    ///
    /// let reactor = Reactor::current();
    /// let sum = reactor.defer_to_thread(|| (1..=100u64).sum::<u64>());
    /// let sum = reactor.run_until_complete(sum).unwrap();
    /// assert_eq!(sum.unwrap(), 5050);
    /// ```
    #[track_caller]
    pub fn defer_to_thread<T, F>(&self, f: F) -> Deferred<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let origin = Location::caller();
        let (d, resolver) = Deferred::<T>::new_at(origin);
        let pool = self.thread_pool();
        let key = pool.waiting.borrow_mut().insert(Box::new(resolver));
        let remote = self.remote();
        let job = move || {
            let out = guard(f).map_err(|msg| {
                Error::new(
                    ErrorKind::Panicked,
                    format!("the thread job deferred at {origin} panicked: {msg}"),
                )
            });
            // Refused only when the reactor is gone; nobody is left to receive the result.
            let _ = remote.call_from_thread(move || complete(key, out));
        };
        if let Err(err) = pool.submit(Box::new(job)) {
            let waiting = pool.waiting.borrow_mut().try_remove(key);
            if let Some(any) = waiting {
                if let Ok(resolver) = any.downcast::<Resolver<T>>() {
                    resolver.resolve_quiet(Err(err));
                }
            }
        }
        d
    }
}
