//! Deferreds, tasks and threads: results that come later and the code that waits for them.
//!
//! - [`deferred`]: `Deferred` and `Resolver`, chaining, cancellation, combinators.
//! - [`executor`]: Rust futures as tasks on the reactor (`spawn`, `run_until_complete`).
//! - [`looping`], [`cooperate`]: Twisted's `task` module (`LoopingCall`, `cooperate`).
//! - [`threads`]: the reactor's thread pool (`defer_to_thread`, `call_in_thread`).

pub(crate) mod cooperate;
pub(crate) mod deferred;
pub(crate) mod executor;
pub(crate) mod looping;
pub(crate) mod threads;
