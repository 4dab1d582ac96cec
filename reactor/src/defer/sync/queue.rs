//! [`Queue`]: a FIFO queue between producers and consumers whose `put` waits while it is
//! full (asyncio's `Queue`, Twisted's `DeferredQueue` with back-pressure).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::waiters::{Slot, WaitList, Waiter, grant_first};
use crate::defer::deferred::Deferred;
use crate::error::{Error, ErrorKind};

/// A producer waiting for room, with the item it brings.
struct Putter<T> {
    waiter: Waiter<()>,
    item: T,
}

struct State<T> {
    items: VecDeque<T>,
    /// Consumers waiting for an item (only while `items` is empty).
    getters: WaitList<T>,
    /// Producers waiting for room (only while `items` is full).
    putters: VecDeque<Putter<T>>,
}

struct Inner<T> {
    state: RefCell<State<T>>,
    capacity: usize,
    origin: &'static Location<'static>,
}

/// A FIFO queue whose consumers wait while it is empty and whose producers wait while it is
/// full, so a fast producer is held back to the pace of its consumers (memory stays bounded
/// by the capacity).
///
/// Both sides are usable from async code ([`put`](Queue::put), [`get`](Queue::get)
/// return futures) and from callbacks ([`put_deferred`](Queue::put_deferred),
/// [`get_deferred`](Queue::get_deferred), as Twisted's `DeferredQueue`). Waiters are served
/// in the order they called. Cancellation-safe: a `get` that gives up never loses an item
/// (one handed to a consumer that is gone goes to the next consumer, or back to the front
/// of the queue); a `put` that gives up before there was room puts nothing. Cloning gives
/// another handle to the same queue. Single-threaded.
///
/// ```
/// use torsion_reactor::{Queue, Reactor};
///
/// let reactor = Reactor::current();
/// let queue = Queue::new(2).unwrap();
/// let producer = {
///     let queue = queue.clone();
///     reactor.spawn(async move {
///         for n in 0..10 {
///             queue.put(n).await; // waits while two items are queued
///             assert!(queue.len() <= 2);
///         }
///     })
/// };
/// let total = reactor
///     .run_until_complete(async move {
///         let mut total = 0;
///         for _ in 0..10 {
///             total += queue.get().await;
///         }
///         producer.await.unwrap();
///         total
///     })
///     .unwrap();
/// assert_eq!(total, 45);
/// ```
pub struct Queue<T> {
    inner: Rc<Inner<T>>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            inner: Rc::clone(&self.inner),
        }
    }
}

impl<T: 'static> Queue<T> {
    /// A queue that holds at most `capacity` items.
    ///
    /// Error: [`ErrorKind::InvalidInput`] for a capacity of 0.
    #[track_caller]
    pub fn new(capacity: usize) -> Result<Queue<T>, Error> {
        if capacity == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a queue needs a capacity of at least 1 (use Queue::unbounded for no limit)",
            ));
        }
        Ok(Queue::build(capacity, Location::caller()))
    }

    /// A queue without a limit: `put` never waits (Twisted's `DeferredQueue()` default).
    #[track_caller]
    pub fn unbounded() -> Queue<T> {
        Queue::build(usize::MAX, Location::caller())
    }

    fn build(capacity: usize, origin: &'static Location<'static>) -> Queue<T> {
        Queue {
            inner: Rc::new(Inner {
                state: RefCell::new(State {
                    items: VecDeque::new(),
                    getters: WaitList::default(),
                    putters: VecDeque::new(),
                }),
                capacity,
                origin,
            }),
        }
    }

    /// Adds `item` now if there is room (or a consumer waiting); `Err(item)` if full.
    pub fn try_put(&self, item: T) -> Result<(), T> {
        let item = match self.hand_to_getter(item) {
            Ok(()) => return Ok(()),
            Err(item) => item,
        };
        let mut st = self.inner.state.borrow_mut();
        if st.items.len() < self.inner.capacity && st.putters.is_empty() {
            st.items.push_back(item);
            Ok(())
        } else {
            Err(item)
        }
    }

    /// Adds `item`, waiting while the queue is full (a future). The place in line is taken
    /// by this call. Dropping the future before there was room takes the item back out
    /// (it is dropped); once the future is ready the item is in the queue.
    pub fn put(&self, item: T) -> Put<T> {
        match self.try_put(item) {
            Ok(()) => Put {
                queue: None,
                slot: Slot::granted(()),
            },
            Err(item) => {
                let slot = Slot::waiting();
                self.push_putter(Waiter::Task(Rc::clone(&slot)), item);
                Put {
                    queue: Some(self.clone()),
                    slot,
                }
            }
        }
    }

    /// Adds `item`, as a Deferred that fires once it is in the queue. Cancelling it before
    /// there was room drops the item.
    #[track_caller]
    pub fn put_deferred(&self, item: T) -> Deferred<()> {
        match self.try_put(item) {
            Ok(()) => Deferred::succeed(()),
            Err(item) => {
                let (d, resolver) = Deferred::new();
                self.push_putter(Waiter::Deferred(resolver), item);
                d
            }
        }
    }

    /// The first item, if there is one now.
    pub fn try_get(&self) -> Option<T> {
        let (item, admitted) = {
            let mut st = self.inner.state.borrow_mut();
            let item = st.items.pop_front()?;
            (item, self.admit_putter(&mut st))
        };
        if let Some(waiter) = admitted {
            let _ = waiter.grant(());
        }
        Some(item)
    }

    /// The first item, waiting while the queue is empty (a future). The place in line is
    /// taken by this call. Dropping the future never loses an item.
    pub fn get(&self) -> Get<T> {
        let slot = match self.try_get() {
            Some(item) => Slot::granted(item),
            None => {
                let slot = Slot::waiting();
                self.inner
                    .state
                    .borrow_mut()
                    .getters
                    .push(Waiter::Task(Rc::clone(&slot)));
                slot
            }
        };
        Get {
            queue: self.clone(),
            slot,
        }
    }

    /// The first item, as a Deferred (Twisted's `DeferredQueue.get`). Cancelling it gives
    /// up the place in line.
    #[track_caller]
    pub fn get_deferred(&self) -> Deferred<T> {
        if let Some(item) = self.try_get() {
            return Deferred::succeed(item);
        }
        let (d, resolver) = Deferred::new();
        self.inner
            .state
            .borrow_mut()
            .getters
            .push(Waiter::Deferred(resolver));
        d
    }

    /// Items in the queue now.
    pub fn len(&self) -> usize {
        self.inner.state.borrow().items.len()
    }

    /// Whether the queue holds no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a `put` would wait now.
    pub fn is_full(&self) -> bool {
        let st = self.inner.state.borrow();
        st.items.len() >= self.inner.capacity || !st.putters.is_empty()
    }

    /// The most items it holds (`usize::MAX` for an unbounded queue).
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Gives `item` to the first waiting consumer; `Err(item)` if there is none.
    fn hand_to_getter(&self, item: T) -> Result<(), T> {
        if !self.inner.state.borrow_mut().getters.has_waiters() {
            return Err(item);
        }
        grant_first(|| self.inner.state.borrow_mut().getters.next(), item)
    }

    fn push_putter(&self, waiter: Waiter<()>, item: T) {
        let mut st = self.inner.state.borrow_mut();
        if st.putters.len() >= 64 && st.putters.len().is_power_of_two() {
            st.putters.retain(|p| p.waiter.is_waiting());
        }
        st.putters.push_back(Putter { waiter, item });
    }

    /// Room was made: moves the first waiting producer's item in; returns its waiter, to be
    /// told once the borrow is released.
    fn admit_putter(&self, st: &mut State<T>) -> Option<Waiter<()>> {
        while let Some(putter) = st.putters.pop_front() {
            if putter.waiter.is_waiting() {
                st.items.push_back(putter.item);
                return Some(putter.waiter);
            }
        }
        None
    }

    /// An item handed to a consumer that is gone: to the next consumer, or back in front.
    fn give_back(&self, item: T) {
        if let Err(item) = self.hand_to_getter(item) {
            self.inner.state.borrow_mut().items.push_front(item);
        }
    }

    /// A producer gave up: its item leaves the line (and is dropped, outside the borrow).
    fn withdraw(&self, slot: &Rc<Slot<()>>) {
        let removed = {
            let mut st = self.inner.state.borrow_mut();
            let at = st
                .putters
                .iter()
                .position(|p| matches!(&p.waiter, Waiter::Task(s) if Rc::ptr_eq(s, slot)));
            at.and_then(|i| st.putters.remove(i))
        };
        drop(removed);
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state.borrow();
        f.debug_struct("Queue")
            .field("origin", &self.inner.origin)
            .field("len", &st.items.len())
            .field("capacity", &self.inner.capacity)
            .field("producers waiting", &st.putters.len())
            .finish()
    }
}

/// The future of [`Queue::put`].
#[must_use = "futures do nothing unless awaited; dropping this one before it is ready puts nothing"]
pub struct Put<T: 'static> {
    /// `None` once the item is in (nothing to withdraw on drop).
    queue: Option<Queue<T>>,
    slot: Rc<Slot<()>>,
}

impl<T: 'static> Future for Put<T> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let ready = self.slot.poll_take(cx);
        if ready.is_ready() {
            self.queue = None;
        }
        ready
    }
}

impl<T: 'static> Drop for Put<T> {
    fn drop(&mut self) {
        let granted = self.slot.abandon().is_some();
        if let (false, Some(queue)) = (granted, self.queue.take()) {
            queue.withdraw(&self.slot);
        }
    }
}

impl<T: 'static> fmt::Debug for Put<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Put")
    }
}

/// The future of [`Queue::get`].
#[must_use = "futures do nothing unless awaited"]
pub struct Get<T: 'static> {
    queue: Queue<T>,
    slot: Rc<Slot<T>>,
}

impl<T: 'static> Future for Get<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        self.slot.poll_take(cx)
    }
}

impl<T: 'static> Drop for Get<T> {
    fn drop(&mut self) {
        if let Some(item) = self.slot.abandon() {
            self.queue.give_back(item);
        }
    }
}

impl<T: 'static> fmt::Debug for Get<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Get")
    }
}
