//! [`TaskGroup`]: tasks that succeed or fail together (asyncio's `TaskGroup`, structured
//! concurrency): the group's end waits for all of them, and the first failure cancels the
//! rest.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::rc::Rc;

use crate::defer::deferred::{Deferred, DeferredError, Resolver};
use crate::error::{Error, ErrorKind};

type Canceller = Box<dyn FnOnce()>;

enum Phase<E> {
    /// Members may be added; `join` may or may not have been called.
    Open,
    /// A member failed (or the group was cancelled): the others are cancelled, no more
    /// members are accepted, and `join` fails with this error once all have ended.
    Failed(Option<E>),
    /// `join` has fired (its results taken).
    Ended,
}

struct State<T, E> {
    /// One per member, in the order they were added.
    results: Vec<Option<T>>,
    /// Cancellers of the members still running (index-aligned).
    running: Vec<Option<Canceller>>,
    live: usize,
    phase: Phase<E>,
    join: Option<Resolver<Vec<T>, E>>,
    joined: bool,
}

struct Inner<T, E> {
    state: RefCell<State<T, E>>,
    origin: &'static Location<'static>,
}

/// Tasks (or Deferreds) that succeed or fail together: [`join`](TaskGroup::join) waits for
/// all of them and gives their values in the order they were added; the first failure
/// cancels the others and `join` fails with it (asyncio's `TaskGroup`).
///
/// Members are added with [`spawn`](TaskGroup::spawn) (a future, run as a task on this
/// thread's reactor) or [`add`](TaskGroup::add) (any Deferred: callback code joins a group
/// the same way), also from inside other members. The group ends when `join` fires; it then
/// takes no more members. Cancelling `join`'s Deferred (for instance by dropping a task that
/// awaits it), [`cancel`](TaskGroup::cancel), or dropping the last handle of a group nobody
/// joined cancels every member still running: a group never leaks tasks. A pending `join`
/// keeps its group alive. Cloning gives another handle to the same group.
///
/// ```
/// use std::time::Duration;
/// use torsion_reactor::{Error, ErrorKind, Reactor, TaskGroup, sleep};
///
/// let reactor = Reactor::current();
/// let out = reactor.run_until_complete(async {
///     let group = TaskGroup::new();
///     for n in 1..=3u64 {
///         group.spawn(async move {
///             sleep(Duration::from_millis(n)).await;
///             Ok::<_, Error>(n * 10)
///         })?;
///     }
///     let values = group.join().await?;
///
///     // One failure cancels the rest.
///     let failing = TaskGroup::new();
///     failing.spawn(async {
///         sleep(Duration::from_secs(3600)).await; // cancelled, never finishes
///         Ok(())
///     })?;
///     failing.spawn(async { Err(Error::new(ErrorKind::Other, "no route")) })?;
///     let err = failing.join().await.unwrap_err();
///     Ok::<_, Error>((values, err.to_string()))
/// });
/// let (values, err) = out.unwrap().unwrap();
/// assert_eq!(values, [10, 20, 30]);
/// assert_eq!(err, "no route");
/// ```
pub struct TaskGroup<T: 'static = (), E: DeferredError = Error> {
    inner: Rc<Inner<T, E>>,
}

impl<T: 'static, E: DeferredError> Clone for TaskGroup<T, E> {
    fn clone(&self) -> Self {
        TaskGroup {
            inner: Rc::clone(&self.inner),
        }
    }
}

impl<T: 'static, E: DeferredError> Default for TaskGroup<T, E> {
    #[track_caller]
    fn default() -> Self {
        TaskGroup::new()
    }
}

impl<T: 'static, E: DeferredError> TaskGroup<T, E> {
    /// An empty group.
    #[track_caller]
    pub fn new() -> TaskGroup<T, E> {
        TaskGroup {
            inner: Rc::new(Inner {
                state: RefCell::new(State {
                    results: Vec::new(),
                    running: Vec::new(),
                    live: 0,
                    phase: Phase::Open,
                    join: None,
                    joined: false,
                }),
                origin: Location::caller(),
            }),
        }
    }

    /// Runs `fut` as a task on this thread's reactor, as a member: its `Ok` value goes in
    /// `join`'s list, its `Err` (or a panic) fails the group. Returns the member's index
    /// in that list.
    ///
    /// Error: [`ErrorKind::InvalidInput`] once the group has failed or ended (the future is
    /// dropped without being run).
    #[track_caller]
    pub fn spawn<F>(&self, fut: F) -> Result<usize, Error>
    where
        F: Future<Output = Result<T, E>> + 'static,
    {
        self.accepting()?;
        self.add(Deferred::from_future(fut))
    }

    /// Adds a Deferred as a member (callback code in a group): cancelling the group cancels
    /// it. Returns its index in `join`'s list.
    ///
    /// Error: [`ErrorKind::InvalidInput`] once the group has failed or ended (the Deferred
    /// is cancelled).
    pub fn add(&self, member: Deferred<T, E>) -> Result<usize, Error> {
        if let Err(err) = self.accepting() {
            member.cancel();
            return Err(err);
        }
        let index = {
            let mut st = self.inner.state.borrow_mut();
            st.results.push(None);
            st.running.push(Some(Box::new(member.clone_canceller())));
            st.live += 1;
            st.results.len() - 1
        };
        let group = Rc::downgrade(&self.inner);
        member.on_result(move |result| {
            if let Some(inner) = group.upgrade() {
                finished(&inner, index, result);
            }
        });
        Ok(index)
    }

    fn accepting(&self) -> Result<(), Error> {
        match self.inner.state.borrow().phase {
            Phase::Open => Ok(()),
            Phase::Failed(_) => Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the task group created at {} has failed: it takes no more tasks",
                    self.inner.origin
                ),
            )),
            _ => Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the task group created at {} has ended: it takes no more tasks",
                    self.inner.origin
                ),
            )),
        }
    }

    /// The group's end: fires once every member has ended, with their values in the order
    /// they were added, or with the first failure (after cancelling the others). Members
    /// may still be added while it waits. Cancelling it cancels the group.
    ///
    /// A second call fails with [`ErrorKind::InvalidInput`]: the values go to one place.
    #[track_caller]
    pub fn join(&self) -> Deferred<Vec<T>, E> {
        let origin = Location::caller();
        // The pending join keeps the group alive (until it fires), so callback code may let
        // its handles go once it has asked for the end.
        let group = Rc::clone(&self.inner);
        let (d, resolver) = Deferred::with_canceller(move |_| fail(&group, None));
        let again = {
            let mut st = self.inner.state.borrow_mut();
            let again = st.joined;
            if !again {
                st.joined = true;
                st.join = Some(resolver);
            }
            again
        };
        if again {
            return Deferred::fail(E::from(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "join() called twice on the task group created at {} (from {origin})",
                    self.inner.origin
                ),
            )));
        }
        settle(&self.inner);
        d
    }

    /// Cancels every member still running; `join` then fails with
    /// [`ErrorKind::Cancelled`]. The group takes no more members.
    pub fn cancel(&self) {
        fail(&self.inner, None);
    }

    /// Members still running.
    pub fn running(&self) -> usize {
        self.inner.state.borrow().live
    }

    /// Members added so far.
    pub fn len(&self) -> usize {
        self.inner.state.borrow().results.len()
    }

    /// Whether no member was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A member ended.
fn finished<T, E: DeferredError>(inner: &Rc<Inner<T, E>>, index: usize, result: Result<T, E>) {
    let canceller = {
        let mut st = inner.state.borrow_mut();
        st.live -= 1;
        st.running[index].take()
    };
    drop(canceller);
    match result {
        Ok(value) => inner.state.borrow_mut().results[index] = Some(value),
        Err(err) => fail(inner, Some(err)),
    }
    settle(inner);
}

/// Fails the group with `err` (the first failure wins; `None`: cancelled) and cancels the
/// members still running.
fn fail<T, E: DeferredError>(inner: &Rc<Inner<T, E>>, err: Option<E>) {
    let cancellers: Vec<Canceller> = {
        let mut st = inner.state.borrow_mut();
        match &mut st.phase {
            Phase::Open => st.phase = Phase::Failed(err),
            // A later error (often a sibling's cancellation) loses to the first.
            _ => return,
        }
        st.running.iter_mut().filter_map(Option::take).collect()
    };
    // Cancelling drops tasks' futures at once; their members report from the loop.
    for cancel in cancellers {
        cancel();
    }
    settle(inner);
}

/// Fires `join` if it was called and every member has ended.
fn settle<T, E: DeferredError>(inner: &Rc<Inner<T, E>>) {
    let outcome = {
        let mut st = inner.state.borrow_mut();
        if st.live > 0 || st.join.is_none() {
            return;
        }
        let resolver = st.join.take();
        let outcome = match std::mem::replace(&mut st.phase, Phase::Ended) {
            Phase::Failed(Some(err)) => Err(err),
            Phase::Failed(None) => Err(E::from(Error::new(
                ErrorKind::Cancelled,
                format!("the task group created at {} was cancelled", inner.origin),
            ))),
            _ => Ok(st.results.drain(..).flatten().collect()),
        };
        resolver.map(|r| (r, outcome))
    };
    if let Some((resolver, outcome)) = outcome {
        resolver.resolve_quiet(outcome);
    }
}

impl<T, E> Drop for Inner<T, E> {
    fn drop(&mut self) {
        // The last handle is gone before the group ended: nobody will join, so nobody
        // wants the members either.
        let st = self.state.get_mut();
        let cancellers: Vec<Canceller> = st.running.iter_mut().filter_map(Option::take).collect();
        for cancel in cancellers {
            cancel();
        }
    }
}

impl<T: 'static, E: DeferredError> fmt::Debug for TaskGroup<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroup")
            .field("origin", &self.inner.origin)
            .field("members", &self.len())
            .field("running", &self.running())
            .finish()
    }
}
