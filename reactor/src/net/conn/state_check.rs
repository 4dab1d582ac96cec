//! Drives a [`ConnState`] through any sequence of events, as `Conn` does, and checks the
//! connection rules after every step. Shared by the property test below (`cargo test`)
//! and the `conn_state` fuzz target (`fuzz/`, through `torsion_reactor::fuzzing`).
//!
//! The rules: the connection closes once (one `connection_lost`); it accepts no write once
//! closing, asks the poller for nothing once closed, never reads once closing, shuts its
//! writing side at most once and never after closing; a clean close after
//! `lose_connection` waits for the buffer to drain; `pause_writing` and `resume_writing`
//! alternate, starting with a pause, and nothing is told after the close; a delivery is
//! scheduled whenever the protocol's view is out of date, never twice; and once deliveries
//! have run, an open connection whose buffer is at or below the low mark is not left
//! paused (an observed pause always gets its resume).

use std::io;

use super::state::{Actions, ConnState, Life, ReadSide, WriteSide};
use crate::net::protocol::ConnectionLost;

/// One thing that can happen to a connection.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Event {
    /// The protocol writes `n` bytes.
    Write(usize),
    /// The socket takes up to `n` queued bytes.
    Drain(usize),
    PauseReading,
    ResumeReading,
    /// `lose_write_connection`.
    LoseWrite,
    /// `lose_connection`.
    Lose,
    /// `abort_connection`.
    Abort,
    /// A read or write fails (a reset).
    Fail,
    /// The protocol panics.
    Panic,
    /// The peer half-closes; the protocol answers `eof_received` with this.
    Eof(bool),
    /// `set_write_buffer_limits(high, low)`.
    SetMarks(usize, usize),
    /// `is_writing_paused`.
    ObservePaused,
    /// The scheduled flow delivery runs.
    DeliverFlow,
}

impl Event {
    /// An event from two bytes of fuzz input.
    pub(crate) fn from_bytes(op: u8, arg: u8) -> Event {
        let n = arg as usize * 97;
        match op % 13 {
            0 => Event::Write(n),
            1 => Event::Drain(n),
            2 => Event::PauseReading,
            3 => Event::ResumeReading,
            4 => Event::LoseWrite,
            5 => Event::Lose,
            6 => Event::Abort,
            7 => Event::Fail,
            8 => Event::Panic,
            9 => Event::Eof(arg & 1 == 1),
            10 => Event::SetMarks(n, (arg as usize % 7) * 97),
            11 => Event::ObservePaused,
            _ => Event::DeliverFlow,
        }
    }
}

/// The state machine plus what `Conn` keeps beside it, and what the protocol was told.
pub(crate) struct Checker {
    state: ConnState,
    queued: usize,
    delivery_scheduled: bool,
    closes: usize,
    shutdowns: usize,
    /// `true` for each pause told, `false` for each resume, in order.
    told: Vec<bool>,
    observed_pause: bool,
    step: usize,
}

impl Checker {
    pub(crate) fn new(high: usize, low: usize) -> Checker {
        Checker {
            state: ConnState::new(high, low),
            queued: 0,
            delivery_scheduled: false,
            closes: 0,
            shutdowns: 0,
            told: Vec::new(),
            observed_pause: false,
            step: 0,
        }
    }

    fn fail(&self, event: Event, rule: &str) -> ! {
        panic!(
            "step {} ({event:?}): {rule}; state {:?}, {} bytes queued",
            self.step, self.state, self.queued
        )
    }

    /// Carries out `actions` as `Conn::apply` does.
    fn apply(&mut self, event: Event, actions: Actions) {
        let was_closed = self.closes > 0;
        if was_closed && (actions.notify_flow || actions.notify_resumed || actions.shutdown_write) {
            self.fail(event, "an action after the close");
        }
        if actions.shutdown_write {
            self.shutdowns += 1;
            if self.shutdowns > 1 {
                self.fail(event, "the writing side was shut down twice");
            }
            if actions.close.is_some() {
                self.fail(event, "shut down and closed in one step");
            }
        }
        if let Some(reason) = actions.close {
            self.closes += 1;
            if self.closes > 1 {
                self.fail(event, "closed twice (two connection_lost)");
            }
            if matches!(reason, ConnectionLost::Done) && self.queued > 0 {
                self.fail(event, "a clean close with bytes still queued");
            }
            self.queued = 0; // `finish_close` drops the queue
        }
        if actions.notify_flow {
            if self.delivery_scheduled {
                self.fail(event, "a flow delivery scheduled twice");
            }
            self.delivery_scheduled = true;
        }
    }

    /// Applies one event and checks every rule.
    pub(crate) fn event(&mut self, event: Event) {
        self.step += 1;
        let queued = self.queued > 0;
        match event {
            Event::Write(n) => {
                if self.state.accepts_writes() {
                    if self.closes > 0 || self.state.is_closing() {
                        self.fail(event, "a write accepted while closing");
                    }
                    self.queued += n;
                    let a = self.state.queue_changed(self.queued);
                    self.apply(event, a);
                }
            }
            Event::Drain(n) => {
                if self.state.is_closed() || self.state.write == WriteSide::Shut {
                    return; // nothing is sent once closed or shut
                }
                self.queued -= n.min(self.queued);
                let mut a = self.state.queue_changed(self.queued);
                if self.queued == 0 {
                    let d = self.state.drained();
                    a.close = a.close.or(d.close);
                    a.shutdown_write |= d.shutdown_write;
                    a.notify_flow |= d.notify_flow;
                }
                self.apply(event, a);
            }
            Event::PauseReading => self.state.pause_reading(),
            Event::ResumeReading => {
                let a = self.state.resume_reading();
                self.apply(event, a);
            }
            Event::LoseWrite => {
                if let Ok(a) = self.state.lose_write(queued) {
                    self.apply(event, a);
                } else if self.state.life == Life::Open {
                    self.fail(event, "lose_write_connection refused on an open connection");
                }
            }
            Event::Lose => {
                let a = self.state.lose(queued);
                self.apply(event, a);
                if self.state.is_reading() {
                    self.fail(event, "still reading after lose_connection");
                }
            }
            Event::Abort => {
                let a = self.state.abort();
                self.apply(event, a);
            }
            Event::Fail => {
                let a = self
                    .state
                    .fail(io::Error::from(io::ErrorKind::ConnectionReset));
                self.apply(event, a);
            }
            Event::Panic => {
                let a = self.state.close(ConnectionLost::Panicked("fuzz".into()));
                self.apply(event, a);
            }
            Event::Eof(keep_open) => {
                // `Conn` reads (and so sees end of file) only while reading.
                if self.state.is_reading() && self.state.read_eof() {
                    let a = self.state.eof_answered(keep_open, queued);
                    self.apply(event, a);
                }
            }
            Event::SetMarks(high, low) => {
                let a = self.state.set_marks(high, low, self.queued);
                self.apply(event, a);
            }
            Event::ObservePaused => {
                if self.state.observe_paused() {
                    self.observed_pause = true;
                }
            }
            Event::DeliverFlow => {
                if !self.delivery_scheduled {
                    return;
                }
                self.delivery_scheduled = false;
                let notice = self.state.take_flow_notice();
                if self.closes > 0 && (notice.pause || notice.resume) {
                    self.fail(
                        event,
                        "the protocol was told about its buffer after the close",
                    );
                }
                for paused in [notice.pause.then_some(true), notice.resume.then_some(false)]
                    .into_iter()
                    .flatten()
                {
                    if self.told.last().copied().unwrap_or(false) == paused {
                        self.fail(event, "pause_writing and resume_writing out of turn");
                    }
                    self.told.push(paused);
                }
                if notice.pause {
                    self.observed_pause = false;
                }
            }
        }
        self.check_always(event);
    }

    /// The rules that hold after every step.
    fn check_always(&self, event: Event) {
        let s = &self.state;
        let interest = s.interest(self.queued > 0);
        if self.closes > 0 {
            if s.accepts_writes() {
                self.fail(event, "a closed connection accepts writes");
            }
            if interest.read || interest.write {
                self.fail(event, "a closed connection asks the poller for events");
            }
        }
        if interest.read && (s.life != Life::Open || s.read != ReadSide::Reading) {
            self.fail(event, "reading while closing, paused or at end of file");
        }
        if interest.write && (self.queued == 0 || s.write == WriteSide::Shut) {
            self.fail(event, "asking for writability with nothing to send");
        }
        if s.is_closed() != (self.closes > 0) {
            self.fail(
                event,
                "closed without a close action, or the other way round",
            );
        }
        if self.closes == 0 {
            let due = self.state.flow_paused() != self.told_paused();
            if due && !self.delivery_scheduled {
                self.fail(
                    event,
                    "the protocol's view of its buffer is stale and no delivery is scheduled",
                );
            }
        }
    }

    fn told_paused(&self) -> bool {
        self.told.last().copied().unwrap_or(false)
    }

    /// After the sequence: run the deliveries still scheduled; an open connection at or
    /// below its low mark must not be left paused, and an observed pause was told.
    pub(crate) fn finish(&mut self) {
        self.event(Event::DeliverFlow);
        if self.closes > 0 {
            return;
        }
        if self.queued <= self.state.flow.low && self.told_paused() {
            self.fail(Event::DeliverFlow, "left paused with the buffer drained");
        }
        if self.observed_pause && !self.told.contains(&true) {
            self.fail(Event::DeliverFlow, "a pause was observed but never told");
        }
    }
}

/// Runs the checker over events decoded from `data` (two bytes each; the first two bytes
/// set the marks).
pub(crate) fn check_bytes(data: &[u8]) {
    let (high, low) = match data {
        [h, l, ..] => (*h as usize * 97, *l as usize * 97),
        _ => return,
    };
    let mut checker = Checker::new(high, low);
    for pair in data[2..].chunks_exact(2) {
        checker.event(Event::from_bytes(pair[0], pair[1]));
    }
    checker.finish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            4 => (0usize..200_000).prop_map(Event::Write),
            4 => (0usize..200_000).prop_map(Event::Drain),
            1 => Just(Event::PauseReading),
            1 => Just(Event::ResumeReading),
            1 => Just(Event::LoseWrite),
            1 => Just(Event::Lose),
            1 => Just(Event::Abort),
            1 => Just(Event::Fail),
            1 => Just(Event::Panic),
            1 => any::<bool>().prop_map(Event::Eof),
            1 => (0usize..100_000, 0usize..100_000).prop_map(|(h, l)| Event::SetMarks(h, l)),
            2 => Just(Event::ObservePaused),
            3 => Just(Event::DeliverFlow),
        ]
    }

    proptest! {
        // 256 cases (proptest's default; PROPTEST_CASES changes it).
        /// No sequence of reads, writes, pauses, half-closes, resets and closes breaks a
        /// connection rule.
        #[test]
        fn no_sequence_of_events_breaks_a_connection_rule(
            high in 0usize..100_000,
            low in 0usize..100_000,
            events in prop::collection::vec(event(), 0..60),
        ) {
            let mut checker = Checker::new(high, low);
            for e in events {
                checker.event(e);
            }
            checker.finish();
        }
    }

    #[test]
    fn the_checker_catches_a_broken_rule() {
        // A state machine that "forgot" the close would be caught: a second close action.
        let mut checker = Checker::new(100, 10);
        checker.event(Event::Abort);
        let twice = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let actions = Actions {
                close: Some(ConnectionLost::Aborted),
                ..Actions::default()
            };
            checker.apply(Event::Abort, actions);
        }));
        assert!(twice.is_err(), "two closes are reported");
    }

    #[test]
    fn bytes_drive_the_same_checker() {
        check_bytes(&[1, 0, 0, 200, 11, 0, 12, 0, 1, 255, 12, 0, 5, 0, 7, 0]);
    }
}
