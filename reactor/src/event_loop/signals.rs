//! SIGINT and SIGTERM as reactor events: a self-pipe written by `signal-hook`'s handler and
//! read by the loop like any other descriptor. The first signal stops gracefully; a second
//! one, while winding down, stops at once.
//!
//! While no reactor is handling signals, the process keeps the default behaviour (the
//! signal terminates it), through `signal-hook`'s conditional default action.

use std::cell::{Cell, RefCell};
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use signal_hook::SigId;
use signal_hook::consts::{SIGINT, SIGTERM};

use super::Inner;
use crate::error::Error;
use crate::io::{Interest, Readiness, Registration, Sharing, Source};

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
    /// The pipe's read end, watched by the reactor.
    read: RefCell<Option<Registration<UnixStream>>>,
    ids: Vec<SigId>,
    seen: Cell<u32>,
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
            let registered = write
                .try_clone()
                .and_then(|w| signal_hook::low_level::pipe::register(sig, w));
            match registered {
                Ok(id) => ids.push(id),
                Err(e) => {
                    for id in ids {
                        signal_hook::low_level::unregister(id);
                    }
                    return Err(fail(e));
                }
            }
        }
        let watch = Rc::new(SignalWatch {
            read: RefCell::new(None),
            ids,
            seen: Cell::new(0),
        });
        match Registration::new(
            inner,
            read,
            Interest::READ,
            watch.clone(),
            Sharing::Exclusive,
        ) {
            Ok(registration) => *watch.read.borrow_mut() = Some(registration),
            Err((e, _)) => {
                for &id in &watch.ids {
                    signal_hook::low_level::unregister(id);
                }
                return Err(fail(e));
            }
        }
        *handlers += 1;
        default.store(false, Ordering::SeqCst);
        Ok(watch)
    }

    pub(crate) fn uninstall(self: Rc<Self>) {
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
        let registration = self.read.borrow_mut().take();
        drop(registration);
    }
}

impl Source for SignalWatch {
    fn ready(self: Rc<Self>, inner: &Rc<Inner>, _readiness: Readiness) {
        // Drain first, then act (signal-hook's documented order; a signal arriving meanwhile
        // leaves a byte for the next turn).
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
