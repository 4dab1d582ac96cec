//! The line of waiters every coordination primitive keeps: first come, first served, whether
//! a waiter is a task (a future holding a [`Slot`]) or a callback chain (a [`Resolver`]).
//!
//! A waiter takes its place when it calls (`acquire()`, `get()`, `wait()`), not when it is
//! first polled, so the order of calls is the order of service. Granting hands the value to
//! the first waiter still waiting: a future that was dropped, or a Deferred that was
//! cancelled, is skipped. Dropped waiters are removed lazily (they are only marked), and the
//! line is swept when it is mostly dead, so waiters that give up (timeouts in a loop) cannot
//! grow it without bound.
//!
//! Nothing here holds a borrow while it runs user code: granting wakes a task (which only
//! queues it) or fires a Deferred (which only queues its callbacks).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::defer::deferred::Resolver;

/// Where a waiting task's grant lands.
pub(crate) struct Slot<T> {
    state: RefCell<SlotState<T>>,
}

enum SlotState<T> {
    /// In line; the waker of the task to wake when granted.
    Waiting(Option<Waker>),
    /// Granted, not yet taken by the future.
    Granted(T),
    /// Taken, or the future was dropped.
    Done,
}

impl<T> Slot<T> {
    /// A slot in line.
    pub(crate) fn waiting() -> Rc<Slot<T>> {
        Rc::new(Slot {
            state: RefCell::new(SlotState::Waiting(None)),
        })
    }

    /// A slot granted at once (nobody was ahead).
    pub(crate) fn granted(value: T) -> Rc<Slot<T>> {
        Rc::new(Slot {
            state: RefCell::new(SlotState::Granted(value)),
        })
    }

    fn is_waiting(&self) -> bool {
        matches!(*self.state.borrow(), SlotState::Waiting(_))
    }

    /// Gives `value` to the task and wakes it; `Err(value)` if the future was dropped.
    fn grant(&self, value: T) -> Result<(), T> {
        let waker = {
            let mut st = self.state.borrow_mut();
            match &mut *st {
                SlotState::Waiting(waker) => {
                    let waker = waker.take();
                    *st = SlotState::Granted(value);
                    waker
                }
                _ => return Err(value),
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// The future's poll: the value once granted, else remember the waker.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<T> {
        let mut st = self.state.borrow_mut();
        match &mut *st {
            SlotState::Waiting(waker) => {
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            SlotState::Granted(_) => match std::mem::replace(&mut *st, SlotState::Done) {
                SlotState::Granted(value) => Poll::Ready(value),
                _ => unreachable!("matched Granted above"),
            },
            SlotState::Done => panic!("a coordination future was polled after it completed"),
        }
    }

    /// The future is dropped: leaves the line; a value granted but not taken is returned
    /// (the caller passes it on: a permit to the next waiter, an item back to the queue).
    pub(crate) fn abandon(&self) -> Option<T> {
        match std::mem::replace(&mut *self.state.borrow_mut(), SlotState::Done) {
            SlotState::Granted(value) => Some(value),
            _ => None,
        }
    }
}

/// One waiter in line.
pub(crate) enum Waiter<T> {
    /// A task awaiting a future.
    Task(Rc<Slot<T>>),
    /// A callback chain waiting on a Deferred.
    Deferred(Resolver<T>),
}

impl<T> Waiter<T> {
    pub(crate) fn is_waiting(&self) -> bool {
        match self {
            Waiter::Task(slot) => slot.is_waiting(),
            Waiter::Deferred(resolver) => !resolver.is_fired(),
        }
    }

    /// Hands over `value`; `Err(value)` if this waiter gave up.
    pub(crate) fn grant(self, value: T) -> Result<(), T> {
        match self {
            Waiter::Task(slot) => slot.grant(value),
            Waiter::Deferred(resolver) => {
                if resolver.is_fired() {
                    return Err(value);
                }
                resolver.resolve_quiet(Ok(value));
                Ok(())
            }
        }
    }
}

/// The line itself (kept inside a primitive's `RefCell`; see [`grant_first`]).
pub(crate) struct WaitList<T> {
    line: VecDeque<Waiter<T>>,
}

impl<T> Default for WaitList<T> {
    fn default() -> Self {
        WaitList {
            line: VecDeque::new(),
        }
    }
}

impl<T> WaitList<T> {
    /// Joins the back of the line.
    pub(crate) fn push(&mut self, waiter: Waiter<T>) {
        // Sweep when the line has doubled since it was last this size: amortised O(1).
        if self.line.len() >= 64 && self.line.len().is_power_of_two() {
            self.line.retain(Waiter::is_waiting);
        }
        self.line.push_back(waiter);
    }

    /// Whether anybody is still waiting.
    pub(crate) fn has_waiters(&mut self) -> bool {
        while let Some(first) = self.line.front() {
            if first.is_waiting() {
                return true;
            }
            self.line.pop_front();
        }
        false
    }

    /// Number of waiters still waiting (diagnostics; O(n)).
    pub(crate) fn len(&self) -> usize {
        self.line.iter().filter(|w| w.is_waiting()).count()
    }

    /// The next waiter, for [`grant_first`].
    pub(crate) fn next(&mut self) -> Option<Waiter<T>> {
        self.line.pop_front()
    }

    /// Takes the whole line (to wake everybody).
    pub(crate) fn take_all(&mut self) -> VecDeque<Waiter<T>> {
        std::mem::take(&mut self.line)
    }
}

/// Gives `value` to the first waiter still waiting in the list that `list` borrows, without
/// holding the borrow while granting; `Err(value)` if nobody is waiting.
pub(crate) fn grant_first<T>(list: impl Fn() -> Option<Waiter<T>>, mut value: T) -> Result<(), T> {
    while let Some(waiter) = list() {
        match waiter.grant(value) {
            Ok(()) => return Ok(()),
            Err(back) => value = back,
        }
    }
    Err(value)
}

/// Grants `()` to every waiter in `line` (an event was set).
pub(crate) fn grant_all(line: VecDeque<Waiter<()>>) {
    for waiter in line {
        let _ = waiter.grant(());
    }
}
