//! [`Event`]: a flag that tasks and callbacks wait on (asyncio's `Event`).

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::waiters::{Slot, WaitList, Waiter, grant_all};
use crate::defer::deferred::Deferred;

struct State {
    set: bool,
    waiters: WaitList<()>,
}

/// A flag that starts clear; [`set`](Event::set) wakes every waiter at once (in the order
/// they started waiting), and later waits return at once until [`clear`](Event::clear).
///
/// Wait from async code with [`wait`](Event::wait), from callbacks with
/// [`wait_deferred`](Event::wait_deferred). A waiter that gives up (its future dropped, its
/// Deferred cancelled) leaves the line. Cloning gives another handle to the same event.
///
/// ```
/// use std::{cell::Cell, rc::Rc};
/// use torsion_reactor::{Event, Reactor};
///
/// let reactor = Reactor::current();
/// let ready = Event::new();
/// let woken = Rc::new(Cell::new(0));
/// for _ in 0..3 {
///     let (ready, woken) = (ready.clone(), woken.clone());
///     reactor.spawn(async move {
///         ready.wait().await;
///         woken.set(woken.get() + 1);
///     });
/// }
/// let w = woken.clone();
/// ready.wait_deferred().on_result(move |_| w.set(w.get() + 1)); // a callback waits too
/// reactor.call_soon({
///     let ready = ready.clone();
///     move || ready.set()
/// });
/// reactor.run_until(std::time::Duration::from_secs(5), || woken.get() == 4).unwrap();
/// ```
#[derive(Clone)]
pub struct Event {
    inner: Rc<RefCell<State>>,
}

impl Default for Event {
    fn default() -> Self {
        Event::new()
    }
}

impl Event {
    /// A clear event.
    pub fn new() -> Event {
        Event {
            inner: Rc::new(RefCell::new(State {
                set: false,
                waiters: WaitList::default(),
            })),
        }
    }

    /// Sets the flag and wakes every waiter (their code runs later, from the loop).
    pub fn set(&self) {
        let line = {
            let mut st = self.inner.borrow_mut();
            if st.set {
                return;
            }
            st.set = true;
            st.waiters.take_all()
        };
        grant_all(line);
    }

    /// Clears the flag: later waits wait for the next [`set`](Event::set).
    pub fn clear(&self) {
        self.inner.borrow_mut().set = false;
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.inner.borrow().set
    }

    /// Waits until the flag is set (at once if it is set now).
    pub fn wait(&self) -> EventWait {
        let mut st = self.inner.borrow_mut();
        let slot = if st.set {
            Slot::granted(())
        } else {
            let slot = Slot::waiting();
            st.waiters.push(Waiter::Task(Rc::clone(&slot)));
            slot
        };
        EventWait { slot }
    }

    /// Waits until the flag is set, as a Deferred.
    #[track_caller]
    pub fn wait_deferred(&self) -> Deferred<()> {
        if self.is_set() {
            return Deferred::succeed(());
        }
        let (d, resolver) = Deferred::new();
        self.inner
            .borrow_mut()
            .waiters
            .push(Waiter::Deferred(resolver));
        d
    }

    /// Waiters in line (diagnostics).
    pub fn waiting(&self) -> usize {
        self.inner.borrow().waiters.len()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// The future of [`Event::wait`].
#[must_use = "futures do nothing unless awaited"]
pub struct EventWait {
    slot: Rc<Slot<()>>,
}

impl Future for EventWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.slot.poll_take(cx)
    }
}

impl Drop for EventWait {
    fn drop(&mut self) {
        self.slot.abandon();
    }
}

impl fmt::Debug for EventWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventWait")
    }
}
