//! Coordination primitives for code that waits, each usable from async code (a future) and
//! from callbacks (a Deferred), each serving its waiters first come, first served, each
//! cancellation-safe (a waiter that gives up leaves the line and loses nothing):
//!
//! - [`lock`]: `Lock` (Twisted's `DeferredLock`, asyncio's `Lock`);
//! - [`semaphore`]: `Semaphore` (`DeferredSemaphore`, asyncio's `Semaphore`);
//! - [`event`]: `Event` (asyncio's `Event`);
//! - [`queue`]: `Queue`, bounded, whose `put` waits while full (`DeferredQueue`, asyncio's
//!   `Queue`);
//! - [`waiters`]: the line of waiters they share.

pub(crate) mod event;
pub(crate) mod lock;
pub(crate) mod queue;
pub(crate) mod semaphore;
pub(crate) mod waiters;
