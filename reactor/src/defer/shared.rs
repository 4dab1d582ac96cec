//! [`SharedDeferred`]: one result, several consumers (a Deferred has one).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::IntoFuture;
use std::panic::Location;
use std::rc::Rc;

use crate::defer::deferred::{Deferred, DeferredError, Resolver};

enum State<T, E> {
    Pending(Vec<Resolver<T, E>>),
    Done(Result<T, E>),
}

/// A result that several consumers can wait for: each [`get`](SharedDeferred::get) (or
/// `.await` on a clone) gives a new Deferred that fires with a clone of the result. Made by
/// [`Deferred::shared`].
///
/// Cancelling one consumer's Deferred cancels only that consumer (the others, and the
/// upstream Deferred, go on: asyncio's `shield`); [`cancel`](SharedDeferred::cancel)
/// cancels the upstream, so every consumer fails. A consumer that comes after the result
/// gets it at once. Cloning gives another handle to the same result.
///
/// ```
/// use std::time::Duration;
/// use torsion_reactor::{Reactor, defer_later, gather};
///
/// let reactor = Reactor::current();
/// let config = defer_later(&reactor, Duration::from_millis(5), || "mode=fast".to_string())
///     .shared();
/// let readers: Vec<_> = (0..3).map(|_| config.get().map(|c| c.len())).collect();
/// let lens = reactor.run_until_complete(gather(readers)).unwrap().unwrap();
/// assert_eq!(lens, [9, 9, 9]);
/// let late = reactor.run_until_complete(config.clone().into_future()).unwrap();
/// assert_eq!(late.unwrap(), "mode=fast");
/// ```
pub struct SharedDeferred<T, E = crate::Error> {
    state: Rc<RefCell<State<T, E>>>,
    cancel: Rc<dyn Fn()>,
    origin: &'static Location<'static>,
}

impl<T, E> Clone for SharedDeferred<T, E> {
    fn clone(&self) -> Self {
        SharedDeferred {
            state: Rc::clone(&self.state),
            cancel: Rc::clone(&self.cancel),
            origin: self.origin,
        }
    }
}

impl<T: Clone + 'static, E: Clone + DeferredError> Deferred<T, E> {
    /// Makes this Deferred's result available to several consumers (see
    /// [`SharedDeferred`]); `T` and `E` must be `Clone` (torsion's
    /// [`Error`](crate::Error) is).
    #[track_caller]
    pub fn shared(self) -> SharedDeferred<T, E> {
        let origin = Location::caller();
        let state: Rc<RefCell<State<T, E>>> = Rc::new(RefCell::new(State::Pending(Vec::new())));
        let cancel = Cell::new(Some(self.clone_canceller()));
        let s = Rc::clone(&state);
        self.on_result(move |result| {
            let waiting = match std::mem::replace(&mut *s.borrow_mut(), State::Done(result.clone()))
            {
                State::Pending(waiting) => waiting,
                State::Done(_) => Vec::new(),
            };
            for consumer in waiting {
                if !consumer.is_fired() {
                    consumer.resolve_quiet(result.clone());
                }
            }
        });
        SharedDeferred {
            state,
            cancel: Rc::new(move || {
                if let Some(c) = cancel.take() {
                    c();
                }
            }),
            origin,
        }
    }
}

impl<T: Clone + 'static, E: Clone + DeferredError> SharedDeferred<T, E> {
    /// A new consumer: a Deferred of a clone of the result.
    #[track_caller]
    pub fn get(&self) -> Deferred<T, E> {
        let mut st = self.state.borrow_mut();
        match &mut *st {
            State::Done(result) => Deferred::resolved(result.clone()),
            State::Pending(waiting) => {
                let (d, resolver) = Deferred::new();
                waiting.retain(|r| !r.is_fired()); // consumers that gave up
                waiting.push(resolver);
                d
            }
        }
    }

    /// Whether the result has arrived.
    pub fn is_fired(&self) -> bool {
        matches!(*self.state.borrow(), State::Done(_))
    }

    /// Cancels the upstream Deferred: every consumer fails (unless it had its result).
    pub fn cancel(&self) {
        (self.cancel)();
    }
}

/// `shared.await` is `shared.get().await`.
impl<T: Clone + 'static, E: Clone + DeferredError> IntoFuture for SharedDeferred<T, E> {
    type Output = Result<T, E>;
    type IntoFuture = Deferred<T, E>;

    fn into_future(self) -> Deferred<T, E> {
        self.get()
    }
}

impl<T, E> fmt::Debug for SharedDeferred<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedDeferred")
            .field("origin", &self.origin)
            .field("fired", &matches!(*self.state.borrow(), State::Done(_)))
            .finish()
    }
}
