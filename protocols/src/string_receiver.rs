//! [`StringReceiver`]: a protocol that exchanges framed strings, served as netstrings
//! ([`Netstrings`], Twisted's `NetstringReceiver`) or with big-endian length prefixes
//! ([`PrefixedStrings`], Twisted's `Int8StringReceiver`, `Int16StringReceiver` and
//! `Int32StringReceiver`).
//!
//! The same receiver works over either framing. A malformed or oversize frame is a
//! protocol error: it is logged (warning level, with the peer's address and the reason),
//! the receiver's [`framing_error`](StringReceiver::framing_error) hook runs, and the
//! connection is closed after what was already written is sent. Nothing the peer sends
//! can make the adapter panic.
//!
//! # Back-pressure
//!
//! The adapters deliver no frame while the receiver has paused reading or while the
//! write buffer is above its high-water mark, pausing reading themselves in the second
//! case, and deliver the rest later; see [`Framed`] for the rules. What an adapter holds
//! is at most one read (64 KiB on the reactor) plus one partial frame (at most one
//! maximum-size frame).

use std::error::Error;
use std::fmt;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use torsion_reactor::{ConnectionLost, Protocol, Transport};

use crate::error::{NetstringError, PrefixedError};
use crate::flow::Gate;
use crate::netstring::{NetstringDecoder, NetstringEncoder};
use crate::prefixed::{PrefixWidth, PrefixedDecoder, PrefixedEncoder};
use crate::send::SendError;

/// A protocol that receives and sends whole strings (frames); serve it with
/// [`Netstrings`] or [`PrefixedStrings`].
///
/// Only [`string_received`](Self::string_received) is required. Callbacks get a
/// [`StringSender`]: the transport plus the framing's encoder.
///
/// ```
/// use torsion_protocols::{Netstrings, StringReceiver, StringSender};
/// use torsion_reactor::{Protocol, testing::StringTransport};
///
/// /// Sends every string back reversed.
/// struct Reverse;
///
/// impl StringReceiver for Reverse {
///     fn string_received(&mut self, strings: &StringSender, s: &[u8]) {
///         let reversed: Vec<u8> = s.iter().rev().copied().collect();
///         strings.send_string(&reversed);
///     }
/// }
///
/// let t = StringTransport::new();
/// let mut p = Netstrings::new(Reverse);
/// p.connection_made(&t.transport());
/// p.data_received(&t.transport(), b"3:abc,0:,");
/// assert_eq!(t.written(), b"3:cba,0:,");
///
/// p.data_received(&t.transport(), b"3:abcd,"); // malformed: closed
/// assert!(t.lose_connection_called());
/// ```
pub trait StringReceiver: 'static {
    /// The connection is open.
    fn connection_made(&mut self, strings: &StringSender) {
        let _ = strings;
    }

    /// A complete string arrived. May be empty.
    fn string_received(&mut self, strings: &StringSender, s: &[u8]);

    /// The peer sent a malformed or oversize frame. Called once, just before the
    /// connection is closed (write a last message here if the protocol has one); the
    /// error has already been logged. The default does nothing.
    fn framing_error(&mut self, strings: &StringSender, error: &FramingError) {
        let _ = (strings, error);
    }

    /// The peer half-closed; see [`Protocol::eof_received`]. Runs after every string that
    /// arrived before the end of file has been delivered, even if some were held back by
    /// back-pressure (the adapter keeps the connection open meanwhile and, if this returns
    /// `false`, closes it with `lose_connection`). The default returns `false`.
    fn eof_received(&mut self, strings: &StringSender) -> bool {
        let _ = strings;
        false
    }

    /// The connection is gone; called exactly once, after `connection_made`.
    fn connection_lost(&mut self, reason: &ConnectionLost) {
        let _ = reason;
    }

    /// The write buffer went above its high-water mark (see [`Protocol::pause_writing`]).
    /// The adapter delivers no string while the buffer is paused (see [`Framed`]).
    fn pause_writing(&mut self, strings: &StringSender) {
        let _ = strings;
    }

    /// The write buffer drained (see [`Protocol::resume_writing`]). Runs before the
    /// adapter delivers the strings it held back.
    fn resume_writing(&mut self, strings: &StringSender) {
        let _ = strings;
    }
}

/// Why a peer's stream of strings was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FramingError {
    /// A malformed or oversize netstring.
    Netstring(NetstringError),
    /// A length prefix declared a frame longer than `max_length`.
    Prefixed(PrefixedError),
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingError::Netstring(e) => e.fmt(f),
            FramingError::Prefixed(e) => e.fmt(f),
        }
    }
}

impl Error for FramingError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            FramingError::Netstring(e) => Some(e),
            FramingError::Prefixed(e) => Some(e),
        }
    }
}

/// Sends strings on one connection with its framing. Cheap to clone: keep one to send
/// from anywhere (a timer, another connection's callback).
#[derive(Clone)]
pub struct StringSender {
    transport: Transport,
    encoder: Rc<Encoder>,
}

impl StringSender {
    /// A sender of netstrings on `transport`.
    pub fn netstrings(transport: Transport, encoder: NetstringEncoder) -> StringSender {
        StringSender {
            transport,
            encoder: Rc::new(Encoder::Netstring(encoder)),
        }
    }

    /// A sender of length-prefixed strings on `transport`.
    pub fn prefixed(transport: Transport, encoder: PrefixedEncoder) -> StringSender {
        StringSender {
            transport,
            encoder: Rc::new(Encoder::Prefixed(encoder)),
        }
    }

    /// Frames `s` and writes it (Twisted's `sendString`). Like [`Transport::write`], it
    /// never calls back into user code and is ignored once the connection is closing. A
    /// string longer than the framing's `max_length` is not sent (the stream stays
    /// well-formed), and the refusal is logged as an error naming the peer;
    /// [`try_send_string`](Self::try_send_string) returns it instead.
    pub fn send_string(&self, s: &[u8]) {
        if let Err(SendError::Encode(err)) = self.try_send_string(s) {
            log::error!(
                "not sending a string to {}: {err}",
                self.transport.peer_addr()
            );
        }
    }

    /// [`send_string`](Self::send_string), saying what went wrong.
    ///
    /// # Errors
    ///
    /// [`SendError::Encode`] if `s` is longer than the framing's `max_length` (nothing is
    /// written: the stream stays well-formed); [`SendError::Transport`] if the connection
    /// is closing.
    pub fn try_send_string(&self, s: &[u8]) -> Result<(), SendError> {
        let mut buf = BytesMut::new();
        self.encoder.encode(s, &mut buf)?;
        self.transport.try_write_bytes(buf.freeze())?;
        Ok(())
    }

    /// The connection's transport.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }
}

impl fmt::Debug for StringSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StringSender")
            .field("transport", &self.transport)
            .field("encoder", &self.encoder)
            .finish()
    }
}

/// The part shared by both adapters: the receiver, its sender, and the failed flag.
struct Core<R> {
    receiver: R,
    encoder: Rc<Encoder>,
    /// Bound to the connection's transport on the first callback.
    sender: Option<StringSender>,
    failed: bool,
    gate: Gate,
}

impl<R: StringReceiver> Core<R> {
    fn new(receiver: R, encoder: Encoder) -> Core<R> {
        Core {
            receiver,
            encoder: Rc::new(encoder),
            sender: None,
            failed: false,
            gate: Gate::default(),
        }
    }

    /// Calls `f` with the receiver and a sender bound to `transport`.
    fn call<T>(&mut self, transport: &Transport, f: impl FnOnce(&mut R, &StringSender) -> T) -> T {
        let bound = self
            .sender
            .as_ref()
            .is_some_and(|s| s.transport.same_connection(transport));
        if !bound {
            self.sender = None;
        }
        let encoder = &self.encoder;
        let sender = self.sender.get_or_insert_with(|| StringSender {
            transport: transport.clone(),
            encoder: Rc::clone(encoder),
        });
        f(&mut self.receiver, sender)
    }

    fn connection_made(&mut self, transport: &Transport) {
        self.call(transport, |r, s| r.connection_made(s));
    }

    /// Pulls frames with `next` and delivers them while the gate lets it, until more
    /// bytes are needed or the stream turns out malformed (then the connection closes).
    /// Returns whether the decoder ran dry, rather than delivery being held back.
    fn deliver(
        &mut self,
        transport: &Transport,
        mut next: impl FnMut() -> Result<Option<Bytes>, FramingError>,
    ) -> bool {
        loop {
            if self.failed || !self.gate.open(transport) {
                return false;
            }
            match next() {
                Ok(Some(s)) => self.call(transport, |r, sender| r.string_received(sender, &s)),
                Ok(None) => return true,
                Err(error) => {
                    self.failed = true;
                    log::warn!(
                        "protocol error from {}: {error}; closing the connection",
                        transport.peer_addr()
                    );
                    self.call(transport, |r, sender| r.framing_error(sender, &error));
                    transport.lose_connection();
                    return false;
                }
            }
        }
    }

    /// Runs the receiver's end-of-file handling if it was waiting for the last frame.
    fn owed_eof(&mut self, transport: &Transport) {
        if self.gate.take_owed_eof(transport) && !self.eof_received(transport) {
            transport.lose_connection();
        }
    }

    fn eof_received(&mut self, transport: &Transport) -> bool {
        self.call(transport, |r, s| r.eof_received(s))
    }

    fn pause_writing(&mut self, transport: &Transport) {
        self.call(transport, |r, s| r.pause_writing(s));
    }

    fn resume_writing(&mut self, transport: &Transport) {
        self.call(transport, |r, s| r.resume_writing(s));
    }
}

mod sealed {
    use bytes::BytesMut;

    use crate::error::EncodeError;
    use crate::netstring::NetstringEncoder;
    use crate::prefixed::PrefixedEncoder;

    #[derive(Debug, Clone)]
    pub enum Encoder {
        Netstring(NetstringEncoder),
        Prefixed(PrefixedEncoder),
    }

    impl Encoder {
        pub fn encode(&self, s: &[u8], dst: &mut BytesMut) -> Result<(), EncodeError> {
            match self {
                Encoder::Netstring(e) => e.encode(s, dst),
                Encoder::Prefixed(e) => e.encode(s, dst),
            }
        }
    }

    /// A decoder the string adapters can serve: netstrings or length prefixes.
    pub trait Framing {
        fn push(&mut self, data: &[u8]);
        fn buffered_len(&self) -> usize;
        fn next(&mut self) -> Result<Option<bytes::Bytes>, super::FramingError>;
        fn sending(&self) -> super::Encoder;
        fn limited(self, max_length: usize) -> Self;
    }
}

use sealed::{Encoder, Framing};

impl Framing for NetstringDecoder {
    fn push(&mut self, data: &[u8]) {
        NetstringDecoder::push(self, data)
    }
    fn buffered_len(&self) -> usize {
        NetstringDecoder::buffered_len(self)
    }
    fn next(&mut self) -> Result<Option<Bytes>, FramingError> {
        self.next_frame().map_err(FramingError::Netstring)
    }
    fn sending(&self) -> Encoder {
        Encoder::Netstring(self.encoder())
    }
    fn limited(self, max_length: usize) -> Self {
        self.with_max_length(max_length)
    }
}

impl Framing for PrefixedDecoder {
    fn push(&mut self, data: &[u8]) {
        PrefixedDecoder::push(self, data)
    }
    fn buffered_len(&self) -> usize {
        PrefixedDecoder::buffered_len(self)
    }
    fn next(&mut self) -> Result<Option<Bytes>, FramingError> {
        self.next_frame().map_err(FramingError::Prefixed)
    }
    fn sending(&self) -> Encoder {
        Encoder::Prefixed(self.encoder())
    }
    fn limited(self, max_length: usize) -> Self {
        self.with_max_length(max_length)
    }
}

/// Serves a [`StringReceiver`] over a framing `D`; used as [`Netstrings`] or
/// [`PrefixedStrings`].
///
/// # Back-pressure
///
/// The adapter checks before *every* frame whether it may deliver it (the same rules as
/// [`Lines`](crate::Lines)):
///
/// - **Replies piling up.** While [`Transport::is_writing_paused`] is true, nothing is
///   delivered and the adapter pauses the transport's reading, so it holds at most what
///   was already read. On `resume_writing` the receiver's own
///   [`resume_writing`](StringReceiver::resume_writing) runs, then the held frames are
///   delivered and reading resumes. The adapter resumes only a pause it made. A
///   connection's memory stays within the high-water mark plus one frame's replies, plus
///   one read and one partial frame.
/// - **The receiver paused reading.** After [`Transport::pause_reading`] (or anything
///   that makes [`Transport::is_reading`] false), no further frame is delivered, even
///   those already read, until [`Protocol::reading_resumed`] follows
///   [`Transport::resume_reading`].
/// - **End of file.** If the peer half-closes while frames are held back, the connection
///   stays open until they are all delivered; then the receiver's
///   [`eof_received`](StringReceiver::eof_received) runs, and if it returns `false` the
///   adapter closes with [`Transport::lose_connection`]. After end of file only write
///   pressure holds frames back (the reactor's transport no longer reports a reading
///   pause then).
///
/// Nothing is lost, repeated or reordered. As with `Lines`, a pause made by someone else
/// while the adapter holds its own pause cannot be told apart from it and is lifted on
/// `resume_writing`.
pub struct Framed<D, R> {
    core: Core<R>,
    decoder: D,
}

/// Serves a [`StringReceiver`] over netstrings (`LEN:DATA,`; Twisted's
/// `NetstringReceiver`). Payloads of up to 99,999 bytes by default, both ways.
///
/// See the [`netstring`](crate::netstring) module for what is malformed; any of it closes
/// the connection (see [`StringReceiver::framing_error`]).
pub type Netstrings<R> = Framed<NetstringDecoder, R>;

/// Serves a [`StringReceiver`] with big-endian unsigned length prefixes of 1, 2 or 4
/// bytes (Twisted's `Int8StringReceiver`, `Int16StringReceiver`,
/// `Int32StringReceiver`).
///
/// `max_length` (default 99,999, capped at what the prefix can express) applies to both
/// directions: a peer's prefix declaring more is a protocol error, found before any of the
/// frame is buffered, and [`StringSender::send_string`] refuses longer strings instead of
/// sending a frame the peer would reject.
///
/// ```
/// use torsion_protocols::{PrefixedStrings, SendError, StringReceiver, StringSender};
/// use torsion_reactor::{Protocol, testing::StringTransport};
///
/// struct Echo;
/// impl StringReceiver for Echo {
///     fn string_received(&mut self, strings: &StringSender, s: &[u8]) {
///         strings.send_string(s);
///     }
///     fn connection_made(&mut self, strings: &StringSender) {
///         // 256 bytes do not fit an 8-bit prefix: refused, nothing written.
///         let err = strings.try_send_string(&[0; 256]).unwrap_err();
///         assert!(matches!(err, SendError::Encode(_)));
///     }
/// }
///
/// let t = StringTransport::new();
/// let mut p = PrefixedStrings::int8(Echo);
/// p.connection_made(&t.transport());
/// p.data_received(&t.transport(), b"\x02hi\x00");
/// assert_eq!(t.written(), b"\x02hi\x00");
/// ```
pub type PrefixedStrings<R> = Framed<PrefixedDecoder, R>;

impl<R: StringReceiver> Framed<NetstringDecoder, R> {
    /// Serves `receiver` with the default maximum length.
    pub fn new(receiver: R) -> Netstrings<R> {
        Framed::with_decoder(NetstringDecoder::new(), receiver)
    }
}

impl<R: StringReceiver> Framed<PrefixedDecoder, R> {
    /// Serves `receiver` with `width` prefixes and the default maximum length.
    pub fn new(width: PrefixWidth, receiver: R) -> PrefixedStrings<R> {
        Framed::with_decoder(PrefixedDecoder::new(width), receiver)
    }

    /// 32-bit prefixes (`Int32StringReceiver`), strings of up to 99,999 bytes.
    pub fn int32(receiver: R) -> PrefixedStrings<R> {
        Self::new(PrefixWidth::U32, receiver)
    }

    /// 16-bit prefixes (`Int16StringReceiver`), strings of up to 65,535 bytes.
    pub fn int16(receiver: R) -> PrefixedStrings<R> {
        Self::new(PrefixWidth::U16, receiver)
    }

    /// 8-bit prefixes (`Int8StringReceiver`), strings of up to 255 bytes.
    pub fn int8(receiver: R) -> PrefixedStrings<R> {
        Self::new(PrefixWidth::U8, receiver)
    }
}

impl<D: Framing, R: StringReceiver> Framed<D, R> {
    fn with_decoder(decoder: D, receiver: R) -> Framed<D, R> {
        Framed {
            core: Core::new(receiver, decoder.sending()),
            decoder,
        }
    }

    /// Accepts and sends strings of up to `max_length` bytes (for length prefixes, capped
    /// at what the prefix can express).
    pub fn with_max_length(self, max_length: usize) -> Framed<D, R> {
        Framed::with_decoder(self.decoder.limited(max_length), self.core.receiver)
    }

    /// The receiver.
    pub fn receiver(&self) -> &R {
        &self.core.receiver
    }

    /// The receiver, mutably.
    pub fn receiver_mut(&mut self) -> &mut R {
        &mut self.core.receiver
    }

    /// Unwraps the receiver.
    pub fn into_receiver(self) -> R {
        self.core.receiver
    }

    /// Bytes received and not yet delivered (held back, or part of an incomplete frame).
    pub fn buffered_len(&self) -> usize {
        self.decoder.buffered_len()
    }
}

impl<D: Framing + 'static, R: StringReceiver> Framed<D, R> {
    fn deliver(&mut self, transport: &Transport) -> bool {
        let decoder = &mut self.decoder;
        self.core.deliver(transport, || decoder.next())
    }

    fn deliver_then_eof(&mut self, transport: &Transport) {
        if self.deliver(transport) {
            self.core.owed_eof(transport);
        }
    }
}

impl<D: Framing + 'static, R: StringReceiver> Protocol for Framed<D, R> {
    fn connection_made(&mut self, transport: &Transport) {
        self.core.connection_made(transport);
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        if self.core.failed {
            return;
        }
        self.decoder.push(data);
        self.deliver(transport);
    }

    fn eof_received(&mut self, transport: &Transport) -> bool {
        if self.core.failed {
            return false;
        }
        self.core.gate.eof_received(transport);
        if self.decoder.buffered_len() > 0 && !self.deliver(transport) {
            // Strings are still held back: answer the end-of-file after them.
            self.core.gate.owe_eof();
            return !transport.is_closing();
        }
        if transport.is_closing() {
            return false;
        }
        self.core.eof_received(transport)
    }

    fn connection_lost(&mut self, reason: &ConnectionLost) {
        self.core.receiver.connection_lost(reason);
    }

    fn pause_writing(&mut self, transport: &Transport) {
        self.core.pause_writing(transport);
    }

    fn resume_writing(&mut self, transport: &Transport) {
        self.core.resume_writing(transport);
        self.deliver_then_eof(transport);
    }

    fn reading_resumed(&mut self, transport: &Transport) {
        self.deliver_then_eof(transport);
    }
}
