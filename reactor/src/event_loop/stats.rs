//! What the loop counts about itself, and the slow-callback warnings (asyncio's debug
//! mode).
//!
//! The counters are plain `Cell`s bumped on the reactor's own thread where the work
//! already happens (no atomics, no allocation), so they are always on; [`LoopStats`] is a
//! copy of them taken with [`Reactor::stats`]. Every figure but the current ones
//! (`connections_open`, `write_buffered`) only grows: a monitoring system graphs their
//! rate, and the difference of two snapshots is what happened between them.
//!
//! The slow-callback check times each callback, protocol method and task poll only while
//! a threshold is set ([`Reactor::set_slow_callback_threshold`]): off, it costs one branch
//! per callback.

use std::cell::Cell;
use std::panic::Location;
use std::time::{Duration, Instant};

use super::Reactor;
use crate::net::protocol::ConnectionLost;

/// The environment variable that turns slow-callback warnings on for every reactor the
/// process creates (its value: the threshold in milliseconds): asyncio's
/// `PYTHONASYNCIODEBUG`, for an operator who cannot change the program.
pub const SLOW_CALLBACK_ENV: &str = "TORSION_SLOW_CALLBACK_MS";

/// The threshold asyncio uses, and the one to start from: a callback that keeps the loop
/// for 100 ms delays every other connection by as much.
pub const DEFAULT_SLOW_CALLBACK: Duration = Duration::from_millis(100);

/// What a reactor has done since it was created: a snapshot of its counters, from
/// [`Reactor::stats`].
///
/// Counters (all but `connections_open` and `write_buffered`) only grow; graph their
/// rate. Loop utilisation over an interval is the growth of `busy` divided by the growth
/// of `busy + polling` between two snapshots (1.0: the loop never waited, so it is
/// saturated and adds latency). "Connections" are stream connections (TCP, Unix sockets,
/// pipes, standard I/O), accepted or connected; datagram ports are not counted here.
///
/// ```
/// use std::time::Duration;
/// use torsion_reactor::Reactor;
///
/// let reactor = Reactor::new().unwrap();
/// let before = reactor.stats();
/// reactor.call_soon(|| {});
/// reactor.iterate(Duration::ZERO).unwrap();
/// let after = reactor.stats();
/// assert_eq!(after.iterations - before.iterations, 1);
/// assert_eq!(after.callbacks - before.callbacks, 1);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoopStats {
    /// Loop iterations (each: ready callbacks, Deferreds, tasks, one wait for I/O, its
    /// events, due timers).
    pub iterations: u64,
    /// Callbacks the loop ran from its queues: `call_soon`, `call_from_thread`, timers
    /// (`call_later`), `call_when_running`, and the reactor's own deliveries
    /// (`connection_lost`, `pause_writing`, ...) that go through the same queue.
    pub callbacks: u64,
    /// Of `callbacks`, the timers that fired.
    pub timers: u64,
    /// Fired Deferreds whose callback chains the loop ran.
    pub deferreds: u64,
    /// Polls of tasks (futures spawned on the reactor).
    pub task_polls: u64,
    /// Readiness events the poller reported and the loop handed to their sources.
    pub io_events: u64,
    /// Time spent waiting in the poller (idle, or sleeping until the next timer).
    pub polling: Duration,
    /// Time spent iterating outside the poller: running callbacks, reading, writing.
    pub busy: Duration,
    /// How late the loop came to its timers, added up (divide by `timers` for the mean):
    /// the loop lag a busy loop adds to every deadline.
    pub timer_lag_total: Duration,
    /// The latest any timer fired after its deadline since the reactor was created or
    /// since [`Reactor::reset_peaks`].
    pub timer_lag_max: Duration,
    /// Callbacks, protocol methods and task polls that ran longer than the slow-callback
    /// threshold (counted only while one is set).
    pub slow_callbacks: u64,
    /// Connections accepted by listening ports.
    pub accepted: u64,
    /// `accept` calls that failed (out of descriptors or memory, a connection aborted
    /// before it was accepted, ...); each is also reported to the error handler.
    pub accept_errors: u64,
    /// Connections started: accepted, connected, pipes and standard I/O.
    pub connections_opened: u64,
    /// Connections open now (`connections_opened` minus the closed ones).
    pub connections_open: u64,
    /// Connections closed cleanly ([`ConnectionLost::Done`]).
    pub closed_clean: u64,
    /// Connections lost: reset by the peer, or a read or write failed
    /// ([`ConnectionLost::Reset`]).
    pub closed_reset: u64,
    /// Connections aborted locally ([`ConnectionLost::Aborted`], `TimedOut`, `Cancelled`;
    /// the shutdown's grace period running out aborts too).
    pub closed_aborted: u64,
    /// Connections closed by an error of our own: a protocol panicked, or another failure
    /// ([`ConnectionLost::Panicked`], `Tls`, `Refused`).
    pub closed_error: u64,
    /// Bytes read from connections.
    pub bytes_read: u64,
    /// Bytes written to connections (taken by the kernel).
    pub bytes_written: u64,
    /// Bytes waiting in connections' write buffers now (written by protocols, not yet
    /// taken by the kernel): a peer that does not read, or a network slower than the
    /// program, shows here first.
    pub write_buffered: u64,
}

impl LoopStats {
    /// Connections closed, for whatever reason.
    pub fn connections_closed(&self) -> u64 {
        self.closed_clean + self.closed_reset + self.closed_aborted + self.closed_error
    }

    /// The share of time the loop was busy (not waiting in the poller) since `earlier`,
    /// between 0.0 and 1.0 (0.0 if no time passed in the loop).
    pub fn utilisation_since(&self, earlier: &LoopStats) -> f64 {
        let busy = self.busy.saturating_sub(earlier.busy).as_secs_f64();
        let polling = self.polling.saturating_sub(earlier.polling).as_secs_f64();
        if busy + polling == 0.0 {
            0.0
        } else {
            busy / (busy + polling)
        }
    }

    /// Every field as `name value` pairs, one per line (the names are the fields'; times
    /// in seconds): the text a metrics scraper or a person reads.
    ///
    /// ```
    /// let text = torsion_reactor::LoopStats::default().to_text();
    /// assert!(text.lines().any(|l| l == "iterations 0"));
    /// assert!(text.lines().any(|l| l == "polling_seconds 0.000000"));
    /// ```
    pub fn to_text(&self) -> String {
        let counts: [(&str, u64); 19] = [
            ("iterations", self.iterations),
            ("callbacks", self.callbacks),
            ("timers", self.timers),
            ("deferreds", self.deferreds),
            ("task_polls", self.task_polls),
            ("io_events", self.io_events),
            ("slow_callbacks", self.slow_callbacks),
            ("accepted", self.accepted),
            ("accept_errors", self.accept_errors),
            ("connections_opened", self.connections_opened),
            ("connections_open", self.connections_open),
            ("closed_clean", self.closed_clean),
            ("closed_reset", self.closed_reset),
            ("closed_aborted", self.closed_aborted),
            ("closed_error", self.closed_error),
            ("bytes_read", self.bytes_read),
            ("bytes_written", self.bytes_written),
            ("write_buffered", self.write_buffered),
            ("connections_closed", self.connections_closed()),
        ];
        let times = [
            ("polling_seconds", self.polling),
            ("busy_seconds", self.busy),
            ("timer_lag_total_seconds", self.timer_lag_total),
            ("timer_lag_max_seconds", self.timer_lag_max),
        ];
        let mut text = String::new();
        for (name, value) in counts {
            text.push_str(&format!("{name} {value}\n"));
        }
        for (name, value) in times {
            text.push_str(&format!("{name} {:.6}\n", value.as_secs_f64()));
        }
        text
    }
}

fn add(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get().wrapping_add(n));
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// The reactor's counters (see [`LoopStats`] for what each means).
#[derive(Default)]
pub(crate) struct Counters {
    iterations: Cell<u64>,
    callbacks: Cell<u64>,
    timers: Cell<u64>,
    deferreds: Cell<u64>,
    task_polls: Cell<u64>,
    io_events: Cell<u64>,
    polling_ns: Cell<u64>,
    busy_ns: Cell<u64>,
    lag_total_ns: Cell<u64>,
    lag_max_ns: Cell<u64>,
    slow_callbacks: Cell<u64>,
    accepted: Cell<u64>,
    accept_errors: Cell<u64>,
    opened: Cell<u64>,
    closed_clean: Cell<u64>,
    closed_reset: Cell<u64>,
    closed_aborted: Cell<u64>,
    closed_error: Cell<u64>,
    bytes_read: Cell<u64>,
    bytes_written: Cell<u64>,
    write_buffered: Cell<u64>,
    /// Callbacks running longer than this are logged; `None`: not timed.
    slow: Cell<Option<Duration>>,
}

impl Counters {
    pub(crate) fn new() -> Counters {
        let counters = Counters::default();
        counters.slow.set(threshold_from_env());
        counters
    }

    pub(crate) fn snapshot(&self) -> LoopStats {
        let opened = self.opened.get();
        let closed = self.closed_clean.get()
            + self.closed_reset.get()
            + self.closed_aborted.get()
            + self.closed_error.get();
        LoopStats {
            iterations: self.iterations.get(),
            callbacks: self.callbacks.get(),
            timers: self.timers.get(),
            deferreds: self.deferreds.get(),
            task_polls: self.task_polls.get(),
            io_events: self.io_events.get(),
            polling: Duration::from_nanos(self.polling_ns.get()),
            busy: Duration::from_nanos(self.busy_ns.get()),
            timer_lag_total: Duration::from_nanos(self.lag_total_ns.get()),
            timer_lag_max: Duration::from_nanos(self.lag_max_ns.get()),
            slow_callbacks: self.slow_callbacks.get(),
            accepted: self.accepted.get(),
            accept_errors: self.accept_errors.get(),
            connections_opened: opened,
            connections_open: opened.saturating_sub(closed),
            closed_clean: self.closed_clean.get(),
            closed_reset: self.closed_reset.get(),
            closed_aborted: self.closed_aborted.get(),
            closed_error: self.closed_error.get(),
            bytes_read: self.bytes_read.get(),
            bytes_written: self.bytes_written.get(),
            write_buffered: self.write_buffered.get(),
        }
    }

    /// One iteration: `polled` in the poller, `total` in all.
    pub(crate) fn iteration(&self, total: Duration, polled: Duration) {
        add(&self.iterations, 1);
        add(&self.polling_ns, nanos(polled));
        add(&self.busy_ns, nanos(total.saturating_sub(polled)));
    }

    pub(crate) fn callback(&self) {
        add(&self.callbacks, 1);
    }

    /// A timer fired `lag` after its deadline.
    pub(crate) fn timer(&self, lag: Duration) {
        add(&self.callbacks, 1);
        add(&self.timers, 1);
        let lag = nanos(lag);
        add(&self.lag_total_ns, lag);
        if lag > self.lag_max_ns.get() {
            self.lag_max_ns.set(lag);
        }
    }

    pub(crate) fn deferred(&self) {
        add(&self.deferreds, 1);
    }

    pub(crate) fn task_polls(&self, n: usize) {
        add(&self.task_polls, n as u64);
    }

    pub(crate) fn io_events(&self, n: usize) {
        add(&self.io_events, n as u64);
    }

    pub(crate) fn accepted(&self) {
        add(&self.accepted, 1);
    }

    pub(crate) fn accept_error(&self) {
        add(&self.accept_errors, 1);
    }

    pub(crate) fn opened(&self) {
        add(&self.opened, 1);
    }

    pub(crate) fn closed(&self, reason: &ConnectionLost) {
        let cell = match reason {
            ConnectionLost::Done => &self.closed_clean,
            ConnectionLost::Reset(_) => &self.closed_reset,
            ConnectionLost::Aborted | ConnectionLost::TimedOut | ConnectionLost::Cancelled => {
                &self.closed_aborted
            }
            ConnectionLost::Panicked(_) | ConnectionLost::Tls(_) | ConnectionLost::Refused(_) => {
                &self.closed_error
            }
        };
        add(cell, 1);
    }

    pub(crate) fn read(&self, n: usize) {
        add(&self.bytes_read, n as u64);
    }

    pub(crate) fn written(&self, n: usize) {
        add(&self.bytes_written, n as u64);
    }

    /// A write buffer went from `was` bytes to `now`.
    pub(crate) fn buffered(&self, was: usize, now: usize) {
        let total = self.write_buffered.get();
        self.write_buffered
            .set(total.wrapping_add(now as u64).wrapping_sub(was as u64));
    }

    pub(crate) fn reset_peaks(&self) {
        self.lag_max_ns.set(0);
    }

    pub(crate) fn set_slow(&self, threshold: Option<Duration>) {
        self.slow.set(threshold);
    }

    pub(crate) fn slow(&self) -> Option<Duration> {
        self.slow.get()
    }

    /// Starts timing a callback if slow callbacks are watched (one branch when not).
    #[inline]
    pub(crate) fn start(&self) -> Option<Instant> {
        self.slow.get().map(|_| Instant::now())
    }

    /// Ends the timing `start` began; a callback slower than the threshold is counted
    /// and logged as `what()` (only then is the description made).
    #[inline]
    pub(crate) fn finish(&self, started: Option<Instant>, what: impl FnOnce() -> String) {
        if let Some(started) = started {
            self.check(started.elapsed(), what);
        }
    }

    fn check(&self, took: Duration, what: impl FnOnce() -> String) {
        let Some(threshold) = self.slow.get() else {
            return;
        };
        if took < threshold {
            return;
        }
        add(&self.slow_callbacks, 1);
        log::warn!(
            "{} blocked the loop for {:.3} s (slow-callback threshold {:.3} s): \
             every other connection and timer waited that long",
            what(),
            took.as_secs_f64(),
            threshold.as_secs_f64()
        );
    }
}

/// The description of a scheduled callback, for the warning.
pub(crate) fn scheduled_at(what: &str, origin: &Location<'_>) -> String {
    format!("{what} scheduled at {origin}")
}

/// `TORSION_SLOW_CALLBACK_MS`, if set to a number of milliseconds.
fn threshold_from_env() -> Option<Duration> {
    let value = std::env::var_os(SLOW_CALLBACK_ENV)?;
    match value.to_str().and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(ms) => Some(Duration::from_millis(ms)),
        None => {
            log::warn!(
                "{SLOW_CALLBACK_ENV}={value:?} is not a number of milliseconds; \
                 slow-callback warnings stay off"
            );
            None
        }
    }
}

impl Reactor {
    /// What the reactor has done since it was created: loop iterations, callbacks, I/O
    /// events, time busy and waiting, timer lag, connections by how they ended, bytes
    /// read and written (see [`LoopStats`]). Cheap enough to call often; the counters are
    /// always kept.
    pub fn stats(&self) -> LoopStats {
        self.inner.stats.snapshot()
    }

    /// Starts the peaks in [`LoopStats`] (`timer_lag_max`) afresh, so that the next
    /// snapshot shows the peak of one interval.
    pub fn reset_peaks(&self) {
        self.inner.stats.reset_peaks();
    }

    /// Logs (`log::warn!`) every callback, protocol method and task poll that keeps the
    /// loop longer than `threshold`, with where it was scheduled (or which method, on which
    /// connection) and how long it took; `None` turns the check off. This is asyncio's
    /// debug-mode `slow_callback_duration` ([`DEFAULT_SLOW_CALLBACK`], 100 ms, is asyncio's
    /// value). Off by default, as asyncio's debug mode is, in release and debug builds
    /// alike; the [`SLOW_CALLBACK_ENV`] environment variable (`TORSION_SLOW_CALLBACK_MS`)
    /// turns it on for every reactor the process creates. While on, each callback costs
    /// two clock reads.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion_reactor::{DEFAULT_SLOW_CALLBACK, Reactor};
    ///
    /// let reactor = Reactor::new().unwrap();
    /// reactor.set_slow_callback_threshold(Some(DEFAULT_SLOW_CALLBACK));
    /// assert_eq!(reactor.slow_callback_threshold(), Some(Duration::from_millis(100)));
    /// ```
    pub fn set_slow_callback_threshold(&self, threshold: Option<Duration>) {
        self.inner.stats.set_slow(threshold);
    }

    /// The slow-callback threshold (see
    /// [`set_slow_callback_threshold`](Reactor::set_slow_callback_threshold)).
    pub fn slow_callback_threshold(&self) -> Option<Duration> {
        self.inner.stats.slow()
    }
}
