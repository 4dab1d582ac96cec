//! [`LineReceiver`]: a line-oriented protocol (Twisted's `LineReceiver`), made a
//! [`Protocol`] by the [`Lines`] adapter.
//!
//! The adapter owns a [`LineDecoder`]; it pushes every received byte into it and hands
//! each event to the receiver: [`line_received`](LineReceiver::line_received),
//! [`raw_data_received`](LineReceiver::raw_data_received) in raw mode, and
//! [`line_length_exceeded`](LineReceiver::line_length_exceeded) for a line longer than
//! `max_length` (see the [`line`](crate::line) module for the exact too-long rule).
//!
//! # Switching modes
//!
//! Every callback gets a [`LineControl`]: the connection's transport plus the decoder's
//! controls. A mode switch made through it ([`set_raw_mode`](LineControl::set_raw_mode),
//! [`set_raw_mode_for`](LineControl::set_raw_mode_for),
//! [`set_line_mode`](LineControl::set_line_mode),
//! [`clear_line_buffer`](LineControl::clear_line_buffer)) applies to the very next byte
//! after the line being delivered, including bytes that arrived in the same read: nothing
//! is lost or delivered twice. Delivery stops as soon as the transport is closing (after
//! `lose_connection` or `abort_connection`); the bytes after that are dropped.
//!
//! # Back-pressure
//!
//! The adapter also stops delivering lines while the receiver has paused reading or its
//! replies are piling up, and delivers the rest later (Twisted's `LineReceiver`
//! `pauseProducing`/`resumeProducing`): see [`Lines`] for the rules.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use torsion_reactor::{ConnectionLost, Protocol, Transport};

use crate::flow::Gate;
use crate::line::{LineDecoder, LineEncoder, LineEvent};
use crate::send::SendError;

/// A line-oriented protocol: implement this, wrap it in [`Lines`], and serve it.
///
/// Only [`line_received`](Self::line_received) is required. The callbacks mirror
/// [`Protocol`]'s, with a [`LineControl`] in place of the transport.
///
/// ```
/// use torsion_protocols::{LineControl, LineReceiver, Lines};
/// use torsion_reactor::{Protocol, testing::StringTransport};
///
/// /// Answers every line with its length.
/// struct Count;
///
/// impl LineReceiver for Count {
///     fn line_received(&mut self, lines: &mut LineControl<'_>, line: &[u8]) {
///         lines.send_line(line.len().to_string().as_bytes());
///     }
/// }
///
/// let t = StringTransport::new();
/// let mut p = Lines::new(Count);
/// p.connection_made(&t.transport());
/// p.data_received(&t.transport(), b"hello\r\nwor");
/// p.data_received(&t.transport(), b"ld!\r\n");
/// assert_eq!(t.written(), b"5\r\n6\r\n");
/// ```
pub trait LineReceiver: 'static {
    /// The connection is open (send a greeting here).
    fn connection_made(&mut self, lines: &mut LineControl<'_>) {
        let _ = lines;
    }

    /// A complete line arrived, without its delimiter. May be empty.
    fn line_received(&mut self, lines: &mut LineControl<'_>, line: &[u8]);

    /// Bytes arrived in raw mode, exactly as they came (how they are cut into calls
    /// depends on how they arrived). The default drops them.
    fn raw_data_received(&mut self, lines: &mut LineControl<'_>, data: &[u8]) {
        let _ = (lines, data);
    }

    /// A line is longer than `max_length`: `prefix` is its first `max_length + 1` bytes.
    /// The default closes the connection (after what was written is sent). If the
    /// connection stays open, the rest of that line is skipped, through its delimiter,
    /// and the next line is delivered as usual.
    fn line_length_exceeded(&mut self, lines: &mut LineControl<'_>, prefix: &[u8]) {
        let _ = prefix;
        lines.transport().lose_connection();
    }

    /// The peer half-closed; see [`Protocol::eof_received`]. Runs after every line that
    /// arrived before the end of file has been delivered, even if some were held back by
    /// back-pressure (the adapter keeps the connection open meanwhile and, if this returns
    /// `false`, closes it with `lose_connection`). A partial last line (with no delimiter)
    /// is not delivered. The default returns `false`: close.
    fn eof_received(&mut self, lines: &mut LineControl<'_>) -> bool {
        let _ = lines;
        false
    }

    /// The connection is gone; called exactly once, after `connection_made`.
    fn connection_lost(&mut self, reason: &ConnectionLost) {
        let _ = reason;
    }

    /// The write buffer went above its high-water mark (see [`Protocol::pause_writing`]).
    /// The adapter delivers no line while the buffer is paused (see [`Lines`]); a receiver
    /// that also produces on its own (a timer, a stream) stops that here.
    fn pause_writing(&mut self, lines: &mut LineControl<'_>) {
        let _ = lines;
    }

    /// The write buffer drained (see [`Protocol::resume_writing`]). Runs before the
    /// adapter delivers the lines it held back.
    fn resume_writing(&mut self, lines: &mut LineControl<'_>) {
        let _ = lines;
    }
}

/// What a [`LineReceiver`] callback can do besides returning: write to the connection,
/// send lines, and switch the decoder's mode for the bytes that follow.
pub struct LineControl<'a> {
    transport: &'a Transport,
    decoder: &'a mut LineDecoder,
    encoder: &'a Rc<LineEncoder>,
}

impl LineControl<'_> {
    /// The connection's transport (to write raw bytes, close, pause reading, or keep a
    /// clone).
    pub fn transport(&self) -> &Transport {
        self.transport
    }

    /// A handle that sends lines on this connection from anywhere (another connection's
    /// callback, a timer), with this protocol's delimiter and send limit.
    pub fn sender(&self) -> LineSender {
        LineSender {
            transport: self.transport.clone(),
            encoder: Rc::clone(self.encoder),
        }
    }

    /// Sends `line` followed by the delimiter (Twisted's `sendLine`). Like
    /// [`Transport::write`], it never calls back into user code and is ignored once the
    /// connection is closing. A line the encoder refuses (longer than the send limit, or
    /// containing the delimiter) is not sent, and the refusal is logged as an error naming
    /// the peer; [`try_send_line`](Self::try_send_line) returns it instead.
    pub fn send_line(&self, line: &[u8]) {
        send_line_or_log(self.transport, self.encoder, line);
    }

    /// [`send_line`](Self::send_line), saying what went wrong.
    ///
    /// # Errors
    ///
    /// [`SendError::Encode`] if the line is longer than the send limit or contains the
    /// delimiter (nothing is written); [`SendError::Transport`] if the connection is
    /// closing.
    pub fn try_send_line(&self, line: &[u8]) -> Result<(), SendError> {
        send_line(self.transport, self.encoder, line)
    }

    /// Switches to raw mode: every byte after the current line, buffered or still to
    /// come, goes to [`raw_data_received`](LineReceiver::raw_data_received) until
    /// [`set_line_mode`](Self::set_line_mode).
    pub fn set_raw_mode(&mut self) {
        self.decoder.set_raw_mode();
    }

    /// Switches to raw mode for exactly the next `len` bytes, then back to line mode on
    /// its own (a body whose length a header gave).
    pub fn set_raw_mode_for(&mut self, len: usize) {
        self.decoder.set_raw_mode_for(len);
    }

    /// Switches back to line mode: the next byte not yet delivered starts a line.
    pub fn set_line_mode(&mut self) {
        self.decoder.set_line_mode();
    }

    /// Switches to line mode and parses `extra` before the bytes not yet delivered
    /// (Twisted's `setLineMode(extra)`): for handing back the unused tail of raw data.
    pub fn set_line_mode_with(&mut self, extra: &[u8]) {
        self.decoder.set_line_mode_with(extra);
    }

    /// Whether the decoder is in raw mode.
    pub fn is_raw_mode(&self) -> bool {
        self.decoder.is_raw_mode()
    }

    /// Takes the bytes received and not yet delivered (they will not be delivered).
    pub fn clear_line_buffer(&mut self) -> Bytes {
        self.decoder.clear_line_buffer()
    }

    /// Number of bytes received and not yet delivered.
    pub fn buffered_len(&self) -> usize {
        self.decoder.buffered_len()
    }
}

/// Sends lines on one connection: a [`Transport`] plus the protocol's line encoder. Cheap
/// to clone; get one from [`LineControl::sender`] and keep it (a chat room keeps one per
/// member).
#[derive(Clone)]
pub struct LineSender {
    transport: Transport,
    encoder: Rc<LineEncoder>,
}

impl LineSender {
    /// A sender writing lines framed by `encoder` to `transport`.
    pub fn new(transport: Transport, encoder: LineEncoder) -> LineSender {
        LineSender {
            transport,
            encoder: Rc::new(encoder),
        }
    }

    /// Sends `line` followed by the delimiter; see [`LineControl::send_line`].
    pub fn send_line(&self, line: &[u8]) {
        send_line_or_log(&self.transport, &self.encoder, line);
    }

    /// [`send_line`](Self::send_line), saying what went wrong.
    ///
    /// # Errors
    ///
    /// As [`LineControl::try_send_line`].
    pub fn try_send_line(&self, line: &[u8]) -> Result<(), SendError> {
        send_line(&self.transport, &self.encoder, line)
    }

    /// The connection's transport.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }
}

impl std::fmt::Debug for LineSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineSender")
            .field("transport", &self.transport)
            .finish()
    }
}

/// Lines up to this long (with their ending) are framed on the stack: a reply costs no
/// allocation (the transport copies it into its write buffer, or sends it at once).
const STACK_LINE: usize = 512;

/// Sends a line; a line the encoder refuses is logged (a closing transport is not: writes
/// to it are ignored, as [`Transport::write`] ignores them).
fn send_line_or_log(transport: &Transport, encoder: &LineEncoder, line: &[u8]) {
    if let Err(SendError::Encode(err)) = send_line(transport, encoder, line) {
        log::error!("not sending a line to {}: {err}", transport.peer_addr());
    }
}

fn send_line(transport: &Transport, encoder: &LineEncoder, line: &[u8]) -> Result<(), SendError> {
    if encoder.encoded_len(line) <= STACK_LINE {
        let mut buf = [0u8; STACK_LINE];
        let n = encoder.encode_into(line, &mut buf)?;
        transport.try_write(&buf[..n])?;
        return Ok(());
    }
    let mut buf = BytesMut::new();
    encoder.encode(line, &mut buf)?;
    transport.try_write_bytes(buf.freeze())?;
    Ok(())
}

/// Makes a [`Protocol`] of a [`LineReceiver`]: splits what arrives into lines (or raw
/// data) and calls the receiver.
///
/// Defaults: delimiter `\r\n` for both directions, lines of up to 16,384 bytes.
///
/// # Back-pressure
///
/// One read can carry thousands of pipelined requests. So that their replies cannot grow
/// the server's memory past the write buffer's marks, the adapter checks before *every*
/// event (line, raw data, too-long line) whether it may deliver it:
///
/// - **Replies piling up.** While [`Transport::is_writing_paused`] is true (the write
///   buffer went above its high-water mark and has not drained to the low mark), nothing
///   is delivered, and the adapter pauses the transport's reading, so what it holds is
///   bounded by what was already read (one read: 64 KiB on the reactor, plus a partial
///   line). On `resume_writing` the receiver's own
///   [`resume_writing`](LineReceiver::resume_writing) runs first, then the held lines
///   are delivered and reading resumes. The adapter resumes only a pause it made: if
///   reading was already paused when the pressure came, it stays paused. So a
///   connection's memory stays within the high-water mark plus one event's replies,
///   plus one read.
/// - **The receiver paused reading.** After a callback calls
///   [`Transport::pause_reading`] (or anything else makes [`Transport::is_reading`]
///   false), no further event is delivered, even those already read;
///   [`Transport::resume_reading`] brings them, from the loop, through
///   [`Protocol::reading_resumed`]. A receiver can therefore pause after a request, do
///   slow work (a database lookup), answer, and resume, and the requests that arrived
///   meanwhile come one by one, in order.
/// - **End of file.** If the peer half-closes while lines are held back, the connection
///   stays open until they are all delivered (a client that pipelines 10,000 requests and
///   half-closes gets 10,000 replies); then the receiver's
///   [`eof_received`](LineReceiver::eof_received) runs, and if it returns `false` the
///   adapter closes with [`Transport::lose_connection`]. A partial last line is still
///   dropped. After end of file the reactor's transport no longer reports whether
///   reading is paused, so from then on only write pressure holds lines back.
///
/// Holding back never loses, repeats or reorders a byte: the decoder keeps the bytes,
/// and a mode switch ([`set_raw_mode`](LineControl::set_raw_mode),
/// [`set_raw_mode_for`](LineControl::set_raw_mode_for),
/// [`set_line_mode_with`](LineControl::set_line_mode_with), also from
/// `pause_writing`/`resume_writing`) applies to the first byte not yet delivered.
///
/// One limit: the transport has a single reading-paused flag. If something else pauses
/// reading *while the adapter holds its own pause* (a proxy pausing this side), the
/// adapter cannot see it and lifts the pause on `resume_writing`.
///
/// ```
/// use torsion_protocols::{LineControl, LineReceiver, Lines};
/// use torsion_reactor::{Protocol, testing::StringTransport};
///
/// /// `SIZE n` then `n` bytes of body, then more commands.
/// #[derive(Default)]
/// struct Upload { bodies: Vec<Vec<u8>>, size: usize }
///
/// impl LineReceiver for Upload {
///     fn line_received(&mut self, lines: &mut LineControl<'_>, line: &[u8]) {
///         let size = line.strip_prefix(b"SIZE ")
///             .and_then(|n| std::str::from_utf8(n).ok())
///             .and_then(|n| n.parse().ok());
///         match size {
///             Some(0) => self.bodies.push(Vec::new()),
///             Some(n) => {
///                 self.size = n;
///                 self.bodies.push(Vec::new());
///                 lines.set_raw_mode_for(n); // takes effect at the next byte
///             }
///             None => { lines.send_line(b"ERR"); }
///         }
///     }
///     fn raw_data_received(&mut self, _: &mut LineControl<'_>, data: &[u8]) {
///         if let Some(body) = self.bodies.last_mut() {
///             body.extend_from_slice(data);
///         }
///     }
/// }
///
/// let t = StringTransport::new();
/// let mut p = Lines::new(Upload::default()).with_delimiter(b"\n");
/// p.connection_made(&t.transport());
/// p.data_received(&t.transport(), b"SIZE 3\nab\nSIZE 1\nxoops\n");
/// assert_eq!(p.receiver().bodies, [b"ab\n".to_vec(), b"x".to_vec()]);
/// assert_eq!(t.written(), b"ERR\n"); // "oops" was a line again
/// ```
pub struct Lines<R> {
    receiver: R,
    decoder: LineDecoder,
    encoder: Rc<LineEncoder>,
    custom_encoder: bool,
    gate: Gate,
}

impl<R: LineReceiver> Lines<R> {
    /// Wraps `receiver` with the defaults (`\r\n`, 16,384 bytes).
    pub fn new(receiver: R) -> Lines<R> {
        let decoder = LineDecoder::new();
        Lines {
            receiver,
            encoder: Rc::new(decoder.encoder()),
            decoder,
            custom_encoder: false,
            gate: Gate::default(),
        }
    }

    fn set_decoder(mut self, decoder: LineDecoder) -> Lines<R> {
        if !self.custom_encoder {
            self.encoder = Rc::new(decoder.encoder());
        }
        self.decoder = decoder;
        self
    }

    /// Ends lines with `delimiter` (both ways, unless [`with_encoder`](Self::with_encoder)
    /// set how lines are sent).
    ///
    /// # Panics
    ///
    /// If `delimiter` is empty.
    pub fn with_delimiter(self, delimiter: &[u8]) -> Lines<R> {
        let decoder = self.decoder.clone().with_delimiter(delimiter);
        self.set_decoder(decoder)
    }

    /// Accepts (and sends) lines of up to `max_length` bytes, not counting the line
    /// ending.
    pub fn with_max_length(self, max_length: usize) -> Lines<R> {
        let decoder = self.decoder.clone().with_max_length(max_length);
        self.set_decoder(decoder)
    }

    /// Also accepts a `\r` before the delimiter as part of the line ending, and sends it
    /// before the delimiter (see [`LineDecoder::with_strip_cr`]). With the delimiter
    /// `\n`: reads `\n` and `\r\n` endings, sends `\r\n`.
    pub fn with_strip_cr(self, strip_cr: bool) -> Lines<R> {
        let decoder = self.decoder.clone().with_strip_cr(strip_cr);
        self.set_decoder(decoder)
    }

    /// Sends lines with `encoder` instead of one matching the decoder: for protocols
    /// whose two directions differ (a server that accepts short lines and sends long
    /// ones).
    pub fn with_encoder(mut self, encoder: LineEncoder) -> Lines<R> {
        self.encoder = Rc::new(encoder);
        self.custom_encoder = true;
        self
    }

    /// The receiver.
    pub fn receiver(&self) -> &R {
        &self.receiver
    }

    /// The receiver, mutably.
    pub fn receiver_mut(&mut self) -> &mut R {
        &mut self.receiver
    }

    /// Unwraps the receiver.
    pub fn into_receiver(self) -> R {
        self.receiver
    }

    /// The decoder (for its settings and buffered length).
    pub fn decoder(&self) -> &LineDecoder {
        &self.decoder
    }

    fn with_control<T>(
        &mut self,
        transport: &Transport,
        f: impl FnOnce(&mut R, &mut LineControl<'_>) -> T,
    ) -> T {
        let mut control = LineControl {
            transport,
            decoder: &mut self.decoder,
            encoder: &self.encoder,
        };
        f(&mut self.receiver, &mut control)
    }

    /// Delivers events while the gate lets it (see the type's documentation); returns
    /// whether the decoder ran dry, rather than delivery being held back.
    fn deliver(&mut self, transport: &Transport) -> bool {
        loop {
            if !self.gate.open(transport) {
                return false;
            }
            let Some(event) = self.decoder.next_event() else {
                return true;
            };
            self.with_control(transport, |receiver, control| match &event {
                LineEvent::Line(line) => receiver.line_received(control, line),
                LineEvent::Raw(data) => receiver.raw_data_received(control, data),
                LineEvent::TooLong(prefix) => receiver.line_length_exceeded(control, prefix),
            });
        }
    }

    /// Delivers what it may, then runs the receiver's end-of-file handling if it was
    /// waiting for the last frame.
    fn deliver_then_eof(&mut self, transport: &Transport) {
        if self.deliver(transport) && self.gate.take_owed_eof(transport) {
            let keep_open = self.with_control(transport, |r, c| r.eof_received(c));
            if !keep_open {
                transport.lose_connection();
            }
        }
    }
}

impl<R: LineReceiver> Protocol for Lines<R> {
    fn connection_made(&mut self, transport: &Transport) {
        self.with_control(transport, |r, c| r.connection_made(c));
        self.deliver(transport);
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.decoder.push(data);
        self.deliver(transport);
    }

    fn eof_received(&mut self, transport: &Transport) -> bool {
        self.gate.eof_received(transport);
        if self.decoder.buffered_len() > 0 && !self.deliver(transport) {
            // Lines are still held back: answer the end-of-file after them.
            self.gate.owe_eof();
            return !transport.is_closing();
        }
        if transport.is_closing() {
            return false;
        }
        self.with_control(transport, |r, c| r.eof_received(c))
    }

    fn connection_lost(&mut self, reason: &ConnectionLost) {
        self.receiver.connection_lost(reason);
    }

    fn pause_writing(&mut self, transport: &Transport) {
        self.with_control(transport, |r, c| r.pause_writing(c));
    }

    fn resume_writing(&mut self, transport: &Transport) {
        self.with_control(transport, |r, c| r.resume_writing(c));
        self.deliver_then_eof(transport);
    }

    fn reading_resumed(&mut self, transport: &Transport) {
        self.deliver_then_eof(transport);
    }
}

impl<R: std::fmt::Debug> std::fmt::Debug for Lines<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lines")
            .field("receiver", &self.receiver)
            .field("decoder", &self.decoder)
            .finish()
    }
}
