//! Calling into the reactor from another thread and waiting for the answer:
//! [`Remote::blocking_call_from_thread`] (Twisted's `blockingCallFromThread`).
//!
//! The calling thread registers its call with the reactor's [`Remote`] side (refused at once
//! if the reactor is not being run), queues it with `call_from_thread`, and sleeps on a
//! condition variable. The call's Deferred, once it fires on the reactor's thread, wakes it
//! with the result; if the reactor stops running first, every registered call is woken with
//! an [`ErrorKind::NotRunning`] error instead, so no thread waits for a loop that is gone.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::defer::deferred::{Deferred, DeferredError};
use crate::error::{Error, ErrorKind};
use crate::event_loop::Remote;
use crate::event_loop::callback::guard;
use crate::event_loop::remote::Abort;

enum CallState<T, E> {
    /// Queued for the reactor's thread.
    Queued,
    /// The function ran; its Deferred has not fired.
    Started,
    Done(Result<T, E>),
    /// The waiting thread took the result.
    Taken,
}

struct Call<T, E> {
    state: Mutex<CallState<T, E>>,
    done: Condvar,
}

impl<T, E> Call<T, E> {
    fn lock(&self) -> MutexGuard<'_, CallState<T, E>> {
        // Each holder only swaps the state: a poisoned lock still holds a consistent one.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// On the reactor's thread, just before the function runs: `false` if the call was
    /// given up already (then the function must not run).
    fn start(&self) -> bool {
        let mut st = self.lock();
        if matches!(*st, CallState::Queued) {
            *st = CallState::Started;
            true
        } else {
            false
        }
    }

    fn finish(&self, result: Result<T, E>) {
        let mut st = self.lock();
        if matches!(*st, CallState::Queued | CallState::Started) {
            *st = CallState::Done(result);
            self.done.notify_all();
        }
    }

    fn wait(&self) -> Option<Result<T, E>> {
        let mut st = self.lock();
        loop {
            match std::mem::replace(&mut *st, CallState::Taken) {
                CallState::Done(result) => return Some(result),
                CallState::Taken => return None,
                pending => {
                    *st = pending;
                    st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
                }
            }
        }
    }
}

impl<T: Send, E: DeferredError + Send> Abort for Call<T, E> {
    fn abort(&self, why: Error) {
        self.finish(Err(E::from(why)));
    }
}

impl Remote {
    /// Runs `f` on the reactor's thread and blocks this thread until the Deferred it
    /// returns has fired, then returns its result (Twisted's `blockingCallFromThread`):
    /// how a worker thread asks the reactor for something (a connection, a value kept by
    /// protocols) and waits for it.
    ///
    /// `f` runs from the loop, like any [`call_from_thread`](Remote::call_from_thread); a
    /// panic in it is returned as an [`ErrorKind::Panicked`] error. To run async code, return
    /// [`Deferred::from_future`]; for a plain value, see [`blocking_call`](Remote::blocking_call).
    ///
    /// Errors (as `E`, which every Deferred error type converts from):
    /// [`ErrorKind::NotRunning`] if the reactor is not being run (`run`,
    /// `run_until_complete` or `run_until`) when called, or stops before the call completed
    /// (then `f` does not run if it had not started); [`ErrorKind::WrongThread`] when called
    /// on the reactor's own thread, where it would wait forever; [`ErrorKind::ReactorGone`]
    /// once the reactor's thread has ended.
    ///
    /// ```
    /// use torsion_reactor::{Deferred, ErrorKind, Reactor, defer_later};
    /// use std::time::Duration;
    ///
    /// let reactor = Reactor::current();
    /// let remote = reactor.remote();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// reactor.call_when_running(move || {
    ///     // A worker thread, started once the reactor runs.
    ///     std::thread::spawn(move || {
    ///         let answer = remote.blocking_call_from_thread(|| {
    ///             defer_later(&Reactor::current(), Duration::from_millis(5), || 42)
    ///         });
    ///         remote.call_from_thread(|| Reactor::current().stop().unwrap()).unwrap();
    ///         tx.send(answer).unwrap();
    ///     });
    /// });
    /// reactor.run().unwrap();
    /// assert_eq!(rx.recv().unwrap().unwrap(), 42);
    ///
    /// // Once the reactor has stopped, a blocking call fails at once instead of hanging.
    /// let remote = reactor.remote();
    /// let late = std::thread::spawn(move || remote.blocking_call(|| 1)).join().unwrap();
    /// assert_eq!(late.unwrap_err().kind(), ErrorKind::NotRunning);
    /// ```
    pub fn blocking_call_from_thread<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: DeferredError + Send,
        F: FnOnce() -> Deferred<T, E> + Send + 'static,
    {
        let shared = &self.shared;
        if std::thread::current().id() == shared.owner() {
            return Err(E::from(Error::new(
                ErrorKind::WrongThread,
                "blocking_call_from_thread was called on the reactor's own thread, where it \
                 would wait forever; chain on the Deferred or await it instead",
            )));
        }
        let call: Arc<Call<T, E>> = Arc::new(Call {
            state: Mutex::new(CallState::Queued),
            done: Condvar::new(),
        });
        let registered: Arc<dyn Abort> = call.clone();
        if !shared.register_call(Arc::clone(&registered)) {
            return Err(E::from(Error::new(
                ErrorKind::NotRunning,
                "blocking_call_from_thread: the reactor is not running, so the call would \
                 never complete",
            )));
        }
        let on_reactor = Arc::clone(&call);
        let queued = self.call_from_thread(move || {
            if !on_reactor.start() {
                return;
            }
            match guard(f) {
                Ok(d) => d.on_result(move |result| on_reactor.finish(result)),
                Err(msg) => on_reactor.finish(Err(E::from(Error::new(
                    ErrorKind::Panicked,
                    format!("the function given to blocking_call_from_thread panicked: {msg}"),
                )))),
            }
        });
        let result = match queued {
            Ok(()) => call.wait(),
            Err(err) => Some(Err(E::from(err))),
        };
        shared.unregister_call(&registered);
        result.unwrap_or_else(|| {
            Err(E::from(Error::new(
                ErrorKind::Other,
                "blocking_call_from_thread: the result was taken twice",
            )))
        })
    }

    /// Runs `f` on the reactor's thread and returns its value to this blocked thread: the
    /// plain-value form of [`blocking_call_from_thread`](Remote::blocking_call_from_thread)
    /// (same errors).
    pub fn blocking_call<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.blocking_call_from_thread(move || Deferred::succeed(f()))
    }
}
