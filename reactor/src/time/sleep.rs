//! Futures that wait on time: [`sleep`] and [`timeout`], on the reactor's time or a
//! [`Clock`](crate::Clock)'s.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::{DelayedCall, Scheduler, SchedulerExt};
use crate::error::{Error, ErrorKind};
use crate::event_loop::Reactor;

/// A future that completes `duration` after it was created: [`sleep`] / [`sleep_on`].
/// Dropping it cancels its timer.
#[must_use = "a Sleep does nothing unless awaited"]
pub struct Sleep {
    state: Rc<SleepState>,
    call: DelayedCall,
}

#[derive(Default)]
struct SleepState {
    fired: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

/// A future that completes after `duration` on this thread's reactor (asyncio's
/// `asyncio.sleep`). The timer starts when `sleep` is called; dropping the future cancels it.
///
/// ```
/// use std::time::Duration;
/// use torsion_reactor::{Reactor, sleep};
///
/// Reactor::current()
///     .run_until_complete(sleep(Duration::from_millis(1)))
///     .unwrap();
/// ```
#[track_caller]
pub fn sleep(duration: Duration) -> Sleep {
    sleep_on(&Reactor::current(), duration)
}

/// Like [`sleep`], on the time of `scheduler` (a [`Clock`](crate::Clock) in tests).
#[track_caller]
pub fn sleep_on(scheduler: &dyn Scheduler, duration: Duration) -> Sleep {
    let state = Rc::new(SleepState::default());
    let s = Rc::clone(&state);
    let call = scheduler.call_later(duration, move || {
        s.fired.set(true);
        if let Some(waker) = s.waker.take() {
            waker.wake();
        }
    });
    Sleep { state, call }
}

impl Sleep {
    /// Whether the time has come.
    pub fn is_elapsed(&self) -> bool {
        self.state.fired.get()
    }
}

impl std::fmt::Debug for Sleep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sleep")
            .field("elapsed", &self.is_elapsed())
            .field("call", &self.call)
            .finish()
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.fired.get() {
            return Poll::Ready(());
        }
        self.state.waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if !self.state.fired.get() {
            let _ = self.call.cancel();
        }
    }
}

/// A future that gives up on another after a while: [`timeout`] / [`timeout_on`].
#[must_use = "a Timeout does nothing unless awaited"]
pub struct Timeout<F> {
    future: Pin<Box<F>>,
    sleep: Sleep,
    after: Duration,
}

/// Awaits `fut` for at most `duration` on this thread's reactor: `Ok(output)`, or an
/// [`ErrorKind::TimedOut`] error (then `fut` is dropped with the `Timeout`).
///
/// ```
/// use std::time::Duration;
/// use torsion_reactor::{ErrorKind, Reactor, sleep, timeout};
///
/// let out = Reactor::current()
///     .run_until_complete(timeout(Duration::from_millis(5), sleep(Duration::from_secs(60))))
///     .unwrap();
/// assert!(matches!(out.unwrap_err().kind(), ErrorKind::TimedOut));
/// ```
#[track_caller]
pub fn timeout<F: Future>(duration: Duration, fut: F) -> Timeout<F> {
    timeout_on(&Reactor::current(), duration, fut)
}

/// Like [`timeout`], on the time of `scheduler` (a [`Clock`](crate::Clock) in tests).
#[track_caller]
pub fn timeout_on<F: Future>(scheduler: &dyn Scheduler, duration: Duration, fut: F) -> Timeout<F> {
    Timeout {
        future: Box::pin(fut),
        sleep: sleep_on(scheduler, duration),
        after: duration,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(v) = this.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Error::new(
                ErrorKind::TimedOut,
                format!("timed out after {:?}", this.after),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F> std::fmt::Debug for Timeout<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeout")
            .field("after", &self.after)
            .field("elapsed", &self.sleep.is_elapsed())
            .finish()
    }
}
