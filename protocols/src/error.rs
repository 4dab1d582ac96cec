//! Error types of the framing layer.

use std::error::Error;
use std::fmt;

/// Why a frame could not be encoded.
///
/// Encoders check a frame before writing it: on error nothing is written to
/// the destination buffer, so the outgoing stream is never left corrupt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The frame is longer than the encoder's maximum length (for length
    /// prefixes, the maximum is also capped by what the prefix can express).
    TooLong {
        /// Length of the rejected frame, in bytes.
        length: usize,
        /// The largest length this encoder accepts.
        max: usize,
    },
    /// The line contains its own delimiter, so the peer would read it as more
    /// than one line.
    ContainsDelimiter {
        /// Index in the line where the delimiter starts.
        offset: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EncodeError::TooLong { length, max } => write!(
                f,
                "cannot send a frame of {length} bytes: the maximum is {max} bytes \
                 (split the data, or raise max_length on both sides)"
            ),
            EncodeError::ContainsDelimiter { offset } => write!(
                f,
                "cannot send the line: it contains the line delimiter at byte {offset}, \
                 so the peer would see more than one line (split it into separate lines \
                 or escape the delimiter)"
            ),
        }
    }
}

impl Error for EncodeError {}

/// The reason a netstring stream was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetstringErrorKind {
    /// A byte other than an ASCII digit or `:` appeared in the length prefix
    /// (this covers signs, spaces and other separators).
    InvalidLengthByte {
        /// The offending byte.
        byte: u8,
    },
    /// The netstring started with `:`: the length prefix is empty.
    EmptyLength,
    /// The length prefix starts with `0` but is not just `0` (for example
    /// `03:abc,`); the netstring specification forbids leading zeros.
    LeadingZero,
    /// The length prefix declares more bytes than the decoder's maximum.
    /// This is detected from the digits, before any payload is buffered.
    TooLong {
        /// The length read so far; the declared length is at least this.
        at_least: usize,
        /// The decoder's maximum payload length.
        max: usize,
    },
    /// The byte after the payload is not the `,` terminator (the payload is
    /// longer than declared, or the stream is not netstrings).
    MissingComma {
        /// The byte found where `,` was expected.
        found: u8,
    },
}

/// A malformed or oversize netstring; the stream cannot be parsed further.
///
/// Carries the reason and the position in the stream (counted from the first
/// byte ever pushed into the decoder) of the byte that proved the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetstringError {
    pub(crate) kind: NetstringErrorKind,
    pub(crate) offset: u64,
}

impl NetstringError {
    /// The reason the stream was rejected.
    pub fn kind(&self) -> NetstringErrorKind {
        self.kind
    }

    /// Position in the stream of the byte that proved the error.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// Formats a byte for an error message: its hex value, and the character if
/// it is printable ASCII.
struct ShowByte(u8);

impl fmt::Display for ShowByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() || self.0 == b' ' {
            write!(f, "0x{:02x} ({:?})", self.0, self.0 as char)
        } else {
            write!(f, "0x{:02x}", self.0)
        }
    }
}

impl fmt::Display for NetstringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed netstring at byte {} of the stream: ",
            self.offset
        )?;
        match self.kind {
            NetstringErrorKind::InvalidLengthByte { byte } => write!(
                f,
                "expected a decimal digit or ':' in the length prefix, found byte {}",
                ShowByte(byte)
            ),
            NetstringErrorKind::EmptyLength => {
                f.write_str("the length prefix is empty (a netstring starts with its length, as in \"3:abc,\")")
            }
            NetstringErrorKind::LeadingZero => f.write_str(
                "the length prefix has a leading zero (only the empty payload, \"0:,\", may start with 0)",
            ),
            NetstringErrorKind::TooLong { at_least, max } => write!(
                f,
                "the length prefix declares at least {at_least} bytes, more than the maximum of {max} \
                 (raise max_length if the peer legitimately sends such payloads)"
            ),
            NetstringErrorKind::MissingComma { found } => write!(
                f,
                "expected ',' after the payload, found byte {} (the payload is longer than its length prefix says)",
                ShowByte(found)
            ),
        }
    }
}

impl Error for NetstringError {}

/// A length prefix declared a frame longer than the decoder accepts; the
/// stream cannot be parsed further.
///
/// This is detected from the prefix alone, before any of the frame's body is
/// buffered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixedError {
    pub(crate) length: u64,
    pub(crate) max: usize,
    pub(crate) offset: u64,
}

impl PrefixedError {
    /// The length the prefix declared.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// The decoder's maximum frame length.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Position in the stream of the first byte of the offending prefix.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl fmt::Display for PrefixedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the length prefix at byte {} of the stream declares a frame of {} bytes, \
             more than the maximum of {} (raise max_length if the peer legitimately sends such frames)",
            self.offset, self.length, self.max
        )
    }
}

impl Error for PrefixedError {}
