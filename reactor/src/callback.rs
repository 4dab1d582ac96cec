//! Running user callbacks: each under `catch_unwind`, so a panic is logged with where the
//! callback was scheduled and the loop goes on.

use std::any::Any;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};

use crate::timer::Job;

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic payload that is not a string)".to_string()
    }
}

/// Runs `f`, containing a panic. Returns the panic message if it panicked.
pub(crate) fn guard<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panic_message(&*payload))
}

/// Runs a scheduled job; a panic is logged with the job's origin.
pub(crate) fn run_job(job: Job) {
    let Job { f, origin } = job;
    if let Err(msg) = guard(f) {
        log_panic("a callback", origin, &msg);
    }
}

pub(crate) fn log_panic(what: &str, origin: &Location<'_>, msg: &str) {
    log::error!("{what} scheduled at {origin} panicked: {msg}; the reactor goes on");
}
