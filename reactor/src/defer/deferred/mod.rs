//! [`Deferred`]: a result that is not there yet (Twisted's `Deferred`, asyncio's `Future`),
//! its firing side [`Resolver`], typed chaining, cancellation, timeouts and the
//! combinators in [`combinators`](self::combinators).
//!
//! # When callbacks run
//!
//! Callbacks never run inside the call that fires the Deferred or adds the callback: firing
//! stores the result and queues the Deferred on the reactor's Deferred queue, which the
//! loop drains in its own phase. This is asyncio's rule rather than Twisted's (where
//! `callback(v)` runs the chain synchronously): it guarantees that user code is never
//! re-entered, so a callback may fire other Deferreds, add callbacks, or cancel things
//! while it holds its own state borrowed.
//!
//! A Deferred fired while the queue is being drained is appended to the same drain, so a
//! chain of `map`s completes within one loop iteration rather than one link per iteration;
//! a drain handles at most [`DRAIN_BUDGET`] Deferreds, then yields to the loop (I/O and
//! timers) and continues on the next iteration, so endless chains cannot starve I/O.
//! [`Clock::advance`](crate::Clock::advance) drains the queue too (when no loop is
//! running), so a test that drives time with a `Clock` sees callbacks at once.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::Location;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::error::{Error, ErrorKind};
use crate::event_loop::Reactor;
use crate::event_loop::callback::{self, Caught, CaughtKind, guard};
use crate::event_loop::queues::Run;
use crate::time::{Scheduler, SchedulerExt};

pub(crate) mod combinators;

/// The error types a [`Deferred`] can carry: anything that can represent torsion's own
/// failures (cancellation, timeouts, panics, abandoned resolvers) and be logged.
///
/// [`Error`] qualifies; for your own error type add `impl From<torsion_reactor::Error>`.
pub trait DeferredError: From<Error> + fmt::Debug + 'static {}

impl<E: From<Error> + fmt::Debug + 'static> DeferredError for E {}

/// How many Deferreds one drain of the run queue handles before yielding to the loop.
pub const DRAIN_BUDGET: usize = 1024;

trait Cancel {
    fn cancel_dyn(self: Rc<Self>);
}

/// Queues a fired Deferred on this thread's reactor (dropped if the thread is ending: no
/// loop is left to run it).
fn enqueue<T, E>(node: NodeRc<T, E>) {
    let item: Rc<dyn Run> = node;
    if let Some(reactor) = Reactor::current_if_alive() {
        reactor.inner.queues.push_deferred(item);
    }
}

// ---------------------------------------------------------------------------------------
// Shared state.
//
// A Deferred is one node: its state (`Shared`) plus what its kind carries. A plain node
// (`new`, `succeed`) carries nothing; a chained node (`map`, `and_then`, ...) also carries
// its step closure and the link its cancellation follows, in the same allocation, and is
// itself the callback the upstream Deferred runs (`Step`). So a `map` costs one allocation.

type Observer<T, E> = Box<dyn FnOnce(&Result<T, E>)>;
type Taker<T, E> = Box<dyn FnOnce(Result<T, E>)>;
type Canceller<T, E> = Box<dyn FnOnce(&Resolver<T, E>)>;

/// What a chained Deferred's cancellation cancels: the Deferred it waits on (the upstream
/// one, then, for `and_then`/`or_else`, the inner one).
type Link = Cell<Option<Weak<dyn Cancel>>>;

enum Callback<T, E> {
    /// Sees the result and leaves it for the next callback.
    Observe(Observer<T, E>),
    /// Takes the result (always the last callback: adding it consumed the Deferred).
    Take(Taker<T, E>),
    /// Takes the result into the next Deferred of a chain (also the last callback).
    Step(StepRef<T, E>),
}

/// A Deferred's callbacks in order: the first inline (most Deferreds have exactly one),
/// the others in a queue.
struct Callbacks<T, E> {
    first: Option<Callback<T, E>>,
    rest: VecDeque<Callback<T, E>>,
}

impl<T, E> Callbacks<T, E> {
    fn push(&mut self, cb: Callback<T, E>) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(cb);
        } else {
            self.rest.push_back(cb);
        }
    }

    fn pop(&mut self) -> Option<Callback<T, E>> {
        self.first.take().or_else(|| self.rest.pop_front())
    }

    fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }
}

struct State<T, E> {
    result: Option<Result<T, E>>,
    fired: bool,
    /// A taker (or a `.await`) took the result: an error in it was handled.
    consumed: bool,
    /// `cancel()` was called: a later firing is dropped quietly (Twisted does the same).
    cancelled: bool,
    /// The error was made by torsion (cancelled by request, abandoned): if nobody reads
    /// it, it is logged at debug level only.
    quiet: bool,
    /// In the run queue (or being run).
    queued: bool,
    callbacks: Callbacks<T, E>,
    canceller: Option<Canceller<T, E>>,
    waker: Option<Waker>,
    resolvers: usize,
}

/// Functions captured where `E: DeferredError` is known, so that `Drop` impls (which
/// cannot have extra bounds) can use them.
struct Ops<E> {
    lost: fn(Error) -> E,
    describe: fn(&E) -> String,
}

struct Shared<T, E> {
    state: RefCell<State<T, E>>,
    origin: &'static Location<'static>,
    ops: Ops<E>,
}

/// One Deferred: its state, and what its kind does on cancellation.
trait Node<T, E>: Run + Cancel {
    fn shared(&self) -> &Shared<T, E>;

    /// Cancels what this Deferred waits on (a chained one: its link).
    fn cancel_link(&self) {}
}

type NodeRc<T, E> = Rc<dyn Node<T, E>>;

/// The callback a chained Deferred is for the Deferred before it.
trait Step<T, E> {
    /// Runs the step with the upstream result; the step fires this Deferred.
    fn take(self: Rc<Self>, result: Result<T, E>);
    /// The upstream went away without a result: like a dropped resolver.
    fn abandon(self: Rc<Self>);
}

/// A chained Deferred held as its upstream's callback: it counts as one of the chained
/// Deferred's resolvers, so dropping it unrun abandons that Deferred (as dropping a
/// resolver would).
struct StepRef<T, E>(Option<Rc<dyn Step<T, E>>>);

impl<T, E> StepRef<T, E> {
    fn take(mut self, result: Result<T, E>) {
        if let Some(step) = self.0.take() {
            step.take(result);
        }
    }
}

impl<T, E> Drop for StepRef<T, E> {
    fn drop(&mut self) {
        if let Some(step) = self.0.take() {
            step.abandon();
        }
    }
}

fn report_callback_panic(origin: &Location<'_>, msg: String) {
    callback::report_panic(
        &format!("a callback of the Deferred created at {origin}"),
        None,
        msg,
    );
}

fn describe<E: fmt::Debug>(e: &E) -> String {
    format!("{e:?}")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fire {
    /// A user's `callback`/`errback`: firing twice is an error.
    Strict,
    /// Internal plumbing: a Deferred already fired (say, cancelled) just drops the value.
    Quiet,
    /// The last resolver went away.
    Abandoned,
}

impl<T: 'static, E: DeferredError> Shared<T, E> {
    fn new(
        origin: &'static Location<'static>,
        result: Option<Result<T, E>>,
        resolvers: usize,
    ) -> Self {
        Shared {
            state: RefCell::new(State {
                fired: result.is_some(),
                result,
                consumed: false,
                cancelled: false,
                quiet: false,
                queued: false,
                callbacks: Callbacks {
                    first: None,
                    rest: VecDeque::new(),
                },
                canceller: None,
                waker: None,
                resolvers,
            }),
            origin,
            ops: Ops {
                lost: E::from,
                describe: describe::<E>,
            },
        }
    }
}

/// A Deferred made by `new`, `succeed`, ...: its state only.
struct Plain<T, E>(Shared<T, E>);

impl<T: 'static, E: 'static> Node<T, E> for Plain<T, E> {
    fn shared(&self) -> &Shared<T, E> {
        &self.0
    }
}

impl<T: 'static, E: 'static> Run for Plain<T, E> {
    fn run(self: Rc<Self>) {
        let node: NodeRc<T, E> = self;
        node.run_callbacks();
    }
}

impl<T: 'static, E: 'static> Cancel for Plain<T, E> {
    fn cancel_dyn(self: Rc<Self>) {
        let node: NodeRc<T, E> = self;
        node.cancel();
    }
}

/// A Deferred made by a chaining method: its state, the step that fires it from the
/// upstream result (run once), and what cancelling it cancels.
struct Chained<T, E, U, E2, S> {
    shared: Shared<U, E2>,
    step: Cell<Option<S>>,
    link: Link,
    _upstream: PhantomData<fn(Result<T, E>)>,
}

impl<T, E, U, E2, S> Node<U, E2> for Chained<T, E, U, E2, S>
where
    T: 'static,
    E: 'static,
    U: 'static,
    E2: 'static,
    S: FnOnce(Result<T, E>, Resolver<U, E2>, &Link) + 'static,
{
    fn shared(&self) -> &Shared<U, E2> {
        &self.shared
    }

    fn cancel_link(&self) {
        if let Some(target) = self.link.take().and_then(|w| w.upgrade()) {
            target.cancel_dyn();
        }
    }
}

impl<T, E, U, E2, S> Run for Chained<T, E, U, E2, S>
where
    T: 'static,
    E: 'static,
    U: 'static,
    E2: 'static,
    S: FnOnce(Result<T, E>, Resolver<U, E2>, &Link) + 'static,
{
    fn run(self: Rc<Self>) {
        let node: NodeRc<U, E2> = self;
        node.run_callbacks();
    }
}

impl<T, E, U, E2, S> Cancel for Chained<T, E, U, E2, S>
where
    T: 'static,
    E: 'static,
    U: 'static,
    E2: 'static,
    S: FnOnce(Result<T, E>, Resolver<U, E2>, &Link) + 'static,
{
    fn cancel_dyn(self: Rc<Self>) {
        let node: NodeRc<U, E2> = self;
        node.cancel();
    }
}

impl<T, E, U, E2, S> Step<T, E> for Chained<T, E, U, E2, S>
where
    T: 'static,
    E: 'static,
    U: 'static,
    E2: 'static,
    S: FnOnce(Result<T, E>, Resolver<U, E2>, &Link) + 'static,
{
    fn take(self: Rc<Self>, result: Result<T, E>) {
        let step = self.step.take();
        // The upstream's callback held this Deferred's resolver count: it passes to the
        // resolver handed to the step.
        let node: NodeRc<U, E2> = self.clone();
        let resolver = Resolver { shared: node };
        match step {
            Some(step) => step(result, resolver, &self.link),
            None => drop((result, resolver)),
        }
    }

    fn abandon(self: Rc<Self>) {
        let step = self.step.take();
        drop(step);
        let node: NodeRc<U, E2> = self;
        drop(Resolver { shared: node });
    }
}

impl<T, E> Shared<T, E> {
    fn is_fired(&self) -> bool {
        self.state.borrow().fired
    }
}

impl<T, E> dyn Node<T, E> {
    fn state(&self) -> &RefCell<State<T, E>> {
        &self.shared().state
    }

    fn origin(&self) -> &'static Location<'static> {
        self.shared().origin
    }

    fn is_fired(&self) -> bool {
        self.shared().is_fired()
    }

    fn fire(self: &Rc<Self>, result: Result<T, E>, how: Fire) -> Result<(), Error> {
        let mut st = self.state().borrow_mut();
        if st.fired {
            let cancelled = st.cancelled;
            drop(st);
            drop(result);
            return if cancelled || how != Fire::Strict {
                Ok(())
            } else {
                Err(Error::new(
                    ErrorKind::AlreadyFired,
                    format!(
                        "the Deferred created at {} was already fired; a Deferred fires once",
                        self.origin()
                    ),
                ))
            };
        }
        st.fired = true;
        st.result = Some(result);
        if how == Fire::Abandoned {
            st.quiet = true;
        }
        let canceller = st.canceller.take();
        let mut wake = None;
        let mut run = false;
        if !st.callbacks.is_empty() {
            if !st.queued {
                st.queued = true;
                run = true;
            }
        } else {
            wake = st.waker.take();
        }
        drop(st);
        drop(canceller);
        if run {
            enqueue(Rc::clone(self));
        }
        if let Some(waker) = wake {
            waker.wake();
        }
        Ok(())
    }

    fn push(self: &Rc<Self>, cb: Callback<T, E>) {
        let mut st = self.state().borrow_mut();
        st.callbacks.push(cb);
        let run = st.fired && !st.queued;
        if run {
            st.queued = true;
        }
        drop(st);
        if run {
            enqueue(Rc::clone(self));
        }
    }

    fn cancel(self: &Rc<Self>) {
        let canceller = {
            let mut st = self.state().borrow_mut();
            if st.fired {
                return;
            }
            st.canceller.take()
        };
        // The canceller gets a resolver, so the count cannot reach zero (and fire
        // `Abandoned`) while it drops the producer's own resolvers.
        let resolver = Resolver::from_shared(Rc::clone(self));
        if let Some(canceller) = canceller {
            let r = &resolver;
            callback::contain(
                &format!("the canceller of the Deferred created at {}", self.origin()),
                None,
                move || canceller(r),
            );
        }
        self.cancel_link();
        let still_pending = {
            let mut st = self.state().borrow_mut();
            st.cancelled = true;
            !st.fired
        };
        if still_pending {
            let err = (self.shared().ops.lost)(Error::new(
                ErrorKind::Cancelled,
                format!("the Deferred created at {} was cancelled", self.origin()),
            ));
            let _ = self.fire(Err(err), Fire::Quiet);
            self.state().borrow_mut().quiet = true;
        }
        drop(resolver);
    }

    /// Runs the callbacks, in order (the Deferred's turn in the run queue).
    fn run_callbacks(self: &Rc<Self>) {
        let origin = self.origin();
        loop {
            let mut st = self.state().borrow_mut();
            let Some(cb) = st.callbacks.pop() else {
                st.queued = false;
                let waker = st.waker.take();
                drop(st);
                if let Some(waker) = waker {
                    waker.wake();
                }
                return;
            };
            match cb {
                Callback::Observe(f) => {
                    let Some(result) = st.result.take() else {
                        drop(st);
                        drop(f);
                        continue;
                    };
                    drop(st);
                    let seen = &result;
                    if let Err(msg) = guard(move || f(seen)) {
                        report_callback_panic(origin, msg);
                    }
                    self.state().borrow_mut().result = Some(result);
                }
                Callback::Take(f) => {
                    let result = st.result.take();
                    st.consumed = true;
                    drop(st);
                    match result {
                        Some(result) => {
                            if let Err(msg) = guard(move || f(result)) {
                                report_callback_panic(origin, msg);
                            }
                        }
                        None => drop(f),
                    }
                }
                Callback::Step(step) => {
                    let result = st.result.take();
                    st.consumed = true;
                    drop(st);
                    match result {
                        Some(result) => {
                            if let Err(msg) = guard(move || step.take(result)) {
                                report_callback_panic(origin, msg);
                            }
                        }
                        None => drop(step),
                    }
                }
            }
        }
    }
}

impl<T, E> Drop for Shared<T, E> {
    fn drop(&mut self) {
        let st = self.state.get_mut();
        if st.consumed {
            return;
        }
        if let Some(Err(err)) = &st.result {
            let text = (self.ops.describe)(err);
            if st.quiet {
                log::debug!(
                    "unread error in the Deferred created at {}: {text}",
                    self.origin
                );
            } else {
                callback::report(Caught::new(
                    CaughtKind::UnhandledError,
                    format!("Unhandled error in the Deferred created at {}", self.origin),
                    text,
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The public types.

/// A result that is not there yet: fired once, later, with `Ok(T)` or `Err(E)`.
///
/// A `Deferred` is the *receiving* side; whoever produces the result keeps the
/// [`Resolver`] that [`Deferred::new`] returned with it. The chaining methods ([`map`],
/// [`and_then`], [`map_err`], [`or_else`], [`then`], [`on_result`]) consume the Deferred
/// and return a new one for the next step, so the types say what flows where; [`inspect`]
/// and [`finally`] watch the result without taking it. A Deferred is also a [`Future`]:
/// `d.await` in a task gives the `Result`.
///
/// # When callbacks run
///
/// Callbacks run in the order they were added, whether they were added before or after
/// the Deferred fired, and always from the reactor loop: never inside the call that fires
/// the Deferred or adds the callback. Firing stores the result and queues the Deferred on
/// the reactor's Deferred queue, which the loop drains. This is asyncio's rule rather
/// than Twisted's (where `callback(v)` runs the chain synchronously): user code is never
/// re-entered, so a callback may fire other Deferreds, add callbacks or cancel things while
/// it holds its own state borrowed. Run the reactor (`run`, `run_until`,
/// `run_until_complete`) for callbacks to happen.
///
/// A Deferred fired while the queue is drained joins the same drain, so a chain of `map`s
/// completes within one loop iteration, not one link per iteration; a drain handles at
/// most [`DRAIN_BUDGET`] Deferreds, then lets I/O and timers run.
///
/// # Errors and cancellation
///
/// An error that nobody takes (no `map_err`/`or_else`/`then`/`on_result`/`.await`) is
/// logged with `log::error!`, naming where the Deferred was created, when the last handle
/// to it is dropped. An error made by [`cancel`](Deferred::cancel) is not: whoever
/// cancelled knows.
///
/// Dropping a Deferred cancels nothing, except while a task is awaiting it: then the
/// task was cancelled or gave up (say, a [`timeout`](crate::timeout)), and the Deferred is
/// cancelled with it.
///
/// Single-threaded (`!Send`); for results computed on other threads see
/// [`Reactor::defer_to_thread`].
///
/// # Example
///
/// ```
/// use std::{cell::Cell, rc::Rc, time::Duration};
/// use torsion_reactor::{Deferred, Error, ErrorKind, Reactor};
///
/// let reactor = Reactor::current();
/// let (d, resolver) = Deferred::<u32>::new();
/// let seen = Rc::new(Cell::new(0));
/// let s = seen.clone();
/// d.map(|n| n + 1)
///     .and_then(|n| Deferred::succeed(n * 10)) // a step may return another Deferred
///     .on_result(move |r| s.set(r.unwrap()));
///
/// resolver.callback(1).unwrap();
/// assert_eq!(seen.get(), 0, "callbacks never run inside callback()");
/// let err = resolver.callback(2).unwrap_err();
/// assert!(matches!(err.kind(), ErrorKind::AlreadyFired));
///
/// reactor.run_until(Duration::from_secs(5), || seen.get() != 0).unwrap();
/// assert_eq!(seen.get(), 20);
/// ```
///
/// [`map`]: Deferred::map
/// [`and_then`]: Deferred::and_then
/// [`map_err`]: Deferred::map_err
/// [`or_else`]: Deferred::or_else
/// [`then`]: Deferred::then
/// [`on_result`]: Deferred::on_result
/// [`inspect`]: Deferred::inspect
/// [`finally`]: Deferred::finally
pub struct Deferred<T, E = Error> {
    shared: NodeRc<T, E>,
}

/// The firing side of a [`Deferred`]: `callback(v)`, `errback(e)` or `resolve(result)`,
/// once. Cloning gives another handle to the same Deferred.
///
/// If every resolver of a Deferred is dropped before it fired, the Deferred fails with
/// [`ErrorKind::Abandoned`]: a result that can never come is an error, not a silent hang.
pub struct Resolver<T, E = Error> {
    shared: NodeRc<T, E>,
}

impl<T, E> Resolver<T, E> {
    fn from_shared(shared: NodeRc<T, E>) -> Self {
        shared.state().borrow_mut().resolvers += 1;
        Resolver { shared }
    }

    /// Fires the Deferred with `Ok(value)`.
    ///
    /// Errors: [`ErrorKind::AlreadyFired`] if it was already fired (the value is dropped).
    /// Firing a Deferred that was cancelled is not an error: the value is dropped quietly,
    /// so a producer need not race against cancellation.
    pub fn callback(&self, value: T) -> Result<(), Error> {
        self.shared.fire(Ok(value), Fire::Strict)
    }

    /// Fires the Deferred with `Err(error)`; errors as for [`callback`](Resolver::callback).
    pub fn errback(&self, error: E) -> Result<(), Error> {
        self.shared.fire(Err(error), Fire::Strict)
    }

    /// Fires the Deferred with `result`; errors as for [`callback`](Resolver::callback).
    pub fn resolve(&self, result: Result<T, E>) -> Result<(), Error> {
        self.shared.fire(result, Fire::Strict)
    }

    /// Fires unless already fired (internal plumbing).
    pub(crate) fn resolve_quiet(&self, result: Result<T, E>) {
        let _ = self.shared.fire(result, Fire::Quiet);
    }

    /// Whether the Deferred has fired (by this resolver, another, or by cancellation).
    pub fn is_fired(&self) -> bool {
        self.shared.is_fired()
    }

    /// Whether the Deferred was cancelled: a producer may stop working on it.
    pub fn is_cancelled(&self) -> bool {
        self.shared.state().borrow().cancelled
    }
}

impl<T, E> Clone for Resolver<T, E> {
    fn clone(&self) -> Self {
        Resolver::from_shared(Rc::clone(&self.shared))
    }
}

impl<T, E> Drop for Resolver<T, E> {
    fn drop(&mut self) {
        let abandoned = {
            let mut st = self.shared.state().borrow_mut();
            st.resolvers -= 1;
            st.resolvers == 0 && !st.fired
        };
        if abandoned {
            let err = (self.shared.shared().ops.lost)(Error::new(
                ErrorKind::Abandoned,
                format!(
                    "the Deferred created at {} will never fire: its every resolver was dropped",
                    self.shared.origin()
                ),
            ));
            let _ = self.shared.fire(Err(err), Fire::Abandoned);
        }
    }
}

impl<T, E> fmt::Debug for Resolver<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("origin", &self.shared.origin())
            .field("fired", &self.is_fired())
            .finish()
    }
}

impl<T, E> fmt::Debug for Deferred<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deferred")
            .field("origin", &self.shared.origin())
            .field("fired", &self.is_fired())
            .finish()
    }
}

fn panicked(what: &str, origin: &Location<'_>, msg: &str) -> Error {
    Error::new(
        ErrorKind::Panicked,
        format!("{what} added at {origin} panicked: {msg}"),
    )
}

impl<T, E> Deferred<T, E> {
    /// Whether the Deferred has fired (its callbacks may not have run yet).
    pub fn is_fired(&self) -> bool {
        self.shared.is_fired()
    }

    /// Where the Deferred was created (named in unhandled-error reports).
    pub fn origin(&self) -> &'static Location<'static> {
        self.shared.origin()
    }

    /// Cancels the Deferred: runs the canceller supplied by its creator (see
    /// [`with_canceller`](Deferred::with_canceller)), then, unless the canceller fired it,
    /// fires it with an [`ErrorKind::Cancelled`] error. A no-op once it has fired.
    ///
    /// The canceller runs inside this call (it is the producer's cleanup: stop a timer,
    /// abandon a connection attempt); the Deferred's callbacks run later, from the loop.
    /// Cancelling a chained Deferred cancels the step it waits on: `d.map(f).cancel()`
    /// cancels `d`; an `and_then` waiting for an inner Deferred cancels the inner one.
    pub fn cancel(&self) {
        self.shared.cancel();
    }
}

impl<T: 'static, E: DeferredError> Deferred<T, E> {
    /// A new, unfired Deferred and the [`Resolver`] that fires it.
    #[track_caller]
    pub fn new() -> (Deferred<T, E>, Resolver<T, E>) {
        Deferred::new_at(Location::caller())
    }

    pub(crate) fn new_at(origin: &'static Location<'static>) -> (Deferred<T, E>, Resolver<T, E>) {
        let shared: NodeRc<T, E> = Rc::new(Plain(Shared::new(origin, None, 0)));
        let resolver = Resolver::from_shared(Rc::clone(&shared));
        (Deferred { shared }, resolver)
    }

    /// Like [`new`](Deferred::new), with a canceller: [`cancel`](Deferred::cancel) calls
    /// `canceller` (with a resolver, in case it wants to fire a result of its own) before
    /// failing the Deferred with [`ErrorKind::Cancelled`].
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// use torsion_reactor::{Deferred, ErrorKind};
    ///
    /// let stopped = Rc::new(Cell::new(false));
    /// let s = stopped.clone();
    /// let (d, _resolver) = Deferred::<()>::with_canceller(move |_| s.set(true));
    /// d.cancel();
    /// assert!(stopped.get() && d.is_fired());
    /// ```
    #[track_caller]
    pub fn with_canceller<F>(canceller: F) -> (Deferred<T, E>, Resolver<T, E>)
    where
        F: FnOnce(&Resolver<T, E>) + 'static,
    {
        let (d, r) = Deferred::new_at(Location::caller());
        d.set_canceller(canceller);
        (d, r)
    }

    pub(crate) fn set_canceller<F>(&self, canceller: F)
    where
        F: FnOnce(&Resolver<T, E>) + 'static,
    {
        let old = self
            .shared
            .state()
            .borrow_mut()
            .canceller
            .replace(Box::new(canceller));
        drop(old);
    }

    /// A Deferred that has already fired with `Ok(value)`.
    #[track_caller]
    pub fn succeed(value: T) -> Deferred<T, E> {
        Deferred::resolved(Ok(value))
    }

    /// A Deferred that has already fired with `Err(error)`.
    #[track_caller]
    pub fn fail(error: E) -> Deferred<T, E> {
        Deferred::resolved(Err(error))
    }

    /// A Deferred that has already fired with `result`.
    #[track_caller]
    pub fn resolved(result: Result<T, E>) -> Deferred<T, E> {
        Deferred {
            shared: Rc::new(Plain(Shared::new(Location::caller(), Some(result), 0))),
        }
    }

    fn weak(&self) -> Weak<dyn Cancel> {
        let weak: Weak<dyn Node<T, E>> = Rc::downgrade(&self.shared);
        weak
    }

    /// A closure that cancels this Deferred later, if it still exists then.
    pub(crate) fn clone_canceller(&self) -> impl FnOnce() + 'static {
        let weak = self.weak();
        move || {
            if let Some(target) = weak.upgrade() {
                target.cancel_dyn();
            }
        }
    }

    pub(crate) fn push_take<F: FnOnce(Result<T, E>) + 'static>(self, f: F) {
        self.shared.push(Callback::Take(Box::new(f)));
    }

    /// The common shape of every chaining method: a new Deferred whose cancellation
    /// cancels whatever `link` points at (this one, then possibly an inner one), and a
    /// taker on this one that calls `step`.
    fn chain<U, E2, S>(self, origin: &'static Location<'static>, step: S) -> Deferred<U, E2>
    where
        U: 'static,
        E2: DeferredError,
        S: FnOnce(Result<T, E>, Resolver<U, E2>, &Link) + 'static,
    {
        // One allocation: the next Deferred, its step and its link. The upstream's
        // callback is that same node, counted as one of its resolvers.
        let node = Rc::new(Chained {
            shared: Shared::<U, E2>::new(origin, None, 1),
            step: Cell::new(Some(step)),
            link: Cell::new(Some(self.weak())),
            _upstream: PhantomData,
        });
        let as_step: Rc<dyn Step<T, E>> = node.clone();
        self.shared.push(Callback::Step(StepRef(Some(as_step))));
        Deferred { shared: node }
    }

    /// Transforms the value; an error passes through unchanged.
    ///
    /// If `f` panics, the new Deferred fails with an [`ErrorKind::Panicked`] error.
    #[track_caller]
    pub fn map<U, F>(self, f: F) -> Deferred<U, E>
    where
        U: 'static,
        F: FnOnce(T) -> U + 'static,
    {
        let origin = Location::caller();
        self.chain(origin, move |result, next, _| {
            next.resolve_quiet(match result {
                Ok(v) => guard(move || f(v))
                    .map_err(|msg| E::from(panicked("a map callback", origin, &msg))),
                Err(e) => Err(e),
            })
        })
    }

    /// Transforms the value with a step that may fail (Twisted: a callback that raises).
    #[track_caller]
    pub fn try_map<U, F>(self, f: F) -> Deferred<U, E>
    where
        U: 'static,
        F: FnOnce(T) -> Result<U, E> + 'static,
    {
        let origin = Location::caller();
        self.chain(origin, move |result, next, _| {
            next.resolve_quiet(match result {
                Ok(v) => match guard(move || f(v)) {
                    Ok(r) => r,
                    Err(msg) => Err(E::from(panicked("a try_map callback", origin, &msg))),
                },
                Err(e) => Err(e),
            })
        })
    }

    /// Continues with another Deferred made from the value; the result is that Deferred's
    /// (it is waited for). An error skips `f` and passes through.
    ///
    /// Cancelling the returned Deferred cancels this one while it is pending, and the
    /// inner one once `f` has returned it.
    #[track_caller]
    pub fn and_then<U, F>(self, f: F) -> Deferred<U, E>
    where
        U: 'static,
        F: FnOnce(T) -> Deferred<U, E> + 'static,
    {
        let origin = Location::caller();
        self.chain(origin, move |result, next, link| match result {
            Ok(v) => match guard(move || f(v)) {
                Ok(inner) => {
                    link.set(Some(inner.weak()));
                    inner.push_take(move |r| next.resolve_quiet(r));
                }
                Err(msg) => {
                    next.resolve_quiet(Err(E::from(panicked("an and_then callback", origin, &msg))))
                }
            },
            Err(e) => next.resolve_quiet(Err(e)),
        })
    }

    /// Transforms the error (possibly into another error type); a value passes through.
    #[track_caller]
    pub fn map_err<E2, F>(self, f: F) -> Deferred<T, E2>
    where
        E2: DeferredError,
        F: FnOnce(E) -> E2 + 'static,
    {
        let origin = Location::caller();
        self.chain(origin, move |result, next, _| {
            next.resolve_quiet(match result {
                Ok(v) => Ok(v),
                Err(e) => match guard(move || f(e)) {
                    Ok(e2) => Err(e2),
                    Err(msg) => Err(E2::from(panicked("a map_err callback", origin, &msg))),
                },
            })
        })
    }

    /// Recovers from an error with another Deferred (say `Deferred::succeed(default)`), or
    /// fails it differently; a value passes through.
    #[track_caller]
    pub fn or_else<E2, F>(self, f: F) -> Deferred<T, E2>
    where
        E2: DeferredError,
        F: FnOnce(E) -> Deferred<T, E2> + 'static,
    {
        let origin = Location::caller();
        self.chain(origin, move |result, next, link| match result {
            Ok(v) => next.resolve_quiet(Ok(v)),
            Err(e) => match guard(move || f(e)) {
                Ok(inner) => {
                    link.set(Some(inner.weak()));
                    inner.push_take(move |r| next.resolve_quiet(r));
                }
                Err(msg) => {
                    next.resolve_quiet(Err(E2::from(panicked("an or_else callback", origin, &msg))))
                }
            },
        })
    }

    /// Transforms the whole result, value or error (Twisted's `addBoth`).
    #[track_caller]
    pub fn then<U, E2, F>(self, f: F) -> Deferred<U, E2>
    where
        U: 'static,
        E2: DeferredError,
        F: FnOnce(Result<T, E>) -> Result<U, E2> + 'static,
    {
        let origin = Location::caller();
        self.chain(origin, move |result, next, _| {
            next.resolve_quiet(match guard(move || f(result)) {
                Ok(r) => r,
                Err(msg) => Err(E2::from(panicked("a then callback", origin, &msg))),
            })
        })
    }

    /// Watches the result without taking it; the same Deferred comes back for more
    /// chaining. An error seen here still counts as unhandled.
    pub fn inspect<F: FnOnce(&Result<T, E>) + 'static>(self, f: F) -> Deferred<T, E> {
        self.shared.push(Callback::Observe(Box::new(f)));
        self
    }

    /// Runs `f` once the Deferred has fired, whatever the result (a `finally` clause);
    /// the result goes on to the next step unchanged.
    pub fn finally<F: FnOnce() + 'static>(self, f: F) -> Deferred<T, E> {
        self.inspect(move |_| f())
    }

    /// The last step: hands the result, value or error, to `f` (errors count as handled).
    pub fn on_result<F: FnOnce(Result<T, E>) + 'static>(self, f: F) {
        self.push_take(f);
    }

    /// Fails with [`ErrorKind::TimedOut`] if no result came within `timeout` on this
    /// thread's reactor: this Deferred is cancelled (its canceller runs) and the returned
    /// one fails. The timer is cancelled when a result comes first.
    #[track_caller]
    pub fn with_timeout(self, timeout: Duration) -> Deferred<T, E> {
        let origin = Location::caller();
        self.timeout_at(&Reactor::current(), timeout, origin)
    }

    /// [`with_timeout`](Deferred::with_timeout) on the time of `scheduler` (a
    /// [`Clock`](crate::Clock) in tests).
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc, time::Duration};
    /// use torsion_reactor::{Clock, Deferred, ErrorKind, Reactor};
    ///
    /// let clock = Clock::new();
    /// let (d, _resolver) = Deferred::<()>::new();
    /// let outcome = Rc::new(RefCell::new(None));
    /// let o = outcome.clone();
    /// d.with_timeout_on(&clock, Duration::from_secs(30))
    ///     .on_result(move |r| *o.borrow_mut() = Some(r));
    /// clock.advance(Duration::from_secs(30));
    /// Reactor::current().run_until(Duration::from_secs(5), || outcome.borrow().is_some());
    /// let err = outcome.borrow_mut().take().unwrap().unwrap_err();
    /// assert!(matches!(err.kind(), ErrorKind::TimedOut));
    /// ```
    #[track_caller]
    pub fn with_timeout_on(self, scheduler: &dyn Scheduler, timeout: Duration) -> Deferred<T, E> {
        let origin = Location::caller();
        self.timeout_at(scheduler, timeout, origin)
    }

    fn timeout_at(
        self,
        scheduler: &dyn Scheduler,
        timeout: Duration,
        origin: &'static Location<'static>,
    ) -> Deferred<T, E> {
        let timed_out = Rc::new(Cell::new(false));
        let t = Rc::clone(&timed_out);
        let upstream = Rc::downgrade(&self.shared);
        let call = scheduler.call_later(timeout, move || {
            if let Some(up) = upstream.upgrade() {
                if !up.is_fired() {
                    t.set(true);
                    up.cancel();
                }
            }
        });
        self.chain(origin, move |result, next, _| {
            let _ = call.cancel();
            next.resolve_quiet(match result {
                Err(e) if timed_out.get() => {
                    drop(e);
                    Err(E::from(Error::new(
                        ErrorKind::TimedOut,
                        format!("the Deferred at {origin} timed out after {timeout:?}"),
                    )))
                }
                other => other,
            })
        })
    }

    /// Runs `fut` as a task on this thread's reactor and returns a Deferred of its result
    /// (Twisted's `ensureDeferred`): `Ok` and `Err` become the Deferred's value or error;
    /// a panic fails it with [`ErrorKind::Panicked`]. Cancelling the Deferred drops the
    /// future. For futures whose output is not a `Result`, use [`Reactor::spawn`].
    #[track_caller]
    pub fn from_future<F>(fut: F) -> Deferred<T, E>
    where
        F: Future<Output = Result<T, E>> + 'static,
    {
        let origin = Location::caller();
        crate::defer::executor::spawn_at(&Reactor::current(), fut, origin, move |out| match out {
            Ok(result) => result,
            Err(msg) => Err(E::from(panicked("a task", origin, &msg))),
        })
    }
}

/// Dropping a Deferred that is being awaited (polled, not yet fired) cancels it: the task
/// awaiting it was cancelled, or a [`timeout`](crate::timeout) gave up on it, so nobody
/// wants the result any more (Twisted cancels the awaited Deferred when a coroutine's
/// Deferred is cancelled). Dropping a Deferred that is not being awaited cancels nothing.
impl<T, E> Drop for Deferred<T, E> {
    fn drop(&mut self) {
        let awaited = {
            let st = self.shared.state().borrow();
            st.waker.is_some() && !st.fired
        };
        if awaited {
            self.shared.state().borrow_mut().waker = None;
            self.shared.cancel();
        }
    }
}

/// Awaiting a Deferred gives its result. Callbacks added before the `.await` run first.
///
/// # Panics
/// If polled again after it returned `Ready` (as futures may).
impl<T, E> Future for Deferred<T, E> {
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = self.shared.state().borrow_mut();
        if st.fired && !st.queued && st.callbacks.is_empty() {
            if let Some(result) = st.result.take() {
                st.consumed = true;
                return Poll::Ready(result);
            }
            if st.consumed {
                drop(st);
                panic!("a Deferred was polled after it completed");
            }
        }
        let stale = match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => None,
            _ => st.waker.replace(cx.waker().clone()),
        };
        drop(st);
        drop(stale);
        Poll::Pending
    }
}

/// A Deferred fired by a timer: `f()` runs `delay` from now on `scheduler` (the reactor,
/// or a [`Clock`](crate::Clock)) and its return value fires the Deferred (Twisted's
/// `deferLater`). A panic in `f` fails it with [`ErrorKind::Panicked`]. Cancelling the
/// Deferred cancels the timer.
///
/// ```
/// use std::{cell::Cell, rc::Rc, time::Duration};
/// use torsion_reactor::{Reactor, defer_later};
///
/// let reactor = Reactor::current();
/// let got = Rc::new(Cell::new(0));
/// let g = got.clone();
/// defer_later(&reactor, Duration::from_millis(10), || 42).on_result(move |r| g.set(r.unwrap()));
/// reactor.run_until(Duration::from_secs(5), || got.get() == 42).unwrap();
/// ```
#[track_caller]
pub fn defer_later<T, F>(scheduler: &dyn Scheduler, delay: Duration, f: F) -> Deferred<T>
where
    T: 'static,
    F: FnOnce() -> T + 'static,
{
    let origin = Location::caller();
    let (d, resolver) = Deferred::<T>::new_at(origin);
    let call = scheduler.call_later(delay, move || {
        resolver.resolve_quiet(
            guard(f).map_err(|msg| panicked("a defer_later callable", origin, &msg)),
        );
    });
    d.set_canceller(move |_| {
        let _ = call.cancel();
    });
    d
}
