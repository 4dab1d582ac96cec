//! The small synchronised cores of the reactor's cross-thread code, each in a type of its
//! own so that the code the reactor runs is the code `loom` checks (`loom_models.rs`):
//!
//! - [`Mailbox`]: a queue other threads push to and the reactor thread drains (Remote's
//!   calls, the woken tasks), with a flag that says "something is there" without a lock;
//! - [`WakeFlag`]: whether a wake-up of the poller is already on its way (the epoll
//!   backend writes its eventfd only when it is not);
//! - [`TaskFlag`]: whether a task is queued to be polled (a waker queues it once);
//! - [`PoolQueue`]: the thread pool's job queue, its idle workers and its stop.
//!
//! Under `cfg(loom)` (in the crate's own tests: `RUSTFLAGS="--cfg loom"
//! CARGO_TARGET_DIR=target/loom cargo test -p torsion-reactor --lib loom_models`), the
//! primitives are loom's.

mod mailbox;
mod pool_queue;
mod wake;

pub(crate) use mailbox::Mailbox;
pub(crate) use pool_queue::PoolQueue;
pub(crate) use wake::TaskFlag;
#[cfg_attr(all(feature = "portable-poller", not(loom)), allow(unused_imports))]
pub(crate) use wake::WakeFlag;

#[cfg(all(loom, test))]
use loom::sync::{
    Condvar, Mutex, MutexGuard,
    atomic::{AtomicBool, Ordering},
};
#[cfg(not(all(loom, test)))]
use std::sync::{
    Condvar, Mutex, MutexGuard,
    atomic::{AtomicBool, Ordering},
};

/// Locks `m`; a poisoned lock is taken as it is (every core here only pushes and takes,
/// so a panic while it was held cannot have left it half-changed).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
