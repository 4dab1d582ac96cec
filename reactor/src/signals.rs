//! SIGINT and SIGTERM as reactor events: a self-pipe written by `signal-hook`'s handler and
//! read by the loop like any other descriptor. The first signal stops gracefully; a second
//! one, while winding down, stops at once.
//!
//! While no reactor is handling signals, the process keeps the default behaviour (the
//! signal terminates it), through `signal-hook`'s conditional default action.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use signal_hook::SigId;
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::error::Error;
use crate::poll::{Interest, Readiness, Source, Token};
use crate::reactor::Inner;

/// True while no reactor handles signals: then SIGINT/SIGTERM do what they always do.
static DEFAULT_ACTION: OnceLock<Arc<AtomicBool>> = OnceLock::new();
static HANDLERS: Mutex<usize> = Mutex::new(0);

fn default_action() -> Result<&'static Arc<AtomicBool>, Error> {
    if let Some(flag) = DEFAULT_ACTION.get() {
        return Ok(flag);
    }
    let flag = Arc::new(AtomicBool::new(true));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_default(sig, Arc::clone(&flag))
            .map_err(|e| Error::io("cannot install a signal handler", e))?;
    }
    Ok(DEFAULT_ACTION.get_or_init(|| flag))
}

pub(crate) struct SignalWatch {
    token: std::cell::Cell<Option<Token>>,
    read: UnixStream,
    ids: Vec<SigId>,
    seen: std::cell::Cell<u32>,
}

impl SignalWatch {
    pub(crate) fn install(inner: &Rc<Inner>) -> Result<Rc<SignalWatch>, Error> {
        let fail = |e| Error::io("cannot set up signal handling", e);
        let (read, write) = UnixStream::pair().map_err(fail)?;
        read.set_nonblocking(true).map_err(fail)?;
        write.set_nonblocking(true).map_err(fail)?;
        let mut handlers = HANDLERS.lock().unwrap_or_else(|p| p.into_inner());
        let default = default_action()?;
        let mut ids = Vec::new();
        for sig in [SIGINT, SIGTERM] {
            let w = write.try_clone().map_err(fail)?;
            match signal_hook::low_level::pipe::register(sig, w) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    for id in ids {
                        signal_hook::low_level::unregister(id);
                    }
                    return Err(fail(e));
                }
            }
        }
        let fd = read.as_raw_fd();
        let watch = Rc::new(SignalWatch {
            token: std::cell::Cell::new(None),
            read,
            ids,
            seen: std::cell::Cell::new(0),
        });
        // SAFETY: `watch` owns the read end and deregisters it in `uninstall` before dropping.
        let registered = unsafe {
            inner.registry.register(fd, Interest::READ, |token| {
                watch.token.set(Some(token));
                Rc::clone(&watch)
            })
        };
        if let Err(e) = registered {
            for &id in &watch.ids {
                signal_hook::low_level::unregister(id);
            }
            return Err(fail(e));
        }
        *handlers += 1;
        default.store(false, Ordering::SeqCst);
        Ok(watch)
    }

    pub(crate) fn uninstall(self: Rc<Self>, inner: &Rc<Inner>) {
        let mut handlers = HANDLERS.lock().unwrap_or_else(|p| p.into_inner());
        for &id in &self.ids {
            signal_hook::low_level::unregister(id);
        }
        *handlers = handlers.saturating_sub(1);
        if *handlers == 0 {
            if let Some(flag) = DEFAULT_ACTION.get() {
                flag.store(true, Ordering::SeqCst);
            }
        }
        if let Some(token) = self.token.get() {
            drop(inner.registry.deregister(token));
        }
    }
}

impl Source for SignalWatch {
    fn ready(self: Rc<Self>, inner: &Rc<Inner>, _readiness: Readiness) {
        // Drain first, then act (signal-hook's documented order; a signal arriving meanwhile
        // leaves a byte for the next turn).
        let mut buf = [0u8; 64];
        let mut got = 0;
        loop {
            match (&self.read).read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(_) => break,
            }
        }
        if got == 0 {
            return;
        }
        let seen = self.seen.get() + 1;
        self.seen.set(seen);
        let reactor = inner.reactor();
        if seen == 1 && reactor.running() {
            log::info!("signal received: stopping gracefully (send it again to stop at once)");
            let _ = reactor.stop();
        } else {
            log::info!("second signal received: stopping at once");
            reactor.stop_now();
        }
    }
}
