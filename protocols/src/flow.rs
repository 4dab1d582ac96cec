//! Back-pressure for the framing adapters ([`Lines`](crate::Lines),
//! [`Framed`](crate::Framed)): when the next frame may be delivered, who pauses and
//! resumes reading, and when the receiver hears of the peer's end-of-file.
//!
//! The rules (written for users in the adapters' rustdoc and the crate README):
//!
//! 1. A frame is delivered only while the transport is not closing, its write buffer is
//!    not paused ([`Transport::is_writing_paused`]), and its reading is not paused
//!    ([`Transport::is_reading`]). The check runs before every frame, so at most one
//!    frame's replies go past the high-water mark.
//! 2. When write pressure stops delivery and the transport is reading, the adapter pauses
//!    reading itself, so the decoder holds at most what was already read (one read of the
//!    reactor's buffer, plus a partial frame). When delivery may go on again (on
//!    `resume_writing`, or any later callback that finds the buffer drained), the adapter
//!    resumes reading, and only then: a pause it did not make is never lifted by it.
//! 3. When a pause made by the receiver (or anyone holding the transport) stops delivery,
//!    the rest is delivered on `reading_resumed`.
//! 4. End-of-file with frames still undelivered keeps the connection open; the receiver's
//!    `eof_received` runs once they have all been delivered, and if it returns `false`
//!    the adapter closes the connection with `lose_connection`.

use torsion_reactor::Transport;

/// The adapters' back-pressure state.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// The adapter paused the transport's reading (write pressure); it must resume it.
    paused_reading: bool,
    /// The peer half-closed.
    eof: bool,
    /// The transport reports `is_reading() == false` for good after end-of-file (the
    /// reactor's does), so from then on a pause cannot be seen: only write pressure and
    /// closing stop delivery.
    eof_hides_pause: bool,
    /// End-of-file arrived before every frame was delivered: the receiver's
    /// `eof_received` is owed once they are.
    eof_owed: bool,
}

impl Gate {
    /// Whether the next frame may be delivered now. When write pressure says no and the
    /// transport is reading, pauses its reading (rule 2); when the pressure is gone,
    /// resumes the reading this gate paused.
    pub(crate) fn open(&mut self, transport: &Transport) -> bool {
        if transport.is_closing() {
            return false;
        }
        if transport.is_writing_paused() {
            // Also after someone else resumed a pause of ours: pause again.
            if transport.is_reading() {
                transport.pause_reading();
                self.paused_reading = true;
            }
            return false;
        }
        if self.paused_reading {
            self.paused_reading = false;
            transport.resume_reading();
        }
        (self.eof && self.eof_hides_pause) || transport.is_reading()
    }

    /// The peer half-closed. Call before delivering what is buffered.
    pub(crate) fn eof_received(&mut self, transport: &Transport) {
        self.eof = true;
        // End-of-file is only read while reading is not paused, so whatever
        // `is_reading` says now is about end-of-file itself.
        self.paused_reading = false;
        self.eof_hides_pause = !transport.is_reading() && !transport.is_closing();
    }

    /// After delivery stopped at end-of-file with frames left: the receiver's
    /// `eof_received` is owed.
    pub(crate) fn owe_eof(&mut self) {
        self.eof_owed = true;
    }

    /// After a delivery that drained the decoder: whether the receiver's `eof_received`
    /// is owed now (it is then no longer owed).
    pub(crate) fn take_owed_eof(&mut self, transport: &Transport) -> bool {
        if self.eof_owed && !transport.is_closing() {
            self.eof_owed = false;
            true
        } else {
            false
        }
    }
}
