//! Signals as reactor events: for each signal a reactor watches, a self-pipe written by
//! `signal-hook`'s handler and read by the loop like any other descriptor, so every
//! handler runs from the loop, never in signal context. Signals that arrive before the
//! loop gets to the pipe are coalesced, as the OS coalesces pending signals: the handler
//! runs once.
//!
//! A signal's pipe serves up to three subscribers on one reactor:
//! - the user's handler ([`Reactor::add_signal_handler`], asyncio's API);
//! - the graceful stop (SIGINT and SIGTERM while `run()` handles signals: the first stops
//!   gracefully, a second one stops at once), unless the user handles that signal;
//! - the child reaper (SIGCHLD, where the kernel has no pidfd).
//!
//! Several reactors (threads) may watch the same signal: each has its own pipe, and each
//! runs its own handlers. While no reactor in the process watches a signal, the process
//! keeps its default behaviour for it (SIGINT terminates, SIGCHLD is ignored), through
//! `signal-hook`'s conditional default action.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use libc::c_int;
use signal_hook::SigId;
use signal_hook::consts::{SIGINT, SIGTERM};

use super::{Inner, Reactor, callback};
use crate::error::{Error, ErrorKind};
use crate::io::{Interest, Readiness, Registration, Sharing, Source};

/// Per signal, for the whole process: the flag that turns the emulated default action on
/// (while no reactor watches the signal), and how many pipes watch it.
struct Default {
    flag: Arc<AtomicBool>,
    watchers: usize,
}

static DEFAULTS: Mutex<Option<HashMap<c_int, Default>>> = Mutex::new(None);

/// A signal's name, such as `SIGKILL` for `libc::SIGKILL`, or `signal N` for a number
/// without one (real-time signals).
///
/// ```
/// assert_eq!(torsion_reactor::signal_name(libc::SIGTERM), "SIGTERM");
/// assert_eq!(torsion_reactor::signal_name(1000), "signal 1000");
/// ```
pub fn signal_name(signal: i32) -> String {
    name(signal)
}

/// The signal's name (`SIGUSR1`), for messages.
pub(crate) fn name(signal: c_int) -> String {
    match signal_hook::low_level::signal_name(signal) {
        Some(name) => name.to_owned(),
        None => format!("signal {signal}"),
    }
}

/// Whether a handler may be installed for `signal`: a signal `signal-hook` knows, other
/// than those whose handling is impossible or unsound (SIGKILL, SIGSTOP, SIGSEGV, SIGILL,
/// SIGFPE).
fn check(signal: c_int) -> Result<(), Error> {
    if signal_hook::consts::FORBIDDEN.contains(&signal) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} cannot be handled (it cannot be caught, or handling it is unsound)",
                name(signal)
            ),
        ));
    }
    if signal_hook::low_level::signal_name(signal).is_none() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{signal} is not a signal torsion can handle"),
        ));
    }
    Ok(())
}

/// One more pipe watches `signal`: the default action is off from now on.
fn claim(signal: c_int) -> Result<(), Error> {
    let mut defaults = DEFAULTS.lock().unwrap_or_else(|p| p.into_inner());
    let defaults = defaults.get_or_insert_with(HashMap::new);
    let default = match defaults.entry(signal) {
        Entry::Occupied(entry) => entry.into_mut(),
        Entry::Vacant(entry) => {
            // Registered once per signal and kept: it acts only while the flag is set.
            let flag = Arc::new(AtomicBool::new(true));
            signal_hook::flag::register_conditional_default(signal, Arc::clone(&flag)).map_err(
                |e| Error::io(format!("cannot install a handler for {}", name(signal)), e),
            )?;
            entry.insert(Default { flag, watchers: 0 })
        }
    };
    default.watchers += 1;
    default.flag.store(false, Ordering::SeqCst);
    Ok(())
}

/// A pipe stopped watching `signal`: with none left, the default action is back.
fn release(signal: c_int) {
    let mut defaults = DEFAULTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(default) = defaults.as_mut().and_then(|d| d.get_mut(&signal)) {
        default.watchers = default.watchers.saturating_sub(1);
        if default.watchers == 0 {
            default.flag.store(true, Ordering::SeqCst);
        }
    }
}

/// `signal-hook`'s registration of one pipe; dropping it unregisters (the handler no
/// longer writes to the pipe) and gives the default action back if nothing else watches.
struct Hook {
    signal: c_int,
    id: SigId,
}

impl Drop for Hook {
    fn drop(&mut self) {
        signal_hook::low_level::unregister(self.id);
        release(self.signal);
    }
}

type Handler = Box<dyn FnMut()>;

/// One signal's pipe on one reactor, and who is told when it is written.
struct SignalPipe {
    signal: c_int,
    /// The pipe's read end, watched by the reactor; `None` once removed.
    read: RefCell<Option<Registration<UnixStream>>>,
    _hook: Hook,
    user: RefCell<Option<Handler>>,
    /// Bumped when the user's handler is set or removed, so that a handler that removes
    /// or replaces itself while running is not put back afterwards.
    user_epoch: Cell<u64>,
    /// The user's handler is running (out of its slot).
    user_running: Cell<bool>,
    stops: Cell<bool>,
    reaps: Cell<bool>,
}

impl SignalPipe {
    fn new(inner: &Rc<Inner>, signal: c_int) -> Result<Rc<SignalPipe>, Error> {
        check(signal)?;
        let fail = |e: std::io::Error| {
            let kind = if crate::io::sys::is_out_of_fds(&e) {
                ErrorKind::TooManyOpenFiles
            } else {
                ErrorKind::Io
            };
            Error::io_with_kind(
                kind,
                format!("cannot set up handling of {}", name(signal)),
                e,
            )
        };
        let (read, write) = UnixStream::pair().map_err(fail)?;
        read.set_nonblocking(true).map_err(fail)?;
        write.set_nonblocking(true).map_err(fail)?;
        claim(signal)?;
        let id = match signal_hook::low_level::pipe::register(signal, write) {
            Ok(id) => id,
            Err(e) => {
                release(signal);
                return Err(fail(e));
            }
        };
        let pipe = Rc::new(SignalPipe {
            signal,
            read: RefCell::new(None),
            _hook: Hook { signal, id },
            user: RefCell::new(None),
            user_epoch: Cell::new(0),
            user_running: Cell::new(false),
            stops: Cell::new(false),
            reaps: Cell::new(false),
        });
        let registration = Registration::new(
            inner,
            read,
            Interest::READ,
            pipe.clone(),
            Sharing::Exclusive,
        )
        .map_err(|(e, _)| fail(e))?;
        *pipe.read.borrow_mut() = Some(registration);
        Ok(pipe)
    }

    fn is_idle(&self) -> bool {
        self.user.borrow().is_none()
            && !self.user_running.get()
            && !self.stops.get()
            && !self.reaps.get()
    }

    /// Stops watching: deregisters and closes the pipe (the hook goes with the last
    /// reference, once the registry's is gone).
    fn remove(&self) {
        let read = self.read.borrow_mut().take();
        drop(read);
    }

    fn run_user(&self) {
        let epoch = self.user_epoch.get();
        let Some(mut handler) = self.user.borrow_mut().take() else {
            return;
        };
        let what = format!("the handler of {}", name(self.signal));
        self.user_running.set(true);
        callback::contain(&what, None, &mut handler);
        self.user_running.set(false);
        if self.user_epoch.get() == epoch {
            *self.user.borrow_mut() = Some(handler);
        }
    }
}

impl Source for SignalPipe {
    fn ready(self: Rc<Self>, inner: &Rc<Inner>, _readiness: Readiness) {
        // Drain first, then act (signal-hook's documented order: a signal arriving
        // meanwhile leaves a byte for the next turn). However many arrived: one call.
        let mut buf = [0u8; 64];
        let mut got = 0;
        if let Some(read) = &*self.read.borrow() {
            while let Ok(n @ 1..) = read.get().read(&mut buf) {
                got += n;
            }
        }
        if got == 0 {
            return;
        }
        if self.reaps.get() {
            inner.children.reap_after_sigchld(inner);
        }
        if self.user.borrow().is_some() {
            self.run_user();
        } else if self.stops.get() {
            inner.signals.stop_signal(inner);
        }
    }
}

/// Who else (besides the user's handler) listens to a signal on this reactor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Subscriber {
    /// The graceful stop (SIGINT, SIGTERM).
    Stop,
    /// The child reaper (SIGCHLD).
    Reap,
}

/// A reactor's signal pipes, by signal.
#[derive(Default)]
pub(crate) struct Signals {
    pipes: RefCell<HashMap<c_int, Rc<SignalPipe>>>,
    /// Stop signals received during this `run()`.
    stops_seen: Cell<u32>,
}

impl Signals {
    fn pipe(&self, inner: &Rc<Inner>, signal: c_int) -> Result<Rc<SignalPipe>, Error> {
        if let Some(pipe) = self.pipes.borrow().get(&signal) {
            return Ok(Rc::clone(pipe));
        }
        let pipe = SignalPipe::new(inner, signal)?;
        self.pipes.borrow_mut().insert(signal, Rc::clone(&pipe));
        Ok(pipe)
    }

    /// Removes `signal`'s pipe if nobody listens any more.
    fn tidy(&self, signal: c_int) {
        let idle = self
            .pipes
            .borrow()
            .get(&signal)
            .is_some_and(|p| p.is_idle());
        if idle {
            let pipe = self.pipes.borrow_mut().remove(&signal);
            if let Some(pipe) = pipe {
                pipe.remove();
            }
        }
    }

    pub(crate) fn subscribe(
        &self,
        inner: &Rc<Inner>,
        signal: c_int,
        who: Subscriber,
    ) -> Result<(), Error> {
        let pipe = self.pipe(inner, signal)?;
        match who {
            Subscriber::Stop => pipe.stops.set(true),
            Subscriber::Reap => pipe.reaps.set(true),
        }
        Ok(())
    }

    pub(crate) fn unsubscribe(&self, signal: c_int, who: Subscriber) {
        if let Some(pipe) = self.pipes.borrow().get(&signal) {
            match who {
                Subscriber::Stop => pipe.stops.set(false),
                Subscriber::Reap => pipe.reaps.set(false),
            }
        }
        self.tidy(signal);
    }

    /// The graceful stop's part of `run()`: SIGINT and SIGTERM stop this run.
    pub(crate) fn start_stopping_on_signals(&self, inner: &Rc<Inner>) {
        self.stops_seen.set(0);
        for signal in [SIGINT, SIGTERM] {
            if let Err(err) = self.subscribe(inner, signal, Subscriber::Stop) {
                log::warn!(
                    "{err}; {} will not stop the reactor gracefully",
                    name(signal)
                );
            }
        }
    }

    pub(crate) fn stop_stopping_on_signals(&self) {
        for signal in [SIGINT, SIGTERM] {
            self.unsubscribe(signal, Subscriber::Stop);
        }
    }

    fn stop_signal(&self, inner: &Rc<Inner>) {
        let seen = self.stops_seen.get() + 1;
        self.stops_seen.set(seen);
        let reactor = inner.reactor();
        if seen == 1 && reactor.running() {
            log::info!("signal received: stopping gracefully (send it again to stop at once)");
            let _ = reactor.stop();
        } else {
            log::info!("second signal received: stopping at once");
            reactor.stop_now();
        }
    }

    /// Forgets every pipe (the reactor is closing).
    pub(crate) fn clear(&self) {
        let pipes: Vec<Rc<SignalPipe>> = self.pipes.borrow_mut().drain().map(|(_, p)| p).collect();
        for pipe in &pipes {
            pipe.remove();
        }
        drop(pipes);
    }
}

impl Reactor {
    /// Calls `callback` from the loop whenever `signal` arrives (asyncio's
    /// `add_signal_handler`): SIGHUP to reload, SIGUSR1/SIGUSR2, SIGWINCH, SIGCHLD, ...
    /// The callback never runs in signal context, so it may do anything a callback may.
    /// Signals that arrive before the loop gets to them are coalesced into one call, as
    /// the OS coalesces pending signals. A handler already set for `signal` on this
    /// reactor is replaced. Other reactors (threads) watching the same signal run their
    /// own handlers; while none does, the signal has its default effect again.
    ///
    /// A handler for SIGINT or SIGTERM replaces this reactor's graceful stop for that
    /// signal (see [`set_handle_signals`](Reactor::set_handle_signals)).
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc, time::Duration};
    /// use torsion_reactor::Reactor;
    ///
    /// let reactor = Reactor::current();
    /// let hups = Rc::new(Cell::new(0));
    /// let h = hups.clone();
    /// reactor
    ///     .add_signal_handler(libc::SIGHUP, move || h.set(h.get() + 1)) // reload here
    ///     .unwrap();
    /// // SAFETY: raising a signal this process handles.
    /// unsafe { libc::raise(libc::SIGHUP) };
    /// reactor.run_until(Duration::from_secs(10), || hups.get() == 1).unwrap();
    /// assert!(reactor.remove_signal_handler(libc::SIGHUP));
    /// ```
    ///
    /// Errors: [`ErrorKind::InvalidInput`] for SIGKILL, SIGSTOP, SIGSEGV, SIGILL, SIGFPE
    /// and numbers that are not signals torsion knows (real-time signals included);
    /// [`ErrorKind::ReactorClosed`]; an [`ErrorKind::Io`] error if the handler or its pipe
    /// cannot be set up.
    pub fn add_signal_handler<F: FnMut() + 'static>(
        &self,
        signal: i32,
        callback: F,
    ) -> Result<(), Error> {
        let inner = self.inner_open()?;
        let pipe = inner.signals.pipe(&inner, signal)?;
        let old = pipe.user.borrow_mut().replace(Box::new(callback));
        pipe.user_epoch.set(pipe.user_epoch.get() + 1);
        drop(old);
        Ok(())
    }

    /// Removes the handler set with [`add_signal_handler`](Reactor::add_signal_handler);
    /// returns whether there was one. The signal has its default effect again unless
    /// something else watches it.
    pub fn remove_signal_handler(&self, signal: i32) -> bool {
        let signals = &self.inner.signals;
        let Some(pipe) = signals.pipes.borrow().get(&signal).cloned() else {
            return false;
        };
        pipe.user_epoch.set(pipe.user_epoch.get() + 1);
        let old = pipe.user.borrow_mut().take();
        // From inside the handler itself, it is out of its slot: it is not put back.
        let had = old.is_some() || pipe.user_running.replace(false);
        drop(old);
        signals.tidy(signal);
        had
    }
}
