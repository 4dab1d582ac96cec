//! The chaos suite's view into a running server (`TORSION_PROBE=MILLISECONDS`): every
//! protocol built by [`program::listen`](crate::program::listen) is wrapped in one that
//! checks the connection rules as they happen (one `connection_made`, then callbacks, then
//! one `connection_lost`, and nothing after it), and every interval a line goes to stderr
//! with those counts and the reactor's own:
//!
//! ```text
//! torsion-probe: made=120 lost=118 open=2 registered=3 timers=4 tasks=0 violations=0
//! ```
//!
//! (with the `fault-injection` feature, also `faults=N`: how many system calls failed on
//! purpose). A broken rule is also logged at once, as `torsion-probe: VIOLATION ...`. Without the
//! variable nothing is wrapped and nothing runs (one environment lookup at startup).

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use torsion_reactor::{
    Address, ConnectionLost, Factory, LoopingCall, Protocol, Reactor, Transport,
};

/// The interval `TORSION_PROBE` asks for, if it is set and valid.
pub(crate) fn interval() -> Option<Duration> {
    let ms: u64 = std::env::var("TORSION_PROBE").ok()?.trim().parse().ok()?;
    (ms > 0).then(|| Duration::from_millis(ms))
}

#[derive(Default)]
pub(crate) struct Counts {
    made: Cell<u64>,
    lost: Cell<u64>,
    violations: Cell<u64>,
}

impl Counts {
    fn violation(&self, what: &str) {
        self.violations.set(self.violations.get() + 1);
        eprintln!("torsion-probe: VIOLATION {what}");
    }
}

/// Prints the counts every `every` from now on (the timer is one of the `timers` counted).
pub(crate) fn start(reactor: &Reactor, counts: &Rc<Counts>, every: Duration) {
    let (r, c) = (reactor.clone(), Rc::clone(counts));
    let looping = LoopingCall::new(move || {
        let line = format!(
            "torsion-probe: made={} lost={} open={} registered={} timers={} tasks={} violations={}",
            c.made.get(),
            c.lost.get(),
            r.open_connections(),
            r.registered_sources(),
            r.pending_timers(),
            r.pending_tasks(),
            c.violations.get(),
        );
        #[cfg(feature = "fault-injection")]
        let line = format!(
            "{line} faults={}",
            torsion_reactor::testing::faults::injected().total()
        );
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
        let _ = err.flush();
        Ok(())
    });
    if let Err(err) = looping.start_on(reactor.clone(), every, true) {
        eprintln!("torsion-probe: cannot start: {err}");
        return;
    }
    // Runs until the reactor stops; the handle is kept alive with it.
    thread_local!(static KEEP: RefCell<Vec<LoopingCall>> = const { RefCell::new(Vec::new()) });
    KEEP.with(|k| k.borrow_mut().push(looping));
}

/// A factory whose protocols are [`Probed`].
pub(crate) struct ProbedFactory<F> {
    pub(crate) inner: F,
    pub(crate) counts: Rc<Counts>,
}

impl<F: Factory> Factory for ProbedFactory<F> {
    type Protocol = Probed<F::Protocol>;

    fn build_protocol(&self, peer: &Address) -> Option<Self::Protocol> {
        self.inner.build_protocol(peer).map(|inner| Probed {
            inner,
            counts: Rc::clone(&self.counts),
            made: false,
            lost: false,
        })
    }

    fn start_factory(&self) {
        self.inner.start_factory()
    }

    fn stop_factory(&self) {
        self.inner.stop_factory()
    }
}

/// A protocol that checks the order of its callbacks, then passes each on.
pub(crate) struct Probed<P> {
    inner: P,
    counts: Rc<Counts>,
    made: bool,
    lost: bool,
}

impl<P> Probed<P> {
    fn check(&self, what: &str) {
        if !self.made {
            self.counts
                .violation(&format!("{what} before connection_made"));
        }
        if self.lost {
            self.counts
                .violation(&format!("{what} after connection_lost"));
        }
    }
}

impl<P: Protocol> Protocol for Probed<P> {
    fn connection_made(&mut self, transport: &Transport) {
        if self.made {
            self.counts.violation("connection_made twice");
        }
        self.made = true;
        self.counts.made.set(self.counts.made.get() + 1);
        self.inner.connection_made(transport)
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.check("data_received");
        self.inner.data_received(transport, data)
    }

    fn eof_received(&mut self, transport: &Transport) -> bool {
        self.check("eof_received");
        self.inner.eof_received(transport)
    }

    fn connection_lost(&mut self, reason: &ConnectionLost) {
        self.check("connection_lost");
        self.lost = true;
        self.counts.lost.set(self.counts.lost.get() + 1);
        self.inner.connection_lost(reason)
    }

    fn pause_writing(&mut self, transport: &Transport) {
        self.check("pause_writing");
        self.inner.pause_writing(transport)
    }

    fn resume_writing(&mut self, transport: &Transport) {
        self.check("resume_writing");
        self.inner.resume_writing(transport)
    }

    fn reading_resumed(&mut self, transport: &Transport) {
        self.check("reading_resumed");
        self.inner.reading_resumed(transport)
    }
}
