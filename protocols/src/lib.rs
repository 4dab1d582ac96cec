//! Reusable protocol building blocks for torsion: Twisted's
//! `twisted.protocols.basic`, `policies` and `wire`.
//!
//! - Framing, sans-I/O (below): [`LineDecoder`], [`NetstringDecoder`],
//!   [`PrefixedDecoder`] and their encoders.
//! - Protocol adapters over them: [`LineReceiver`] served by [`Lines`] (with
//!   mode switching through [`LineControl`]), and [`StringReceiver`] served by
//!   [`Netstrings`] or [`PrefixedStrings`].
//! - [`policy`]: wrappers for any factory — idle timeouts, connection and
//!   rate limits, a per-peer limit — composed with [`policy::WrappingFactory`].
//! - [`services`]: echo, discard, chargen, daytime, time and quote of the day.
//! - [`portforward`]: a TCP proxy (Twisted's port forwarder): each client forwarded to
//!   an upstream server over a connection of its own, with back-pressure and half-close.
//!
//! The *framing* layer turns a byte stream into
//! frames and back, the way Twisted's `twisted.protocols.basic` does, but
//! without any I/O. Each decoder is a plain value: push the bytes a
//! connection received into it, then pull complete frames out of it. Each
//! encoder appends frames to a [`BytesMut`] that a transport writes. So the
//! framing is tested by feeding bytes in any split, and can be used from
//! callback protocols and from async code alike.
//!
//! | Format | Decoder | Encoder | Twisted |
//! | --- | --- | --- | --- |
//! | delimited lines, with raw mode | [`LineDecoder`] | [`LineEncoder`] | `LineReceiver` |
//! | netstrings, `LEN:DATA,` | [`NetstringDecoder`] | [`NetstringEncoder`] | `NetstringReceiver` |
//! | big-endian 8/16/32-bit length prefix | [`PrefixedDecoder`] | [`PrefixedEncoder`] | `Int8/16/32StringReceiver` |
//!
//! Common rules:
//!
//! - The frames a decoder produces depend only on the bytes, never on how
//!   they were split into pushes.
//! - Decoding is linear in the bytes pushed, and every maximum length is
//!   enforced as early as the bytes prove it is exceeded, so a peer cannot
//!   make a decoder buffer much more than one maximum-size frame.
//! - No input makes a decoder panic. A malformed netstring or an oversize
//!   length prefix is a typed error after which the decoder stays failed (the
//!   connection should be closed); an overlong line is an event after which
//!   line parsing resumes at the next line.
//! - Encoders refuse, with an [`EncodeError`], any frame the peer's decoder
//!   with the same settings would not read back as that one frame, and write
//!   nothing in that case.
//!
//! # Example
//!
//! ```
//! use torsion_protocols::{BytesMut, LineDecoder, LineEvent};
//!
//! let mut dec = LineDecoder::new();
//! let enc = dec.encoder();
//! let mut wire = BytesMut::new();
//! enc.encode(b"hello", &mut wire).unwrap();
//! enc.encode(b"world", &mut wire).unwrap();
//!
//! // The bytes arrive in awkward pieces; the lines come out whole.
//! let mut lines = Vec::new();
//! for piece in wire.chunks(3) {
//!     dec.push(piece);
//!     while let Some(LineEvent::Line(line)) = dec.next_event() {
//!         lines.push(line);
//!     }
//! }
//! assert_eq!(lines, ["hello", "world"]);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod flow;
pub mod line;
pub mod line_receiver;
pub mod netstring;
pub mod policy;
pub mod portforward;
pub mod prefixed;
mod search;
mod send;
pub mod services;
pub mod string_receiver;

pub use bytes::{Bytes, BytesMut};
pub use error::{EncodeError, NetstringError, NetstringErrorKind, PrefixedError};
pub use line::{LineDecoder, LineEncoder, LineEvent};
pub use line_receiver::{LineControl, LineReceiver, LineSender, Lines};
pub use netstring::{NetstringDecoder, NetstringEncoder};
pub use prefixed::{PrefixWidth, PrefixedDecoder, PrefixedEncoder};
pub use send::SendError;
pub use string_receiver::{
    Framed, FramingError, Netstrings, PrefixedStrings, StringReceiver, StringSender,
};
