//! Deferreds, tasks and threads: results that come later and the code that waits for them.
//!
//! - [`deferred`]: `Deferred` and `Resolver`, chaining, cancellation, combinators.
//! - [`shared`]: `SharedDeferred`, one result for several consumers;
//!   [`as_completed`]: results in the order they arrive.
//! - [`executor`]: Rust futures as tasks on the reactor (`spawn`, `run_until_complete`);
//!   [`group`]: `TaskGroup`, tasks that succeed or fail together.
//! - [`sync`]: `Lock`, `Semaphore`, `Event`, `Queue`, for callbacks and tasks alike.
//! - [`looping`], [`cooperate`]: Twisted's `task` module (`LoopingCall`, `cooperate`).
//! - [`threads`]: the reactor's thread pool (`defer_to_thread`, `call_in_thread`);
//!   [`blocking`]: `Remote::blocking_call_from_thread`, the other way round.

pub(crate) mod as_completed;
pub(crate) mod blocking;
pub(crate) mod cooperate;
pub(crate) mod deferred;
pub(crate) mod executor;
pub(crate) mod group;
pub(crate) mod looping;
pub(crate) mod shared;
pub(crate) mod sync;
pub(crate) mod threads;
