//! A connection's state machine, with no socket in it: the read side, the write side and
//! the connection's life as three small enums, plus the flow-control state of its write
//! buffer. Each transition is a method that returns the [`Actions`] the connection must
//! then take (close the socket, shut down its writing side, tell the protocol something),
//! so every rule here is unit-tested without I/O.
//!
//! A stream may have one direction only ([`Ends`]): a pipe's read end starts with its
//! writing side shut, a pipe's write end starts at end of file. The same rules then give
//! what a one-way transport should do (no writes, or no reads; end of file closes a read
//! end; the reader going away is a write end's loss).

use std::io;
use std::sync::Arc;

#[cfg(any(test, fuzzing))]
use crate::io::Interest;
use crate::net::protocol::ConnectionLost;

/// Whether the connection reads from its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadSide {
    Reading,
    /// The protocol paused reading.
    Paused,
    /// The peer half-closed: nothing more will come.
    Eof,
}

/// Whether the connection's writing side is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteSide {
    Open,
    /// `lose_write_connection` was called: shut down writing once the buffer is flushed.
    ShutPending,
    /// The writing side is shut down (the peer read end-of-file).
    Shut,
}

/// Which directions a stream has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ends {
    /// A socket, or standard input and output together.
    Both,
    /// A pipe's read end: writes are refused.
    ReadOnly,
    /// A pipe's write end: nothing is ever read.
    WriteOnly,
}

/// What to ask the poller for: reads, writes, and (for a stream whose writing descriptor is
/// a pipe's write end) the reader going away, which epoll reports as an error on that end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Wants {
    pub(crate) read: bool,
    pub(crate) write: bool,
    pub(crate) hangup: bool,
}

/// Where the connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Life {
    Open,
    /// `lose_connection` was called: flush, then close. Reading has stopped.
    Closing,
    /// The socket is closed; `connection_lost` is scheduled or delivered.
    Closed,
}

/// The write buffer's marks and what the protocol was told about them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Flow {
    pub(crate) high: usize,
    pub(crate) low: usize,
    /// Above the high mark, and not yet drained to the low mark (what
    /// `is_writing_paused` reports, as of now).
    paused: bool,
    /// Someone saw `paused` through `is_writing_paused`: they get `pause_writing` then
    /// `resume_writing` even if the buffer drained before they could be told.
    observed: bool,
    /// What the protocol was last told: `pause_writing` (true) or `resume_writing`.
    told_paused: bool,
    /// A delivery of the flow state is scheduled.
    scheduled: bool,
}

/// What the connection must do after a transition. `Default` is "nothing".
#[derive(Debug, Default)]
#[must_use]
pub(crate) struct Actions {
    /// Close the socket now and schedule `connection_lost` with this reason.
    pub(crate) close: Option<ConnectionLost>,
    /// Shut down the socket's writing side now.
    pub(crate) shutdown_write: bool,
    /// Schedule telling the protocol `pause_writing`/`resume_writing`.
    pub(crate) notify_flow: bool,
    /// Schedule telling the protocol `reading_resumed`.
    pub(crate) notify_resumed: bool,
}

impl Actions {
    fn close(reason: ConnectionLost) -> Actions {
        Actions {
            close: Some(reason),
            ..Actions::default()
        }
    }
}

/// What the protocol is to be told about its write buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FlowNotice {
    pub(crate) pause: bool,
    pub(crate) resume: bool,
}

/// The whole state of one connection.
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) read: ReadSide,
    pub(crate) write: WriteSide,
    pub(crate) life: Life,
    pub(crate) flow: Flow,
    pub(crate) ends: Ends,
    /// Watch the writing descriptor for its reader going away (a pipe's write end).
    watch_hangup: bool,
}

impl ConnState {
    #[cfg(any(test, fuzzing))]
    pub(crate) fn new(high: usize, low: usize) -> ConnState {
        ConnState::with_ends(high, low, Ends::Both, false)
    }

    /// A stream with the given directions; `watch_hangup` when its writing descriptor is a
    /// pipe's write end, whose reader's going away can only be seen by watching it.
    pub(crate) fn with_ends(high: usize, low: usize, ends: Ends, watch_hangup: bool) -> ConnState {
        ConnState {
            // A write end has nothing to read: as if at end of file from the start, so a
            // half-close closes it altogether.
            read: match ends {
                Ends::WriteOnly => ReadSide::Eof,
                _ => ReadSide::Reading,
            },
            // A read end has nothing to write to: as if shut from the start, so end of
            // file closes it whatever `eof_received` answers.
            write: match ends {
                Ends::ReadOnly => WriteSide::Shut,
                _ => WriteSide::Open,
            },
            ends,
            watch_hangup: watch_hangup && ends != Ends::ReadOnly,
            life: Life::Open,
            flow: Flow {
                high,
                low: low.min(high),
                paused: false,
                observed: false,
                told_paused: false,
                scheduled: false,
            },
        }
    }

    /// What to ask the poller for, given whether bytes wait to be sent: for a stream on
    /// one descriptor (a hang-up on it is reported as readable).
    #[cfg(any(test, fuzzing))]
    pub(crate) fn interest(&self, queued: bool) -> Interest {
        let wants = self.wants(queued);
        Interest {
            read: wants.read || wants.hangup,
            write: wants.write,
        }
    }

    /// What to watch for, each direction apart (for a stream that reads one descriptor and
    /// writes another).
    pub(crate) fn wants(&self, queued: bool) -> Wants {
        Wants {
            read: self.life == Life::Open && self.read == ReadSide::Reading,
            write: self.life != Life::Closed && self.write != WriteSide::Shut && queued,
            hangup: self.watch_hangup && self.life == Life::Open && self.write != WriteSide::Shut,
        }
    }

    /// The reader of the writing descriptor went away (a hang-up on a pipe's write end).
    /// Nothing more can be written, so the connection is lost: cleanly if nothing was
    /// waiting to be sent (nothing was lost), as a broken pipe if something was.
    pub(crate) fn hung_up(&mut self, queued: bool) -> Actions {
        if self.write == WriteSide::Shut {
            return Actions::default();
        }
        if queued {
            self.fail(io::Error::from(io::ErrorKind::BrokenPipe))
        } else {
            self.close(ConnectionLost::Done)
        }
    }

    /// Whether the stream has a reading direction at all.
    pub(crate) fn has_read_side(&self) -> bool {
        self.ends != Ends::WriteOnly
    }

    /// Whether the socket is read now.
    pub(crate) fn is_reading(&self) -> bool {
        self.life == Life::Open && self.read == ReadSide::Reading
    }

    /// Whether `write` accepts bytes.
    pub(crate) fn accepts_writes(&self) -> bool {
        self.life == Life::Open && self.write == WriteSide::Open
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.life != Life::Open
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.life == Life::Closed
    }

    /// Closes with `reason`, once: later calls do nothing.
    pub(crate) fn close(&mut self, reason: ConnectionLost) -> Actions {
        if self.life == Life::Closed {
            return Actions::default();
        }
        self.life = Life::Closed;
        Actions::close(reason)
    }

    /// A read or write failed.
    pub(crate) fn fail(&mut self, err: io::Error) -> Actions {
        self.close(ConnectionLost::Reset(Arc::new(err)))
    }

    /// `abort_connection`.
    pub(crate) fn abort(&mut self) -> Actions {
        self.close(ConnectionLost::Aborted)
    }

    /// `lose_connection`: flush, then close. Reading stops now.
    pub(crate) fn lose(&mut self, queued: bool) -> Actions {
        if self.life != Life::Open {
            return Actions::default();
        }
        self.life = Life::Closing;
        self.drained_if(queued)
    }

    /// `lose_write_connection`: flush, then shut down writing. `Err` if the connection is
    /// closing or closed.
    pub(crate) fn lose_write(&mut self, queued: bool) -> Result<Actions, ()> {
        if self.life != Life::Open {
            return Err(());
        }
        if self.write == WriteSide::Open {
            self.write = WriteSide::ShutPending;
        }
        Ok(self.drained_if(queued))
    }

    fn drained_if(&mut self, queued: bool) -> Actions {
        if queued {
            Actions::default()
        } else {
            self.drained()
        }
    }

    /// The write buffer is empty: finish a pending close or half-close.
    pub(crate) fn drained(&mut self) -> Actions {
        match (self.life, self.write) {
            (Life::Closed, _) => Actions::default(),
            (Life::Closing, _) => self.close(ConnectionLost::Done),
            (Life::Open, WriteSide::ShutPending) => {
                self.write = WriteSide::Shut;
                if self.read == ReadSide::Eof {
                    // Both directions are done.
                    let mut actions = self.close(ConnectionLost::Done);
                    actions.shutdown_write = false;
                    actions
                } else {
                    Actions {
                        shutdown_write: true,
                        ..Actions::default()
                    }
                }
            }
            (Life::Open, _) => Actions::default(),
        }
    }

    /// The peer half-closed. Returns whether to ask the protocol (`eof_received`).
    pub(crate) fn read_eof(&mut self) -> bool {
        if self.life == Life::Closed || self.read == ReadSide::Eof {
            return false;
        }
        self.read = ReadSide::Eof;
        true
    }

    /// The protocol answered `eof_received`: `keep_open` keeps the writing side open.
    pub(crate) fn eof_answered(&mut self, keep_open: bool, queued: bool) -> Actions {
        if self.life == Life::Closed {
            return Actions::default();
        }
        if !keep_open {
            return self.lose(queued);
        }
        if self.write == WriteSide::Shut {
            return self.close(ConnectionLost::Done);
        }
        Actions::default()
    }

    /// `pause_reading`.
    pub(crate) fn pause_reading(&mut self) {
        if self.read == ReadSide::Reading {
            self.read = ReadSide::Paused;
        }
    }

    /// `resume_reading`: the protocol hears `reading_resumed` if reading was paused.
    pub(crate) fn resume_reading(&mut self) -> Actions {
        if self.read != ReadSide::Paused {
            return Actions::default();
        }
        self.read = ReadSide::Reading;
        Actions {
            notify_resumed: self.life == Life::Open,
            ..Actions::default()
        }
    }

    /// The write buffer now holds `queued` bytes: update the flow state (hysteresis between
    /// the marks) and say whether a delivery must be scheduled.
    pub(crate) fn queue_changed(&mut self, queued: usize) -> Actions {
        let flow = &mut self.flow;
        if !flow.paused && queued > flow.high {
            flow.paused = true;
        } else if flow.paused && queued <= flow.low {
            flow.paused = false;
        }
        let due = flow.paused != flow.told_paused || (flow.observed && !flow.told_paused);
        let notify_flow = due && !flow.scheduled && self.life != Life::Closed;
        if notify_flow {
            flow.scheduled = true;
        }
        Actions {
            notify_flow,
            ..Actions::default()
        }
    }

    /// New marks (`low` is clamped to `high`), then as [`queue_changed`].
    ///
    /// [`queue_changed`]: ConnState::queue_changed
    pub(crate) fn set_marks(&mut self, high: usize, low: usize, queued: usize) -> Actions {
        self.flow.high = high;
        self.flow.low = low.min(high);
        self.queue_changed(queued)
    }

    /// The buffer went above the high mark and the protocol has not been told yet: it must
    /// hear `pause_writing` before any more data (Twisted tells it inside the `write` that
    /// crossed the mark; here the notice is a callback of its own, so reading waits for it).
    pub(crate) fn pause_pending(&self) -> bool {
        self.flow.paused && !self.flow.told_paused
    }

    /// `is_writing_paused`: the state now; if paused, the protocol is sure to hear
    /// `pause_writing` and later `resume_writing`.
    pub(crate) fn observe_paused(&mut self) -> bool {
        if self.flow.paused {
            self.flow.observed = true;
        }
        self.flow.paused
    }

    /// Whether the buffer is paused now, as `is_writing_paused` would say, without marking
    /// it observed (for the checker in `state_check.rs`).
    #[cfg(any(test, fuzzing))]
    pub(crate) fn flow_paused(&self) -> bool {
        self.flow.paused
    }

    /// The scheduled delivery runs: what to tell the protocol so that what it was told last
    /// matches the buffer now, and an observed pause is always followed by a resume.
    pub(crate) fn take_flow_notice(&mut self) -> FlowNotice {
        let flow = &mut self.flow;
        flow.scheduled = false;
        if self.life == Life::Closed {
            return FlowNotice::default();
        }
        let pause = !flow.told_paused && (flow.paused || flow.observed);
        let resume = (pause || flow.told_paused) && !flow.paused;
        flow.observed = false;
        flow.told_paused = flow.paused;
        FlowNotice { pause, resume }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> ConnState {
        ConnState::new(100, 10)
    }

    fn closes_with(actions: &Actions, clean: bool) -> bool {
        match &actions.close {
            Some(ConnectionLost::Done) => clean,
            Some(_) => !clean,
            None => false,
        }
    }

    #[test]
    fn lose_with_an_empty_buffer_closes_at_once_and_only_once() {
        let mut s = open();
        assert!(closes_with(&s.lose(false), true));
        assert!(s.is_closed());
        assert!(s.lose(false).close.is_none());
        assert!(
            s.abort().close.is_none(),
            "closed once, whatever comes next"
        );
    }

    #[test]
    fn lose_with_bytes_queued_waits_for_the_flush_and_stops_reading() {
        let mut s = open();
        assert!(s.lose(true).close.is_none());
        assert!(!s.accepts_writes());
        assert_eq!(s.interest(true), Interest::WRITE);
        assert!(closes_with(&s.drained(), true));
        assert_eq!(s.interest(false), Interest::NONE);
    }

    #[test]
    fn half_close_shuts_writing_after_the_flush_and_keeps_reading() {
        let mut s = open();
        let a = s.lose_write(true).unwrap();
        assert!(!a.shutdown_write && a.close.is_none());
        assert!(!s.accepts_writes(), "no writes after lose_write_connection");
        let a = s.drained();
        assert!(a.shutdown_write && a.close.is_none());
        assert_eq!(s.interest(false), Interest::READ);
        // The peer then closes its side: both directions done.
        assert!(s.read_eof());
        assert!(closes_with(&s.eof_answered(true, false), true));
    }

    #[test]
    fn eof_then_half_close_closes_once_the_buffer_is_flushed() {
        let mut s = open();
        assert!(s.read_eof());
        assert!(!s.read_eof(), "end of file is reported once");
        assert!(s.eof_answered(true, false).close.is_none());
        assert!(!s.interest(false).read);
        let a = s.lose_write(true).unwrap();
        assert!(a.close.is_none());
        let a = s.drained();
        assert!(closes_with(&a, true) && !a.shutdown_write);
    }

    #[test]
    fn eof_answered_false_flushes_then_closes() {
        let mut s = open();
        assert!(s.read_eof());
        assert!(s.eof_answered(false, true).close.is_none());
        assert!(s.is_closing());
        assert!(closes_with(&s.drained(), true));
    }

    #[test]
    fn lose_write_on_a_closing_connection_is_refused() {
        let mut s = open();
        let _ = s.lose(true);
        assert!(s.lose_write(true).is_err());
    }

    #[test]
    fn a_failure_closes_with_a_reset() {
        let mut s = open();
        let a = s.fail(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(matches!(a.close, Some(ConnectionLost::Reset(_))));
    }

    #[test]
    fn pause_and_resume_reading_report_reading_resumed_once() {
        let mut s = open();
        s.pause_reading();
        assert!(!s.is_reading());
        assert_eq!(s.interest(false), Interest::NONE);
        assert!(s.resume_reading().notify_resumed);
        assert!(!s.resume_reading().notify_resumed, "not paused any more");
        assert!(s.read_eof());
        s.pause_reading();
        assert!(
            !s.resume_reading().notify_resumed,
            "end of file is not a pause"
        );
    }

    #[test]
    fn flow_uses_hysteresis_between_the_marks() {
        let mut s = open();
        assert!(
            !s.queue_changed(100).notify_flow,
            "at the high mark is not above it"
        );
        assert!(s.queue_changed(101).notify_flow);
        assert!(s.observe_paused());
        assert!(!s.queue_changed(50).notify_flow, "already scheduled");
        assert!(s.observe_paused(), "still paused above the low mark");
        assert_eq!(
            s.take_flow_notice(),
            FlowNotice {
                pause: true,
                resume: false
            }
        );
        assert!(s.queue_changed(10).notify_flow);
        assert!(!s.observe_paused());
        assert_eq!(
            s.take_flow_notice(),
            FlowNotice {
                pause: false,
                resume: true
            }
        );
    }

    #[test]
    fn an_observed_pause_gets_its_resume_even_if_the_buffer_drained_first() {
        let mut s = open();
        assert!(s.queue_changed(500).notify_flow);
        assert!(s.observe_paused(), "a producer saw the pause and stopped");
        let _ = s.queue_changed(0);
        assert_eq!(
            s.take_flow_notice(),
            FlowNotice {
                pause: true,
                resume: true
            },
            "told both, so the producer that stopped is resumed"
        );
    }

    #[test]
    fn an_unobserved_burst_that_drained_is_not_reported() {
        let mut s = open();
        assert!(s.queue_changed(500).notify_flow);
        let _ = s.queue_changed(0);
        assert_eq!(s.take_flow_notice(), FlowNotice::default());
    }

    #[test]
    fn lowering_the_marks_pauses_at_once() {
        let mut s = open();
        let _ = s.queue_changed(50);
        assert!(s.set_marks(20, 5, 50).notify_flow);
        assert!(s.observe_paused());
    }

    #[test]
    fn nothing_is_told_after_close() {
        let mut s = open();
        assert!(s.queue_changed(500).notify_flow);
        let _ = s.abort();
        assert_eq!(s.take_flow_notice(), FlowNotice::default());
        assert!(!s.queue_changed(0).notify_flow);
    }

    #[test]
    fn a_read_end_refuses_writes_and_closes_cleanly_at_end_of_file() {
        let mut s = ConnState::with_ends(100, 10, Ends::ReadOnly, true);
        assert!(!s.accepts_writes());
        assert_eq!(
            s.interest(true),
            Interest::READ,
            "never asks for writability"
        );
        assert!(!s.wants(false).hangup, "a read end has no reader to lose");
        assert!(s.lose_write(false).unwrap().close.is_none());
        assert!(s.read_eof());
        // Even a protocol that asks to keep writing gets a clean close: there is no
        // writing side.
        assert!(closes_with(&s.eof_answered(true, false), true));
    }

    #[test]
    fn a_write_end_never_reads_and_its_half_close_closes_it() {
        let mut s = ConnState::with_ends(100, 10, Ends::WriteOnly, true);
        assert!(!s.is_reading());
        assert!(!s.has_read_side());
        assert_eq!(
            s.wants(false),
            Wants {
                read: false,
                write: false,
                hangup: true
            }
        );
        assert_eq!(
            s.interest(false),
            Interest::READ,
            "a hang-up is reported as readable"
        );
        assert!(!s.read_eof(), "no end of file to report");
        s.pause_reading();
        assert!(!s.resume_reading().notify_resumed);
        let a = s.lose_write(true).unwrap();
        assert!(a.close.is_none());
        let a = s.drained();
        assert!(closes_with(&a, true) && !a.shutdown_write);
    }

    #[test]
    fn the_reader_going_away_is_clean_when_nothing_was_waiting() {
        let mut s = ConnState::with_ends(100, 10, Ends::WriteOnly, true);
        assert!(closes_with(&s.hung_up(false), true));
        let mut s = ConnState::with_ends(100, 10, Ends::WriteOnly, true);
        let a = s.hung_up(true);
        assert!(
            matches!(&a.close, Some(ConnectionLost::Reset(e)) if e.kind() == io::ErrorKind::BrokenPipe),
            "{a:?}"
        );
        assert!(s.hung_up(true).close.is_none(), "closed once");
    }

    #[test]
    fn a_write_end_without_a_hangup_watch_asks_for_nothing_while_idle() {
        // A terminal opened for reading and writing: a readable report would be input.
        let s = ConnState::with_ends(100, 10, Ends::WriteOnly, false);
        assert_eq!(s.interest(false), Interest::NONE);
        assert_eq!(s.interest(true), Interest::WRITE);
    }
}
